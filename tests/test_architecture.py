"""The daemon's architecture, checked (issue 16): what may know what."""

from __future__ import annotations

import io
import tokenize

from .conftest import REPO


def _names(path) -> list[tuple[int, str]]:
    """The identifiers a module uses (not its strings or comments)."""
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
    return [(t.start[0], t.string) for t in tokens if t.type == tokenize.NAME]


def test_simulate_is_read_only_where_the_devices_are_chosen():
    """`simulate` is decided in the CLI's argument parsing and acted on in hardware.py; the rest
    of the daemon asks what that changes (hardware.Devices) or mounts the simulation's handle."""
    allowed = {"cabinet/hardware.py", "cabinet/cli.py"}
    readers = [f"{path.relative_to(REPO)}:{line}"
               for path in sorted((REPO / "cabinet").rglob("*.py"))
               if str(path.relative_to(REPO)) not in allowed
               for line, name in _names(path) if name == "simulate"]
    assert readers == []


def test_the_http_server_knows_no_simulation_route():
    """/sim/* is the simulation handle's route table (cabinet/sim_controls.py)."""
    server = (REPO / "cabinet" / "ui" / "server.py").read_text()
    for control in ("set_door", "scan_bytes", "jam_lock", "set_ambient", "SIGKILL"):
        assert control not in server


def test_the_documented_state_has_the_published_states_keys():
    """docs/http-api.md's /api/state example against cabinet/state_view.State (issue 16)."""
    import re

    from cabinet.state_view import State

    doc = (REPO / "docs" / "http-api.md").read_text()
    block = doc.split("## GET /api/state", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    documented = set(re.findall(r'^  "([a-z_]+)":', block, re.MULTILINE))
    served_by_the_http_server = {"setup", "simulation"}
    assert documented == set(State.__annotations__) | served_by_the_http_server


def test_no_helper_imports_the_controller():
    import re

    """Helpers get ports (cabinet/ports.py), not the controller: only app.py wires it."""
    importers = [str(path.relative_to(REPO)) for path in sorted((REPO / "cabinet").rglob("*.py"))
                 if path.name not in ("app.py", "controller.py")
                 and re.search(r"from \.+controller import|import cabinet\.controller",
                               path.read_text())]
    assert importers == []
    uses = [str(path.relative_to(REPO)) for path in sorted((REPO / "cabinet").rglob("*.py"))
            if "self.c." in path.read_text()]
    assert uses == []
