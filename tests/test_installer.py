"""The installer's build and self-check (cabinet/installer.py; issue 20): a release of this
checkout, verified from its signed bundle, becomes a working venv built offline next to the
running one (its packages hard-linked from it, the release's wheels installed over them), and
checks itself (its version, the cabinet's config read by its code, the store migrated on a copy
of the database) before anything would switch to it. The running venv is left as it was. The
installer takes nothing from the daemon's spool on trust."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess

import pytest

from cabinet.installer import InstallFailed, build_venv, self_check
from cabinet.release import public_key, verify
from cabinet.store import Store
from tools import release

from .conftest import REPO


def test_a_release_becomes_a_venv_that_checks_itself(tmp_path):
    public = release.keygen(tmp_path / "key")
    bundle = tmp_path / "cabinet.release"
    release.build(tmp_path / "key" / "release-signing-key", bundle, [], "0.1.3")
    verify(bundle, public_key(public), tmp_path / "unpacked")
    before = importlib.metadata.version("cabinet-controller")

    venv = build_venv(tmp_path / "unpacked" / "wheels", "0.1.3", tmp_path / "releases" / "0.1.3")
    database = tmp_path / "data" / "cabinet.db"
    database.parent.mkdir()
    Store(database, cabinet_id="c-1", software_version=before).close()
    assert self_check(venv, REPO / "config" / "cabinet.toml", database,
                      tmp_path / "scratch") == "0.1.3"
    out = subprocess.run([str(venv / "bin" / "python"), "-c",
                          "import cabinet, importlib.metadata as m; "
                          "print(m.version('cabinet-controller'), cabinet.__file__)"],
                         capture_output=True, text=True, check=True, cwd=tmp_path).stdout.split()
    assert out[0] == "0.1.3" and str(venv) in out[1], "the release's own code, not the checkout"
    assert importlib.metadata.version("cabinet-controller") == before, "the running venv as it was"
    site = next(venv.glob("lib/python3*/site-packages"))
    numpy_init = site / "numpy" / "__init__.py"
    assert os.stat(numpy_init).st_nlink >= 2, "unchanged packages are hard links, not copies"

    with pytest.raises(InstallFailed, match="exists already"):
        build_venv(tmp_path / "unpacked" / "wheels", "0.1.3", venv)
    with pytest.raises(InstallFailed, match="installing 9.9.9"):
        build_venv(tmp_path / "unpacked" / "wheels", "9.9.9", tmp_path / "releases" / "9.9.9")
    assert not (tmp_path / "releases" / "9.9.9").exists(), "a failed build leaves nothing"
    bad = tmp_path / "bad.toml"
    bad.write_text("[checkout]\nunlock_timeout_seconds = 400\n")
    with pytest.raises(InstallFailed, match="checking the config with the new version"):
        self_check(venv, bad, None, tmp_path / "scratch2")


def test_the_installer_trusts_nothing_the_daemon_wrote(tmp_path):
    """ready.json is the daemon's: a version or sha256 that would name a folder outside
    OPT/venvs/, or a bundle outside the spool, is not a release waiting; a bundle that is not
    the one verified fails the install with nothing removed."""
    from cabinet import supervisor
    from cabinet.installer import install_ready

    opt, data = tmp_path / "opt", tmp_path / "data"
    (opt / "venvs").mkdir(parents=True)
    victim = tmp_path / ("victim-" + "a" * 12)
    victim.mkdir()
    spool = data / "updates" / "ready" / "x"
    spool.mkdir(parents=True)
    (spool / "release.bundle").write_bytes(b"not the verified bundle")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "release.bundle").write_bytes(b"x")
    for ready in ({"sha256": "a" * 64, "version": "../../../victim", "path": str(spool)},
                  {"sha256": "/../../.." + "0" * 55, "version": "1.0", "path": str(spool)},
                  {"sha256": "a" * 64, "version": "1.0", "path": str(outside)},
                  {"sha256": "a" * 64, "version": "1.0", "path": str(spool / ".." / ".." / "..")},
                  {"sha256": "a" * 64, "version": ".hidden", "path": str(spool)}):
        (data / "updates" / "ready.json").write_text(json.dumps(ready))
        assert install_ready(opt, data, tmp_path / "c.toml", "key") == "no release waiting", ready
    (data / "updates" / "ready.json").write_text(json.dumps(
        {"sha256": "a" * 64, "version": "1.0", "path": str(spool)}))
    assert "not installed" in install_ready(opt, data, tmp_path / "c.toml", "key")
    assert supervisor.read_state(opt)["state"] == "install_failed"
    assert victim.exists() and (spool / "release.bundle").exists()
