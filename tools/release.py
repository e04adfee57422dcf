"""Build a signed release bundle of this checkout (cabinet/release.py says what one holds).

    .venv/bin/python tools/release.py keygen --out ~/release-key      # once: keep it offline
    .venv/bin/python tools/release.py build --key ~/release-key/release-signing-key \\
        --out cabinet-0.2.0.release [--targets cp311-aarch64 cp313-aarch64] [--version 0.2.0]
    .venv/bin/python tools/release.py verify FILE --public-key BASE64

`keygen` prints the public key for the cabinets' config. `build` makes the daemon's wheel from
this checkout (`--version` overrides pyproject's, for a test release), downloads its dependencies'
wheels for each target (tools/image/bundle.py: the same set the SD image carries; `--targets` with
no value leaves them out, for a quick test), writes release.json with every file's sha256 and
signs it. `verify` is the cabinet's own check (cabinet/release.verify).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cabinet.access.codes import read_private_key  # noqa: E402
from cabinet.release import FORMAT, ReleaseRefused, public_key, sign, verify  # noqa: E402

MIN_CONFIG_VERSION = 1   # the config format the release reads (cabinet.toml has no version yet)


def keygen(out: Path) -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    out.mkdir(parents=True, exist_ok=True)
    path = out / "release-signing-key"
    key = Ed25519PrivateKey.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(key.private_bytes_raw()).decode() + "\n")
    return base64.b64encode(key.public_key().public_bytes_raw()).decode()


def project_wheel(into: Path, version: str | None, source_tree: Path = ROOT) -> Path:
    """The daemon's wheel, built from a clean copy of this checkout (as tools/image/build.py
    does: an in-tree build would leave build/ behind, and stale files in it would ship), with
    pyproject's version replaced when `version` is given."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "src"
        shutil.copytree(source_tree, source, ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.egg-info", "__pycache__", "var", ".hypothesis",
            ".pytest_cache"))
        if version is not None:
            pyproject = source / "pyproject.toml"
            text, n = re.subn(r'(?m)^version = "[^"]*"', f'version = "{version}"',
                              pyproject.read_text(), count=1)
            if n != 1:
                raise SystemExit("release: no version line in pyproject.toml")
            pyproject.write_text(text)
        result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                                 "-w", str(into), str(source)],
                                capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise SystemExit(f"release: the wheel did not build: {result.stderr[-500:]}")
    return next(into.glob("cabinet_controller-*.whl"))


def build(key_path: Path, out: Path, targets: list[str], version: str | None,
          source_tree: Path = ROOT) -> dict:
    """`source_tree`: this checkout, or a changed copy of it (the tests' broken releases)."""
    key = read_private_key(key_path)
    with tempfile.TemporaryDirectory() as tmp:
        wheels = Path(tmp) / "wheels"
        wheels.mkdir()
        wheel = project_wheel(wheels, version, source_tree)
        if targets:   # the dependencies, proven complete per target, as the SD image has them
            from tools.image import bundle
            bundle.download(wheel, wheels, targets)
        found = re.match(r"cabinet_controller-([^-]+)-", wheel.name)
        files = {f"wheels/{w.name}": hashlib.sha256(w.read_bytes()).hexdigest()
                 for w in sorted(wheels.glob("*.whl"))}
        manifest = json.dumps({"format": FORMAT, "version": found.group(1),
                               "min_config_version": MIN_CONFIG_VERSION, "targets": targets,
                               "files": files}, indent=1, sort_keys=True).encode()
        (Path(tmp) / "release.json").write_bytes(manifest)
        (Path(tmp) / "release.sig").write_bytes(sign(manifest, key))
        with tarfile.open(out, "w") as tar:
            for name in ("release.json", "release.sig"):
                tar.add(Path(tmp) / name, name)
            for name in files:
                tar.add(Path(tmp) / name, name)
    return json.loads(manifest)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Signed release bundles of the cabinet software.")
    verbs = p.add_subparsers(dest="verb", required=True)
    k = verbs.add_parser("keygen", help="a release signing key; prints its public key")
    k.add_argument("--out", type=Path, required=True)
    b = verbs.add_parser("build", help="this checkout as a signed release bundle")
    b.add_argument("--key", type=Path, required=True)
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--targets", nargs="*", default=["cp311-aarch64", "cp313-aarch64"])
    b.add_argument("--version", help="override pyproject's version (a test release)")
    v = verbs.add_parser("verify", help="the cabinet's check of a bundle")
    v.add_argument("bundle", type=Path)
    v.add_argument("--public-key", required=True)
    args = p.parse_args(argv)
    if args.verb == "keygen":
        print(f"public key (the cabinets' config): {keygen(args.out)}")
        return 0
    if args.verb == "build":
        manifest = build(args.key, args.out, args.targets, args.version)
        print(f"{args.out}: version {manifest['version']}, {len(manifest['files'])} wheels, "
              f"sha256 {hashlib.sha256(args.out.read_bytes()).hexdigest()}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        try:
            manifest = verify(args.bundle, public_key(args.public_key), Path(tmp) / "x")
        except (ReleaseRefused, ValueError) as exc:
            print(f"{args.bundle}: refused: {exc}")
            return 1
    print(f"{args.bundle}: version {manifest['version']}, {len(manifest['files'])} wheels, "
          "signature and hashes good")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
