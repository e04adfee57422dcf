"""The update state and the rollback (cabinet/supervisor.py) and the daemon's side of it
(cabinet/update_watch.py), on real folders, with systemd's hook environment as systemd sets it:
which stops count against a release on trial, when it is rolled back, what a start or a power cut
leaves, and that each step is reported once. (tests/test_update_install.py runs them end to end.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cabinet import supervisor
from cabinet.update_watch import UpdateWatch


def _venv(opt: Path, name: str, complete: bool = True) -> str:
    (opt / "venvs" / name / "bin").mkdir(parents=True)
    (opt / "venvs" / name / "bin" / "cabinetd").write_text("#!/bin/sh\n")
    if complete:
        (opt / "venvs" / name / ".complete").write_text(name)
    return name


@pytest.fixture
def trial(tmp_path):
    """1.0 was running; 2.0 is installed, switched to, on trial."""
    opt, data = tmp_path / "opt", tmp_path / "data"
    (data / "updates").mkdir(parents=True)
    old, new = _venv(opt, "1.0-aaaaaaaaaaaa"), _venv(opt, "2.0-bbbbbbbbbbbb")
    supervisor.switch(opt, old)
    supervisor.write_state(opt, {"state": "trial", "version": "2.0", "venv": new,
                                 "previous": old, "previous_version": "1.0", "sha256": "b" * 64,
                                 "failures": []})
    supervisor.switch(opt, new)
    return opt, data, old, new


def stop(result, code, status):
    return {"SERVICE_RESULT": result, "EXIT_CODE": code, "EXIT_STATUS": status}


CRASH = stop("exit-code", "exited", "1")


def test_the_old_versions_stops_do_not_count_against_the_release_on_trial(trial):
    opt, data, old, new = trial
    # The previous version restarting for the switch, or crashing before it could: not counted.
    assert "has not started" in supervisor.stopped(opt, data, stop("exit-code", "exited", "75"))
    assert "has not started" in supervisor.stopped(opt, data, CRASH)
    assert supervisor.read_state(opt)["failures"] == []


def test_three_failed_starts_roll_back_and_clean_stops_do_not_count(trial):
    opt, data, old, new = trial
    supervisor.starting(opt, data)
    for clean in (stop("success", "killed", "TERM"), stop("exit-code", "exited", "75"),
                  stop("success", "exited", "0")):
        assert supervisor.stopped(opt, data, clean) == "stopped cleanly"
    assert "1 of 3" in supervisor.stopped(opt, data, CRASH)
    supervisor.starting(opt, data)
    assert "2 of 3" in supervisor.stopped(opt, data, stop("timeout", "killed", "TERM"))
    supervisor.starting(opt, data)
    # A start timeout that exits 0 is still a failed start: the result is what counts.
    assert "rolled back" in supervisor.stopped(opt, data, stop("timeout", "exited", "0"))
    state = supervisor.read_state(opt)
    assert state["state"] == "rolled_back" and supervisor.running_venv(opt) == old
    assert state["reason"].startswith("it failed 3 starts: exit status 1; no READY in time")


def test_a_failed_selftest_or_a_refused_config_rolls_back_at_once(trial, tmp_path):
    opt, data, old, new = trial
    supervisor.starting(opt, data)
    (data / "updates" / "health.json").write_text(json.dumps(
        {"venv": new, "ok": False, "reason": "lock: jammed"}))
    supervisor.stopped(opt, data, stop("exit-code", "exited", "76"))
    assert supervisor.read_state(opt)["reason"] == "selftest failed: lock: jammed"
    assert supervisor.running_venv(opt) == old

    opt2, data2, old2, new2 = trial_again(tmp_path / "again")
    supervisor.starting(opt2, data2)
    assert "exit status 2" in supervisor.stopped(opt2, data2, stop("exit-code", "exited", "2"))
    assert supervisor.running_venv(opt2) == old2


def trial_again(tmp: Path):
    opt, data = tmp / "opt", tmp / "data"
    (data / "updates").mkdir(parents=True)
    old, new = _venv(opt, "1.0-aaaaaaaaaaaa"), _venv(opt, "2.0-bbbbbbbbbbbb")
    supervisor.write_state(opt, {"state": "trial", "version": "2.0", "venv": new,
                                 "previous": old, "sha256": "b" * 64, "failures": []})
    supervisor.switch(opt, new)
    return opt, data, old, new


def test_a_release_that_resets_the_board_is_rolled_back_by_counting_starts(trial):
    opt, data, old, new = trial
    for _ in range(supervisor.MAX_TRIAL_STARTS):   # no stop hook ever runs: power resets
        assert "start" in supervisor.starting(opt, data)
        assert supervisor.running_venv(opt) == new
    assert "too many starts" in supervisor.starting(opt, data)
    assert supervisor.running_venv(opt) == old


def test_a_verdict_makes_it_healthy_or_rolls_it_back_even_if_it_never_exited_76(trial, tmp_path):
    opt, data, old, new = trial
    _venv(opt, "0.9-cccccccccccc")   # an older release, kept until one is healthy
    _venv(opt, "2.1-dddddddddddd", complete=False)   # a build a power cut left behind
    (data / "updates" / "health.json").write_text(json.dumps({"venv": new, "ok": True}))
    said = supervisor.reconcile(opt, data)
    assert "healthy" in said and supervisor.read_state(opt)["state"] == "healthy"
    assert {p.name for p in (opt / "venvs").iterdir()} == {old, new}

    opt2, data2, old2, new2 = trial_again(tmp_path / "again")
    (data2 / "updates" / "health.json").write_text(json.dumps(
        {"venv": new2, "ok": False, "reason": "scanner: no reply"}))
    supervisor.reconcile(opt2, data2)
    assert supervisor.running_venv(opt2) == old2
    assert supervisor.read_state(opt2)["reason"] == "selftest failed: scanner: no reply"
    assert not (opt2 / "venvs" / new2).exists(), "the failed release is removed"


def test_a_venv_being_built_is_left_alone(trial):
    opt, data, old, new = trial
    building = _venv(opt, "3.0-eeeeeeeeeeee", complete=False)
    with supervisor.installing(opt):
        supervisor.reconcile(opt, data)
        assert (opt / "venvs" / building).exists()
    supervisor.reconcile(opt, data)
    assert not (opt / "venvs" / building).exists()


def test_cuts_in_a_switch_or_a_rollback_are_finished_at_the_next_start(trial):
    opt, data, old, new = trial
    supervisor.switch(opt, old)    # the trial state was written, the rename was not
    assert "finished the switch" in supervisor.reconcile(opt, data)
    assert supervisor.running_venv(opt) == new
    state = supervisor.read_state(opt)
    supervisor.write_state(opt, {"state": "rolled_back", "venv": old, "failed_venv": new,
                                 "version": "2.0", "sha256": state["sha256"], "reason": "x"})
    assert "finished the rollback" in supervisor.reconcile(opt, data)
    assert supervisor.running_venv(opt) == old


def test_the_daemon_reports_each_step_once_hands_over_and_is_held_to_the_baseline(trial):
    opt, data, old, new = trial
    reports, restarts = [], []
    lines = {"lock": True, "disk space": True, "backend": True, "scanner": False}

    def watch(venv):
        return UpdateWatch(opt, data / "updates", report=reports.append,
                           restart=lambda status, why: restarts.append((status, why)),
                           selftest=lambda: [{"name": k, "ok": v, "detail": "x"}
                                             for k, v in lines.items()], venv=venv)
    watch(old).poll()      # the previous version: the baseline, then a restart
    assert [r["state"] for r in reports] == ["installed", "switched"]
    assert restarts == [(75, "software update to 2.0")]
    watch(old).poll()
    assert len(reports) == 2, "each step is reported once"

    lines.update({"disk space": False, "backend": False})   # scanner failed before, too
    watch(new).poll()      # the new version: disk space passed before and fails now
    verdict = json.loads((data / "updates" / "health.json").read_text())
    assert verdict["ok"] is False and verdict["reason"] == "disk space: x"
    assert restarts[-1] == (76, "selftest failed: disk space: x")
    restarts.clear()
    watch(new).poll()      # restarted some other way, judged already: it asks again
    assert restarts == [(76, "selftest failed: disk space: x")]

    supervisor.reconcile(opt, data)
    watch(old).poll()
    assert reports[-1]["state"] == "rolled_back" and "disk space" in reports[-1]["reason"]
