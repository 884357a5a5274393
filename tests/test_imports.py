"""The house of `src/ganglion`: imports only go down, and no module imports itself back.

Every module lives on a floor (`FLOORS`, by the longest matching prefix). A module may
import from its own floor or the floors below, never from above; and however they are
reached, imports never form a circle. Imports are read from the source (every `import`,
under `TYPE_CHECKING` or inside a function too), as the actor runtime's isolation test
reads its own (actors/tests/test_isolation.py).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

SOURCE = Path(__file__).parents[1] / "src"

# Bottom to top. A new module goes on the floor of its package unless it says otherwise.
FLOORS: Mapping[str, int] = {
    # 0. The ground floor: ids, constants and small value types; nothing of the daemon.
    "ganglion": 0,
    "ganglion.errors": 0,
    "ganglion.ids": 0,
    "ganglion.beats": 0,
    "ganglion.transcript": 0,
    "ganglion.messages": 0,
    "ganglion.entropy": 0,
    "ganglion.markdown": 0,
    "ganglion.logs": 0,
    "ganglion.web.frames": 0,
    "ganglion.ops.loop": 0,
    "ganglion.ops.findings": 0,
    "ganglion.ops.statustext": 0,
    "ganglion.spend": 0,
    # 1. Pure logic, the stores, the small helpers every part may use.
    "ganglion.tokens": 1,
    "ganglion.compaction": 1,
    "ganglion.fitting": 1,
    "ganglion.safefs": 1,
    "ganglion.entries": 1,
    "ganglion.services": 1,
    "ganglion.peercheck": 1,
    "ganglion.delivery": 1,
    "ganglion.images": 1,
    "ganglion.cookieless": 1,
    "ganglion.transcribe": 1,
    "ganglion.titles": 1,
    "ganglion.store": 1,
    # 2. The data directory and its private files.
    "ganglion.datadir": 2,
    "ganglion.private": 2,
    "ganglion.owned": 2,
    "ganglion.inbox": 2,
    "ganglion.configfile": 2,
    # 3. The validated configuration.
    "ganglion.config": 3,
    # 4. What the conversations use: the model, the prompt, the tools, the reminders.
    "ganglion.llm": 4,
    "ganglion.prompt": 4,
    "ganglion.approval": 4,
    "ganglion.redact": 4,
    "ganglion.tools": 4,
    "ganglion.reminders": 4,
    "ganglion.usage": 4,
    # 5. The actors of the conversations and the services.
    "ganglion.threads": 5,
    "ganglion.heartbeat": 5,
    "ganglion.reminders.actor": 5,
    "ganglion.titler": 5,
    # 6. The daemon as the interfaces see it.
    "ganglion.backend": 6,
    # 7. The interfaces.
    "ganglion.web": 7,
    "ganglion.matrix": 7,
    "ganglion.systemlog": 7,
    # 8. The services put together, and the operator's view the daemon runs.
    "ganglion.runtime": 8,
    "ganglion.ops": 8,
    # 9. The tree.
    "ganglion.app": 9,
    # 10. The command line, and the ops modules only it runs.
    "ganglion.cli": 10,
    "ganglion.__main__": 10,
    "ganglion.terminal": 10,
    "ganglion.ops.check": 10,
    "ganglion.ops.matrixcheck": 10,
    "ganglion.ops.identitycheck": 10,
    "ganglion.ops.matrixadmin": 10,
    "ganglion.ops.notify": 10,
    "ganglion.ops.setup": 10,
    "ganglion.ops.reference": 10,
}

# Imports known to point the wrong way, each with the work that removes it.
KNOWN: Mapping[tuple[str, str], str] = {}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in (SOURCE / "ganglion").rglob("*.py"):
        parts = list(path.relative_to(SOURCE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base


def _graph() -> dict[str, set[str]]:
    return {
        name: {target for target in _imports(name, path) if target in MODULES} - {name}
        for name, path in MODULES.items()
    }


GRAPH = _graph()


def floor(module: str) -> int:
    prefix = module
    while prefix not in FLOORS:
        prefix = prefix.rpartition(".")[0]
    return FLOORS[prefix]


def _circles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _without_known() -> dict[str, set[str]]:
    return {name: {t for t in targets if (name, t) not in KNOWN} for name, targets in GRAPH.items()}


def test_the_walk_sees_the_house() -> None:
    assert len(MODULES) > 90
    assert "ganglion.threads.conversation" in GRAPH["ganglion.threads.actor"]


def test_no_import_forms_a_circle() -> None:
    assert _circles(_without_known()) == []


def test_imports_only_go_down() -> None:
    upward = [
        f"{name} (floor {floor(name)}) -> {target} (floor {floor(target)})"
        for name, targets in sorted(_without_known().items())
        for target in sorted(targets)
        if floor(target) > floor(name)
    ]
    assert upward == []


# What the ground floor never needs: validation (its types are checked where they are
# read), the daemon's servers and clients.
NOT_ON_THE_GROUND = {"pydantic", "yaml", "httpx", "nio", "quart", "hypercorn", "sqlite_utils"}


def test_the_ground_floor_imports_nothing_of_the_daemon() -> None:
    ground = [name for name in MODULES if floor(name) == 0]
    above = {name: {t for t in GRAPH[name] if floor(t) > 0} for name in ground}
    assert {name: targets for name, targets in above.items() if targets} == {}
    foreign = {
        name: sorted(
            top
            for top in {target.partition(".")[0] for target in _imports(name, MODULES[name])}
            if top in NOT_ON_THE_GROUND
        )
        for name in ground
    }
    assert {name: tops for name, tops in foreign.items() if tops} == {}


def test_the_known_exceptions_are_still_there() -> None:
    # Once one is gone, its line above must go too.
    for source, target in KNOWN:
        assert target in GRAPH[source], (source, target)


def test_only_the_thread_actor_module_knows_the_thread_actor() -> None:
    users = [
        name
        for name, path in MODULES.items()
        if name != "ganglion.threads.actor" and "ThreadActor(" in path.read_text(encoding="utf-8")
    ]
    assert users == []
