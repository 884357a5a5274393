"""Tools: typed Python functions offered to the model.

A tool is an async function whose keyword parameters are annotated; `@tool` reads the
signature and docstring, builds a pydantic model of the arguments, and from that the JSON
schema sent to the model. When the model calls it, the arguments are parsed and validated
before the function runs; every problem (invalid JSON, unknown tool, wrong type, missing
field, the function raising, a time-out) becomes a `ToolResult` with `ok=False` and a short
message the model can act on. A tool never crashes a turn.

    @tool
    async def add(ctx: ToolContext, a: int, b: int = 0) -> str:
        '''Add two numbers.'''
        return str(a + b)

The first parameter is always the `ToolContext` (which thread, turn and interface the call
comes from); it is not part of the schema.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Any, get_type_hints, overload

import trio
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from ganglion.errors import GanglionError
from ganglion.transcript import Attachment, ToolCall

__all__ = ["Tool", "ToolContext", "ToolError", "ToolOutput", "ToolRegistry", "ToolResult", "tool"]

log = logging.getLogger(__name__)

MAX_RESULT_CHARS = 16_000


class ToolError(GanglionError):
    """An expected refusal by a tool (bad path, too large, …): its message goes to the
    model as is, without a traceback in the log."""


@dataclass(frozen=True, slots=True)
class ToolContext:
    """Where a tool call comes from. `source` is 'user', 'reminder' or 'heartbeat'."""

    thread_id: str
    turn_id: str
    interface: str
    source: str = "user"


@dataclass(frozen=True, slots=True)
class ToolOutput:
    """What a tool returns when it sends a file into the conversation (`send_file`): its
    text for the model, and the file (in the conversation's inbox) for the owner."""

    text: str
    sent: Attachment


@dataclass(frozen=True, slots=True)
class ToolResult:
    call_id: str
    name: str
    content: str
    ok: bool
    duration: float
    persists: bool = False  # it changed what outlives the conversation
    sent: Attachment | None = None  # a file for the owner (`ToolOutput`)

    def audit(self, arguments: str) -> dict[str, Any]:
        return {
            "tool": self.name,
            "arguments": arguments,
            "ok": self.ok,
            "duration_ms": round(self.duration * 1000, 1),
        }


ToolFn = Callable[..., Awaitable[str | ToolOutput]]


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool offered to the model. Its arguments are described either by a pydantic
    model (`arguments`; validated before the call) or, for tools defined elsewhere (MCP
    servers), by a JSON schema (`parameters`; any JSON object is passed through as keyword
    arguments, and the tool's owner validates it)."""

    name: str
    description: str
    arguments: type[BaseModel] | None
    fn: ToolFn
    timeout: float | None = None
    parameters: Mapping[str, Any] | None = None
    # Changes what outlives the conversation (memories, goals, skills, reminders): the
    # owner is shown each change in the conversation.
    persists: bool = False
    # What small context windows get instead of `description`: one line that still says
    # how to call the tool. None: the description's first sentence.
    brief: str | None = None
    # Offered even when a small context window leaves room for only a few tools; the
    # others are offered when the model asks for them (threads.turn, `more_tools`).
    core: bool = False

    def schema(self, *, compact: bool = False) -> dict[str, Any]:
        """The OpenAI function schema. `compact` is for small context windows: the brief
        description, and no per-parameter descriptions or `additionalProperties`."""
        if self.arguments is None:
            parameters = dict(self.parameters or {"type": "object", "properties": {}})
        else:
            parameters = _without_titles(self.arguments.model_json_schema())
        parameters.pop("title", None)
        if compact:
            parameters = _compacted(parameters)
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.short_description() if compact else self.description,
                "parameters": parameters,
            },
        }

    def short_description(self) -> str:
        if self.brief is not None:
            return self.brief
        first = re.split(r"(?<=[.!?])\s", self.description, maxsplit=1)[0]
        first = re.sub(r"\s\([^()]*\)", "", first)  # no asides
        main = re.split(r"[:;]\s", first, maxsplit=1)[0].rstrip(".")  # no elaboration
        return " ".join(main.split()) + "."


def _without_titles(schema: Any) -> Any:
    """A pydantic schema without the "title" of every field (it only repeats the name)."""
    if isinstance(schema, dict):
        return {
            key: _without_titles(value)
            for key, value in schema.items()
            if not (key == "title" and isinstance(value, str))
        }
    if isinstance(schema, list):
        return [_without_titles(item) for item in schema]
    return schema


def _compacted(parameters: dict[str, Any]) -> dict[str, Any]:
    """Only what a call needs: each property's type (an optional one without its null
    alternative), enum and item type; no descriptions, defaults or extra keys."""
    compact: dict[str, Any] = {"type": "object", "properties": {}}
    properties = parameters.get("properties")
    if isinstance(properties, dict):
        compact["properties"] = {
            name: _compact_property(spec) if isinstance(spec, dict) else spec
            for name, spec in properties.items()
        }
    if parameters.get("required"):
        compact["required"] = parameters["required"]
    return compact


def _compact_property(spec: dict[str, Any]) -> dict[str, Any]:
    variants = spec.get("anyOf")
    if isinstance(variants, list):
        typed = [v for v in variants if isinstance(v, dict) and v.get("type") != "null"]
        if len(typed) == 1:
            spec = typed[0]
    return {k: v for k, v in spec.items() if k in ("type", "enum", "items")}


@overload
def tool(fn: ToolFn, /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    timeout: float | None = None,
    persists: bool = False,
    brief: str | None = None,
    core: bool = False,
) -> Callable[[ToolFn], Tool]: ...


def tool(
    fn: ToolFn | None = None,
    /,
    *,
    name: str | None = None,
    timeout: float | None = None,
    persists: bool = False,
    brief: str | None = None,
    core: bool = False,
) -> Tool | Callable[[ToolFn], Tool]:
    """Make a `Tool` from an async function (usable as `@tool` or `@tool(name=...)`)."""

    def wrap(fn: ToolFn) -> Tool:
        return Tool(
            name=name or fn.__name__,
            description=inspect.cleandoc(fn.__doc__ or "").strip(),
            arguments=_arguments_model(fn),
            fn=fn,
            timeout=timeout,
            persists=persists,
            brief=brief,
            core=core,
        )

    return wrap(fn) if fn is not None else wrap


def _arguments_model(fn: ToolFn) -> type[BaseModel]:
    hints = get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    parameters = list(inspect.signature(fn).parameters.values())[1:]  # skip the ToolContext
    for parameter in parameters:
        annotation = hints.get(parameter.name, Any)
        default = ... if parameter.default is inspect.Parameter.empty else parameter.default
        fields[parameter.name] = (annotation, default)
    model: type[BaseModel] = create_model(
        f"{fn.__name__}_arguments",
        __config__=ConfigDict(extra="forbid"),
        **fields,
    )
    return model


class ToolRegistry:
    """The tools a turn may call, by name."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        # Building the schemas takes milliseconds (pydantic); they change only when a
        # tool comes or goes, and every model request needs them.
        self._schemas: dict[bool, list[dict[str, Any]]] = {}
        for item in tools:
            self.register(item)

    def register(self, item: Tool) -> None:
        if item.name in self._tools:
            raise ValueError(f"a tool named {item.name!r} is already registered")
        self._tools[item.name] = item
        self._schemas.clear()

    def unregister(self, name: str) -> None:
        if self._tools.pop(name, None) is not None:
            self._schemas.clear()

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._tools)

    @property
    def core_names(self) -> frozenset[str]:
        """The tools offered even when a small window leaves room for only a few."""
        return frozenset(name for name, item in self._tools.items() if item.core)

    def schemas(
        self, *, compact: bool = False, only: frozenset[str] | None = None
    ) -> list[dict[str, Any]]:
        """The function schemas of every tool (or of those named in `only`), for a model
        request (do not modify); `compact` ones for small context windows."""
        if compact not in self._schemas:
            self._schemas[compact] = [item.schema(compact=compact) for item in self._tools.values()]
        found = self._schemas[compact]
        if only is None:
            return found
        return [schema for schema in found if schema["function"]["name"] in only]

    async def call(self, call: ToolCall, context: ToolContext) -> ToolResult:
        """Run one tool call; never raises for anything the model or the tool did wrong.

        Error handling: `Cancelled` propagates (the turn is being cancelled); every other
        exception of the tool is logged with its traceback and reported to the model as a
        short failure.
        """
        started = time.monotonic()

        def result(content: str, ok: bool) -> ToolResult:
            if len(content) > MAX_RESULT_CHARS:
                content = _head_and_tail(content, MAX_RESULT_CHARS)
            return ToolResult(call.id, call.name, content, ok, time.monotonic() - started)

        item = self._tools.get(call.name)
        if item is None:
            known = ", ".join(sorted(self._tools)) or "none"
            return result(f"error: unknown tool {call.name!r}; available tools: {known}", False)
        try:
            raw = json.loads(call.arguments or "{}")
        except json.JSONDecodeError as exc:
            return result(
                f"error: the arguments are not valid JSON ({exc.msg}); send a JSON object", False
            )
        if not isinstance(raw, Mapping):
            return result("error: the arguments must be a JSON object", False)
        if item.arguments is None:
            kwargs = dict(raw)
        else:
            try:
                arguments = item.arguments.model_validate(raw)
            except ValidationError as exc:
                return result(f"error: invalid arguments: {_validation_summary(exc)}", False)
            kwargs = {name: getattr(arguments, name) for name in type(arguments).model_fields}
        try:
            with trio.fail_after(item.timeout) if item.timeout else nullcontext():
                output = await item.fn(context, **kwargs)
        except ToolError as exc:
            return result(f"error: {exc}", False)
        except trio.TooSlowError:
            return result(f"error: the tool did not finish within {item.timeout:g} s", False)
        except Exception as exc:
            log.exception("tool %s failed", call.name)
            return result(f"error: the tool failed: {type(exc).__name__}: {exc}"[:500], False)
        if isinstance(output, ToolOutput):
            return replace(result(output.text, True), sent=output.sent)
        return replace(result(output, True), persists=item.persists)


def _head_and_tail(content: str, limit: int) -> str:
    """The start and the end of an over-long result (the end often says how it went)."""
    half = limit // 2
    omitted = len(content) - 2 * half
    return f"{content[:half]}\n[… {omitted} characters of the result omitted …]\n{content[-half:]}"


def _validation_summary(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(arguments)"
        message = "required argument is missing" if error["type"] == "missing" else error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown argument"
        parts.append(f"{where}: {message}")
    return "; ".join(parts)
