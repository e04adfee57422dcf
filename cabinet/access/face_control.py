"""Face checkout on the controller thread: enrolments in, recognised members turned into sessions,
failed attempts counted.

A member seen live by the camera (FaceRecognised) opens a shopper session charged to the member's
account, unless their face unlock is paused after failed attempts. Only members who consented
are enrolled: an enrolment without `consent: true` is refused and removes any earlier one, so
withdrawing consent is one command. Face is never the only way in: QR codes and the phone scan
work whatever happens here, and a fault here (no dlib, a lost key) turns face checkout off with a
log line and, for a lost key, the `face_key` alarm.

The camera thread reads `gallery` (an immutable Gallery, replaced whole after each change).
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any, Callable

from ..checkout import Authorisation, Refused
from ..events import FaceAttemptFailed, FaceChecking, FaceRecognised
from ..ports import Ports
from .face import FailedAttempts, Gallery, MemberError, parse_member
from .face_model import unavailable_reason
from .face_vault import FaceVault, VaultError

log = logging.getLogger(__name__)
MAX_MEMBERS_PER_COMMAND = 500


class FaceUnsupported(Exception):
    """Face checkout is off on this cabinet (config, or the extra is not installed)."""


class FaceAccess:
    def __init__(self, ports: Ports, key_path: str | Path, *,
                 authorise: Callable[[Authorisation], str],
                 refused: Callable[[str, str, str], None]):
        self.p = ports
        self._authorise, self._refused = authorise, refused
        f = ports.config.face
        self.reason = "face.enabled is false" if not f.enabled else unavailable_reason()
        self.vault = FaceVault(ports.store, key_path)
        self._members: dict[str, list] = {}
        self.gallery = Gallery()
        self.checking = False
        self.attempts = FailedAttempts(f.max_failures, f.failure_window_minutes * 60,
                                       f.pause_minutes * 60)
        self._wipe_pending = False
        if self.reason is None:
            self._reload()
        else:
            log.info("face checkout off: %s", self.reason)

    @property
    def available(self) -> bool:
        return self.reason is None

    def _reload(self) -> None:
        """At start: the sealed members, opened once; later changes update `_members` in memory
        rather than decrypting everyone again."""
        try:
            self._members, problem = self.vault.members()
        except VaultError as exc:
            self._members, problem = {}, str(exc)
        if problem is None:
            self.p.alarms.clear_alarm("face_key")
        else:
            self._key_alarm(problem)
        self.gallery = Gallery(self._members)

    def _key_alarm(self, detail: str) -> None:
        # A different key problem than the one raised before (a restart after a fix that went
        # wrong another way) replaces the alarm: the technician reads the current cause.
        if any(a["kind"] == "face_key" and a["detail"] != detail for a in self.p.alarms.active()):
            self.p.alarms.clear_alarm("face_key")
        self.p.alarms.raise_alarm("face_key", detail)

    # --- enrolment (commands and technicians) -----------------------------------------------------
    def enrol(self, members: Any) -> dict[str, Any]:
        """Enrol a list of {member_id, consent, embeddings}; returns who was enrolled, removed
        (consent withdrawn) and refused with the reason. ValueError for a malformed list."""
        if not self.available:
            raise FaceUnsupported(self.reason)
        if not isinstance(members, list) or not 1 <= len(members) <= MAX_MEMBERS_PER_COMMAND:
            raise ValueError(f"members must be a list of 1 to {MAX_MEMBERS_PER_COMMAND}")
        to_save: dict[str, list] = {}
        to_remove, refused = [], []
        for i, raw in enumerate(members):
            try:
                member_id, vectors = parse_member(raw)
            except MemberError as exc:
                if exc.member_id is None or raw.get("consent") is True:
                    refused.append({"member_id": exc.member_id, "index": i, "reason": str(exc)})
                    continue
                member_id, vectors = exc.member_id, None   # no valid consent: nothing kept
            if vectors is not None:
                to_save[member_id] = vectors
            else:
                # Consent withdrawn (or never given): nothing is kept, an earlier enrolment goes.
                to_remove.append((i, member_id))
        if to_save:
            try:
                self.vault.save(to_save)
            except VaultError as exc:
                self._key_alarm(str(exc))
                raise
        removed = self.vault.delete([m for _, m in to_remove]) if to_remove else []
        refused += [{"member_id": m, "index": i, "reason": "consent must be true to enrol a face"}
                    for i, m in to_remove if m not in removed]
        enrolled = list(to_save)
        self._changed(to_save, removed)
        log.info("faces: %d enrolled, %d removed, %d refused", len(enrolled), len(removed),
                 len(refused))
        return {"enrolled": enrolled, "removed": removed, "refused": refused,
                "members": len(self.gallery)}

    def delete(self, member_ids: list[str]) -> dict[str, Any]:
        if not self.available:
            raise FaceUnsupported(self.reason)
        deleted = self.vault.delete(member_ids)
        self._changed({}, deleted)
        log.info("faces: %d deleted (%d asked)", len(deleted), len(member_ids))
        return {"deleted": deleted, "absent": [m for m in member_ids if m not in deleted],
                "members": len(self.gallery)}

    def _changed(self, saved: dict[str, list], removed: list[str]) -> None:
        """A new gallery for the camera, and the WAL wiped of the old rows."""
        if not saved and not removed:
            return
        for member_id in removed:
            self._members.pop(member_id, None)
        self._members.update(saved)
        self.gallery = Gallery(self._members)
        if not self.p.store.checkpoint():
            self._wipe_later()

    def _wipe_later(self) -> None:
        """The uploader's reads can keep the WAL from being truncated: try until it is."""
        if self._wipe_pending:
            return
        self._wipe_pending = True

        def wipe():
            if self.p.store.checkpoint():
                self._wipe_pending = False
            else:
                self.p.timers.call_later(2.0, "face wipe", wipe)
        self.p.timers.call_later(0.5, "face wipe", wipe)

    # --- the camera's conclusions -----------------------------------------------------------------
    def on_checking(self, event: FaceChecking) -> None:
        self.checking = event.active

    def on_recognised(self, event: FaceRecognised) -> None:
        self.checking = False
        now = self.p.clock()
        if self.attempts.paused_until(event.member_id, now) is not None:
            self._refused("face_paused", "face unlock is paused after failed attempts; "
                                          "use a QR code", "face")
            return
        if event.member_id not in self.gallery.member_ids:
            return  # deleted while the camera was looking
        try:
            self._authorise(Authorisation("face", event.member_id, "shopper",
                                           f"face-{uuid.uuid4().hex}"))
        except Refused:
            pass  # recorded by authorise()

    def on_failed(self, event: FaceAttemptFailed) -> None:
        self.checking = False
        reason = {"not_live": "no head turn was seen; turn your head left and right, or use a "
                              "QR code",
                  "face_changed": "the face changed during the check"}.get(event.reason,
                                                                          event.reason)
        self._refused(f"face_{event.reason}", reason, "face")
        now = self.p.clock()
        for key in self.attempts.failed(event.member_id, now):
            who = "every member" if key == "*" else f"member {key}"
            self.p.alarms.raise_alarm("face_attempts", f"face unlock paused for {who} for "
                                                f"{self.attempts.pause / 60:.0f} min after "
                                                "repeated failed attempts (a photograph?)")
            self.p.timers.call_later(self.attempts.pause + 1, "face pause over",
                                     self._pause_over)

    def _pause_over(self) -> None:
        if not self.attempts.snapshot(self.p.clock()):
            self.p.alarms.clear_alarm("face_attempts")

    def lift_pauses(self) -> None:
        """`cabinet alarm clear face_attempts`: a technician lifts every pause."""
        self.attempts.reset()

    def snapshot(self) -> dict[str, Any]:
        return {"available": self.available, "reason": self.reason,
                "members": len(self.gallery), "checking": self.checking,
                "paused": self.attempts.snapshot(self.p.clock())}
