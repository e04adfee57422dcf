"""What the reference backend does, without HTTP: store the cabinets' records exactly once, hand
out commands and take their results, answer the operators' questions, mint access codes.

Every batch is one transaction: the reply that says `stored_through` is sent only after it has
committed, so an acknowledgement always means "on disk". Side effects of a record (an alarm's state,
a command's result, the cabinet's last temperature) apply only when the record is new, so a
resent batch changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from .db import Database

KINDS = ("sale", "inventory", "session", "alarm", "telemetry", "setpoint", "food_safety",
         "command_result", "notice", "calibration")
COMMAND_TYPES = ("set_setpoint", "set_planogram", "remote_unlock", "restock_mode", "enroll_faces",
                 "delete_faces", "set_ads", "request_diagnostics", "restart", "end_session",
                 "clear_alarm", "clear_lockout")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# Commands go to a cabinet in pages of at most the bytes it says it can take (`max_bytes` on the
# long-poll, `max_command_bytes` in a batch); a cabinet that says nothing is an old one, which read
# at most 4 MiB. No command may be larger than the largest page a cabinet asks for.
LEGACY_COMMAND_BYTES = 4 * 1024 * 1024 - 64 * 1024
CABINET_PAGE_BYTES = 7 * 1024 * 1024   # what a cabinet that states its size takes at most
MAX_COMMAND_BYTES = 7 * 1024 * 1024 - 4096  # a command's args, inside a cabinet's 7 MiB page
REPLY_ENVELOPE_BYTES = 256   # {"commands": [...], "server_time": "..."} around the page


class Invalid(ValueError):
    """A request the backend refuses; the message goes back to the caller."""


class TooLarge(Invalid):
    """A command larger than any cabinet will take (413)."""


def now_iso(at: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if at is None else at, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_iso(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_record(record: Any, cabinet_id: str) -> str | None:
    """Why a record cannot be stored, or None."""
    if record.get("cabinet_id") != cabinet_id:
        return f"cabinet_id {record.get('cabinet_id')!r} is not this cabinet ({cabinet_id})"
    if not isinstance(record.get("record_id"), str) or not UUID.fullmatch(record["record_id"]):
        return "record_id must be a lower-case UUID"
    if record.get("kind") not in KINDS:
        return f"unknown kind {record.get('kind')!r}"
    if _parse_iso(record.get("created_at")) is None:
        return "created_at must be an ISO-8601 time with a zone"
    if not isinstance(record.get("body"), dict):
        return "body must be an object"
    if not isinstance(record.get("software_version"), str):
        return "software_version must be a string"
    return None


class Backend:
    def __init__(self, db: Database, *, signing_key=None, key_id: int = 0):
        self._face_model = None      # loaded on the first enrolment photo
        self._face_lock = threading.Lock()  # one photo at a time through dlib
        self.db = db
        self.signing_key, self.key_id = signing_key, key_id
        self._new_command = threading.Condition()
        self.closing = False  # set when the server stops: long-polls in progress end at once

    # --- cabinets ---------------------------------------------------------------------------------
    def add_cabinet(self, cabinet_id: str) -> str:
        """Register a cabinet (or give it a new token); returns its device token, shown once."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", cabinet_id or ""):
            raise Invalid("cabinet_id: letters, digits, '_', '.', '-' (at most 64)")
        token = secrets.token_urlsafe(32)
        with self.db.transaction() as tx:
            tx.execute("INSERT INTO cabinets (cabinet_id, token_sha256, created_at) VALUES (?, ?, ?) "
                       "ON CONFLICT (cabinet_id) DO UPDATE SET token_sha256 = excluded.token_sha256",
                       (cabinet_id, token_hash(token), now_iso()))
        return token

    def new_enrolment(self, cabinet_id: str, lifetime_seconds: float = 30 * 86400) -> dict:
        """A one-time token that a cabinet's first boot trades for its device token (it travels on
        the SD card's boot partition, so it is single use and expires)."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", cabinet_id or ""):
            raise Invalid("cabinet_id: letters, digits, '_', '.', '-' (at most 64)")
        token = secrets.token_urlsafe(24)
        expires = now_iso(time.time() + lifetime_seconds)
        with self.db.transaction() as tx:
            tx.execute("INSERT INTO enrolments (token_sha256, cabinet_id, expires_at) "
                       "VALUES (?, ?, ?)", (token_hash(token), cabinet_id, expires))
        return {"cabinet_id": cabinet_id, "enrolment_token": token, "expires_at": expires}

    def enrol(self, cabinet_id: Any, token: Any) -> str:
        """Trade an enrolment token for the cabinet's device token (once)."""
        if not isinstance(cabinet_id, str) or not isinstance(token, str):
            raise Invalid("give cabinet_id and enrolment_token")
        with self.db.transaction() as tx:
            row = tx.one("SELECT cabinet_id, expires_at, used_at FROM enrolments "
                         "WHERE token_sha256 = ?", (token_hash(token),))
            if row is None or row[0] != cabinet_id:
                raise PermissionError("unknown enrolment token for this cabinet")
            if row[2] is not None:
                raise PermissionError("this enrolment token was already used")
            if row[1] <= now_iso():
                raise PermissionError("this enrolment token has expired")
            tx.execute("UPDATE enrolments SET used_at = ? WHERE token_sha256 = ?",
                       (now_iso(), token_hash(token)))
        return self.add_cabinet(cabinet_id)

    def authenticate(self, cabinet_id: str, token: str) -> bool:
        with self.db.transaction() as tx:
            row = tx.one("SELECT token_sha256 FROM cabinets WHERE cabinet_id = ?", (cabinet_id,))
        return row is not None and secrets.compare_digest(row[0], token_hash(token))

    # --- the cabinet side -------------------------------------------------------------------------
    def store_batch(self, cabinet_id: str, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict) or not isinstance(payload.get("records"), list):
            raise Invalid("body must be an object with a list of records")
        if payload.get("cabinet_id") != cabinet_id:
            raise Invalid("cabinet_id in the body does not match the URL")
        records = payload["records"]
        if not records:
            raise Invalid("records is empty")
        command_bytes = payload.get("max_command_bytes")
        if command_bytes is not None and (isinstance(command_bytes, bool)
                                          or not isinstance(command_bytes, int)
                                          or command_bytes < 0):
            raise Invalid("max_command_bytes must be a whole number of bytes, 0 or more")
        seqs = []
        for i, record in enumerate(records):
            if not isinstance(record, dict) or isinstance(record.get("seq"), bool) \
                    or not isinstance(record.get("seq"), int) or record["seq"] < 1:
                raise Invalid(f"records[{i}] has no positive integer seq")
            seqs.append(record["seq"])
        received = now_iso()
        rejected = []
        oldest = None
        with self.db.transaction() as tx:
            for record in records:
                reason = check_record(record, cabinet_id)
                if reason:
                    rejected.append({"seq": record["seq"], "record_id": str(record.get("record_id")),
                                     "reason": reason})
                    continue
                inserted = tx.execute(
                    "INSERT INTO records (cabinet_id, record_id, seq, kind, created_at, received_at,"
                    " body) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (cabinet_id, record_id) "
                    "DO NOTHING",
                    (cabinet_id, record["record_id"], record["seq"], record["kind"],
                     record["created_at"], received,
                     json.dumps(record, ensure_ascii=False, sort_keys=True))).rowcount
                if inserted:
                    self._apply(tx, cabinet_id, record)
                    created = _parse_iso(record["created_at"])
                    oldest = created if oldest is None or created < oldest else oldest
            lag = None if oldest is None else \
                max(0.0, (datetime.now(timezone.utc) - oldest).total_seconds())
            tx.execute("UPDATE cabinets SET last_seen_at = ?, last_seq = CASE WHEN last_seq > ? "
                       "THEN last_seq ELSE ? END, lag_seconds = COALESCE(?, lag_seconds) "
                       "WHERE cabinet_id = ?", (received, max(seqs), max(seqs), lag, cabinet_id))
        return {"stored_through": max(seqs), "rejected": rejected,
                "commands": self.pending_commands(cabinet_id, 0, command_bytes),
                "server_time": now_iso()}

    def _apply(self, tx, cabinet_id: str, record: dict[str, Any]) -> None:
        body, kind = record["body"], record["kind"]
        if kind == "alarm" and isinstance(body.get("alarm_id"), str):
            if body.get("state") == "cleared":
                tx.execute("INSERT INTO alarms (cabinet_id, alarm_id, kind, detail, cleared_at) "
                           "VALUES (?, ?, ?, ?, ?) ON CONFLICT (cabinet_id, alarm_id) DO UPDATE "
                           "SET cleared_at = excluded.cleared_at",
                           (cabinet_id, body["alarm_id"], str(body.get("kind")),
                            str(body.get("detail", "")), str(body.get("cleared_at"))))
            else:
                tx.execute("INSERT INTO alarms (cabinet_id, alarm_id, kind, detail, raised_at) "
                           "VALUES (?, ?, ?, ?, ?) ON CONFLICT (cabinet_id, alarm_id) DO UPDATE "
                           "SET raised_at = excluded.raised_at",
                           (cabinet_id, body["alarm_id"], str(body.get("kind")),
                            str(body.get("detail", "")), str(body.get("raised_at"))))
        elif kind == "telemetry" and isinstance(body.get("celsius"), (int, float)):
            tx.execute("UPDATE cabinets SET temperature_celsius = ?, temperature_at = ? "
                       "WHERE cabinet_id = ? AND (temperature_at IS NULL OR temperature_at <= ?)",
                       (body["celsius"], record["created_at"], cabinet_id, record["created_at"]))
        elif kind == "command_result" and isinstance(body.get("command_id"), str):
            tx.execute("UPDATE commands SET status = ?, detail = ?, result = ?, finished_at = ? "
                       "WHERE command_id = ? AND cabinet_id = ?",
                       (str(body.get("status")), str(body.get("detail", "")),
                        json.dumps(body.get("result", {})), record["created_at"],
                        body["command_id"], cabinet_id))
            row = tx.one("SELECT args FROM commands WHERE command_id = ? AND cabinet_id = ? "
                         "AND type = 'enroll_faces'", (body["command_id"], cabinet_id))
            if row is not None:
                # Delivered: the backend keeps no copy of the embeddings it passed on.
                args = json.loads(row[0])
                for member in args.get("members", []):
                    if isinstance(member, dict) and isinstance(member.get("embeddings"), list):
                        member["embeddings"] = len(member["embeddings"])
                tx.execute("UPDATE commands SET args = ? WHERE command_id = ? AND cabinet_id = ?",
                           (json.dumps(args), body["command_id"], cabinet_id))

    def pending_commands(self, cabinet_id: str, after: int,
                         max_bytes: int | None = None) -> list[dict[str, Any]]:
        return self._page(cabinet_id, after, max_bytes)[0]

    def _page(self, cabinet_id: str, after: int,
              max_bytes: int | None) -> tuple[list[dict[str, Any]], bool]:
        """The next page of commands, in order, whose JSON fits in `max_bytes`. A command that
        could never fit is finished here as `rejected` with the sizes (the cabinet would
        otherwise be asked to read it for as long as it lives), and the page goes on after it.
        `max_bytes` None: an old cabinet, which says nothing and reads 4 MiB. Also says whether a
        command waits that this page was too small for (the cabinet asked for less for now)."""
        legacy = max_bytes is None
        if legacy:
            max_bytes = LEGACY_COMMAND_BYTES
        page: list[dict[str, Any]] = []
        used = REPLY_ENVELOPE_BYTES
        # What the cabinet can ever take: it may ask for less for a while (0 in an
        # acknowledgement, half a page after a reply too large), which only defers a command.
        capacity = LEGACY_COMMAND_BYTES if legacy else CABINET_PAGE_BYTES
        with self.db.transaction() as tx:
            rows = tx.rows("SELECT command_seq, command_id, type, args, issued_at, expires_at "
                           "FROM commands WHERE cabinet_id = ? AND status = 'issued' "
                           "AND command_seq > ? AND expires_at > ? ORDER BY command_seq LIMIT 100",
                           (cabinet_id, after, now_iso()))
            for r in rows:
                command = {"seq": r[0], "command_id": r[1], "type": r[2],
                           "args": json.loads(r[3]), "issued_at": r[4], "expires_at": r[5]}
                size = len(json.dumps(command, ensure_ascii=False).encode()) + 2
                if used + size <= max_bytes:
                    page.append(command)
                    used += size
                    continue
                if page:
                    break  # the next page
                if REPLY_ENVELOPE_BYTES + size > capacity:
                    tx.execute("UPDATE commands SET status = 'rejected', detail = ?, "
                               "finished_at = ? WHERE command_id = ?",
                               (f"too_large: {size} bytes; the cabinet takes at most "
                                f"{capacity} bytes of commands in a reply", now_iso(), r[1]))
                    continue
                return page, True  # fits a full page: the cabinet asked for less for now
        return page, False

    def wait_for_commands(self, cabinet_id: str, after: int, wait: float,
                          max_bytes: int | None = None) -> list[dict[str, Any]]:
        """The long-poll: commands issued in this process wake it at once; the database is asked
        again every half second too, for commands issued by another process of a fleet."""
        end = time.monotonic() + wait
        while True:
            commands, deferred = self._page(cabinet_id, after, max_bytes)
            left = end - time.monotonic()
            # A command this page is too small for: answer at once, so that a cabinet growing
            # its page back after a reply too large gets there in a few polls, not long-polls.
            if commands or deferred or left <= 0 or self.closing:
                return commands
            with self._new_command:
                self._new_command.wait(min(left, 0.5))

    def close(self) -> None:
        self.closing = True
        with self._new_command:
            self._new_command.notify_all()

    # --- the operator side ------------------------------------------------------------------------
    def issue_command(self, cabinet_id: str, kind: str, args: Any,
                      lifetime_seconds: float = 60) -> dict[str, Any]:
        if kind not in COMMAND_TYPES:
            raise Invalid(f"type must be one of {', '.join(COMMAND_TYPES)}")
        if not isinstance(args, dict):
            raise Invalid("args must be an object")
        if isinstance(lifetime_seconds, bool) or not isinstance(lifetime_seconds, (int, float)) \
                or not 1 <= lifetime_seconds <= 7 * 86400:
            raise Invalid("lifetime_seconds must be 1 to 604800")
        size = len(json.dumps(args, ensure_ascii=False).encode())
        if size > MAX_COMMAND_BYTES:
            raise TooLarge(f"args are {size} bytes; a command is at most {MAX_COMMAND_BYTES} "
                           "(send it in parts, e.g. faces in several enroll_faces)")
        issued = time.time()
        command = {"command_id": str(uuid.uuid4()), "type": kind, "args": args,
                   "issued_at": now_iso(issued), "expires_at": now_iso(issued + lifetime_seconds)}
        with self.db.transaction() as tx:
            if tx.one("SELECT 1 FROM cabinets WHERE cabinet_id = ?", (cabinet_id,)) is None:
                raise LookupError(f"no cabinet {cabinet_id}")
            tx.execute("INSERT INTO commands (command_id, cabinet_id, type, args, issued_at, "
                       "expires_at, status) VALUES (?, ?, ?, ?, ?, ?, 'issued')",
                       (command["command_id"], cabinet_id, kind, json.dumps(args),
                        command["issued_at"], command["expires_at"]))
            command["seq"] = tx.one("SELECT command_seq FROM commands WHERE command_id = ?",
                                    (command["command_id"],))[0]
        with self._new_command:
            self._new_command.notify_all()
        return command

    def enrol_face(self, cabinet_id: str, member_id: Any, consent: Any,
                   photos: Any) -> dict[str, Any]:
        """Photographs in, embeddings out, sent as an enroll_faces command. The photographs are
        measured in memory and dropped: only the embeddings are kept (in the command)."""
        import base64
        import binascii

        if consent is not True:
            raise Invalid("consent must be true: a face is enrolled only with the member's consent")
        if not isinstance(member_id, str) or not member_id:
            raise Invalid("member_id must be the member's account id")
        if not isinstance(photos, list) or not 1 <= len(photos) <= 5 or \
                not all(isinstance(p, str) for p in photos):
            raise Invalid("photos must be a list of 1 to 5 base64 JPEG or PNG images")
        from cabinet.access.face_model import FaceModel, FaceUnavailable, PhotoError
        vectors = []
        try:
            for i, photo in enumerate(photos):
                try:
                    data = base64.b64decode(photo, validate=True)
                except (binascii.Error, ValueError):
                    raise Invalid(f"photos[{i}] is not base64") from None
                with self._face_lock:
                    if self._face_model is None:
                        self._face_model = FaceModel()
                    vectors.append(self._face_model.embedding_from_photo(data, f"photos[{i}]"))
        except FaceUnavailable as exc:
            raise Invalid(f"this backend cannot measure faces: {exc}") from None
        except PhotoError as exc:
            raise Invalid(str(exc)) from None
        member = {"member_id": member_id, "consent": True,
                  "embeddings": [[round(float(x), 6) for x in v] for v in vectors]}
        return self.issue_command(cabinet_id, "enroll_faces", {"members": [member]}, 86400)

    def command(self, command_id: str) -> dict[str, Any]:
        with self.db.transaction() as tx:
            row = tx.one("SELECT command_id, cabinet_id, type, status, detail, result, issued_at, "
                         "expires_at, finished_at FROM commands WHERE command_id = ?",
                         (command_id,))
        if row is None:
            raise LookupError(f"no command {command_id}")
        out = dict(zip(("command_id", "cabinet_id", "type", "status", "detail", "result",
                        "issued_at", "expires_at", "finished_at"), row))
        out["result"] = None if out["result"] is None else json.loads(out["result"])
        return out

    def cabinets(self) -> list[dict[str, Any]]:
        with self.db.transaction() as tx:
            rows = tx.rows("SELECT cabinet_id, last_seen_at, last_seq, lag_seconds, "
                           "temperature_celsius, temperature_at FROM cabinets ORDER BY cabinet_id")
            alarms = tx.rows("SELECT cabinet_id, kind, detail, raised_at FROM alarms "
                             "WHERE cleared_at IS NULL ORDER BY raised_at")
        out = []
        for r in rows:
            out.append({"cabinet_id": r[0], "last_seen_at": r[1], "last_seq": r[2],
                        "lag_seconds": r[3], "temperature_celsius": r[4], "temperature_at": r[5],
                        "alarms": [{"kind": a[1], "detail": a[2], "raised_at": a[3]}
                                   for a in alarms if a[0] == r[0]]})
        return out

    def records(self, kind: str, cabinet_id: str | None = None, after_seq: int = 0,
                limit: int = 1000) -> list[dict[str, Any]]:
        if not 1 <= limit <= 100000:
            raise Invalid("limit must be 1 to 100000")
        sql = "SELECT body FROM records WHERE kind = ? AND seq > ?"
        params: list[Any] = [kind, after_seq]
        if cabinet_id:
            sql += " AND cabinet_id = ?"
            params.append(cabinet_id)
        sql += " ORDER BY cabinet_id, seq LIMIT ?"
        params.append(limit)
        with self.db.transaction() as tx:
            return [json.loads(b) for (b,) in tx.rows(sql, params)]

    def counts(self, cabinet_id: str) -> dict[str, int]:
        with self.db.transaction() as tx:
            return {k: n for k, n in tx.rows("SELECT kind, COUNT(*) FROM records "
                                             "WHERE cabinet_id = ? GROUP BY kind", (cabinet_id,))}

    def mint_code(self, audience: str, subject: str, role: str,
                  lifetime_seconds: int = 90) -> dict[str, Any]:
        from cabinet.access.codes import mint

        if self.signing_key is None:
            raise Invalid("this backend has no signing key (--signing-key)")
        if isinstance(lifetime_seconds, bool) or not isinstance(lifetime_seconds, int) \
                or not 10 <= lifetime_seconds <= 86400:
            raise Invalid("lifetime_seconds must be an integer from 10 to 86400")
        for name, value in (("audience", audience), ("subject", subject)):
            if not isinstance(value, str) or not value:
                raise Invalid(f"{name} must be a non-empty string")
        issued = int(time.time())
        try:
            code = mint(self.signing_key, key_id=self.key_id, audience=audience, subject=subject,
                        role=role, issued_at=issued, lifetime_seconds=lifetime_seconds)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
        return {"code": code, "key_id": self.key_id, "issued_at": now_iso(issued),
                "expires_at": now_iso(issued + lifetime_seconds)}
