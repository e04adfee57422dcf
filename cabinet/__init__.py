"""cabinetd: the controller daemon of an unattended smart vending cabinet."""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    # The one statement of the version is pyproject.toml's (a release built with another version,
    # tools/release.py --version, reports that one).
    __version__ = _version("cabinet-controller")
except PackageNotFoundError:   # run from a checkout that was never installed
    __version__ = "0+source"
