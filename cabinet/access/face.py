"""Face checkout's decisions, on plain values: who a face is (1:N search), whether it is a live
head (a turn across frames), and how many failed attempts a member may make.

Nothing here sees a camera or a model: an embedding is 128 floats (dlib's ResNet descriptor, the
one face_recognition uses), a frame is reduced to (time, embedding, yaw). The thresholds come from
the config; the defaults were chosen on tests/data/faces (docs/face.md has the figures):
the same person at 0.25-0.44, anyone else at 0.70 or more.

Search is one matrix-vector product over float32 with the squared norms precomputed,
|q - e|^2 = |q|^2 + |e|^2 - 2 q.e, then argpartition for the few nearest: about 2 ms over
100 000 members on a PC. The nearest member must be within `tolerance`, and the nearest *other*
member at least `margin` farther, or nobody is named (two look-alikes are refused, not guessed).

Liveness is a head turn. The 5-point landmarks give the eye corners and the base of the nose; the
nose's offset along the line between the eyes, over the eye distance, is a yaw measure that does
not change when a flat picture is moved, scaled or turned in its plane, and changes by about 0.3
when a person turns their head left and right. An attempt passes when one member is named in at
least `min_frames` frames, with no gap longer than `max_gap`, and the yaw spans `turn_span`
within `attempt_seconds`. A photograph held up still spans nothing; one tilted back and forth
spans up to about 0.15 (measured): the default span is 0.2. It is a check against a photo held up,
not against a video on a phone: docs/face.md says so.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass, field

import numpy as np

DIMENSIONS = 128
MAX_EMBEDDINGS_PER_MEMBER = 5
MEMBER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,99}")


class EmbeddingError(ValueError):
    """An embedding that is not 128 finite numbers of a descriptor's size."""


class MemberError(ValueError):
    """One member of an enrolment that cannot be enrolled; `member_id` when it has a usable one."""

    def __init__(self, member_id: str | None, reason: str):
        super().__init__(reason)
        self.member_id = member_id


def parse_member(raw) -> tuple[str, list[np.ndarray] | None]:
    """One entry of an enrolment ({member_id, consent, embeddings}, from the backend or a
    technician): the member id and checked embeddings, or None for the embeddings when consent
    is false (the member is to be removed). MemberError says what is wrong."""
    member_id = raw.get("member_id") if isinstance(raw, dict) else None
    if not isinstance(member_id, str) or not MEMBER_ID.fullmatch(member_id):
        raise MemberError(None, "member_id must be 1-100 letters, digits or . _ : @ -, starting "
                                "with a letter or digit")
    consent = raw.get("consent")
    if consent is False:
        return member_id, None
    if consent is not True:
        raise MemberError(member_id, "consent must be true to enrol a face")
    vectors = raw.get("embeddings")
    if not isinstance(vectors, list) or not 1 <= len(vectors) <= MAX_EMBEDDINGS_PER_MEMBER:
        raise MemberError(member_id, f"embeddings must be a list of 1 to "
                                     f"{MAX_EMBEDDINGS_PER_MEMBER} embeddings")
    try:
        return member_id, [check_embedding(v, f"embeddings[{j}]") for j, v in enumerate(vectors)]
    except EmbeddingError as exc:
        raise MemberError(member_id, str(exc)) from None


def check_embedding(values, where: str = "embedding") -> np.ndarray:
    """A descriptor as float32, or EmbeddingError saying what is wrong with it."""
    if not isinstance(values, (list, tuple, np.ndarray)) or len(values) != DIMENSIONS:
        raise EmbeddingError(f"{where} must be a list of {DIMENSIONS} numbers")
    if any(isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) for v in values):
        raise EmbeddingError(f"{where} must hold numbers only")
    vector = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(vector)) or np.abs(vector).max() > 1.0:
        raise EmbeddingError(f"{where} must hold finite numbers between -1 and 1")
    norm = float(np.linalg.norm(vector))
    # dlib's descriptors measure 1.3-1.6 here; a zero vector or a random one is not a face.
    if not 0.5 <= norm <= 3.0:
        raise EmbeddingError(f"{where} has length {norm:.3f}; a face descriptor is 0.5 to 3")
    return vector.astype(np.float32)


@dataclass(frozen=True)
class Match:
    member_id: str | None      # named only when within tolerance and clear of the runner-up
    distance: float            # to the nearest member (inf with no members)
    runner_up: float           # to the nearest other member (inf when there is none)
    reason: str = ""           # why nobody was named: unknown, ambiguous, no_members


class Gallery:
    """The enrolled members' embeddings, immutable: a new enrolment builds a new Gallery, and the
    camera thread picks up the new reference (no locks, no half-updated arrays)."""

    def __init__(self, members: dict[str, list[np.ndarray]] | None = None):
        owners, rows = [], []
        self.member_ids: list[str] = sorted(members or {})
        for index, member in enumerate(self.member_ids):
            for vector in (members or {})[member][:MAX_EMBEDDINGS_PER_MEMBER]:
                owners.append(index)
                rows.append(vector)
        self.matrix = (np.vstack(rows).astype(np.float32) if rows
                       else np.zeros((0, DIMENSIONS), np.float32))
        self.owners = np.asarray(owners, dtype=np.int64)
        self.squared_norms = np.einsum("ij,ij->i", self.matrix, self.matrix)

    def __len__(self) -> int:
        return len(self.member_ids)

    def nearest(self, query: np.ndarray) -> tuple[str | None, float, float]:
        """(nearest member, its distance, the nearest other member's distance)."""
        if not len(self.owners):
            return None, math.inf, math.inf
        q = np.asarray(query, dtype=np.float32)
        squared = self.squared_norms - 2.0 * (self.matrix @ q) + float(q @ q)
        # Enough candidates that another member is among them (a member has at most 5 rows).
        k = min(len(squared), MAX_EMBEDDINGS_PER_MEMBER + 1)
        candidates = np.argpartition(squared, k - 1)[:k] if k < len(squared) else \
            np.arange(len(squared))
        candidates = candidates[np.argsort(squared[candidates])]
        best = candidates[0]
        first = self.owners[best]
        second = math.inf
        for i in candidates[1:]:
            if self.owners[i] != first:
                second = math.sqrt(max(float(squared[i]), 0.0))
                break
        return self.member_ids[first], math.sqrt(max(float(squared[best]), 0.0)), second

    def identify(self, query: np.ndarray, *, tolerance: float, margin: float) -> Match:
        member, distance, runner_up = self.nearest(query)
        if member is None:
            return Match(None, distance, runner_up, "no_members")
        if distance > tolerance:
            return Match(None, distance, runner_up, "unknown")
        if runner_up - distance < margin:
            return Match(None, distance, runner_up, "ambiguous")
        return Match(member, distance, runner_up)


def yaw_ratio(points) -> float:
    """The head-turn measure from dlib's 5 landmarks [(x, y)] (two eye corners each, then the
    base of the nose): the nose's offset from the eyes' midpoint along the eye line, in eye
    distances. 0 facing the camera; its sign says which way the head is turned."""
    p = np.asarray(points, dtype=np.float64)
    eye_a, eye_b = (p[0] + p[1]) / 2, (p[2] + p[3]) / 2
    axis = eye_b - eye_a
    span = float(axis @ axis)
    if span == 0.0:
        return 0.0
    return float((p[4] - (eye_a + eye_b) / 2) @ axis / span)


@dataclass(frozen=True)
class LivenessRules:
    turn_span: float = 0.2
    attempt_seconds: float = 8.0
    max_gap: float = 1.5
    min_frames: int = 3


@dataclass
class Attempt:
    member_id: str
    started: float
    last_seen: float
    yaws: list[float] = field(default_factory=list)

    @property
    def span(self) -> float:
        return max(self.yaws) - min(self.yaws)


@dataclass(frozen=True)
class Verdict:
    """What one frame settled: a live member, or an attempt that failed (and why)."""
    outcome: str               # "live" or "failed"
    member_id: str
    reason: str = ""           # for failed: not_live, face_changed
    span: float = 0.0


class LivenessCheck:
    """Follows one face across frames. `observe` takes each analysed frame's result (the named
    member or None when a face was seen but not named, and its yaw); `nothing_seen` takes frames
    with no face. Both return a Verdict when an attempt ends, else None."""

    def __init__(self, rules: LivenessRules):
        self.rules = rules
        self.attempt: Attempt | None = None

    def observe(self, now: float, member_id: str | None, yaw: float) -> Verdict | None:
        verdict = self._expire(now)
        if verdict is not None:
            return verdict
        a = self.attempt
        if member_id is None:
            return None        # unnamed frames neither help nor break an attempt
        if a is not None and a.member_id != member_id:
            # Another member in the same attempt: a swapped photograph, or two people. Start over.
            self.attempt = Attempt(member_id, now, now, [yaw])
            return Verdict("failed", a.member_id, "face_changed", a.span)
        if self.attempt is None:
            self.attempt = Attempt(member_id, now, now, [])
        a = self.attempt
        a.yaws.append(yaw)
        a.last_seen = now
        if len(a.yaws) >= self.rules.min_frames and a.span >= self.rules.turn_span:
            self.attempt = None
            return Verdict("live", a.member_id, span=a.span)
        return None

    def nothing_seen(self, now: float) -> Verdict | None:
        return self._expire(now)

    def _expire(self, now: float) -> Verdict | None:
        a = self.attempt
        if a is None:
            return None
        if now - a.last_seen > self.rules.max_gap:
            # The face went away: someone walking past, not an attempt to get in. No failure.
            self.attempt = None
            return None
        if now - a.started > self.rules.attempt_seconds:
            self.attempt = None
            return Verdict("failed", a.member_id, "not_live", a.span)
        return None

    @property
    def checking(self) -> bool:
        """A member has been named and the head turn is awaited (the screen prompts for it)."""
        return self.attempt is not None


class FailedAttempts:
    """Rate limit: `max_failures` failed attempts for one member within `window` seconds pause
    that member's face unlock for `pause` seconds; twice that many across all members pause face
    unlock for everyone. QR codes are never affected."""

    def __init__(self, max_failures: int, window: float, pause: float):
        self.max_failures, self.window, self.pause = max_failures, window, pause
        self._failures: dict[str, deque[float]] = {}
        self._all: deque[float] = deque()
        self._paused: dict[str, float] = {}      # member (or "*") -> until

    def paused_until(self, member_id: str, now: float) -> float | None:
        for key in (member_id, "*"):
            until = self._paused.get(key)
            if until is not None and now < until:
                return until
        return None

    def failed(self, member_id: str, now: float) -> list[str]:
        """Count a failure; return the keys newly paused (a member id, or "*" for everyone)."""
        newly = []
        for key, times, limit in ((member_id, self._failures.setdefault(member_id, deque()),
                                   self.max_failures), ("*", self._all, 2 * self.max_failures)):
            times.append(now)
            while times and now - times[0] > self.window:
                times.popleft()
            if len(times) >= limit and self.paused_until(key, now) is None:
                self._paused[key] = now + self.pause
                times.clear()
                newly.append(key)
        return newly

    def snapshot(self, now: float) -> dict[str, float]:
        return {key: round(until - now, 1) for key, until in self._paused.items() if until > now}

    def reset(self) -> None:
        """A technician has looked: every pause lifted, every count back to zero."""
        self._failures.clear()
        self._all.clear()
        self._paused.clear()
