"""Networks on alternate frames of a smoothed video: which faces of a model batch run the embedding CNN
and the iris network, and how the faces between take their neighbours' outputs.

Why: the two networks are ≈ 40 % of a video frame's work (``aulib bench``: the CNN ≈ 5 ms, the iris
network ≈ 4 ms per face on a 2-core EPYC; landmarks ≈ 5 ms, detection ≈ 2.4 ms). Offline smoothing
(:class:`aulib.video.smooth.TraceSmoother`, a zero-phase Gaussian of σ = 0.08 s, i.e. ≈ ±2 frames at
25 fps) averages every trace over its neighbours anyway, so a network output at every frame buys little
once smoothed. Each face track therefore runs the networks on every other face of the batch; a face in
between gets the time-weighted mean of its two neighbours' outputs (the CNN's 1280-value embedding and
emotion probabilities; each open eye's iris points in the eye crop, whose axes follow the eye corners, so
the head's own motion between the frames stays exact). Everything else — landmarks, HOG, geometry, pose,
blinks — is the frame's own.

Measured on WolfgangLanger_Pexels.mp4 (472 frames) against running the networks on every frame, both
smoothed: AU intensities differ by 0.009 on average (0–5 scale), 99.5 % of the ``AUxx_c`` decisions
and 97 % of the emotion labels are the same, gaze angles differ by 0.7° on average; the AU trace jitter
(0.062) and the correlation with OpenFace's AU06/AU12/AU25 (0.82/0.80/0.68) are unchanged within 0.007.

A face runs the networks itself when it is the first or last of its track in the batch (so a batch never
waits for the next one), when its neighbours are further apart than ``max_gap`` seconds (sparse
``--every``/``--fps`` sampling, a face hidden for a while), or — for one eye — when a neighbour's eye was
shut (no iris there to take). Raw traces (``smooth=False``) and the live page (causal smoothing, which
cannot wait for the next frame) run both networks on every frame, as does ``interpolate=False``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from aulib.face.record import Face


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


def plan(faces: Sequence[Face], times: Sequence[float], max_gap: float) -> Keyframes:
    """Which of ``faces`` (one batch, in frame order; ``times[i]`` the frame time of ``faces[i]`` in
    seconds) take their neighbours' outputs: every second face of each track (``Face.id``) among the
    successful ones, except a track's first and last in the batch and a face whose neighbours lie more
    than ``max_gap`` seconds apart."""
    tracks: dict[int, list[int]] = {}
    for i, f in enumerate(faces):
        if f.success:
            tracks.setdefault(f.id, []).append(i)
    out = Keyframes()
    for idx in tracks.values():
        for j in range(1, len(idx) - 1, 2):  # odd positions; the last one runs when the count is even
            a, i, b = idx[j - 1], idx[j], idx[j + 1]
            gap = times[b] - times[a]
            if 0 < gap <= max_gap:
                out.between[id(faces[i])] = (faces[a], faces[b], (times[i] - times[a]) / gap)
    return out
