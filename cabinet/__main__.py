"""`python -m cabinet` runs the daemon, as the cabinetd script does."""

from .cli import daemon_main

raise SystemExit(daemon_main())
