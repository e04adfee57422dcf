"""The README's "Try it" part, run top to bottom as a newcomer would, in a copy of the clone with
nothing beside it: every shell line from its code blocks is typed into one bash, in order, and
after each one the cabinet (and the backend) must be in the state the README says.

The lines are read from README.md itself, so an edit to the README is an edit to this test: every
line must have its expectation below (a line with none, or an expectation that matches no line,
fails the test). The walkthrough uses the README's fixed ports, 8080 and 8000.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import REPO, wait_for
from .test_face import needs_model

pytestmark = [pytest.mark.slow, needs_model]
DAEMON, BACKEND = "http://127.0.0.1:8080", "http://127.0.0.1:8000"


def readme_lines() -> list[str]:
    """Every shell line of the code blocks between "## Try it" and the next section, with
    continuation lines joined."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    part = text.split("\n## Try it\n", 1)[1].split("\n## ", 1)[0]
    lines: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", part, re.S):
        pending = ""
        for raw in block.splitlines():
            if raw.endswith("\\"):
                pending += raw + "\n"
                continue
            if (pending + raw).strip():
                lines.append(pending + raw)
            pending = ""
    return lines


def fresh_copy(dest: Path) -> Path:
    """The clone's files (tracked, and new ones not ignored) with no var/ and no .venv of its
    own: the venv is the checkout's, linked, so setup finds it installed."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, names):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    (dest / ".venv").symlink_to(REPO / ".venv")
    return dest


class Shell:
    """One bash, fed line by line as a person types; each line's output and exit status."""

    def __init__(self, cwd: Path):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV_"))}
        env["SETUP_NO_INSTALL"] = "1"   # the copy shares the checkout's venv: never install into it
        self.proc = subprocess.Popen(["bash", "--norc", "--noprofile"], cwd=cwd, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def run(self, command: str, timeout: float) -> tuple[int, str]:
        marker = f"@@readme-done-{time.monotonic_ns()}"
        self.proc.stdin.write(f"{command}\necho {marker} $?\n")
        self.proc.stdin.flush()
        output, deadline = [], time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.dump_daemons()
                raise AssertionError(f"{command!r} still running after {timeout:.0f} s; "
                                     f"output so far: {''.join(output)[-2000:]}") from None
            if line is None:
                raise AssertionError(f"bash ended during {command!r}: {''.join(output)}")
            if marker in line:  # after output with no newline at its end (curl's JSON)
                before, after = line.split(marker, 1)
                return int(after.split()[0]), "".join(output) + before
            output.append(line)

    def dump_daemons(self) -> None:
        """A command hung: every cabinetd the README started writes its threads' stacks to its
        log (SIGUSR1, cabinet/app.py), which the failure prints."""
        for pid in os.listdir("/proc"):
            try:
                cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
                if (os.getpgid(int(pid)) == self.proc.pid
                        and any(part.endswith(b"cabinetd") for part in cmdline)):
                    os.kill(int(pid), signal.SIGUSR1)
            except (ValueError, OSError):
                continue
        time.sleep(1)

    def close(self):
        """Everything the README started (the shell, the daemons, the backend) ends here."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    os.killpg(self.proc.pid, 0)
                except ProcessLookupError:
                    self.proc.wait()
                    return
                time.sleep(0.1)


def get(url: str, token: str | None = None):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                     if token else {})
    with urllib.request.urlopen(request, timeout=5) as reply:
        return json.load(reply)


def state() -> dict:
    return get(DAEMON + "/api/state")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def alarms() -> set[str]:
    return {a["kind"] for a in state()["alarms"]}


def stock(sku: str) -> int:
    return {p["sku"]: p["stock"] for p in state()["products"]}[sku]


# For each README line (matched by a piece of it): the exit status it should end with, and what
# must then hold. A check may wait, as a person reading the screen would, but not forever.
def expect_receipt(skus: dict[str, int]):
    def check(out, work):
        receipt = wait_for(lambda: state()["receipt"], timeout=20, what="the receipt")
        assert {line["sku"]: line["count"] for line in receipt["lines"]} == skus
    return check


EXPECTED: list[tuple[str, int, object]] = [
    ("mkdir -p var\n", 0, None),
    ("tools/run-simulation.sh > var/simulation.log", 0, None),
    ("until curl -sf localhost:8080/api/state", 0,
     lambda out, work: state()["lock"] == "locked" or pytest.fail("not locked at start")),
    ("python3 -m json.tool", 0,
     lambda out, work: json.loads(out)["door"] == "closed" or pytest.fail(out)),
    ("code=$(.venv/bin/cabinet token mint", 0, None),
    ('sim/scan -d "{\\"text\\": \\"$code\\"}"', 0,
     lambda out, work: wait_for(lambda: state()["lock"] == "unlocked", what="unlocked")),
    ("""sim/door -d '{"state":"open"}'""", 0, None),   # three times; checked by what follows
    ("""{"shelf":1,"take":{"water-550ml":2}}""", 0, None),
    ("""sim/door -d '{"state":"closed"}'      # half a second""", 0,
     expect_receipt({"water-550ml": 2})),
    (".venv/bin/cabinet status", 0,
     lambda out, work: re.search(r"door / lock\s+closed / locked", out) or pytest.fail(out)),
    ("""sim/door -d '{"state":"open"}'        # nobody authorised""", 0,
     lambda out, work: wait_for(lambda: "forced_open" in alarms(), what="forced_open")),
    ("""{"shelf":1,"take":{"yak-milk-250ml":2}}""", 0, None),
    ("""sim/door -d '{"state":"closed"}'      # closed: weighed""", 0,
     lambda out, work: wait_for(lambda: state()["screen"]["name"] != "out_of_service"
                                and "forced_open" in alarms() and stock("yak-milk-250ml") == 8,
                                timeout=20, what="back in service once closed, the two yak "
                                                 "milks taken off the stock, the alarm kept")),
    ("cabinet alarm clear forced_open", 0,
     lambda out, work: ("alarm forced_open cleared" in out and "forced_open" not in alarms())
     or pytest.fail(out)),
    ("""sim/unplug -d '{"device":"scanner"}'""", 0,
     lambda out, work: wait_for(lambda: "scanner" in state()["faults"], what="scanner fault")),
    (".venv/bin/cabinet selftest", 1,
     lambda out, work: re.search(r"scanner\s+FAIL", out) and "/sim/plug" in out
     and re.search(r"lock\s+PASS", out) or pytest.fail(out)),
    ("""sim/plug -d '{"device":"scanner"}'""", 0,
     lambda out, work: wait_for(lambda: "scanner" not in state()["faults"], what="scanner back")),
    ("cabinet faces enroll tests/data/faces/train/obama/*.jpg", 0,
     lambda out, work: "acct-7 enrolled" in out or pytest.fail(out)),
    ("""test/obama1.jpg"}'""", 0, None),
    ("sleep 10", 0, None),
    ("""print(s["lock"], s["last_refusal"]["reason"])""", 0,
     lambda out, work: wait_for(lambda: (state()["last_refusal"] or {}).get("reason")
                                == "face_not_live" and state()["lock"] == "locked",
                                timeout=20, what="the still photograph refused")),
    ('"turn_head": true', 0, None),
    ("sleep 5", 0, None),
    ("""print(s["lock"], s["session"]["method"])""", 0,
     lambda out, work: wait_for(lambda: (state()["session"] or {}).get("method") == "face"
                                and state()["lock"] == "unlocked",
                                timeout=30, what="the turning head opening")),
    ("""{"shelf":2,"take":{"tsampa-bar":1}}""", 0, None),
    ("""sim/door -d '{"state":"closed"}'      # the sale, charged""", 0,
     expect_receipt({"tsampa-bar": 1})),
    ("kill %1; wait %1", None,
     lambda out, work: wait_for(lambda: port_free(8080), what="the first simulation stopped")),
    ("mkdir -p var/backend", 0, None),
    ("cabinet-backend migrate", 0, lambda out, work: "newest schema" in out or pytest.fail(out)),
    ("create-user admin --role admin", 0, None),
    ("cabinet-backend api-token admin", 0, None),
    ("cabinet-backend add-cabinet", 0, None),
    ("chmod 600 var/backend/operator-token", 0, None),
    ("cabinet-backend serve", 0,
     lambda out, work: wait_for(lambda: not port_free(8000), what="the backend")),
    ("printf '[sync]", 0, None),
    ("tools/run-simulation.sh --config var/backend/cabinet.toml", 0, None),
    ("do sleep 1; done\n", 0, None),
    ('auth="Authorization', 0, None),
    ("localhost:8000/v1/operator/cabinets\n", 0,
     lambda out, work: "cabinet-0001" in out or pytest.fail(out)),
    ('"set_setpoint"', 0,
     lambda out, work: wait_for(lambda: state()["climate"]["setpoint_celsius"] == 3,
                                timeout=20, what="the setpoint from the backend")),
    ("cabinet queue --data-dir var/simulation", 0, None),
    ("localhost:8000/v1/operator/audit", 0,
     lambda out, work: '"actor":"admin","action":"command:set_setpoint"' in out
     or pytest.fail(out)),
    ("kill %2 %3", 0, None),
]


def matches(line: str, piece: str) -> bool:
    return piece in line + "\n"


def test_the_readme_walkthrough_does_what_it_says(tmp_path):
    for port in (8080, 8000):
        if not port_free(port):
            pytest.fail(f"port {port} is in use here: the README's walkthrough needs it")
    lines = readme_lines()
    plan = []
    for line in lines:
        found = [e for e in EXPECTED if matches(line, e[0])]
        assert found, f"README line with no expectation in this test: {line!r}"
        plan.append((line, max(found, key=lambda e: len(e[0]))))  # the most specific
    unused = [e[0] for e in EXPECTED if not any(matches(line, e[0]) for line in lines)]
    assert not unused, f"expectations that match no README line: {unused}"

    work = fresh_copy(tmp_path / "clone")
    shell = Shell(work)
    try:
        for line, (_, status, check) in plan:
            # A person types slower than a test: where the README's next line relies on the
            # cabinet having caught up (the shelves settled, the queue drained), wait as they would.
            if "sim/scan" in line:
                wait_for(lambda: all(s["stable"] for s in state()["shelves"]), timeout=30,
                         what="the shelves settled")
            if "cabinet queue" in line:
                wait_for(lambda: state()["outbox"]["pending"] == 0, timeout=30,
                         what="the queue drained to the backend")
            code, out = shell.run(line, timeout=120)
            if status is not None:
                assert code == status, f"{line!r} exited {code}: {out}"
            if check is not None:
                check(out, work)
        sales = get(BACKEND + "/v1/operator/sales?cabinet_id=cabinet-0001",
                    (work / "var/backend/operator-token").read_text().strip())
        charged = {(s["body"].get("authorisation") or {}).get("subject")
                   for s in sales["records"]}
        assert {"acct-42", "acct-7"} <= charged, "the earlier sales reached the backend"
        assert (work / "var/backend/backend.db").stat().st_mode & 0o777 == 0o600
    finally:
        shell.close()
        for log in ("var/simulation.log", "var/backend.log"):
            if (work / log).exists():
                print(f"--- {log}\n" + (work / log).read_text()[-15000:])  # thread dumps too
