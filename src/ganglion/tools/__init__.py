"""Tools the model can call."""

from ganglion.tools.registry import Tool, ToolContext, ToolError, ToolRegistry, ToolResult, tool

__all__ = ["Tool", "ToolContext", "ToolError", "ToolRegistry", "ToolResult", "tool"]
