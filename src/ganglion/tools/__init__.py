"""Tools the model can call."""

from ganglion.tools.registry import (
    Tool,
    ToolContext,
    ToolError,
    ToolOutput,
    ToolRegistry,
    ToolResult,
    tool,
)

__all__ = ["Tool", "ToolContext", "ToolError", "ToolOutput", "ToolRegistry", "ToolResult", "tool"]
