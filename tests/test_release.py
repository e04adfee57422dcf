"""Signed release bundles (cabinet/release.py, tools/release.py): a bundle of this checkout's wheel
verifies with the release key; one byte changed anywhere, or a bundle signed by another key, is
refused before anything is unpacked for good. (Installing one: tests/test_update_install.py.)"""

from __future__ import annotations

import io
import tarfile

import pytest

from cabinet.release import ReleaseRefused, public_key, verify
from tools import release


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("release")
    public = release.keygen(folder / "key")
    bundle = folder / "cabinet.release"
    manifest = release.build(folder / "key" / "release-signing-key", bundle, [], "0.1.1")
    return folder, public, bundle, manifest


def test_a_bundle_of_this_checkout_verifies(built, tmp_path):
    folder, public, bundle, manifest = built
    assert manifest["version"] == "0.1.1"
    (wheel,) = manifest["files"]
    assert wheel.startswith("wheels/cabinet_controller-0.1.1-")
    checked = verify(bundle, public_key(public), tmp_path / "unpacked")
    assert checked == manifest
    assert (tmp_path / "unpacked" / wheel).stat().st_size > 10_000
    assert release.main(["verify", str(bundle), "--public-key", public]) == 0


def test_one_byte_changed_anywhere_is_refused(built, tmp_path):
    folder, public, bundle, _ = built
    data = bytearray(bundle.read_bytes())
    members = {m.name: m for m in tarfile.open(bundle).getmembers()}
    for name, why in (("release.json", "signature"), (next(n for n in members
                                                          if n.endswith(".whl")), "sha256")):
        tampered = bytearray(data)
        tampered[members[name].offset_data + members[name].size // 2] ^= 0x01
        path = tmp_path / f"tampered-{name.replace('/', '_')}"
        path.write_bytes(bytes(tampered))
        with pytest.raises(ReleaseRefused, match=why):
            verify(path, public_key(public), tmp_path / f"into-{path.name}")
        assert not (tmp_path / f"into-{path.name}").exists(), "nothing left unpacked"


def test_a_bundle_signed_by_another_key_or_with_an_extra_file_is_refused(built, tmp_path):
    folder, public, bundle, _ = built
    other = release.keygen(tmp_path / "other")
    with pytest.raises(ReleaseRefused, match="signed by another key"):
        verify(bundle, public_key(other), tmp_path / "a")
    assert release.main(["verify", str(bundle), "--public-key", other]) == 1
    sneaky = tmp_path / "sneaky.release"
    with tarfile.open(bundle) as source, tarfile.open(sneaky, "w") as out:
        for member in source.getmembers():
            out.addfile(member, source.extractfile(member))
        info = tarfile.TarInfo("wheels/evil-1.0-py3-none-any.whl")
        info.size = 3
        out.addfile(info, io.BytesIO(b"zip"))
    with pytest.raises(ReleaseRefused, match="does not list"):
        verify(sneaky, public_key(public), tmp_path / "b")
    with pytest.raises(ValueError, match="Ed25519"):
        public_key("not a key")
