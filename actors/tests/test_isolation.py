"""The runtime stands alone: it imports without ganglion and depends on trio only."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

CHECK = """
import sys
import ganglion_actors
loaded = [m for m in sys.modules if m == "ganglion" or m.startswith("ganglion.")]
assert not loaded, loaded
print("ok")
"""


def test_importing_the_runtime_loads_no_ganglion_module() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_the_runtime_depends_on_trio_only() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    dependencies = pyproject["project"]["dependencies"]
    assert [d.split(">")[0].split("=")[0].strip() for d in dependencies] == ["trio"]


def test_all_lists_every_public_name() -> None:
    import ganglion_actors

    public = sorted(name for name in vars(ganglion_actors) if not name.startswith("_"))
    assert sorted(ganglion_actors.__all__) == public


def test_no_source_file_mentions_the_application() -> None:
    sources = Path(__file__).parents[1] / "src" / "ganglion_actors"
    for path in sources.glob("*.py"):
        text = path.read_text()
        assert "import ganglion\n" not in text and "from ganglion." not in text, path


def test_the_public_surface_is_pinned() -> None:
    """What ganglion_actors offers, name by name: a change here is a change of its API."""
    import ganglion_actors

    assert sorted(ganglion_actors.__all__) == [
        "ActorDied",
        "ActorError",
        "ActorFn",
        "ActorRef",
        "ActorStatistics",
        "ActorStopped",
        "Backoff",
        "ChildSpec",
        "Escalation",
        "Inbox",
        "MailboxFull",
        "Registry",
        "RegistryStatistics",
        "Reply",
        "Restart",
        "Supervisor",
        "SupervisorStatistics",
        "current_actor_name",
        "open_supervisor",
        "reserve",
        "unwrap_group",
    ]
    for module in ("_backoff", "_errors", "_mailbox", "_registry", "_supervisor"):
        exported = set(getattr(ganglion_actors, module).__all__)
        internal = {"DEFAULT_BACKOFF", "RestartWindow", "Mailbox", "run_incarnation"}
        internal |= {"restart_loop"}
        internal |= {"reset_actor_name", "set_actor_name"}
        assert exported - internal <= set(ganglion_actors.__all__), module
