"""The titler: names each new web conversation with a short title the model writes from
its first exchange (`web.generate_titles`).

It watches the delivery route (an observer, in the emitter's task: one `send_nowait`)
for the answers of web conversations, and takes them one at a time in its own task,
beside the conversations: a thread actor never waits for a title, and its next turn is
never held up by one. For each it asks the store whether the conversation is still to be
named (`store.titles`: nothing tried yet, not renamed by the owner), asks the model in one
small request (no tools, `TITLE_MAX_TOKENS`, within `llm.max_concurrency` and the day's
budgets, counted under the usage source "titles"), cleans what comes back
(`ganglion.titles`) and stores it. Every open tab's list shows it (`ThreadRetitled`,
delivered like the conversation's other events).

Only web conversations are named: they are listed by the chat's sidebar, while a Matrix
room has the name its members gave it, and a system thread is read in the log.

Error handling: a model that fails, times out (`TITLE_SECONDS`) or answers no title, and a
budget that refuses the request, leave the first message's first line as the title (the
fallback). Resource handling: its mailbox is bounded; when it is full an answer is not
queued (the conversation is named at its next answer). A conversation is asked about at
most once, whatever the restarts (`store.titles`).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Final

import trio

from ganglion.ids import interface_for
from ganglion.llm import LLMError
from ganglion.messages import FinalReply, Outbound, ThreadRetitled, TitleWanted
from ganglion.store import FirstExchange, Titles
from ganglion.threads.deps import ThreadDeps
from ganglion.titles import TITLE_MAX_TOKENS, model_title, title_request
from ganglion.tokens import estimate_message_tokens
from ganglion.usage import BudgetExceeded
from ganglion_actors import ActorRef, ActorStopped, ChildSpec, Inbox, MailboxFull

__all__ = ["TITLE_SECONDS", "serve_titler", "titler_child"]

log = logging.getLogger(__name__)

TITLE_SECONDS: Final = 60.0  # for the model's answer, once a slot is free
TITLE_TEMPERATURE: Final = 0.3
MAILBOX: Final = 64


def titler_child(deps: ThreadDeps, titles: Titles) -> ChildSpec[TitleWanted]:
    """The titler as the root supervisor runs it: restarted after a crash for as long as
    it crashes, never escalating (a title is never worth stopping the daemon for)."""
    return ChildSpec(
        "titles", partial(serve_titler, deps, titles), mailbox_size=MAILBOX, escalates=False
    )


async def serve_titler(
    deps: ThreadDeps,
    titles: Titles,
    inbox: Inbox[TitleWanted],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Name the conversations answered while it runs, one at a time, until the mailbox
    ends."""
    titler = Titler(deps, titles, inbox.ref)
    with deps.router.observing(titler.observe):
        task_status.started()
        async for wanted in inbox:
            titler.queued.discard(wanted.thread_id)
            await titler.name(wanted.thread_id)


class Titler:
    """What `serve_titler` runs: the observer that queues answered conversations, and the
    naming of one."""

    def __init__(self, deps: ThreadDeps, titles: Titles, ref: ActorRef[TitleWanted]) -> None:
        self.deps = deps
        self.titles = titles
        self.ref = ref
        self.queued: set[str] = set()  # in the mailbox: queued once however often answered

    def observe(self, event: Outbound) -> None:
        """The delivery route's observer: an answer in a web conversation queues it."""
        if not isinstance(event, FinalReply) or interface_for(event.thread_id) != "web":
            return
        if event.thread_id in self.queued:
            return
        try:
            self.ref.send_nowait(TitleWanted(event.thread_id))
        except (MailboxFull, ActorStopped):
            return  # named at its next answer
        self.queued.add(event.thread_id)

    async def name(self, thread_id: str) -> None:
        """Name `thread_id` if it is still to be named (see the module docstring)."""
        exchange = await self.titles.claim(thread_id)
        if exchange is None:
            return
        title = await self.ask(exchange)
        shown = await self.titles.settle(thread_id, title)
        if title is None:
            log.info("%s keeps the first line of its first message as its title", thread_id)
        if shown is not None:
            await self.deps.router.deliver(ThreadRetitled(thread_id, shown))

    async def ask(self, exchange: FirstExchange) -> str | None:
        """The model's title for `exchange`, cleaned; None when it gave none."""
        client = self.deps.models.for_source("titles", exchange.model)
        request = title_request(exchange.asked, exchange.answered)
        ratio = (await client.window()).ratio  # the estimate, in the server's tokens
        size = int(sum(estimate_message_tokens(message) for message in request) * ratio)
        meter = self.deps.meter
        try:
            async with meter.charge(
                "titles", exchange.thread_id, size + TITLE_MAX_TOKENS
            ) as charge:
                async with self.deps.llm_slots:
                    with trio.move_on_after(TITLE_SECONDS) as waited:
                        completion = await client.complete(
                            request, temperature=TITLE_TEMPERATURE, max_tokens=TITLE_MAX_TOKENS
                        )
                if waited.cancelled_caught:
                    log.warning("%s: no title within %.0f s", exchange.thread_id, TITLE_SECONDS)
                    return None
                await charge.record(completion, size)
        except (LLMError, BudgetExceeded) as exc:
            log.warning("%s: no title from the model: %s", exchange.thread_id, exc)
            return None
        title = model_title(completion.content)
        if title is None:  # what it said stays out of the log: it may quote the owner
            log.warning(
                "%s: the model answered no title (%d characters)",
                exchange.thread_id,
                len(completion.content),
            )
        return title
