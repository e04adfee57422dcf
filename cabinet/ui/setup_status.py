"""First boot's progress as the daemon shows it: `/api/state`'s `setup` and the screen's footer.

First boot (tools/image/firstboot.py) keeps its steps' states in a small JSON file. Once cabinetd
runs, a step may still be waiting (enrolment while the backend is unreachable, the GPIO library or
the screen's packages while the mirror is): the technician in front of the cabinet sees which, and
why, without a console. Read only when the file changed; absent on a cabinet not installed from the
SD image, or in a simulation.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

PROGRESS = Path("/var/lib/cabinet-firstboot/progress.json")


class SetupStatus:
    def __init__(self, path: Path | None = PROGRESS):
        self.path = path
        self._seen: int | None = None
        self._value: dict[str, Any] | None = None

    def read(self) -> dict[str, Any] | None:
        """None without first boot; else {"complete": bool, "waiting": [{step, state, detail}]}."""
        if self.path is None:
            return None
        try:
            changed = os.stat(self.path).st_mtime_ns
        except OSError:
            return None
        if changed != self._seen:
            self._seen, self._value = changed, self._parse()
        return self._value

    def _parse(self) -> dict[str, Any] | None:
        try:
            steps = json.loads(self.path.read_text(encoding="utf-8"))["steps"]
            waiting = [{"step": name, "state": str(s.get("state")),
                        "detail": str(s.get("detail", ""))[:200]}
                       for name, s in steps.items() if s.get("state") not in ("done", "skipped")]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None  # being replaced right now, or not ours: shown again at the next read
        return {"complete": not waiting, "waiting": waiting}
