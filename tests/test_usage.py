"""Usage and budgets: the pure rules, the meter over a real store with trio's clock, then
inside the running daemon against the scripted fake model (which reports `usage`)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import trio

from ganglion.config import BudgetsConfig, PriceConfig
from ganglion.llm import Completion
from ganglion.messages import FinalReply, Notice, TriggerHeartbeat, TurnFailed
from ganglion.spend import Spend, Totals, turn_source
from ganglion.store import ConversationStore
from ganglion.transcript import ToolCall, Usage
from ganglion.usage import BudgetExceeded, Meter, spend_of
from ganglion.usage.budgets import overrun, scopes_of
from tests.support.daemon import Daemon, daemon_config, open_daemon
from tests.support.fakellm import FakeLLM, Reply, open_fake_llm

PARIS = ZoneInfo("Europe/Paris")
WEB = "web_0123456789abcdef"
OTHER = "web_fedcba9876543210"


def completion(usage: Usage, text: str = "ok", price: PriceConfig | None = None) -> Completion:
    return Completion(text, (), "stop", usage, "fake", "http://127.0.0.1:1/v1", price=price)


# --- the pure rules ---------------------------------------------------------------------


def test_every_call_counts_against_the_daily_budget_and_autonomous_work_against_its_own() -> None:
    assert scopes_of("owner", WEB) == ("daily",)
    assert scopes_of("reminders", WEB) == ("daily",)
    assert scopes_of("heartbeat", WEB) == ("daily", "heartbeat")
    assert scopes_of("heartbeat", "system:heartbeat") == ("daily", "heartbeat")
    assert scopes_of("reminders", "system:reminders") == ("daily", "system")
    assert turn_source("user") == "owner" and turn_source("reminder") == "reminders"


def test_a_call_that_lands_exactly_on_the_limit_is_made_and_one_token_more_is_not() -> None:
    budgets = BudgetsConfig(daily_tokens=1000)
    assert overrun(budgets, ("daily",), {"daily": 900}, 100) is None
    over = overrun(budgets, ("daily",), {"daily": 900}, 101)
    assert over is not None and (over.limit, over.spent, over.needed, over.left) == (
        1000,
        900,
        101,
        100,
    )
    assert overrun(budgets, ("daily",), {"daily": 900}, 101, allowance=1) is None
    assert overrun(BudgetsConfig(), ("daily", "heartbeat"), {"daily": 10**9}, 10**9) is None


def test_the_first_limit_passed_is_named() -> None:
    budgets = BudgetsConfig(daily_tokens=10_000, heartbeat_daily_tokens=500)
    over = overrun(budgets, ("daily", "heartbeat"), {"daily": 400, "heartbeat": 400}, 200)
    assert over is not None and over.field == "budgets.heartbeat_daily_tokens"


def test_the_servers_figures_are_counted_and_priced() -> None:
    price = PriceConfig(input_per_million=2.0, output_per_million=8.0, currency="EUR")
    spend = spend_of(completion(Usage(1_000, 500, 200), price=price), WEB, "owner", 99)
    assert (spend.prompt, spend.completion, spend.cached, spend.estimated) == (
        1000,
        500,
        200,
        False,
    )
    assert spend.cost == pytest.approx((1000 * 2.0 + 500 * 8.0) / 1_000_000)
    assert spend.currency == "EUR"


def test_a_server_that_reports_nothing_is_estimated_and_marked() -> None:
    answer = Completion(
        "x" * 40,
        (ToolCall("c1", "shell", '{"command": "ls"}'),),
        "stop",
        Usage(),
        "fake",
        "http://127.0.0.1:1/v1",
    )
    spend = spend_of(answer, WEB, "owner", 321)
    assert spend.estimated and spend.prompt == 321 and spend.completion > 0
    assert spend.cost is None


def test_totals_add_up_money_by_currency() -> None:
    a = Totals.of(Spend(WEB, "owner", "m", 10, 5, cost=0.5, currency="USD"))
    b = Totals.of(Spend(WEB, "owner", "m", 1, 1, estimated=True, cost=0.25, currency="USD"))
    c = Totals.of(Spend(WEB, "owner", "m", 1, 1, cost=1.0, currency="EUR"))
    total = a + b + c
    assert (total.calls, total.tokens, total.estimated) == (3, 19, 1)
    assert total.costs == {"USD": 0.75, "EUR": 1.0}


# --- the meter, over a real store, on trio's clock ----------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ConversationStore]:
    opened = await ConversationStore.open(tmp_path / "conversation.db")
    try:
        yield opened
    finally:
        await opened.aclose()


def paris_clock(start: datetime) -> datetime:
    """The owner's wall clock, moving with trio's (autojump) clock."""
    return start + timedelta(seconds=trio.current_time())


def meter_at(store: ConversationStore, start: datetime, **budgets: int) -> Meter:
    return Meter(store.usage, BudgetsConfig(**budgets), lambda: paris_clock(start))


async def spend(meter: Meter, tokens: int, source: str = "owner", thread: str = WEB) -> None:
    async with meter.charge(source, thread, tokens) as charge:  # type: ignore[arg-type]
        await charge.record(completion(Usage(tokens - 1, 1)), tokens)


async def test_the_day_ends_at_the_owners_midnight(
    store: ConversationStore, autojump_clock: trio.testing.MockClock
) -> None:
    start = datetime(2026, 12, 7, 23, 50, tzinfo=PARIS)  # 22:50 UTC
    meter = meter_at(store, start, daily_tokens=1000)
    await spend(meter, 600)
    assert meter.day == "2026-12-07"
    with pytest.raises(BudgetExceeded):
        async with meter.charge("owner", WEB, 401):
            pass
    await trio.sleep(15 * 60)  # 00:05 in Paris, still 23:05 in UTC
    async with meter.charge("owner", WEB, 1000):
        pass
    assert meter.day == "2026-12-08"
    assert (await meter.today()) == {}
    all_time, today = await meter.conversation(WEB)
    assert all_time["owner"].tokens == 600 and today == {}


async def test_a_restarted_meter_knows_what_the_day_spent(
    store: ConversationStore, autojump_clock: trio.testing.MockClock
) -> None:
    start = datetime(2026, 12, 7, 12, 0, tzinfo=PARIS)
    await spend(meter_at(store, start), 700)
    again = meter_at(store, start, daily_tokens=1000)
    with pytest.raises(BudgetExceeded) as refused:
        async with again.charge("owner", WEB, 301):
            pass
    assert refused.value.over.spent == 700
    assert "/budget +" in refused.value.user_message


async def test_calls_in_flight_reserve_what_they_may_need(
    store: ConversationStore, autojump_clock: trio.testing.MockClock
) -> None:
    meter = meter_at(store, datetime(2026, 12, 7, 12, 0, tzinfo=PARIS), daily_tokens=1000)
    async with meter.charge("owner", WEB, 600):
        with pytest.raises(BudgetExceeded):
            async with meter.charge("owner", OTHER, 600):
                pass
    async with meter.charge("owner", OTHER, 600):
        pass


async def test_autonomous_work_stops_for_the_day_with_one_notice(
    store: ConversationStore, autojump_clock: trio.testing.MockClock
) -> None:
    meter = meter_at(store, datetime(2026, 12, 7, 12, 0, tzinfo=PARIS), heartbeat_daily_tokens=100)
    told: list[str] = []

    async def announce(text: str) -> None:
        told.append(text)

    meter.announce = announce
    await spend(meter, 80, "heartbeat")
    for _ in range(3):
        with pytest.raises(BudgetExceeded) as refused:
            async with meter.charge("heartbeat", WEB, 50):
                pass
        assert refused.value.autonomous
    assert len(told) == 1 and "Heartbeat reviews stopped for today" in told[0]
    assert "80 of 100" in told[0] and "budgets.heartbeat_daily_tokens" in told[0]
    assert meter.paused("heartbeat", "system:heartbeat")
    async with meter.charge("owner", WEB, 50):  # the owner's own turns go on
        pass
    await trio.sleep(24 * 3600)
    assert not meter.paused("heartbeat", "system:heartbeat")


async def test_an_allowance_raises_todays_daily_limit_only(
    store: ConversationStore, autojump_clock: trio.testing.MockClock
) -> None:
    meter = meter_at(store, datetime(2026, 12, 7, 12, 0, tzinfo=PARIS), daily_tokens=1000)
    await spend(meter, 1000)
    with pytest.raises(BudgetExceeded):
        async with meter.charge("owner", WEB, 1):
            pass
    assert await meter.allow(500) == 500
    async with meter.charge("owner", WEB, 500):
        pass
    await trio.sleep(24 * 3600)
    assert meter.budgets()["budgets.daily_tokens"] == (0, 1000, False)


# --- inside the daemon ------------------------------------------------------------------


def notices(daemon: Daemon, thread: str) -> list[str]:
    return [e.text for e in daemon.collector.of(thread, Notice)]  # type: ignore[union-attr]


async def command(daemon: Daemon, thread: str, text: str) -> str:
    count = len(notices(daemon, thread)) + 1
    await daemon.say(thread, text)
    return await daemon.collector.notice(thread, count)


async def test_usage_shows_what_the_server_reported(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply("one", usage=(120, 30)), Reply("two", usage=(200, 45)))
    price = {"input_per_million": 1000.0, "output_per_million": 2000.0}
    config = daemon_config(tmp_path, fake_llm.base_url, llm={"price": price})
    async with open_daemon(config) as daemon:
        for index, text in enumerate(("hi", "and again")):
            await daemon.say(WEB, text)
            await daemon.collector.final(WEB, index + 1)
        shown = await command(daemon, WEB, "/usage")
    cost = (320 * 1000.0 + 75 * 2000.0) / 1_000_000
    assert shown.startswith(
        f"This conversation: 395 tokens (320 in, 75 out; 2 calls), {cost:.4f} USD"
    )
    assert "\n  today: 395 tokens" in shown
    assert "every conversation: 395 tokens" in shown and "\n  owner: 395 tokens" in shown
    assert "No budget is set" in shown and "~" not in shown


async def test_an_owner_turn_over_the_daily_budget_is_not_sent_and_says_how_to_go_on(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(Reply("answered", usage=(100, 20)))
    config = daemon_config(
        tmp_path, fake_llm.base_url, llm={"max_tokens": 64}, budgets={"daily_tokens": 1}
    )
    async with open_daemon(config) as daemon:
        await daemon.say(WEB, "hi")
        failed = await daemon.collector.final(WEB)
        assert not fake_llm.requests
        assert failed[0].startswith("FAILED: Not sent to the model: today's token budget")
        assert "0 of 1 tokens (budgets.daily_tokens)" in failed[0]
        match = re.search(r"/budget \+([0-9,]+)", failed[0])
        assert match is not None
        allowed = await command(daemon, WEB, f"/budget +{match.group(1)}")
        assert allowed.startswith(f"Allowed {match.group(1)} more tokens today.")
        await daemon.say(WEB, "hi again")
        assert (await daemon.collector.final(WEB, 2))[-1] == "answered"
        left = await command(daemon, WEB, "/budget")
    assert left.startswith("Budget budgets.daily_tokens: 120 of ")


async def test_the_heartbeat_stops_at_its_budget_with_one_notice(tmp_path: Path) -> None:
    (tmp_path / "HEARTBEATS.txt").write_text("- call the plumber\n")
    async with open_fake_llm(responder=lambda body: Reply("ok")) as fake:
        config = daemon_config(tmp_path, fake.base_url, budgets={"heartbeat_daily_tokens": 50})
        async with open_daemon(config) as daemon:
            await daemon.say(WEB, "hello")
            await daemon.collector.final(WEB)
            asked = len(fake.requests)
            for _ in range(3):
                with trio.fail_after(30):
                    await daemon.services.deps.heartbeat.ask(
                        lambda reply: TriggerHeartbeat("test", reply)
                    )
            told = await daemon.collector.wait_for(
                lambda e: (
                    e.thread_id == WEB
                    and isinstance(e, FinalReply)
                    and "stopped for today" in e.text
                )
            )
            today = await daemon.services.deps.meter.today()
    assert len(fake.requests) == asked  # no review reached the model
    assert len(told) == 1
    assert "heartbeat" not in today
    assert not [e for e in daemon.collector.of(WEB, TurnFailed)]


async def test_model_switches_the_endpoint_and_survives_a_restart(tmp_path: Path) -> None:
    async with (
        open_fake_llm(responder=lambda body: Reply("from main")) as main,
        open_fake_llm(responder=lambda body: Reply("from small")) as small,
    ):
        models = {"small": {"base_url": small.base_url, "model": "small-1", "vision": True}}
        config = daemon_config(tmp_path, main.base_url, llm={"models": models})
        async with open_daemon(config) as daemon:
            listed = await command(daemon, WEB, "/model")
            switched = await command(daemon, WEB, "/model small")
            await daemon.say(WEB, "hi")
            assert await daemon.collector.final(WEB) == ["from small"]
            unknown = await command(daemon, WEB, "/model huge")
        assert "* default: fake" in listed and "  small: small-1" in listed
        assert switched.startswith("This conversation asks small from now on: small-1")
        assert "There is no model 'huge'" in unknown
        assert small.requests[-1]["model"] == "small-1" and not main.requests
        async with open_daemon(config) as daemon:
            await daemon.say(WEB, "again")
            assert await daemon.collector.final(WEB) == ["from small"]
            await daemon.say(OTHER, "elsewhere")
            assert await daemon.collector.final(OTHER) == ["from main"]
            back = await command(daemon, WEB, "/model default")
            await daemon.say(WEB, "and now")
            assert (await daemon.collector.final(WEB, 2))[-1] == "from main"
            chosen = await daemon.services.store.library.chosen_models()
    assert back == "This conversation asks the main model again: fake."
    assert len(small.requests) == 2 and len(main.requests) == 2
    assert chosen == {}


async def test_background_work_goes_to_its_own_endpoint(tmp_path: Path) -> None:
    async with (
        open_fake_llm(responder=lambda body: Reply("from main")) as main,
        open_fake_llm(responder=lambda body: Reply("HEARTBEAT_OK")) as cheap,
    ):
        (tmp_path / "HEARTBEATS.txt").write_text("- water the plants\n")
        endpoint = {"base_url": cheap.base_url, "model": "cheap-1"}
        config = daemon_config(tmp_path, main.base_url, heartbeat={"endpoint": endpoint})
        async with open_daemon(config) as daemon:
            await daemon.say(WEB, "hello")
            await daemon.collector.final(WEB)
            with trio.fail_after(30):
                await daemon.services.deps.heartbeat.ask(
                    lambda reply: TriggerHeartbeat("test", reply)
                )
            today = await daemon.services.deps.meter.today()
    assert len(main.requests) == 1
    assert cheap.requests and all(r["model"] == "cheap-1" for r in cheap.requests)
    assert today["heartbeat"].calls == len(cheap.requests)
