"""Downloads a cabinet takes from the operators' servers (ads, voice packs), kept only when their
sha256 matches.

Limits (issue 15): a file comes only from an http(s) host that is not this device (loopback or
unspecified addresses are refused, at every redirect, of which there may be 5), is at most
`max_bytes`, takes at most `fetch_seconds`, and is not fetched when it would leave less than
FREE_FLOOR_BYTES on the disk (the database needs that room for sales). A download goes through a
.part file, renamed only once its checksum matches; one that fails for any reason leaves no .part
file behind, except in a Spool (voice packs, releases: hundreds of megabytes over a mobile link),
which keeps what arrived when the connection failed and resumes it with an HTTP Range request, a
few times with a growing pause, before it gives up (a server that ignores Range starts over).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import queue
import re
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

log = logging.getLogger("cabinetd.downloads")
MAX_FETCH_SECONDS = 600.0
FREE_FLOOR_BYTES = 256 * 1024 * 1024
MAX_REDIRECTS = 5


class Downloads:
    """Checked downloads into `folder`."""

    def __init__(self, folder: str | Path, *, max_bytes: int, timeout: float = 30.0,
                 ca_file: str = "", refuse_loopback: bool = True,
                 fetch_seconds: float = MAX_FETCH_SECONDS):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes, self.timeout, self.fetch_seconds = max_bytes, timeout, fetch_seconds
        self.verify: str | bool = ca_file or True
        self.refuse_loopback = refuse_loopback  # (tests serve files from loopback)
        self.resume = False   # keep a .part a failed connection left, and go on from it

    def _check_url(self, url: str) -> None:
        """http(s), and a host that is not this device (checked again at every redirect)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url[:100]!r}: not an http(s) URL")
        if not self.refuse_loopback:
            return
        try:
            infos = socket.getaddrinfo(parts.hostname, parts.port or 80, type=socket.SOCK_STREAM)
        except OSError as exc:   # no network, or none yet: worth another try
            raise Interrupted(f"{parts.hostname}: cannot be resolved ({exc})") from None
        for info in infos:
            _refuse_this_device(parts.hostname, info[4][0])

    def _check_peer(self, url: str, reply: requests.Response) -> None:
        """The address actually connected to: a name that resolved to another host when checked
        and to this device when connecting (DNS rebinding) is caught here, before a byte of the
        body is read. (The request was a GET, which changes nothing on the daemon.)"""
        if not self.refuse_loopback:
            return
        sock = _socket_of(reply)
        if sock is None:
            raise ValueError(f"{urlsplit(url).hostname}: cannot tell which address answered")
        _refuse_this_device(urlsplit(url).hostname, sock.getpeername()[0])

    def _open(self, session: requests.Session, url: str,
              headers: dict[str, str] | None = None) -> requests.Response:
        for _ in range(MAX_REDIRECTS + 1):
            self._check_url(url)
            reply = session.get(url, stream=True, timeout=self.timeout, verify=self.verify,
                                allow_redirects=False, headers=headers)
            try:
                self._check_peer(url, reply)
            except ValueError:
                reply.close()
                raise
            if not reply.is_redirect:
                return reply
            location = reply.headers.get("Location", "")
            reply.close()
            url = urljoin(url, location)
        raise ValueError(f"more than {MAX_REDIRECTS} redirects")

    def _room_for(self, more: int) -> None:
        if shutil.disk_usage(self.folder).free - more < FREE_FLOOR_BYTES:
            raise ValueError(f"it would leave less than {FREE_FLOOR_BYTES >> 20} MiB on the "
                             "disk: kept for the sales")

    def _fetch(self, url: str, sha: str, target: Path) -> None:
        """Download `url` to `target`, or raise (ValueError, OSError, requests' errors) saying
        why not: Interrupted when going on later could succeed (the .part is then kept if
        self.resume)."""
        part = target.with_name(target.name + ".part")
        digest, started = hashlib.sha256(), time.monotonic()
        have = self._resumable(part, digest)
        keep = self.resume   # only a wrong, oversized or unwritable file is thrown away
        # A server that trickles a byte just inside every read timeout (headers or body) would
        # hold a read, and this thread, for hours: at the time limit every socket this download
        # opened is shut down, which ends a read in progress (closing the reply from another
        # thread does not).
        watch = _Sockets()
        session = watch.session()
        cut_off = threading.Timer(self.fetch_seconds, watch.shut_down)
        cut_off.daemon = True
        cut_off.start()
        # Byte offsets must be the file's own: no content encoding.
        headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={have}-"} if have else {})}
        try:
            with self._open(session, url, headers) as reply:
                if have and reply.status_code == 416 and digest.hexdigest() == sha:
                    part.rename(target)   # what arrived before was the whole file
                    return
                reply.raise_for_status()
                if have and not _resumes(reply, have):
                    have, digest = 0, hashlib.sha256()   # the whole file again
                size = have
                declared = int(reply.headers.get("Content-Length") or 0)
                if have + declared > self.max_bytes:
                    raise ValueError(f"{have + declared} bytes: over {self.max_bytes >> 20} MiB")
                self._room_for(declared)
                with open(part, "ab" if have else "wb") as out:
                    # Checked at each chunk: a server trickling bytes slower than one chunk per
                    # read timeout is not cut off mid-chunk (left for later).
                    for chunk in reply.iter_content(1 << 16):
                        size += len(chunk)
                        if size > self.max_bytes:
                            raise ValueError(f"over {self.max_bytes >> 20} MiB")
                        if time.monotonic() - started > self.fetch_seconds:
                            raise Interrupted(f"still downloading after "
                                              f"{self.fetch_seconds:.0f} s")
                        self._room_for(len(chunk))   # a statvfs: cheap beside 64 KiB of I/O
                        digest.update(chunk)
                        out.write(chunk)
            if digest.hexdigest() != sha:
                keep = False
                why = (f"checksum mismatch: got sha256 {digest.hexdigest()[:12]}…, expected "
                       f"{sha[:12]}…")
                # A file put together from two replies may be what is wrong: once more, whole.
                raise Interrupted(why + " (resumed: trying the whole file)") if have \
                    else ValueError(why)
            part.rename(target)
        except Interrupted:
            raise
        except requests.RequestException as exc:
            if watch.expired:
                raise Interrupted(f"still downloading after {self.fetch_seconds:.0f} s: cut "
                                  "off") from None
            if isinstance(exc, requests.HTTPError) and exc.response is not None \
                    and exc.response.status_code < 500:
                keep = False
                raise
            raise Interrupted(str(exc) or type(exc).__name__) from None
        except (ValueError, OSError):
            keep = False
            raise
        finally:
            cut_off.cancel()
            session.close()
            if not keep:
                part.unlink(missing_ok=True)  # no half file left behind, unless to resume

    def _resumable(self, part: Path, digest: Any) -> int:
        """How much of `part` an earlier attempt left to go on from (fed to `digest`), or 0."""
        if not self.resume or not part.is_file():
            return 0
        with open(part, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return part.stat().st_size


class Interrupted(ValueError):
    """A download the link or the time limit cut short: going on later may succeed."""


def _resumes(reply: requests.Response, have: int) -> bool:
    """A 206 carrying the rest of the file from byte `have` to its end, and nothing else."""
    found = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)",
                         reply.headers.get("Content-Range", "").strip())
    return reply.status_code == 206 and found is not None and int(found.group(1)) == have \
        and (found.group(3) == "*" or int(found.group(2)) == int(found.group(3)) - 1)


class Spool(Downloads, threading.Thread):
    """Files the backend's commands ask for (`want(url, sha256)`: fetched one at a time in this
    thread, a download must not hold the controller) or a technician uploads (`receive`), each
    handed to `take(path, sha256)` and deleted after. DATA/<what>/incoming holds them meanwhile;
    what a crash left there, or in a staging-* folder, is cleared at start. Subclasses say what
    taking one means (voice packs: install; releases: verify and spool) and how they refuse."""

    suffix = ".bin"
    Refused: type[Exception] = ValueError   # what take() raises, having reported it
    ATTEMPTS = 6                            # a failed connection is resumed this many times
    PAUSES = (10.0, 30.0, 60.0, 120.0, 300.0)   # before each attempt after the first

    def __init__(self, name: str, root: str | Path, *, max_bytes: int, timeout: float = 30.0,
                 ca_file: str = "", refuse_loopback: bool = True):
        threading.Thread.__init__(self, name=name, daemon=True)
        Downloads.__init__(self, Path(root) / "incoming", max_bytes=max_bytes, timeout=timeout,
                           ca_file=ca_file, refuse_loopback=refuse_loopback)
        self.root = Path(root)
        self.resume = True
        self._wanted: queue.Queue = queue.Queue()
        self._closing = threading.Event()
        for leftover in (*self.root.glob("staging-*"), *self.folder.iterdir()):
            if leftover.name.endswith(".part") and leftover.is_file() \
                    and time.time() - leftover.stat().st_mtime < 86400:
                continue   # a download to go on with, if the same file is asked for again
            (shutil.rmtree if leftover.is_dir() else Path.unlink)(leftover)

    # --- what a subclass says --------------------------------------------------------------------
    def take(self, path: Path, sha256: str) -> dict[str, Any]:
        raise NotImplementedError

    def refusal(self, why: str) -> Exception:
        """The subclass's refusal, saying `why` (raised by take, reported by it)."""
        raise NotImplementedError

    def fetching(self, url: str, sha256: str) -> bool:
        """Before a download: False skips it (the file is in use already)."""
        return True

    def download_failed(self, url: str, sha256: str, why: str) -> None:
        raise NotImplementedError

    # --- asking -----------------------------------------------------------------------------------
    def want(self, url: str, sha256: str) -> None:
        self._wanted.put((url, sha256))

    def close(self) -> None:
        self._closing.set()
        self._wanted.put(None)
        if self.is_alive():
            self.join(timeout=5)

    def run(self) -> None:
        while True:
            item = self._wanted.get()
            if item is None:
                return
            url, sha = item
            path = self.folder / f"{sha}{self.suffix}"
            try:
                if self.fetching(url, sha):
                    self._fetch_resuming(url, sha, path)
                self.take(path, sha)
            except self.Refused:
                pass   # take reported it
            except Exception as exc:   # the download's: requests, OSError, ValueError
                self.download_failed(url, sha, str(exc) or type(exc).__name__)
            finally:
                path.unlink(missing_ok=True)

    def _fetch_resuming(self, url: str, sha: str, path: Path) -> None:
        """_fetch, again after a pause (from where it stopped) while it is Interrupted, up to
        ATTEMPTS; a download given up leaves no part behind."""
        part = path.with_name(path.name + ".part")
        for stale in self.folder.glob("*.part"):   # another file's, abandoned: its room back
            if stale != part:
                stale.unlink(missing_ok=True)
        for attempt in range(self.ATTEMPTS):
            try:
                return self._fetch(url, sha, path)
            except Interrupted as exc:
                if attempt == self.ATTEMPTS - 1:
                    part.unlink(missing_ok=True)
                    raise Interrupted(f"{exc} (gave up after {self.ATTEMPTS} attempts)") \
                        from None
                pause = self.PAUSES[min(attempt, len(self.PAUSES) - 1)]
                log.info("%s: download interrupted with %d bytes in (%s); again in %.0f s",
                         self.name, part.stat().st_size if part.exists() else 0, exc, pause)
                if self._closing.wait(pause):
                    raise ValueError("stopped while waiting to resume") from None

    def receive(self, stream: Any, length: int) -> dict[str, Any]:
        """A technician's upload: `length` bytes of `stream` (a request's body), copied into
        the incoming folder and hashed as copied, then taken."""
        if not 0 < length <= self.max_bytes:
            raise self.refusal(f"{length} bytes: 1 byte to {self.max_bytes >> 20} MiB allowed")
        try:
            self._room_for(length)
        except ValueError as exc:
            raise self.refusal(str(exc)) from None
        path = self.folder / f"upload-{uuid.uuid4().hex}{self.suffix}"
        digest = hashlib.sha256()
        try:
            with open(path, "wb") as out:
                left = length
                while left:
                    chunk = stream.read(min(left, 1 << 20))
                    if not chunk:
                        raise self.refusal("the upload ended early")
                    digest.update(chunk)
                    out.write(chunk)
                    left -= len(chunk)
            return self.take(path, digest.hexdigest())
        finally:
            path.unlink(missing_ok=True)


def _refuse_this_device(host: str, raw_address: str) -> None:
    address = ipaddress.ip_address(raw_address.split("%", 1)[0])
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped   # ::ffff:127.0.0.1 is 127.0.0.1
    if address.is_loopback or address.is_unspecified:
        raise ValueError(f"{host} is this device ({address}): downloads come only from other hosts")


def _socket_of(reply: requests.Response) -> socket.socket | None:
    """The connected socket under a streamed reply: on urllib3's connection while it is kept
    alive, else (a reply that closes the connection) only under http.client's file object."""
    connection = getattr(reply.raw, "connection", None) or getattr(reply.raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    if sock is None:
        stream = getattr(getattr(getattr(reply.raw, "_fp", None), "fp", None), "raw", None)
        sock = getattr(stream, "_sock", None)
    return sock


class _Sockets:
    """The sockets one download opens (its redirects' too), so that its time limit can shut
    them down: a requests session whose connections report the socket they make."""

    def __init__(self):
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.expired = False

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def shut_down(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)

    def session(self) -> requests.Session:
        from urllib3.connection import HTTPConnection, HTTPSConnection
        from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

        watch = self

        class Connection(HTTPConnection):
            def _new_conn(self):
                sock = super()._new_conn()
                watch.add(sock)
                return sock

        class TlsConnection(HTTPSConnection):
            def _new_conn(self):
                sock = super()._new_conn()  # the TCP socket TLS is then wrapped around
                watch.add(sock)
                return sock

        pools = {"http": type("Pool", (HTTPConnectionPool,), {"ConnectionCls": Connection}),
                 "https": type("TlsPool", (HTTPSConnectionPool,),
                               {"ConnectionCls": TlsConnection})}
        session = requests.Session()
        for adapter in session.adapters.values():
            adapter.poolmanager.pool_classes_by_scheme = pools
        return session


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed: the download ended by itself
