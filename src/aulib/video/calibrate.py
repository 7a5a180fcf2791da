"""Per-person calibration of AU features (OpenFace-style neutral subtraction)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from aulib.video.track import RecentTracks

# Tracks whose window a streaming calibrator keeps (the most recently seen; ``window`` × features float32,
# ≈ 9 MB each): more faces at once than this is a crowd, and a track not among them is gone.
KEEP_TRACKS = 16
# Two-pass calibration needs a track this long (seconds) to find a resting face in it: split tracks of 1–9
# frames (a hand-held clip once gave one person 14 ids) had each's smile subtracted as its neutral face.
MIN_TRACK_S = 2.0


class NeutralCalibrator:
    """Per-person feature normalisation: ``X − neutral(face id) + population mean``.

    The neutral estimate is the element-wise median of that face's feature vectors over its
    *least expressive* frames: the ``rest_fraction`` of frames with the lowest uncalibrated AU
    intensity sum (``scores``). OpenFace takes the median over all frames, which assumes people
    are at rest most of the time; in the samples they are not (single_face.mp4 smiles for 75 % of
    the clip), and subtracting a smile turns the resting frames into "anti-smiles" (AU09/AU05 up).
    ``rest_fraction=1`` gives the plain OpenFace median.

    ``mode="video"``: :meth:`video_offsets` on all vectors at once (two-pass); a track seen for less than
    ``min_track_s`` seconds is left uncalibrated: its least expressive frames are whatever it shows (a person
    seen for half a second while smiling had the smile subtracted as her neutral face). ``mode="running"``:
    :meth:`running` keeps the last ``window`` vectors of each face, refreshes the estimate every
    ``refresh`` frames and leaves a track uncalibrated until it holds ``min_samples`` frames spanning
    ``min_track_s`` seconds (with ten frames alone, a still smile was subtracted as the person's neutral face
    a third of a second into the track, AU12_r 3.65 → 1.0, against what ``--help`` says of short tracks).
    """

    def __init__(self, mean: np.ndarray, mode: Literal["video", "running"] = "video", window: int = 300,
                 refresh: int = 10, min_samples: int = 10, rest_fraction: float = 0.3,
                 min_track_s: float = MIN_TRACK_S) -> None:
        self.mean = np.asarray(mean, np.float32)
        self.min_track_s = min_track_s
        self.mode = mode
        self.window, self.refresh, self.min_samples = window, refresh, min_samples
        self.rest_fraction = rest_fraction
        self._buf: dict[int, np.ndarray] = {}
        self._scores: dict[int, np.ndarray] = {}
        self._n: dict[int, int] = {}
        self._neutral: dict[int, np.ndarray] = {}
        self._first: dict[int, float] = {}  # running: when each track was first seen (seconds)
        self._recent = RecentTracks(KEEP_TRACKS)  # running: which tracks keep their window

    def neutral(self, X: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
        """Median of the rows of ``X`` whose ``scores`` are in the lowest ``rest_fraction``."""
        if scores is None or self.rest_fraction >= 1 or len(X) < 3:
            return np.median(X, axis=0)
        k = max(min(len(X), self.min_samples // 2 or 1), int(np.ceil(self.rest_fraction * len(X))))
        idx = np.argsort(scores, kind="stable")[:k]
        return np.median(X[idx], axis=0)

    def running(self, X: np.ndarray, ids: list[int], scores: np.ndarray | None = None,
                times: Sequence[float] | None = None) -> np.ndarray:
        """Calibrate rows of ``X`` (one per face, ids given, at ``times`` seconds) with the estimate from past
        frames (without ``times``, only the frame count decides when a track is calibrated)."""
        out = X.copy()
        sc = np.zeros(len(X), np.float32) if scores is None else np.asarray(scores, np.float32)
        for tid in ids:
            self._recent.touch(tid)
        # a stream meets new track ids without end (a scene cut starts new ones): only the most recently
        # seen KEEP_TRACKS keep their window of vectors (≈ 9 MB each), so memory stays bounded
        # (never the faces of this call: a crowd larger than KEEP_TRACKS keeps them all)
        self._recent.trim(self._buf, self._scores, self._n, self._neutral, self._first, at_least=len(set(ids)))
        for j, tid in enumerate(ids):
            buf = self._buf.get(tid)
            if buf is None:
                buf = self._buf[tid] = np.empty((self.window, X.shape[1]), np.float32)
                self._scores[tid] = np.empty(self.window, np.float32)
                self._n[tid] = 0
            n = self._n[tid]
            buf[n % self.window] = X[j]
            self._scores[tid][n % self.window] = sc[j]
            n = self._n[tid] = n + 1
            now = None if times is None else float(times[j])
            long_enough = now is None or now - self._first.setdefault(tid, now) >= self.min_track_s
            if n >= self.min_samples and long_enough:
                if tid not in self._neutral or n % self.refresh == 0:
                    m = min(n, self.window)
                    self._neutral[tid] = self.neutral(buf[:m], None if scores is None else self._scores[tid][:m])
                out[j] = X[j] - self._neutral[tid] + self.mean
        return out

    def video_offsets(self, X: np.ndarray, ids: np.ndarray, scores: np.ndarray | None = None,
                      times: np.ndarray | None = None) -> np.ndarray:
        """Two-pass: ``X`` calibrated with each face's neutral estimate over the whole video; with ``times``
        (seconds, per row), the rows of a track that spans less than ``min_track_s`` as they are."""
        out = X.copy()
        for tid in np.unique(ids):
            m = ids == tid
            if times is not None and float(np.ptp(times[m])) < self.min_track_s:
                continue
            out[m] = X[m] - self.neutral(X[m], None if scores is None else scores[m]) + self.mean
        return out


def calibration_mode(calibrate: object) -> Literal["video", "running"] | None:
    """The calibration ``calibrate`` asks for (None: none); ValueError for a value it cannot be."""
    if isinstance(calibrate, np.bool_):  # as the other flags take numpy's bools (np.True_ was refused)
        calibrate = bool(calibrate)
    mode = "video" if calibrate is True else calibrate
    if mode not in (False, None, "video", "running"):
        raise ValueError(f"calibrate must be False, True, 'video' or 'running', not {calibrate!r}")
    return mode or None  # type: ignore[return-value]
