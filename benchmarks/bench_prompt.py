"""How many tokens the first turn's prompt takes, counted by a real tokenizer.

    GANGLION_LLAMACPP_PYTHON=... python benchmarks/bench_prompt.py

A real llama.cpp server (SmolLM2-135M, from the e2e-llm session's virtualenv) with a
Hermes-style chat template that renders every tool schema into the prompt, as Qwen's and
Hermes' templates do. The first turn is what Ganglion sends for "Hello" in a new
conversation with a fresh data directory and every built-in tool enabled: the system
prompt, the message, and the tools in each form a context window may get them
(`ganglion.threads.offers`). `usage.prompt_tokens` of one request each is the figure.

- `first_turn_prompt_tokens`: with every tool, in the form a window of 4,096 tokens or
  less gets (compact); the figure to keep at 2,000 or below.
- `first_turn_prompt_tokens_full_schemas`: every tool in full (larger windows).
- `first_turn_prompt_tokens_core_tools`: the core tools and `more_tools` (the smallest
  windows).
- `first_turn_prompt_tokens_no_tools`, `system_prompt_tokens`.
- `estimate_ratio`: the server's count over Ganglion's byte estimate of the same request
  (what the per-endpoint calibration converges on).
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import trio
from tests.support.llamacpp import open_llamacpp

from ganglion.config import Config
from ganglion.datadir import ensure_data_dir
from ganglion.prompt import PromptContext, PromptFileCache, build_system_prompt
from ganglion.redact import Redactor
from ganglion.threads.offers import tool_offers
from ganglion.tokens import estimate_request_tokens
from ganglion.tools import ToolRegistry
from ganglion.tools.builtin import builtin_tools
from ganglion.transcript import ChatMessage
from ganglion_actors import reserve

TEMPLATE = Path(__file__).resolve().parent.parent / "tests" / "support" / "chatml_tools.jinja"


def _first_turn(data_dir: Path) -> tuple[list[ChatMessage], ToolRegistry]:
    ensure_data_dir(data_dir)
    config = Config(data_dir=data_dir)
    tools = ToolRegistry(builtin_tools(config, reserve("reminders"), Redactor()))
    files = PromptFileCache(data_dir, config.tools.memory).load()
    context = PromptContext(
        now=datetime(2026, 11, 29, 9, 30).astimezone(),
        timezone="Europe/Paris",
        thread_id="web_0123456789abcdef",
        interface="web",
    )
    system = build_system_prompt(files, context)
    return [ChatMessage("system", system), ChatMessage("user", "Hello")], tools


async def _prompt_tokens(
    http: httpx.AsyncClient, base_url: str, messages: list[ChatMessage], tools: Any
) -> int:
    body: dict[str, Any] = {
        "messages": [m.to_api() for m in messages],
        "max_tokens": 1,
        "temperature": 0,
    }
    if tools:
        body["tools"] = tools
    response = await http.post(f"{base_url}/chat/completions", json=body)
    response.raise_for_status()
    return int(response.json()["usage"]["prompt_tokens"])


async def _measure() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        messages, tools = _first_turn(root / "data")
        async with (
            open_llamacpp(
                root / "llamacpp", slot_context=8192, parallel=1, chat_template=TEMPLATE
            ) as server,
            httpx.AsyncClient(timeout=300) as http,
        ):
            offers = {
                "full_schemas": tools.schemas(),
                "compact": tools.schemas(compact=True),
                "core_tools": tool_offers(tools, 2048, frozenset())[1].schemas,
            }
            counts = {
                name: await _prompt_tokens(http, server.base_url, messages, schemas)
                for name, schemas in offers.items()
            }
            no_tools = await _prompt_tokens(http, server.base_url, messages, None)
            system = await http.post(
                server.base_url.removesuffix("/v1") + "/tokenize",
                json={"content": messages[0].content},
            )
            system_tokens = len(system.json()["tokens"])
        estimate = estimate_request_tokens(messages, offers["compact"])
    return {
        "first_turn_prompt_tokens": counts["compact"],
        "first_turn_prompt_tokens_full_schemas": counts["full_schemas"],
        "first_turn_prompt_tokens_core_tools": counts["core_tools"],
        "first_turn_prompt_tokens_no_tools": no_tools,
        "system_prompt_tokens": system_tokens,
        "tools": len(offers["full_schemas"]),
        "estimate_ratio": round(counts["compact"] / estimate, 3),
        "tokenizer": "SmolLM2-135M (llama.cpp /tokenize and usage.prompt_tokens)",
    }


def main() -> dict[str, Any]:
    return trio.run(_measure)


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
