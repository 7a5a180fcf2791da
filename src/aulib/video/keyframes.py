"""Networks on sparse frames of a smoothed video: which faces of a model batch run the embedding CNN,
the multitask AU heads and the iris network, and how the faces between take their neighbours' outputs.

Why: the two networks are ≈ 40 % of a video frame's work (``aulib bench``: the CNN ≈ 5 ms, the iris
network ≈ 4 ms per face on a 2-core EPYC; landmarks ≈ 5 ms, detection ≈ 2.4 ms). Offline smoothing
(:class:`aulib.video.smooth.TraceSmoother`, a zero-phase Gaussian of σ = 0.08 s, i.e. ≈ ±2 frames at
25 fps) averages every trace over its neighbours anyway, so a network output at every frame buys little
once smoothed. Each face track therefore runs the networks on faces as far apart as ``max_gap`` seconds
allows (the video pipeline passes 1.6 σ = 0.128 s: every third frame at 24–30 fps, every second at 15 fps);
a face in between gets the time-weighted mean of its two neighbours' outputs (the CNN's 1280-value
embedding and emotion probabilities, the AU heads' probabilities — with ``--emotion-model multitask`` that
network's emotion and AU heads too, so both emotion models read the same frames; each open eye's iris points
in the eye crop, whose axes follow the eye corners, so the head's own motion between the frames stays exact).
Everything else — landmarks, HOG, geometry, pose, blinks — is the frame's own.

Measured on WolfgangLanger_Pexels.mp4 (472 frames, 23.98 fps) against running the networks on every
frame, both smoothed (``aulib analyze`` then compared column by column):

====================  ==================  ============  ==========  ==========  =======  ===========
networks on           AU_r mean |diff|    AUxx_c same   emotion     gaze x/y    jitter   r AU06/12/25
====================  ==================  ============  ==========  ==========  =======  ===========
every frame           —                   —             —           —           0.056    .85/.84/.72
every 2nd (≤ 2026-11) 0.008               99.8 %        97.2 %      0.7/0.5°    0.056    .84/.84/.72
every 3rd (now)       0.012               99.5 %        94.9 %      0.9/0.6°    0.056    .85/.84/.73
====================  ==================  ============  ==========  ==========  =======  ===========

(jitter and r against OpenFace 2's reference output, as ``scripts/openface_agreement.py``). Every third
frame cut the whole process's time to 0.89× of every second's (5 paired runs); the emotion labels that
change are frames whose two leading probabilities are within a few points of each other.

A face runs the networks itself when it is the first or last of its track in the batch (so a batch never
waits for the next one), when its next neighbour is further away than ``max_gap`` seconds (sparse
``--every``/``--fps`` sampling, a face hidden for a while), or — for one eye — when a neighbour's eye was
shut (no iris there to take). Raw traces (``smooth=False``) and the live page (causal smoothing, which
cannot wait for the next frame) run both networks on every frame, as does ``interpolate=False``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from aulib.face.record import Face

# The frames that run the networks are at most this many smoothing σ apart: 1.6 σ = 0.128 s, every third frame
# at 24–30 fps (0.10–0.125 s; measured in the table above), every second at 15 fps. Not further: a third of the
# frames already changes the emotion label on 1 frame in 20 (near-ties) against every frame.
KEY_GAP_SIGMAS = 1.6  # the video pipeline's max_gap for plan(), in smoothing σ (aulib.video.smooth)


@dataclass
class Keyframes:
    """The plan for one model batch: ``between[id(face)] = (earlier, later, w)`` for each face whose
    network outputs are ``(1 − w) · earlier's + w · later's`` (``w`` from the frame times); every other
    face runs the networks. Faces are keyed by identity: a batch's records are distinct objects."""

    between: dict[int, tuple[Face, Face, float]] = field(default_factory=dict)

    def neighbours(self, face: Face) -> tuple[Face, Face, float] | None:
        """``(earlier, later, w)`` when ``face`` takes its neighbours' outputs, else None (it runs them)."""
        return self.between.get(id(face))

    def within(self, faces: Sequence[Face]) -> list[tuple[Face, Face, float] | None]:
        """:meth:`neighbours` of each of ``faces``, None where a neighbour is not among ``faces`` or takes
        its own outputs from others (a stage that sees part of a batch runs such a face itself)."""
        present = {id(f) for f in faces}
        found = [self.neighbours(f) for f in faces]
        taking = {id(f) for f, b in zip(faces, found) if b is not None}
        return [b if b is not None and all(id(n) in present and id(n) not in taking for n in b[:2]) else None
                for b in found]

    def __len__(self) -> int:
        return len(self.between)

    def spread(self, faces: Sequence[Face],
               compute: Callable[[list[Face]], Sequence[np.ndarray]]) -> list[tuple[np.ndarray, ...]]:
        """One network's outputs for each of ``faces`` (a stage's successful faces, in batch order):
        ``compute(run)`` — a tuple of arrays, one row per face — on the faces that run the network, the
        time-weighted mean of the two neighbours' rows for each face between (:meth:`within`). Every network stage
        on video frames goes through this, so the embedding CNN, the emotion network and the AU heads all read
        the same frames."""
        between = self.within(faces)
        run = [f for f, b in zip(faces, between) if b is None]
        out: dict[int, tuple[np.ndarray, ...]] = {}
        if run:
            out = {id(f): row for f, row in zip(run, zip(*compute(run)))}
        for f, b in zip(faces, between):
            if b is not None:  # its neighbours ran the network (plan: both are in this batch)
                a, c, w = out[id(b[0])], out[id(b[1])], b[2]
                out[id(f)] = tuple(((1 - w) * x + w * y).astype(np.float32) for x, y in zip(a, c))
        return [out[id(f)] for f in faces]


def plan(faces: Sequence[Face], times: Sequence[float], max_gap: float) -> Keyframes:
    """Which of ``faces`` (one batch, in frame order; ``times[i]`` the frame time of ``faces[i]`` in
    seconds) take their neighbours' outputs. Along each track (``Face.id``, successful faces only) the
    faces that run the networks are as far apart as ``max_gap`` seconds allows: from each one, the
    furthest later face within ``max_gap`` runs next and every face between takes the two; a track's
    first and last face in the batch always run, and a face whose next neighbour is further than
    ``max_gap`` away runs too (sparse ``--every``/``--fps`` sampling, a face hidden for a while)."""
    tracks: dict[int, list[int]] = {}
    for i, f in enumerate(faces):
        if f.success:
            tracks.setdefault(f.id, []).append(i)
    out = Keyframes()
    reach = max_gap * (1 + 1e-9)  # frame times are float sums: 4 frames at 25 fps are 0.16 s
    for idx in tracks.values():
        a = 0
        while a < len(idx) - 1:
            b = a + 1
            while b + 1 < len(idx) and times[idx[b + 1]] - times[idx[a]] <= reach:
                b += 1
            gap = times[idx[b]] - times[idx[a]]
            if 0 < gap <= reach:
                for j in range(a + 1, b):
                    i = idx[j]
                    out.between[id(faces[i])] = (faces[idx[a]], faces[idx[b]], (times[i] - times[idx[a]]) / gap)
            a = b
    return out
