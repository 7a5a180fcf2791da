"""Steady traces for video: smoothing of each face track's AU intensities and head pose along time.

Per-frame AU intensities from single frames jitter (on ``WolfgangLanger_Pexels.mp4`` the median over AUs
of mean |x[t+1] − x[t]| / std(x) was 0.26 against OpenFace's 0.064), while facial actions change over
hundreds of milliseconds. Two filters, both per track (``face`` id) and per column:

* :class:`TraceSmoother` (offline files, the default for video): a zero-phase Gaussian kernel over
  time, ``sigma`` seconds. Symmetric, so it cannot make a trace trail its events (lag 0 frames by
  construction, measured by cross-correlation in the tests); missing frames and the ends of a track
  simply get less weight (Nadaraya–Watson normalisation), so gaps do not pull values towards 0.
  Streaming: rows come in and go out in frame order; a row leaves once every row within ``3·sigma``
  after it has arrived, so memory is bounded by that look-ahead (a few frames × faces), never the video.
* :class:`OneEuroSmoother` (live streams, ``smooth="causal"``): the One Euro filter (Casiez, Roussel &
  Vogel, CHI 2012), causal: output at once, little smoothing while a trace moves fast (small lag at
  onsets), strong smoothing while it is still.

What is smoothed: the AU models' intensities (``AUxx_r``), the head pose (``pose_*``) and the gaze
(``gaze_*``, with half the sigma: one frame at 25 fps takes the iris network's frame-to-frame noise down
to OpenFace's level while a saccade, 2–3 frames, stays a step; the gaze vectors are made unit length
again afterwards and the gaze angles computed from them, :class:`aulib.table.CoherentRows`). The head's
rotation angles are averaged as angles: they wrap at ±π, and a face upside down reads +3.13 and −3.13
rad in turn, whose plain mean (0) would turn it upright. Left raw:
occurrences (``_c``: decisions of their own classifiers), emotion outputs, landmarks, and blink
(``AU45``: a blink lasts 2–4 frames, which any smoothing that steadies the AUs would erase).
"""

from __future__ import annotations

import math
import numbers
from collections import defaultdict, deque
from collections.abc import Sequence

import numpy as np

from aulib.video.track import RecentTracks

# Gaussian sigma in seconds for offline smoothing: about 2 frames at 24–30 fps. Chosen on the Pexels
# clip (see tests/test_video.py and the README): jitter 0.26 → below OpenFace's 0.064 while the
# correlation with OpenFace's AU traces rises; wider kernels flatten short expressions.
DEFAULT_SIGMA_S = 0.08


def check_sigma(sigma_s: object, name: str = "smoothing sigma") -> None:
    """ValueError naming ``name`` unless ``sigma_s`` is a positive, finite number of seconds (a string,
    None or NaN too)."""
    if isinstance(sigma_s, bool) or not isinstance(sigma_s, numbers.Real) or not (sigma_s > 0
                                                                                 and math.isfinite(sigma_s)):
        raise ValueError(f"{name} must be a positive number of seconds, not {sigma_s!r}")


def _key(row: dict) -> int | None:
    """Track of a row, or None for rows that are not a successful face (passed through untouched)."""
    return int(row["face"]) if row.get("success") else None


class TraceSmoother:
    """Zero-phase Gaussian smoothing of ``columns`` per track, streaming in frame order.

    :meth:`push` takes rows (dicts as :mod:`aulib.table` builds them, frame order) and returns those
    whose window is complete; :meth:`finish` returns the rest. Rows are updated in place.
    """

    def __init__(self, columns: Sequence[str], sigma_s: float = DEFAULT_SIGMA_S,
                 scale: Sequence[float] | None = None, unit_vectors: Sequence[Sequence[str]] = (),
                 angles: Sequence[str] = ()) -> None:
        """``scale``: per column, a factor on ``sigma_s`` (default 1); ``unit_vectors``: groups of
        columns that hold a unit vector, renormalised after smoothing; ``angles``: columns in radians
        that wrap at ±π, averaged as angles (:func:`_unwrap`)."""
        check_sigma(sigma_s)
        self.columns = list(columns)
        self.sigma = float(sigma_s)
        self.sigmas = self.sigma * (np.ones(len(self.columns)) if scale is None else np.asarray(scale, np.float64))
        if self.sigmas.shape != (len(self.columns),) or not (self.sigmas > 0).all():
            raise ValueError("scale needs one positive factor per column")
        self.unit_vectors = [list(g) for g in unit_vectors]
        self.angles = _angle_mask(self.columns, angles)
        self.radius = 3.0 * float(self.sigmas.max())
        self._rows: deque[dict] = deque()  # rows not handed out yet, frame order
        self._hist: dict[int, deque[tuple[float, np.ndarray]]] = defaultdict(deque)  # raw values per track
        self._latest = -math.inf

    def _values(self, row: dict) -> np.ndarray:
        return np.array([row.get(c, np.nan) for c in self.columns], np.float64)

    def push(self, rows: Sequence[dict]) -> list[dict]:
        for r in rows:
            t = float(r.get("timestamp") or 0.0)
            self._latest = max(self._latest, t)
            k = _key(r)
            if k is not None:
                self._hist[k].append((t, self._values(r)))
            self._rows.append(r)
        return self._release(final=False)

    def finish(self) -> list[dict]:
        return self._release(final=True)

    def _release(self, final: bool) -> list[dict]:
        out: list[dict] = []
        while self._rows:
            r = self._rows[0]
            t0 = float(r.get("timestamp") or 0.0)
            if not final and t0 + self.radius > self._latest:
                break
            self._rows.popleft()
            k = _key(r)
            if k is not None:
                self._smooth(r, t0, self._hist[k])
            out.append(r)
        self._prune()
        return out

    def _smooth(self, row: dict, t0: float, hist: deque[tuple[float, np.ndarray]]) -> None:
        ts = np.array([t for t, _ in hist])
        near = np.abs(ts - t0) <= self.radius + 1e-9
        if not near.any():
            return
        own = self._values(row)
        x = _unwrap(np.stack([v for (_, v), n in zip(hist, near) if n]), own, self.angles)
        dt = (ts[near] - t0)[:, None]
        w = np.where(np.abs(dt) <= 3.0 * self.sigmas + 1e-9, np.exp(-0.5 * (dt / self.sigmas) ** 2), 0.0)
        ok = np.isfinite(x)
        num = np.where(ok, x, 0.0) * w
        den = (ok * w).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            sm = _wrap(num.sum(axis=0) / den, self.angles)
        for c, v, o in zip(self.columns, sm, own):
            if np.isfinite(o) and np.isfinite(v):
                row[c] = float(v)
        _renormalise(row, self.unit_vectors)

    def _prune(self) -> None:
        """Drop history older than the oldest pending row's window (all of it once nothing is pending)."""
        oldest = float(self._rows[0].get("timestamp") or 0.0) if self._rows else math.inf
        for k in list(self._hist):
            h = self._hist[k]
            while h and h[0][0] < oldest - self.radius - 1e-9:
                h.popleft()
            if not h:
                del self._hist[k]


def _renormalise(row: dict, unit_vectors: Sequence[Sequence[str]]) -> None:
    """Make each group of ``unit_vectors`` columns of ``row`` unit length again after smoothing, in place
    (smoothing each component on its own shortens a turning vector)."""
    for group in unit_vectors:
        v = np.array([row.get(c, np.nan) for c in group], np.float64)
        n = float(np.linalg.norm(v))
        if np.isfinite(n) and n > 0:
            row.update(zip(group, (v / n).tolist()))


# Tracks whose One Euro state a causal smoother keeps (the most recently seen): a live stream meets new
# track ids without end, and a track not seen among the last this-many is long gone.
KEEP_TRACKS = 256


def _angle_mask(columns: Sequence[str], angles: Sequence[str]) -> np.ndarray:
    return np.array([c in set(angles) for c in columns], bool)


def _wrap(x: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """``x`` with its angle entries (``angles`` mask, last axis) brought back into [−π, π)."""
    if not angles.any():
        return x
    return np.where(angles, (x + math.pi) % (2 * math.pi) - math.pi, x)


def _unwrap(x: np.ndarray, ref: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """``x`` with each angle entry moved by whole turns to within π of ``ref``'s (where that is known):
    the mean of +3.13 and −3.13 rad is then ±π (a head upside down), not 0 (upright)."""
    if not angles.any():
        return x
    near = ref + _wrap(x - ref, angles)
    return np.where(angles & np.isfinite(ref), near, x)


class _OneEuro:
    """One Euro filter state for one track (vector of columns)."""

    def __init__(self, min_cutoff: float, beta: float, d_cutoff: float, angles: np.ndarray | None = None) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.angles = np.zeros(0, bool) if angles is None else angles
        self.t: float | None = None
        self.x: np.ndarray | None = None
        self.dx: np.ndarray | None = None

    @staticmethod
    def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray:
        tau = 1.0 / (2 * math.pi * np.asarray(cutoff))
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, t: float, x: np.ndarray) -> np.ndarray:
        if self.x is None or self.t is None or t <= self.t:
            self.t, self.x, self.dx = t, x.copy(), np.zeros_like(x)
            return x
        dt = t - self.t
        x = _unwrap(x, self.x, self.angles)  # follow an angle across ±π from the filtered value (wrapped back below)
        prev = np.where(np.isfinite(self.x), self.x, x)
        dx = (x - prev) / dt
        a_d = self._alpha(self.d_cutoff, dt)
        dx_hat = np.where(np.isfinite(dx), a_d * dx + (1 - a_d) * self.dx, self.dx)
        cutoff = self.min_cutoff + self.beta * np.abs(dx_hat)
        a = self._alpha(cutoff, dt)
        out = np.where(np.isfinite(x), a * x + (1 - a) * prev, prev)
        self.t, self.x, self.dx = t, out, dx_hat
        return _wrap(np.where(np.isfinite(x), out, x), self.angles)


class OneEuroSmoother:
    """Causal One Euro filtering of ``columns`` per track: rows go out as they come in (live use).

    ``min_cutoff`` (Hz) sets the smoothing of a still trace, ``beta`` how quickly it opens up when
    the trace moves (units of the columns per second: AU intensities 0–5, radians, mm).
    """

    def __init__(self, columns: Sequence[str], min_cutoff: float = 1.5, beta: float = 0.3,
                 d_cutoff: float = 1.0, angles: Sequence[str] = (), unit_vectors: Sequence[Sequence[str]] = ()) -> None:
        """``angles``: columns in radians that wrap at ±π, filtered as angles; ``unit_vectors``: groups of
        columns that hold a unit vector, renormalised after filtering."""
        self.columns = list(columns)
        self.params = (min_cutoff, beta, d_cutoff)
        self.angles = _angle_mask(self.columns, angles)
        self.unit_vectors = [list(g) for g in unit_vectors]
        self._state: dict[int, _OneEuro] = {}
        self._recent = RecentTracks(KEEP_TRACKS)

    def push(self, rows: Sequence[dict]) -> list[dict]:
        tracks = set()
        for r in rows:
            k = _key(r)
            if k is None:
                continue
            tracks.add(k)
            f = self._state.setdefault(k, _OneEuro(*self.params, angles=self.angles))
            self._recent.touch(k)
            x = np.array([r.get(c, np.nan) for c in self.columns], np.float64)
            y = f(float(r.get("timestamp") or 0.0), x)
            for c, v in zip(self.columns, y):
                if np.isfinite(v):
                    r[c] = float(v)
            _renormalise(r, self.unit_vectors)
        self._recent.trim(self._state, at_least=len(tracks))
        return list(rows)

    def finish(self) -> list[dict]:
        return []
