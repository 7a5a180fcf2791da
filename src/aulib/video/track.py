"""Stable face ids across video frames: match each frame's boxes to the previous ones.

Video analysis detects faces only every k frames (the detector is the most expensive stage) and
follows each face in between through its own landmarks. Whenever detection runs, the new boxes
are matched to the known tracks so that the person who was ``face 0`` stays ``face 0``: greedy
matching on intersection-over-union, falling back to centre distance for fast motion (a face that
moved more than its overlap allows is still the nearest face of similar size). Tracks that are
not seen are kept for ``max_missed`` frames so a face hidden for a moment (a hand, a turned head)
gets its old id back instead of a new one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from aulib.face.detect import iou


@dataclass
class Track:
    """One followed face: id, last display box (x, y, w, h), last landmarks and detection score.

    ``extra`` holds whatever else the follower needs (:mod:`aulib.video` keeps the detector's
    boxes there, anchored to the face's aligned-crop coordinates).
    """

    id: int
    box: np.ndarray
    landmarks: np.ndarray | None
    score: float
    last_frame: int
    extra: dict = field(default_factory=dict)


def centre_gap(a: np.ndarray, b: np.ndarray) -> float:
    """Distance between the centres of boxes ``a`` and ``b`` (x, y, w, h), in sides of the larger box."""
    side = max(a[2], a[3], b[2], b[3], 1e-6)
    return float(np.hypot(a[0] + a[2] / 2 - b[0] - b[2] / 2, a[1] + a[3] / 2 - b[1] - b[3] / 2) / side)


def _centre_close(a: np.ndarray, b: np.ndarray) -> float:
    """Similarity in [0, 1) for boxes of comparable size whose centres are within one box side."""
    size_ratio = min(a[2], b[2]) / max(a[2], b[2], 1e-6)
    d = centre_gap(a, b)
    return float(max(0.0, 1.0 - d)) if size_ratio > 0.5 and d < 1.0 else 0.0


class FaceTracker:
    """Assigns persistent ids to detections; keeps tracks alive ``max_missed`` frames unseen."""

    def __init__(self, min_iou: float = 0.3, max_missed: int = 60) -> None:
        self.min_iou = min_iou
        self.max_missed = max_missed
        self.tracks: dict[int, Track] = {}
        self._next = 0

    def active(self, frame: int) -> list[Track]:
        """Tracks seen in ``frame`` (the faces to follow into the next frame), by id."""
        return [t for t in sorted(self.tracks.values(), key=lambda t: t.id) if t.last_frame == frame]

    def assign(self, boxes: list[np.ndarray], frame: int,
               compatible: Callable[[int, Track], bool] | None = None) -> list[int]:
        """Ids for the boxes detected in ``frame`` (matched to known tracks or new).

        Greedy on the best pair first: IoU ≥ ``min_iou`` wins, otherwise nearby centres of
        similar-size boxes (scored below every IoU match). Each track is used at most once.
        ``compatible(i, track)``: whether box ``i`` may continue ``track`` at all (the follower passes
        whether the face looks like the track's last one: position alone gave two people who swapped
        places each other's id).
        """
        self._expire(frame)
        cands = list(self.tracks.values())
        pairs = []
        for i, b in enumerate(boxes):
            for t in cands:
                if compatible is not None and not compatible(i, t):
                    continue
                o = iou(b, t.box)
                s = 1.0 + o if o >= self.min_iou else 0.5 * _centre_close(b, t.box)
                if s > 0:
                    pairs.append((s, i, t.id))
        ids: list[int | None] = [None] * len(boxes)
        used: set[int] = set()
        for _, i, tid in sorted(pairs, key=lambda p: -p[0]):
            if ids[i] is None and tid not in used:
                ids[i] = tid
                used.add(tid)
        out = []
        for i in range(len(boxes)):
            if ids[i] is None:
                ids[i] = self._next
                self._next += 1
            out.append(int(ids[i]))  # type: ignore[arg-type]
        return out

    def update(self, tid: int, box: np.ndarray, landmarks: np.ndarray | None, score: float, frame: int) -> Track:
        """Record where face ``tid`` is in ``frame`` (creating the track if new)."""
        t = self.tracks.get(tid)
        if t is None:
            t = self.tracks[tid] = Track(tid, np.asarray(box, np.float32), landmarks, score, frame)
        else:
            t.box, t.landmarks, t.score, t.last_frame = np.asarray(box, np.float32), landmarks, score, frame
        return t

    def end(self, tid: int) -> None:
        """Forget track ``tid`` (its face was cut away): a face detected there gets a new id."""
        self.tracks.pop(tid, None)

    def _expire(self, frame: int) -> None:
        for tid in [tid for tid, t in self.tracks.items() if frame - t.last_frame > self.max_missed]:
            del self.tracks[tid]


class RecentTracks:
    """Which tracks were used most recently, so a stream's per-track state stays bounded: a live stream
    meets new track ids without end (every scene cut starts new ones). :meth:`touch` each track as it is
    used, then :meth:`trim` the state dicts to the ``keep`` most recently used tracks."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._last: dict = {}  # track → when it was last used (a running count)
        self._n = 0

    def touch(self, track: object) -> None:
        self._n += 1
        self._last[track] = self._n

    def trim(self, *states: dict, at_least: int = 0) -> None:
        """Forget, in every ``states`` dict, the tracks beyond the ``max(keep, at_least)`` most recently
        used (``at_least``: the tracks of the batch in hand, which are never forgotten)."""
        keep = max(self.keep, at_least)
        if len(self._last) <= keep:
            return
        for tid in sorted(self._last, key=self._last.__getitem__)[: len(self._last) - keep]:
            del self._last[tid]
            for state in states:
                state.pop(tid, None)
