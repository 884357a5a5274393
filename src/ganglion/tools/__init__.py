"""Tools the model can call."""

from ganglion.tools.registry import Tool, ToolContext, ToolRegistry, ToolResult, tool

__all__ = ["Tool", "ToolContext", "ToolRegistry", "ToolResult", "tool"]
