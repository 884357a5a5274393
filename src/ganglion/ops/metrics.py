"""Prometheus metrics for `GET /metrics`, read from the daemon at scrape time.

Nothing is counted twice: each scrape reads the counters the daemon keeps anyway (the
model client's, the actors', the thread registry's, `Activity`'s, the heartbeat's and
the Matrix interface's statistics, the reminder ledger) through a collector of its own
registry, so the daemon's code holds no metric objects. No label carries a room, a user
or a conversation: the label sets stay small and fixed.
Counters restart from zero with the daemon, as Prometheus expects; the reminder ledger's
counts are the ledger's (all time).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ganglion.matrix.stats import ERROR_KINDS
from ganglion.matrix.trust import REFUSALS
from ganglion.ops.loop import STEP_BUCKETS_MS
from ganglion.ops.status import LATENCY_BUCKETS, DaemonView

__all__ = ["CONTENT_TYPE", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def render_metrics(view: DaemonView) -> bytes:
    """The exposition text for one scrape."""
    ledger = await view.services.reminder_store.ledger_counts()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_DaemonCollector(view, ledger))
    return generate_latest(registry)


class _DaemonCollector(Collector):
    def __init__(self, view: DaemonView, ledger: dict[str, int]) -> None:
        self.view = view
        self.ledger = ledger

    def collect(self) -> Iterator[Metric]:
        yield from self._turns()
        yield from self._model()
        yield from self._actors()
        yield from self._reminders()
        yield from self._heartbeat()
        yield from self._loop()
        if self.view.services.config.matrix.enabled:
            yield from self._matrix()

    def _turns(self) -> Iterator[Metric]:
        activity = self.view.activity
        yield _by(
            "ganglion_turns",
            "Turns by outcome",
            "outcome",
            [
                ("started", activity.turns_started),
                ("answered", activity.turns_answered),
                ("failed", activity.turns_failed),
            ],
        )
        buckets: list[tuple[str, float]] = []
        for bound, count in zip(LATENCY_BUCKETS, activity.latency_counts, strict=True):
            buckets.append((f"{bound:g}", count))
        finished = activity.turns_answered + activity.turns_failed
        buckets.append(("+Inf", finished))
        yield HistogramMetricFamily(
            "ganglion_turn_duration_seconds",
            "Time from a turn's start to its answer or failure",
            buckets=buckets,
            sum_value=activity.latency_seconds,
        )
        tools = CounterMetricFamily(
            "ganglion_tool_calls", "Tool calls by tool and outcome", labels=["tool", "outcome"]
        )
        for (tool, outcome), calls in sorted(activity.tool_calls.items()):
            tools.add_metric([tool, outcome], calls)
        yield tools
        yield _by(
            "ganglion_system_turns",
            "Turns of system threads (system:heartbeat is the heartbeat's reviews)",
            "thread",
            sorted(activity.system_turns.items()),
        )

    def _model(self) -> Iterator[Metric]:
        stats = self.view.services.deps.models.statistics()
        yield _counter("ganglion_model_requests", "HTTP requests to the model", stats.requests)
        yield _counter("ganglion_model_retries", "Model requests repeated", stats.retries)
        yield _counter("ganglion_model_fallbacks", "Fallback endpoints tried", stats.fallbacks_used)
        yield _by(
            "ganglion_model_errors",
            "Failed model calls by kind",
            "kind",
            sorted(stats.errors.items()),
        )
        yield _by(
            "ganglion_model_tokens",
            "Tokens",
            "direction",
            [("in", stats.usage.prompt_tokens), ("out", stats.usage.completion_tokens)],
        )
        latency = CounterMetricFamily(
            "ganglion_model_call_seconds", "Total duration of answered model calls"
        )
        latency.add_metric([], stats.latency_seconds)
        yield latency
        yield _counter("ganglion_model_answers", "Model calls answered", stats.answered)
        yield from self._usage()
        yield from self._approvals()

    def _usage(self) -> Iterator[Metric]:
        meter = self.view.services.deps.meter
        today = GaugeMetricFamily(
            "ganglion_usage_tokens_today",
            "Tokens spent today (the owner's day), by source and direction",
            labels=["source", "direction"],
        )
        for source, totals in sorted(meter.today_nowait().items()):
            today.add_metric([source, "in"], totals.prompt)
            today.add_metric([source, "out"], totals.completion)
        yield today
        budgets = GaugeMetricFamily(
            "ganglion_budget_tokens",
            "Daily budgets: tokens spent and the limit",
            labels=["budget", "kind"],
        )
        for field, (spent, limit, _) in meter.budgets().items():
            if limit is not None:
                budgets.add_metric([field, "spent"], spent)
                budgets.add_metric([field, "limit"], limit)
        yield budgets

    def _approvals(self) -> Iterator[Metric]:
        approver = self.view.services.deps.approver
        pending = GaugeMetricFamily(
            "ganglion_approvals_pending", "Tool calls waiting for the owner's answer now"
        )
        pending.add_metric([], approver.waiting)
        yield pending
        yield _by(
            "ganglion_approvals",
            "Questions to the owner answered or withdrawn since the start, by outcome",
            "outcome",
            sorted(approver.decided.items()),
        )

    def _actors(self) -> Iterator[Metric]:
        restarts = CounterMetricFamily(
            "ganglion_actor_restarts", "Restarts of the root's children", labels=["actor"]
        )
        depth = GaugeMetricFamily(
            "ganglion_mailbox_depth", "Messages waiting in each mailbox", labels=["actor"]
        )
        up = GaugeMetricFamily("ganglion_actor_up", "1 while the actor runs", labels=["actor"])
        for ref in self.view.actors:
            stats = ref.statistics()
            restarts.add_metric([stats.name], stats.restarts)
            depth.add_metric([stats.name], stats.mailbox_depth)
            up.add_metric([stats.name], 1 if stats.running else 0)
        registry = self.view.services.threads.statistics()
        restarts.add_metric(["threads:conversations"], registry.restarts)
        depth.add_metric(["threads:queued"], registry.queued)
        yield from (restarts, depth, up)
        yield _gauge("ganglion_threads_live", "Conversation actors in memory", registry.live)

    def _reminders(self) -> Iterator[Metric]:
        yield _by(
            "ganglion_reminder_slots",
            "Reminder slots by state (fired = done)",
            "state",
            [(state, self.ledger.get(state, 0)) for state in ("claimed", "done", "missed")],
        )

    def _heartbeat(self) -> Iterator[Metric]:
        stats = self.view.services.heartbeat
        yield _counter("ganglion_heartbeat_beats", "Heartbeat beats", stats.beats)
        outcomes = ("silent", "spoke", "failed", "skipped")
        yield _by(
            "ganglion_heartbeat_reviews",
            "Heartbeat reviews by outcome",
            "outcome",
            [(outcome, stats.reviews.get(outcome, 0)) for outcome in outcomes],
        )
        yield _by(
            "ganglion_heartbeat_skipped",
            "Conversations a beat did not review, by reason",
            "reason",
            sorted(stats.skipped.items()),
        )
        yield _counter("ganglion_heartbeat_tokens", "Tokens heartbeat reviews used", stats.tokens)

    def _loop(self) -> Iterator[Metric]:
        loop = self.view.loop
        if loop is None:
            return
        buckets: list[tuple[str, float]] = []
        seen = 0
        for bound, count in zip(STEP_BUCKETS_MS, loop.counts, strict=True):
            seen += count
            buckets.append((f"{bound / 1000:g}" if bound != float("inf") else "+Inf", seen))
        yield HistogramMetricFamily(
            "ganglion_event_loop_step_seconds",
            "How long each step of the event loop ran before its next checkpoint",
            buckets=buckets,
            sum_value=loop.total_ms / 1000,
        )
        yield _gauge(
            "ganglion_event_loop_longest_step_seconds",
            "The longest step of the event loop since start",
            loop.max_ms / 1000,
        )

    def _matrix(self) -> Iterator[Metric]:
        stats = self.view.services.matrix
        yield _counter("ganglion_matrix_syncs", "Matrix syncs completed", stats.syncs)
        yield _by(
            "ganglion_matrix_requests",
            "Requests to the homeserver, by endpoint",
            "endpoint",
            sorted(stats.requests.items()),
        )
        yield _by(
            "ganglion_matrix_sync_errors",
            "Failures of the Matrix connection loop, by kind",
            "kind",
            [(kind, stats.errors.get(kind, 0)) for kind in ERROR_KINDS],
        )
        yield _gauge(
            "ganglion_matrix_consecutive_sync_errors",
            "Matrix sync errors since the last successful sync",
            stats.consecutive_errors,
        )
        if stats.last_sync_at is not None:
            yield _gauge(
                "ganglion_matrix_last_sync_timestamp_seconds",
                "When the last Matrix sync completed (Unix time)",
                stats.last_sync_at,
            )
        syncing = 1 if stats.state == "syncing" else 0
        yield _gauge("ganglion_matrix_up", "1 while Matrix syncs succeed", syncing)
        yield _gauge("ganglion_matrix_joined_rooms", "Matrix rooms joined", stats.joined_rooms)
        yield _counter(
            "ganglion_matrix_undecryptable_events",
            "Megolm events from allowed users that could not be decrypted on arrival",
            stats.undecryptable,
        )
        yield _counter(
            "ganglion_matrix_media_received",
            "Files, pictures and voice messages from rooms kept in the inbox",
            stats.media_received,
        )
        yield _counter(
            "ganglion_matrix_media_refused",
            "Files from rooms that could not be had (their senders were told why)",
            stats.media_refused,
        )
        yield _counter(
            "ganglion_matrix_decrypted_late_events",
            "Undecryptable events decrypted once their keys arrived",
            stats.decrypted_late,
        )
        if stats.one_time_keys is not None:
            yield _gauge(
                "ganglion_matrix_one_time_keys",
                "The device's one-time keys on the homeserver",
                stats.one_time_keys,
            )
        yield from self._matrix_trust()

    def _matrix_trust(self) -> Iterator[Metric]:
        stats = self.view.services.matrix
        yield _by(
            "ganglion_matrix_refused_by_trust",
            "Events not answered because their device failed the trust rule, by reason",
            "reason",
            [(reason, stats.refused_by_trust.get(reason, 0)) for reason in REFUSALS],
        )
        yield _counter(
            "ganglion_matrix_late_key_notices",
            "Rooms told that a message's keys did not come within a minute",
            stats.late_key_notices,
        )
        yield _gauge(
            "ganglion_matrix_verified_devices_only",
            "1 while only cross-signed devices of pinned identities are answered",
            1 if stats.verified_devices_only else 0,
        )
        if stats.pinned_identities is not None:
            yield _gauge(
                "ganglion_matrix_pinned_identities",
                "Users whose cross-signing identity the bot has pinned",
                stats.pinned_identities,
            )
        identity = stats.identity
        if identity is not None:
            for name, value, what in (
                ("identity_published", identity.published, "the account publishes an identity"),
                ("device_signed", identity.device_signed, "the device is cross-signed"),
                ("recovery_key_set", identity.recovery_key_set, "secret storage holds the keys"),
            ):
                yield _gauge(f"ganglion_matrix_{name}", f"1 while {what}", 1 if value else 0)


def _by(name: str, documentation: str, label: str, values: Iterable[tuple[str, float]]) -> Metric:
    """A counter with one label, a sample per (label value, count)."""
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, count in values:
        family.add_metric([key], count)
    return family


def _counter(name: str, documentation: str, value: float) -> Metric:
    return CounterMetricFamily(name, documentation, value=value)


def _gauge(name: str, documentation: str, value: Any) -> Metric:
    return GaugeMetricFamily(name, documentation, value=value)
