"""Blink / eye closure (OpenFace's ``AU45_r`` and ``AU45_c``) from the eye aspect ratio of the 68 landmarks.

The eye aspect ratio (EAR, Soukupová & Čech, "Real-time eye blink detection using facial landmarks",
CVWW 2016) of one eye is ``(|p2 − p6| + |p3 − p5|) / (2 |p1 − p4|)`` over its six iBUG points; aulib uses
the mean of both eyes. It is scale- and in-plane-rotation-invariant and costs nothing beyond the
landmarks every face already has. Why not MediaPipe's eyeBlink blendshape: it needs a second landmark
network (≈ 9 ms per frame), and it scores squinting smiles 0.16–0.29 against 0.55–0.6 for a blink.

Mapping, measured on dlib fits of the sample clips (eye crops of every frame checked by eye):
open eyes EAR 0.23–0.34 (1st percentile 0.20), blink frames 0.10–0.20, eyes shut 0.04–0.17. So
``AU45_r = 5 · clip((EAR_OPEN − EAR) / (EAR_OPEN − EAR_SHUT), 0, 1)`` with ``EAR_OPEN = 0.30``,
``EAR_SHUT = 0.10`` (0 = wide open, 5 = shut, the 0–5 scale of the other intensities) and
``AU45_c = EAR < EAR_CLOSED`` (0.21, i.e. ``AU45_r`` above 2.25); in a still image ``EAR < 0.15`` while AU06
(cheek raiser) or AU07 (lid tightener) is present: they narrow the eyes of a smile or a squint to 0.18–0.22
without closing them (:data:`EAR_CLOSED_NARROWED`; video keeps 0.21, see there). Limits: looking down lowers the
upper lid and reads as partly closed (as OpenFace's AU45 does); people with narrow eyes read partly closed —
with open eyes near EAR 0.21, closed in every frame, so their blinks cannot be counted.

**Per person, with ``--calibrate``** (two-pass video, :func:`personal_blinks`): each face's open level
is its own, the 80th percentile of its EAR over the whole track (eyes are open most of the time),
capped at the population's 0.30 and floored at 0.22; the shut and closed levels scale with it (÷3,
×0.7, the population ratios). Whole track, not a running window: WolfgangLanger_Pexels.mp4 opens with
6 s of closed eyes, which a window looking back 10 s took for the man's open level (breaking that
closure up and losing the next blink); and a centred window would hold every streamed row back by its
half-width. The two-pass mode holds the whole video anyway. On both sample clips every level is the
population's (their 80th percentiles reach 0.30), so AU45 is unchanged.

**Live / streaming, with ``calibrate="running"``** (:class:`RunningOpenLevels`): the same level from the
frames seen so far, once a track is 10 s old (the population's before), so a narrow-eyed person's blinks
are counted in a stream too.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from aulib.face.landmarks import checked_points
from aulib.face.record import Face

EAR_OPEN = 0.30
EAR_SHUT = 0.10
EAR_CLOSED = 0.21
# In a still image, while the cheek raiser (AU06) or the lid tightener (AU07) narrows the eyes — a Duchenne
# smile, a squint — the eyes count as closed only below this: 4 of the 7 smiling faces of the sample photos,
# eyes visibly open, read AU45_c = 1 at EAR 0.18–0.21 (all seven 0.18–0.22), while shut eyes measured
# 0.04–0.17. Not in video: there a blink during a smile (WolfgangLanger_Pexels.mp4, frame 202) and eyes
# squeezed shut in pain (AU06 + AU07 + closure, frames 0–140, EAR 0.15–0.21 in dlib's fit) are closures the
# per-frame threshold must see, and a blink is a video's event anyway.
EAR_CLOSED_NARROWED = 0.15
NARROWING_AUS = (6, 7)
RIGHT_EYE = slice(36, 42)  # the subject's right eye (image left), iBUG order
LEFT_EYE = slice(42, 48)


# An eye behind dark glasses (or in deep shadow, under a hand) shows the iris network no iris, yet it places
# one: the sunglasses face of multi_face.jpg read 72° down. The middle of such an eye crop (where iris and
# sclera are) is both dark and flat against the face: mean below HIDDEN_DARK × the face's median gray and
# 5–95 % range below HIDDEN_FLAT × it. Measured (ratios to the face median): the sunglasses 0.32 / 0.21 and
# 0.37 / 0.28; every eye of the sample videos ≥ 0.59 / ≥ 0.68 (1232 eyes); 0.6 % of FER2013Valid eyes fall
# below both (a hand over the eye, deep shadow, a profile's far eye).
HIDDEN_DARK = 0.5
HIDDEN_FLAT = 0.35


def hidden_eyes(face: Face) -> np.ndarray:
    """``(2,)`` bool: which of the face's eye crops shows no eye (:data:`HIDDEN_DARK`, :data:`HIDDEN_FLAT`):
    dark glasses, a hand, deep shadow. Both False when the face has no crops to tell from."""
    if face.eyes is None or face.masked is None or face.mask is None:
        return np.zeros(2, bool)
    skin = float(np.median(face.masked[::2, ::2][face.mask[::2, ::2]])) if face.mask.any() else 0.0
    if skin <= 0:
        return np.zeros(2, bool)
    middle = np.ascontiguousarray(face.eyes[:, 20:44, 12:52])  # the crops' centres: iris and sclera
    if middle.ndim == 4 and middle.shape[3] == 3:  # both crops as one image: one conversion
        gray = cv2.cvtColor(middle.reshape(48, 40, 3), cv2.COLOR_RGB2GRAY).reshape(2, -1)
    else:
        gray = middle.reshape(2, 24 * 40, -1)[..., 0]
    ranked = np.sort(gray, axis=1)  # 5th and 95th percentiles by rank (np.percentile: 6× the time)
    n = ranked.shape[1] - 1
    spread = ranked[:, round(0.95 * n)].astype(np.float64) - ranked[:, round(0.05 * n)]
    return (gray.mean(axis=1) < HIDDEN_DARK * skin) & (spread < HIDDEN_FLAT * skin)


def eye_aspect_ratios(landmarks: np.ndarray) -> np.ndarray:
    """``(2,)`` eye aspect ratio of each eye of 68 landmarks (subject's right eye, i.e. points 36–41,
    first; NaN for an eye with no width)."""
    pts = checked_points(landmarks, finite=False)
    out = np.full(2, np.nan)
    for k, sl in enumerate((RIGHT_EYE, LEFT_EYE)):
        e = pts[sl]
        width = np.linalg.norm(e[0] - e[3])
        if np.isfinite(width) and width > 0:
            out[k] = (np.linalg.norm(e[1] - e[5]) + np.linalg.norm(e[2] - e[4])) / (2.0 * width)
    return out


def eye_aspect_ratio(landmarks: np.ndarray) -> float:
    """Mean eye aspect ratio of both eyes of 68 landmarks (NaN when an eye has no width)."""
    return float(np.mean(eye_aspect_ratios(landmarks)))


def closure(ear: float, open_level: float = EAR_OPEN, narrowed: bool = False) -> tuple[float, int]:
    """(``AU45_r`` 0–5, ``AU45_c`` 0/1) of an eye aspect ratio; (NaN, 0) for NaN.

    ``open_level``: the EAR of this person's open eyes (default: the population's); the shut and
    closed levels scale with it (:func:`person_open_level`). ``narrowed``: AU06 or AU07 is present
    (:func:`narrowed`), whose narrowing is not a closure: closed below :data:`EAR_CLOSED_NARROWED`."""
    if not np.isfinite(ear):
        return float("nan"), 0
    scale = open_level / EAR_OPEN
    r = 5.0 * float(np.clip((open_level - ear) / (open_level - EAR_SHUT * scale), 0.0, 1.0))
    return r, int(ear < (EAR_CLOSED_NARROWED if narrowed else EAR_CLOSED) * scale)


def narrowed(face: Face) -> bool:
    """Whether an AU that narrows the eyes without closing them (:data:`NARROWING_AUS`) is present in the face
    as the AU models read it (False before they ran)."""
    if face.au_occurrence is None:
        return False
    present = {a for a, c in zip(face.aus, face.au_occurrence) if c}
    return any(a in present for a in NARROWING_AUS)


# Per person (``--calibrate`` video): the open-eye level is the 80th percentile of the face's EAR over its
# whole track (eyes are open most of the time), never above the population's (a wide-eyed person keeps
# the population mapping) nor below OPEN_FLOOR (a person whose eyes stay shut still reads shut).
OPEN_PERCENTILE = 80.0
OPEN_FLOOR = 0.22


def person_open_level(ears: np.ndarray) -> float:
    """The open-eye EAR of one person from the EARs of their frames (the population's when none)."""
    ears = np.asarray(ears, np.float64)
    ears = ears[np.isfinite(ears)]
    if not len(ears):
        return EAR_OPEN
    return float(np.clip(np.percentile(ears, OPEN_PERCENTILE), OPEN_FLOOR, EAR_OPEN))


def personal_blinks(faces: Sequence[Face], times: Sequence[float] | None = None, min_span: float = 0.0) -> None:
    """Re-read ``Face.blink`` of every face of a whole video against its track's own open-eye level
    (:func:`person_open_level` of ``Face.extra["ear"]`` over the faces with the same ``id``), in place;
    the level used is kept in ``Face.extra["ear_open"]``. With ``times`` (seconds, one per face), a track
    spanning less than ``min_span`` seconds keeps the population's level: whatever its eyes showed became its
    "open" level (a 1-frame clip's AU45_r 2.04 → 0.05; 1.2 s of shut eyes 4.6 → 3.6)."""
    tracks: dict[object, list[Face]] = {}
    spans: dict[object, list[float]] = {}
    for i, f in enumerate(faces):
        if f.success and np.isfinite(f.extra.get("ear", np.nan)):
            tracks.setdefault(f.id, []).append(f)
            if times is not None:
                spans.setdefault(f.id, []).append(float(times[i]))
    for tid, group in tracks.items():
        if times is not None and np.ptp(spans[tid]) < min_span:
            continue
        level = person_open_level(np.array([f.extra["ear"] for f in group]))
        for f in group:
            f.extra["ear_open"] = level
            f.blink = np.array(closure(f.extra["ear"], level), np.float64)


# Live / streaming (``calibrate="running"``): a causal estimate of the same level. Each track's EARs go
# into a fixed histogram (constant memory on an endless stream); the level is its 80th percentile once
# the track has RUNNING_MIN_SECONDS of frames, the population's before. Ten seconds, not one: a track
# that opens with closed eyes (WolfgangLanger_Pexels.mp4: the first 6 s) must not take its closed level
# for its open one; after 10 s the top fifth of its frames are open ones unless the eyes were shut
# for more than 8 of them, and then the floor still keeps shut eyes reading shut.
RUNNING_MIN_SECONDS = 10.0
_BIN = 0.0025  # EAR histogram bin width (the level is read to a quarter of a hundredth)
_BINS = int(round(0.6 / _BIN))  # EARs above 0.6 (not an eye) go in the last bin


KEEP_TRACKS = 256  # tracks whose histogram a stream keeps (the most recently seen)


class RunningOpenLevels:
    """Causal per-track open-eye levels for streams (:func:`person_open_level`, from the past only).

    ``update(faces, time)`` adds the EARs of one frame's faces (in frame order) and re-reads their
    ``Face.blink`` against their own level so far, in place; the level used is kept in
    ``Face.extra["ear_open"]``. Memory: one 240-bin histogram and a start time per track.
    """

    def __init__(self, min_seconds: float = RUNNING_MIN_SECONDS) -> None:
        self.min_seconds = float(min_seconds)
        self._hist: dict[object, np.ndarray] = {}
        self._start: dict[object, float] = {}
        from aulib.video.track import RecentTracks  # here: aulib.video imports this module

        self._recent = RecentTracks(KEEP_TRACKS)

    def level(self, track: object, now: float) -> float:
        """The open-eye level of ``track`` at time ``now`` (seconds): the population's until the track
        is :attr:`min_seconds` old."""
        hist = self._hist.get(track)
        if hist is None or now - self._start[track] < self.min_seconds or not hist.sum():
            return EAR_OPEN
        cum = np.cumsum(hist)
        k = int(np.searchsorted(cum, OPEN_PERCENTILE / 100.0 * cum[-1]))
        return float(np.clip((k + 0.5) * _BIN, OPEN_FLOOR, EAR_OPEN))

    def update(self, faces: Sequence[Face], now: float) -> None:
        for f in faces:
            ear = f.extra.get("ear", np.nan)
            if not f.success or not np.isfinite(ear):
                continue
            if f.id not in self._hist:
                self._hist[f.id] = np.zeros(_BINS, np.int64)
                self._start[f.id] = now
            self._hist[f.id][min(int(ear / _BIN), _BINS - 1)] += 1
            self._recent.touch(f.id)
            level = self.level(f.id, now)
            f.extra["ear_open"] = level
            f.blink = np.array(closure(ear, level), np.float64)
        self._recent.trim(self._hist, self._start, at_least=len(faces))


# Video: a closure is a run of frames, decided with hysteresis around EAR_CLOSED (a Schmitt trigger per track):
# closed once the EAR falls below EAR_CLOSED − BLINK_HYSTERESIS, open again once it rises above EAR_CLOSED +
# BLINK_HYSTERESIS (both scaled with a person's own open level). At one threshold, landmark noise of ±0.01 on eyes
# that sit near it flickered AU45_c: a still smiling face (EAR 0.21–0.23) read 16 blinks in 10 s, and on
# WolfgangLanger_Pexels.mp4 the eyes' reopening at ≈ 436 split one closure in two and looking down at 418 read as
# a blink (9 runs for its 5 blinks and 2 closures counted by eye: 7 now, the same frames; the still face 4;
# single_face.mp4 keeps its one blink). AU45_r stays each frame's own.
BLINK_HYSTERESIS = 0.01


class BlinkRuns:
    """Per-track hysteresis of ``AU45_c`` along a video (:data:`BLINK_HYSTERESIS`). ``update(faces)`` takes one
    frame's faces, frames in order, and rewrites ``Face.blink[1]`` in place from ``Face.extra["ear"]`` (and
    ``"ear_open"``, a person's own level, when calibrated). Memory: one flag per recent track."""

    def __init__(self) -> None:
        from aulib.video.track import RecentTracks  # here: aulib.video imports this module

        self._closed: dict[object, bool] = {}
        self._recent = RecentTracks(KEEP_TRACKS)

    def update(self, faces: Sequence[Face]) -> None:
        for f in faces:
            ear = f.extra.get("ear", np.nan)
            if not f.success or f.blink is None or not np.isfinite(ear):
                continue
            scale = f.extra.get("ear_open", EAR_OPEN) / EAR_OPEN
            was = self._closed.get(f.id, False)
            closed = ear <= (EAR_CLOSED + BLINK_HYSTERESIS) * scale if was else \
                ear < (EAR_CLOSED - BLINK_HYSTERESIS) * scale
            self._closed[f.id] = bool(closed)
            f.blink = np.array([f.blink[0], float(closed)], np.float64)
            self._recent.touch(f.id)
        self._recent.trim(self._closed, at_least=len(faces))


class Blink:
    """Model stage: fills ``Face.blink`` = (AU45 intensity 0–5, AU45 occurrence 0/1) of successful faces.
    Runs after the AU models: ``still=True`` (faces of still images) reads whether AU06/AU07 narrow the eyes
    (:func:`closure`).

    ``Face.extra["ear"]`` keeps the raw eye aspect ratio.
    """

    def run(self, faces: Sequence[Face], still: bool = False) -> Sequence[Face]:
        for f in faces:
            if not f.success or f.landmarks is None:
                continue
            ears = eye_aspect_ratios(f.landmarks)
            # an eye that shows no eye (dark glasses, a bar or a hand over it) has no closure to read: it was
            # read "closed" from lid points fitted over the bar (AU45_c = 1 at confidence 1.00); the other eye
            # speaks for both, and with neither the blink columns stay empty
            hidden = f.extra.get("hidden_eyes")
            ears[hidden_eyes(f) if hidden is None else np.asarray(hidden, bool)] = np.nan
            ear = float(ears[np.isfinite(ears)].mean()) if np.isfinite(ears).any() else float("nan")
            f.extra["ear"] = ear
            f.blink = np.array(closure(ear, narrowed=still and narrowed(f)), np.float64)
        return faces
