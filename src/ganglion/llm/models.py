"""The daemon's model clients, and which one a request goes to.

    main         `llm` and its fallbacks: every conversation, unless told otherwise
    named        `llm.models`: the models a conversation may be switched to (`/model`)
    compaction   `compaction.endpoint`, else the conversation's model
    heartbeat    `heartbeat.endpoint`, for reviews, else the conversation's model
    reminders    `reminders.endpoint`, for the turns reminders start, else the
                 conversation's model

Each client learns its own server's context window and whether it takes pictures, so a
conversation switched to another model fits its requests to that model.

Resource handling: `aclose` closes every client once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import httpx

from ganglion.config import Config, EndpointConfig, LLMConfig
from ganglion.llm.client import LLMClient, LLMStatistics
from ganglion.spend import Source
from ganglion.transcript import Usage

__all__ = ["ModelSet"]


class ModelSet:
    """The model clients of one daemon run (see the module docstring)."""

    def __init__(
        self,
        main: LLMClient,
        *,
        named: Mapping[str, LLMClient] | None = None,
        background: Mapping[Source, LLMClient] | None = None,
    ) -> None:
        self.main = main
        self.named = dict(named or {})
        self._background = dict(background or {})

    @classmethod
    def from_config(
        cls, config: Config, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> ModelSet:
        llm = config.llm
        main = LLMClient.from_config(llm, transport=transport)
        named = {
            name: LLMClient(
                [endpoint],
                timeouts=llm.timeouts,
                retries=llm.retries,
                transport=transport,
                context_window=endpoint.context_window or llm.context_window,
            )
            for name, endpoint in llm.models.items()
        }
        background: dict[Source, LLMClient] = {}
        sources: Sequence[tuple[Source, EndpointConfig | None]] = (
            ("compaction", config.compaction.endpoint),
            ("heartbeat", config.heartbeat.endpoint),
            ("reminders", config.reminders.endpoint),
        )
        for source, endpoint in sources:
            if endpoint is not None:
                background[source] = _single(endpoint, llm, transport)
        return cls(main, named=named, background=background)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.named)

    def chat(self, chosen: str | None) -> LLMClient:
        """The conversation's model: `chosen` (a name of `llm.models`), else the main one."""
        if chosen is not None and chosen in self.named:
            return self.named[chosen]
        return self.main

    def for_source(self, source: Source, chosen: str | None) -> LLMClient:
        """The client a request for `source` goes to, in a conversation that chose
        `chosen`: the background endpoint of that source where one is configured."""
        return self._background.get(source) or self.chat(chosen)

    def clients(self) -> list[LLMClient]:
        """Every client, each once (the main one first)."""
        found = [self.main]
        for client in [*self.named.values(), *self._background.values()]:
            if all(client is not other for other in found):
                found.append(client)
        return found

    def statistics(self) -> LLMStatistics:
        """The counters of every client, added up."""
        parts = [client.statistics() for client in self.clients()]
        errors: Counter[str] = Counter()
        for part in parts:
            errors.update(part.errors)
        return LLMStatistics(
            requests=sum(p.requests for p in parts),
            retries=sum(p.retries for p in parts),
            failures=sum(p.failures for p in parts),
            fallbacks_used=sum(p.fallbacks_used for p in parts),
            usage=sum((p.usage for p in parts), Usage()),
            answered=sum(p.answered for p in parts),
            latency_seconds=sum(p.latency_seconds for p in parts),
            errors=dict(errors),
        )

    async def aclose(self) -> None:
        for client in self.clients():
            await client.aclose()


def _single(
    endpoint: EndpointConfig, llm: LLMConfig, transport: httpx.AsyncBaseTransport | None
) -> LLMClient:
    return LLMClient(
        [endpoint],
        timeouts=llm.timeouts,
        retries=llm.retries,
        transport=transport,
        context_window=llm.context_window,
    )
