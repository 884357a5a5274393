"""The owner's approval policy: may this tool call run on its own, must the owner be
asked first, or never (pure).

Rules, in order:

1. `tools.approval.rules` (the owner's config), then the rules the owner added by
   answering "always" (`approvals.yaml` in the data directory): the first rule whose
   tool, and command or path, match the call decides.
2. An MCP tool its server's `safe_tools` names is allowed.
3. Otherwise `tools.approval.default` decides by what the tool does (`kind_of`).
4. A shell rule that allows matches simple commands only (`simple_command`): anything
   a shell would read as more than one program with its arguments (`;`, `&&`, `|`,
   `$(...)`, a redirection, a newline, `NAME=value` before the program) matches no
   allowing rule, so a rule for `ls` never lets `ls; rm -rf ~` through. A rule that
   asks or denies matches a line when it matches any of the commands the line could
   hold (`command_pieces`, which cuts generously: matching too much is the safe side),
   so `echo; sudo reboot` meets the rule for `sudo *`.
5. A call whose arguments cannot be read (not a JSON object) matches no command or path
   rule: the default of its kind decides.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import Any, Final

from ganglion.config import DEFAULT_DECISIONS, ApprovalRule, Decision, ToolKind, ToolsConfig

__all__ = [
    "KINDS",
    "Verdict",
    "call_text",
    "command_pieces",
    "decide",
    "kind_of",
    "path_inside",
    "rule_for",
    "simple_command",
]

KINDS: Final[Mapping[str, ToolKind]] = {
    "read_file": "read",
    "list_dir": "read",
    "read_skill": "read",
    "list_reminders": "read",
    "more_tools": "read",
    "write_file": "write",
    "edit_file": "write",
    "append_file": "write",
    "delete_file": "write",
    "shell": "shell",
    "remember": "memory",
    "update_memory": "memory",
    "forget": "memory",
    "add_goal": "memory",
    "update_goal": "memory",
    "finish_goal": "memory",
    "write_skill": "memory",
    "set_reminder": "reminders",
    "cancel_reminder": "reminders",
    "send_file": "send",
}
# What makes a command line more than one simple command, even inside quotes (where a
# rule would be judged on a line the owner cannot read at a glance).
_SHELL_SYNTAX: Final = frozenset(";&|<>$`\n\r(){}\\")
_PATH_ARGUMENT: Final = "path"
_PIECES: Final = re.compile(r"\$\(|[;&|\n\r(){}`<>]|\\\n")


@dataclass(frozen=True, slots=True)
class Verdict:
    """`decision` for a call, and `why` in a few words for the log and the owner."""

    decision: Decision
    why: str


def kind_of(name: str) -> ToolKind:
    """What the tool called `name` does."""
    if name.startswith("mcp__"):
        return "mcp"
    return KINDS.get(name, "other")


def simple_command(line: str) -> list[str] | None:
    """The words of `line` when it is one simple command (rule 4), else None."""
    if not line.strip() or any(char in _SHELL_SYNTAX for char in line):
        return None
    try:
        words = shlex.split(line, comments=False, posix=True)
    except ValueError:
        return None
    if not words or "=" in words[0] or words[0].startswith("-"):
        return None
    return words


def command_pieces(line: str) -> list[list[str]]:
    """The commands a line may hold, each as its words without `NAME=value` before the
    program: cut at every shell operator, substitution and grouping."""
    pieces: list[list[str]] = []
    for chunk in _PIECES.split(line):
        try:
            words = shlex.split(chunk, comments=False, posix=True)
        except ValueError:
            words = chunk.split()
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
            words = words[1:]
        words = [w for w in words if w not in ("!", "then", "do", "else", "exec", "command")]
        if words:
            pieces.append(words)
    return pieces


def command_matches(pattern: str, words: Sequence[str]) -> bool:
    line = " ".join(words)
    if fnmatchcase(line, pattern):
        return True
    return pattern.endswith(" *") and line == pattern[:-2]


def path_inside(path: str, root: str, *, base: Path, data_dir: Path) -> bool:
    """Whether the file tools' `path` (relative: to `base`, their first root) is inside
    `root`, a directory of `data_dir`."""
    given = Path(path).expanduser()
    if not path or ".." in given.parts:
        return False
    full = given if given.is_absolute() else base / given
    inside = PurePosixPath(*Path(data_dir, root.strip("/")).parts)
    return PurePosixPath(*full.parts).is_relative_to(inside) and full != Path(data_dir)


def _arguments(arguments: str) -> Mapping[str, Any] | None:
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _rule_matches(
    rule: ApprovalRule,
    name: str,
    arguments: Mapping[str, Any] | None,
    base: Path,
    data_dir: Path,
) -> bool:
    if not fnmatchcase(name, rule.tool):
        return False
    if rule.command is not None:
        command = arguments.get("command") if arguments is not None else None
        if not isinstance(command, str):
            return False
        words = simple_command(command)
        if words is not None:
            return command_matches(rule.command, words)
        if rule.decision == "allow":
            return False
        return any(command_matches(rule.command, piece) for piece in command_pieces(command))
    if rule.path is not None:
        path = arguments.get(_PATH_ARGUMENT) if arguments is not None else None
        return isinstance(path, str) and path_inside(path, rule.path, base=base, data_dir=data_dir)
    return True


def decide(
    tools: ToolsConfig,
    name: str,
    arguments: str,
    *,
    data_dir: Path,
    added: Sequence[ApprovalRule] = (),
) -> Verdict:
    """The decision for a call of `name` with `arguments` (the JSON text the model wrote),
    by the rules of the module docstring. `added`: the rules the owner added."""
    parsed = _arguments(arguments)
    base = Path(tools.files.roots[0]) if tools.files.roots else data_dir
    rules = [*tools.approval.rules, *added]
    for number, rule in enumerate(rules, 1):
        if _rule_matches(rule, name, parsed, base, data_dir):
            where = "an added rule" if number > len(tools.approval.rules) else f"rule {number}"
            return Verdict(rule.decision, f"{where} ({_rule_text(rule)})")
    kind = kind_of(name)
    if kind == "mcp":
        server, _, tool = name.removeprefix("mcp__").partition("__")
        configured = tools.mcp.servers.get(server)
        if configured is not None and tool in configured.safe_tools:
            return Verdict("allow", f"marked safe for the MCP server {server}")
    decision = tools.approval.default.get(kind, DEFAULT_DECISIONS[kind])
    return Verdict(decision, f"the default for {kind} tools")


def _rule_text(rule: ApprovalRule) -> str:
    if rule.command is not None:
        return f"{rule.tool}: {rule.command}"
    if rule.path is not None:
        return f"{rule.tool} in {rule.path}"
    return rule.tool


def rule_for(name: str, arguments: str) -> ApprovalRule | None:
    """The rule "always allow this" adds for a call: exactly this command (the shell),
    this file (the file tools), the tool (any other); None when no rule can say "this
    call" and no more (a shell line that is not a simple command, a file call without a
    path): the call is then allowed once."""
    parsed = _arguments(arguments)
    if parsed is None:
        return None
    if name == "shell":
        command = parsed.get("command")
        words = simple_command(command) if isinstance(command, str) else None
        return ApprovalRule(tool=name, command=" ".join(words)) if words is not None else None
    if kind_of(name) == "write":
        path = parsed.get(_PATH_ARGUMENT)
        if not isinstance(path, str) or not path or ".." in Path(path).parts:
            return None
        return ApprovalRule(tool=name, path=path)
    return ApprovalRule(tool=name)


def call_text(name: str, arguments: str) -> str:
    """The exact call as the owner is shown it: the command for the shell, else the tool
    and its arguments as the model wrote them."""
    parsed = _arguments(arguments)
    if name == "shell" and parsed is not None and isinstance(parsed.get("command"), str):
        return f"shell: {parsed['command']}"
    return f"{name} {arguments.strip() or '{}'}"
