"""sd_notify: tell systemd READY, WATCHDOG, STOPPING and STATUS, after systemd's own example.

Without NOTIFY_SOCKET (not started by systemd, or Type= is not notify) every call does nothing.
With it, a failure to send raises NotifyError instead of being swallowed (unlike sdnotify): a daemon
that cannot reach its watchdog should say so in its log.
"""

from __future__ import annotations

import os
import socket


class NotifyError(OSError):
    pass


class Notifier:
    def __init__(self, address: str | None = None):
        address = os.environ.get("NOTIFY_SOCKET") if address is None else address
        if address and address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace socket
        self.address = address or None
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        own = not pid or pid == str(os.getpid())
        self.watchdog_seconds: float | None = (int(usec) / 1e6 if usec.isascii() and usec.isdigit() and own
                                               and int(usec) > 0 else None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, message: str) -> None:
        if self.address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall(message.encode())
        except OSError as exc:
            raise NotifyError(f"sd_notify {message.split(chr(10))[0]!r} to "
                              f"{self.address!r} failed: {exc}") from exc

    def ready(self, status: str = "") -> None:
        self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text}")
