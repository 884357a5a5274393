"""A small MCP server for the test suite, run as a subprocess (stdio, or streamable HTTP).

    python tests/support/mcpserver.py stdio
    python tests/support/mcpserver.py http PORT

Tools: `add`, `echo` (reports the `X-Test-Header` request header over HTTP), `fail` (an
error result), `grow` (adds `multiply` and announces the new tool list), `die` (the
process exits in the middle of the call). Each start
appends a line to $MCP_TEST_STARTS when set, so a test can count restarts.
"""

from __future__ import annotations

import os
import sys

from mcp.server.fastmcp import Context, FastMCP

server = FastMCP("calc")


@server.tool()
def add(a: int, b: int) -> str:
    """Add two integers."""
    return str(a + b)


@server.tool()
def echo(text: str, ctx: Context) -> str:  # type: ignore[type-arg]
    """Say `text` back (with the X-Test-Header request header, over HTTP)."""
    request = ctx.request_context.request
    header = request.headers.get("x-test-header") if request is not None else None
    return text if header is None else f"{text} (header: {header})"


@server.tool()
def fail(reason: str) -> str:
    """Always fails with `reason`."""
    raise ValueError(reason)


def multiply(a: int, b: int) -> str:
    """Multiply two integers (offered only after `grow`)."""
    return str(a * b)


@server.tool()
async def grow(ctx: Context) -> str:  # type: ignore[type-arg]
    """Add the `multiply` tool and tell the client its tool list changed."""
    server.add_tool(multiply)
    await ctx.session.send_tool_list_changed()
    return "multiply is available now"


@server.tool()
def die() -> str:
    """The server process exits in the middle of this call."""
    os._exit(3)


def main() -> None:
    starts = os.environ.get("MCP_TEST_STARTS")
    if starts:
        with open(starts, "a", encoding="utf-8") as out:
            out.write(f"{os.getpid()}\n")
    if sys.argv[1:2] == ["http"]:
        server.settings.host = "127.0.0.1"
        server.settings.port = int(sys.argv[2])
        server.settings.log_level = "WARNING"
        server.run("streamable-http")
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
