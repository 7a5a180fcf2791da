"""Faces of consecutive video frames with stable ids: detect every k frames, follow landmarks in between.

Detection (RetinaFace, ≈10–25 ms per frame) runs only every ``detect_every`` frames. In between
each face is followed through its own landmarks (≈1 ms): the detector's box is stored in the
face's aligned-crop coordinates and carried into the next frame by the previous frame's
similarity transform (fitted on the rigid points: eye corners, nose). Rebuilding the box from the
landmark hull instead collapsed when the chin touched the frame edge in WolfgangLanger_Pexels.mp4:
the hull shrank 229 → 157 px over four frames (median landmark error 27 px) with a fit error that
still looked fine. A fit that degrades (rigid-point error above :data:`REDETECT_FIT_ERROR`, or a
failed fit) triggers detection on that same frame, so no frame is reported from a lost track. A
scene cut (thumbnail difference, :data:`SCENE_CUT`) or a face leaving the frame also triggers
detection: landmarks alone cannot tell a face from the background they are fitted to; so does a
followed face whose crop stops looking like its previous frame's (:data:`SAME_FACE`: the face left a
still background, or jumped away between scans). After a scene cut every face whose own region
changed gets a new id.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from aulib.face.detect import Detect, Detection, iou, scanning
from aulib.face.pipeline import FacePipeline, fit_boxes
from aulib.face.record import Face
from aulib.video.reader import check_count
from aulib.video.track import FaceTracker, Track, centre_gap

# A tracked face whose landmark fit is worse than this (rigid-point RMS error in crop units; the
# pipeline rejects faces above 0.1, real frontal faces sit around 0.02–0.05) is re-detected.
REDETECT_FIT_ERROR = 0.07
DEFAULT_DETECT_EVERY = 10
# Scene cut: mean absolute difference of consecutive 32×18 thumbnails (0–255 scale) above which the
# detector runs now. dlib's predictor fits a plausible mean face into *any* box, with a low fit
# error, so without this a track survived a cut to a black frame or sky in face_noface.mov for the
# rest of the detection interval. Measured: within a shot ≤ 4.6 (WolfgangLanger_Pexels.mp4, a
# moving speaker), at the cuts of face_noface.mov 97–145.
SCENE_CUT = 20.0
# Largest change of contrast (ratio of the two thumbnails' standard deviations) that :func:`difference` may
# take for a change of the light rather than of the scene: an auto-exposure step (×1.3), a lamp switched on
# (+25 gray levels), a fluorescent tube's flicker (±20 on alternate frames). A frame going black or flat, or
# a shot of another contrast, changes it more and is compared as it is.
LIGHT_GAIN = 1.6
# A followed face whose masked crop correlates less than this with the previous frame's (28×28, inside
# the face mask) is re-detected: dlib's predictor fits a face into whatever the box holds, so when a
# face leaves a still background or jumps away between scans, its track went on "finding" a face in
# the empty box with a good fit error and full confidence. Measured, consecutive frames of one face:
# minimum 0.73 (WolfgangLanger_Pexels.mp4, a hand passing over the face), 0.94 (single_face.mp4,
# face_noface.mov); a face removed from a still background 0.30, a face jumping away 0.00–0.18.
SAME_FACE = 0.5
# A detection that no longer looks like its track's last face (SAME_FACE) still continues it when it lies on the
# box the track had in the frame before, with this overlap at least, and nothing speaks for another reading
# (FaceFollower._continues): a face being covered bit by bit.
CONTINUE_IOU = 0.5
BESIDE_SIDES = 1.5  # ... and another face's centre lies within this many box sides of it (the passer-by)
# ... or, where the analysed frames lie apart in the file (``--every N``, dropped frames), the detection still looks
# like the track's last face this much: one expressive person's looks 5–30 frames apart correlate 0.34–0.55 (the
# Pexels clip at --every 5 / 10 / 30 got 2 / 3 / 4 ids for its one person), a face that left its box ≤ 0.30.
GAP_LOOK = 0.3
# A followed face is fitted in the box its last frame gives; dlib's cascade, started that far off, ends only
# part of the way to a face that moved fast (a face panned 94 px a frame: landmarks 0.53 face widths off, at
# confidence 1.00). When the fit's own box lies more than REFIT_SHIFT of a box side from the box it started
# in, the face is fitted again from there (at most REFITS times; a fit that still drifts is then re-detected
# by its fit error or its look, as before).
REFIT_SHIFT = 0.08
REFITS = 2
# A followed face whose look correlates less than this with its last frame's (steady faces ≥ 0.94, a hand
# passing over one 0.73) may have moved too far to be fitted from where it was: it is looked for (face_motion).
STEADY_LOOK = 0.8
# Smallest followed face (box side, pixels of the detector's input) for which a scan may look at a
# downscaled frame (FaceFollower ``scan_side``): measured on faces pasted into a 1080p frame and scanned
# at 960 px, 50–55 px faces got landmark boxes whose fits matched the full-size scan's within 1–6 % of
# the eye distance, a 28 px one a failed fit.
MIN_SCAN_FACE = 64


def _scale(m: np.ndarray) -> float:
    """Crop pixels per image pixel of a 2×3 similarity transform."""
    return float(np.sqrt(abs(np.linalg.det(m[:, :2]))))


def _to_crop(m: np.ndarray, box: Any) -> tuple[float, float, float, float]:
    """(x, y, w, h) image box → (centre x, centre y, w, h) in the aligned crop's coordinates."""
    x, y, bw, bh = (float(v) for v in box)
    cx, cy = m @ np.array([x + bw / 2, y + bh / 2, 1.0])
    s = _scale(m)
    return float(cx), float(cy), bw * s, bh * s


def _shift(a: Any, b: Any) -> float:
    """How far the centre of (x, y, w, h) box ``b`` lies from ``a``'s, as a fraction of ``a``'s side."""
    return float(np.hypot(b[0] + b[2] / 2 - a[0] - a[2] / 2, b[1] + b[3] / 2 - a[1] - a[3] / 2) / max(a[2], a[3], 1e-9))


def _up(m: np.ndarray) -> np.ndarray:
    """The face's mouth-to-eyes direction in the image from its image → aligned-crop transform
    (the crop is upright, so it is the crop's (0, -1) taken back into the image)."""
    v = np.linalg.solve(m[:, :2], np.array([0.0, -1.0]))
    return v / float(np.hypot(*v))


def _at_edge(box: np.ndarray, width: int, height: int, margin: float = 2.0) -> bool:
    """Whether a detection box ``(x, y, w, h)`` reaches the frame's edge (within ``margin`` px): its face may be cut."""
    x, y, bw, bh = (float(v) for v in box[:4])
    return x <= margin or y <= margin or x + bw >= width - margin or y + bh >= height - margin


def _from_crop(m: np.ndarray, anchor: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """Inverse of :func:`_to_crop` under another frame's transform: the axis-aligned image box."""
    a = m[:, :2]
    cx, cy = np.linalg.solve(a, np.array(anchor[:2]) - m[:, 2])
    s = _scale(m)
    bw, bh = anchor[2] / s, anchor[3] / s
    return float(cx - bw / 2), float(cy - bh / 2), bw, bh


def appearance(face: Face) -> tuple[np.ndarray, np.ndarray] | None:
    """(mask, gray pixels) of a described face's masked crop at 28×28, for :func:`similarity`."""
    if face.masked is None or face.mask is None:
        return None
    gray = cv2.resize(face.masked, (28, 28), interpolation=cv2.INTER_AREA).astype(np.float32)
    inside = cv2.resize(face.mask.astype(np.uint8) * 255, (28, 28), interpolation=cv2.INTER_AREA) > 127
    return inside, gray


def similarity(a: tuple[np.ndarray, np.ndarray] | None, b: tuple[np.ndarray, np.ndarray] | None) -> float:
    """Pearson correlation of two :func:`appearance` values over the pixels inside both masks (1.0 when
    either is unknown or they share too few pixels to tell: no evidence of a different face)."""
    if a is None or b is None:
        return 1.0
    both = a[0] & b[0]
    if both.sum() < 50:
        return 1.0
    x, y = a[1][both], b[1][both]
    x, y = x - x.mean(), y - y.mean()
    nx, ny = float(np.linalg.norm(x)), float(np.linalg.norm(y))
    if nx == 0 or ny == 0:  # a flat patch: the same only if both are flat (a face against a flat wall is not)
        return 1.0 if nx == ny else 0.0
    return float(x @ y) / (nx * ny)


def face_motion(before: np.ndarray, after: np.ndarray,
                box: tuple[float, float, float, float]) -> tuple[float, float, float, float] | None:
    """``box`` (x, y, w, h, the face's box in frame ``before``) moved to where its patch is found in ``after``,
    within 0.75 box sides of where it was (normalised cross-correlation of gray copies scaled to a 24 px box;
    ≈ 0.1 ms), or None when the patch or the search region is not in the frames."""
    x, y, w, h = (float(v) for v in box)
    side = max(w, h)
    H, W = after.shape[:2]
    x0, y0, x1, y1 = int(max(0, x)), int(max(0, y)), int(min(W, x + w)), int(min(H, y + h))
    r = 0.75 * side
    sx0, sy0, sx1, sy1 = int(max(0, x - r)), int(max(0, y - r)), int(min(W, x + w + r)), int(min(H, y + h + r))
    if x1 - x0 < 8 or y1 - y0 < 8 or before.shape[:2] != after.shape[:2]:
        return None
    s = min(1.0, 24.0 / side)

    def gray(a: np.ndarray) -> np.ndarray:
        size = (max(1, round(a.shape[1] * s)), max(1, round(a.shape[0] * s)))
        small = cv2.resize(a, size, interpolation=cv2.INTER_AREA)
        return small if small.ndim == 2 else cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)

    patch, region = gray(before[y0:y1, x0:x1]), gray(after[sy0:sy1, sx0:sx1])
    if patch.shape[0] > region.shape[0] or patch.shape[1] > region.shape[1] or patch.std() == 0:
        return None
    _, _, _, (bx, by) = cv2.minMaxLoc(cv2.matchTemplate(region, patch, cv2.TM_CCOEFF_NORMED))
    dx, dy = sx0 + bx / s - x0, sy0 + by / s - y0
    return x + dx, y + dy, w, h


Light = tuple[float, float]  # (gain, offset) taking one frame's gray levels to another's light
NO_CHANGE: Light = (1.0, 0.0)


def light_change(before: np.ndarray, after: np.ndarray) -> Light:
    """How the light changed from thumbnail ``before`` to ``after``: the gain and offset that give ``before``
    the mean and standard deviation of ``after``, when the ratio of the deviations is within
    :data:`LIGHT_GAIN` (else, or for a flat thumbnail, :data:`NO_CHANGE`: a frame gone black or flat, or a
    shot of another contrast, is not a change of the light)."""
    sb, sa = float(before.std()), float(after.std())
    if sb < 1.0 or sa < 1.0 or not 1 / LIGHT_GAIN <= sa / sb <= LIGHT_GAIN:
        return NO_CHANGE
    return sa / sb, float(after.mean()) - sa / sb * float(before.mean())


def difference(before: np.ndarray, after: np.ndarray, light: Light | None = None) -> float:
    """Mean absolute difference (0–255) of two same-size thumbnails once a change of the light is undone:
    ``light`` (gain, offset) applied to ``before``, by default the frames' own :func:`light_change`. The
    smaller of that and the plain difference.

    The plain difference took a lamp switched on (+25 gray levels) or an exposure step (×1.3) for a scene
    cut: the same still face got a new ``face_id`` there, and a ±20 flicker gave it 40 ids in 40 frames (so
    its traces were neither smoothed nor calibrated). Two different shots keep their difference (matching the
    mean and spread of unrelated pictures leaves them unrelated)."""
    plain = float(np.abs(before - after).mean())
    if plain <= SCENE_CUT:
        return plain
    gain, offset = light_change(before, after) if light is None else light
    if (gain, offset) == NO_CHANGE:
        return plain
    return min(plain, float(np.abs(before * gain + offset - after).mean()))


def region_changed(before: np.ndarray, after: np.ndarray, box: Any, shift: tuple[float, float] = (0.0, 0.0),
                   light: Light = NO_CHANGE) -> bool:
    """Whether the face in the (x, y, w, h) ``box`` changed like a scene cut between two frames: the mean
    absolute difference of 16×16 thumbnails (0–255) of the box's middle in ``before`` and of the same box moved
    by the camera's ``shift`` (pixels, :func:`camera_motion`) in ``after`` above :data:`SCENE_CUT` (a box
    outside either frame: changed), with the whole frame's change of ``light`` undone — the face's own
    region is not matched to itself: another person's face, given the first one's mean and spread, looked
    like it."""
    h, w = after.shape[:2]
    if before.shape[:2] != after.shape[:2]:
        return True
    small = []
    for f, (dx, dy) in ((before, (0.0, 0.0)), (after, shift)):
        # the middle of the box (60 % of each side): the face itself, not the edge of a neighbouring tile
        x0, y0 = max(int(box[0] + dx + 0.2 * box[2]), 0), max(int(box[1] + dy + 0.2 * box[3]), 0)
        x1, y1 = min(int(box[0] + dx + 0.8 * box[2]), w), min(int(box[1] + dy + 0.8 * box[3]), h)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return True
        small.append(cv2.resize(f[y0:y1, x0:x1], (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32))
    return difference(small[0], small[1], light) > SCENE_CUT


def _sampled(image: np.ndarray) -> np.ndarray:
    """The frame sampled every k-th pixel (nearest neighbour by a whole factor) to about 160 px wide."""
    h, w = image.shape[:2]
    k = max(1, w // 160)
    return cv2.resize(image, (max(1, w // k), max(1, h // k)), interpolation=cv2.INTER_NEAREST) if k > 1 else image


def thumbnail(image: np.ndarray) -> np.ndarray:
    """32×18 float32 thumbnail of a frame, for the scene-cut test.

    OpenCV's area filter over the whole frame cost 0.16 ms at 640×360 and 1.7 ms at 1080p, in every
    frame. The frame is first sampled every k-th pixel (nearest neighbour by a whole factor) to about
    160 px wide, and the area filter averages those: the mean difference of consecutive thumbnails is
    unchanged where it matters (measured on the sample clips, all pixels → sampled: within a shot at
    most 6.2 → 6.0 on WolfgangLanger_Pexels.mp4, 5.0 → 5.1 on face_noface.mov; its two cuts 142/102 →
    143/101; threshold :data:`SCENE_CUT` = 20)."""
    return cv2.resize(_sampled(image), (32, 18), interpolation=cv2.INTER_AREA).astype(np.float32)


def still_changed(before: np.ndarray, after: np.ndarray) -> float:
    """The :func:`thumbnail` difference of two frames once the camera's motion between them is undone
    (:func:`camera_motion`)."""
    return camera_motion(before, after)[0]


def camera_motion(before: np.ndarray, after: np.ndarray) -> tuple[float, tuple[float, float], Light]:
    """(the :func:`thumbnail` difference of two frames once the camera's motion between them and a change of
    the light are undone, that motion: how far the scene moved from ``before`` to ``after``, in pixels, and that
    :func:`light_change`): the middle of ``after`` (all but a
    sixth of each side) is found in ``before`` (OpenCV template matching at ≈ 160 px wide, shifts up to a sixth
    of the frame) and the two matched regions are compared as thumbnails (inf: frames of different sizes).

    A hand-held camera moving 12 px a frame (640×360, a textured scene) changed consecutive thumbnails by
    20–26, over :data:`SCENE_CUT`, on 13 of 240 frames: each was taken for a cut and the one person got 14
    face ids. Measured with the motion undone: such camera shake, pans and jumps of ±40 px ≤ 5.2; the cuts of
    face_noface.mov 98 and 127; a black box dropped over 40 % of the frame 49–57."""
    a, b = _sampled(before).astype(np.float32), _sampled(after).astype(np.float32)
    if a.shape != b.shape:
        return float("inf"), (0.0, 0.0), NO_CHANGE
    h, w = b.shape[:2]
    mx, my = max(1, w // 6), max(1, h // 6)
    if h - 2 * my < 2 or w - 2 * mx < 2:
        return float("inf"), (0.0, 0.0), NO_CHANGE
    middle = b[my:h - my, mx:w - mx]
    y, x = np.unravel_index(int(cv2.matchTemplate(a, middle, cv2.TM_SQDIFF).argmin()), (2 * my + 1, 2 * mx + 1))
    matched = a[y:y + middle.shape[0], x:x + middle.shape[1]]
    thumbs = [cv2.resize(m, (32, 18), interpolation=cv2.INTER_AREA) for m in (matched, middle)]
    k = after.shape[1] / w  # full-size pixels per sampled pixel
    # the light counts only where it is what changed: a change it leaves above SCENE_CUT is a cut, and one the
    # camera's motion alone explains needs none (the gain and offset of a frame where three people were
    # replaced by others made their own regions look unchanged)
    change, light = difference(*thumbs, NO_CHANGE), NO_CHANGE
    if change > SCENE_CUT:
        relight = light_change(*thumbs)
        relit = difference(*thumbs, relight)
        if relit <= SCENE_CUT:
            change, light = relit, relight
    return change, (float(mx - x) * k, float(my - y) * k), light


class FaceFollower:
    """Described faces of each frame (landmarks, crop, HOG), with ``Face.id`` a stable track id.

    Call it once per frame, in order: ``follower(rgb, index)`` → faces sorted by id. Usable for a
    file or a live stream alike. ``n_detect``/``n_redetect`` count detector runs (all / forced by a
    lost track).
    """

    def __init__(self, pipeline: FacePipeline, detect_every: int = DEFAULT_DETECT_EVERY,
                 detector: Detect | None = None,
                 scan_side: int | None = None, hog: bool = True) -> None:
        """``detector``: another detector for this follower (e.g. one working on a smaller image for a
        live stream); default the pipeline's. ``scan_side``: scan frames downscaled to this side while
        every followed face stays large enough at that scale (:meth:`_scanner`). ``hog=False``: the faces
        come without ``Face.hog`` (:meth:`FacePipeline.add_hog`; a video fills it in its model thread, which
        has time to spare, while this face stage is the pipeline's slowest)."""
        self.hog = hog
        self.pipeline = pipeline
        self.detector = detector or pipeline.detect
        self.quick = scanning(detector or pipeline.detector, scan_side) if scan_side else None
        check_count("detect_every", detect_every)
        self.detect_every = int(detect_every)
        # ``max_missed`` counts analysed frames: the tracker sees this follower's own frame numbers
        # (``self._seq``), not the file's, so ``every=8`` does not expire a hidden face's track before the
        # next scan could find it again (it came back seconds late, with a new id)
        self.tracker = FaceTracker(max_missed=max(60, 3 * self.detect_every))
        self._detect_index: int | None = None  # file frame of the last scan
        self._predicted: int | None = None  # file frame of the last scan prefetch() ran ahead
        self._need_detect = True
        self._seq = -1  # analysed frames so far - 1
        self._index: int | None = None  # file frame of the last call
        self._gap = 1  # file frames from the last call's frame to this one's (``--every N``: N)
        self._thumb: np.ndarray | None = None
        self._last_image: np.ndarray | None = None
        self._before: np.ndarray | None = None  # the frame before the one being analysed
        self.n_detect = 0
        self.n_redetect = 0
        self.n_refit = 0  # followed faces fitted again after moving far (REFIT_SHIFT)

    def _scanner(self, image: np.ndarray, tracks: list[Track]) -> Detect:
        """The detector for this scan: the downscaled one (``scan_side``) only for the interval's scans
        of followed faces (``tracks``) whose smallest is at least :data:`MIN_SCAN_FACE` px at that
        scale; else the full one (first scan, a lost or degraded track, a scene cut, small faces: a face
        of 28 px in the detector's input gets keypoints too coarse for a landmark box, measured on the
        B/W sample portrait)."""
        quick = self.quick
        if quick is None or not tracks:
            return self.detector
        scale = min(1.0, getattr(quick, "max_side", 0) / max(image.shape[:2]))
        smallest = min(float(min(t.box[2], t.box[3])) for t in tracks)
        return quick if smallest * scale >= MIN_SCAN_FACE else self.detector

    def prefetch(self, image: np.ndarray, index: int) -> tuple[int, list[Detection]] | None:
        """The downscaled scan of file frame ``index`` when the interval's scan is expected there, run by the
        caller (the video reader's decode thread, ahead of this follower), else None. The face stage, which
        bounds a video's speed, then takes these detections instead of running the scan itself — only when
        it would run that same scan on that same frame (:meth:`_detect`), so the faces are the same. The
        expected scans are those the interval gives after the last one known (a re-detection moves them:
        those frames then scan themselves)."""
        known = self._detect_index  # the face stage's last scan (an int, read without a lock)
        if self.quick is None or known is None:
            return None
        if index - max(known, self._predicted if self._predicted is not None else known) < self.detect_every:
            return None
        self._predicted = index
        return index, self.quick(image)

    def _detect(self, image: np.ndarray, seq: int, tracks: list[Track] | None = None,
                prefetched: tuple[int, list[Detection]] | None = None, index: int = -1) -> list[Face]:
        self.n_detect += 1
        detector = self._scanner(image, tracks or [])
        # the reader's scan of this very frame with this very detector (prefetch), or the scan here
        dets = prefetched[1] if prefetched is not None and prefetched[0] == index and detector is self.quick \
            else detector(image)
        quick, side = self.quick, getattr(self.quick, "max_side", 0)
        if detector is not quick and dets and quick is not None and 0 < side < max(image.shape[:2]):
            # A frame larger than the interval's downscaled scans, scanned whole (first scan, cut, lost track): when
            # every face it found is large enough for those scans, the faces are seeded from one too, so that their
            # landmark fits start from the boxes the next scans give. The fits depend on the box they start from:
            # on a still 1000 px group photo the first 10 frames read otherwise than the rest (a 10-frame "blink",
            # confidence 0.72 then 0.99).
            scale = side / max(image.shape[:2])
            if min(min(d.width, d.height) for d in dets) * scale >= MIN_SCAN_FACE:
                again = quick(image)
                if len(again) == len(dets):
                    dets, detector = again, quick
        fits = fit_boxes(detector, image, dets)
        boxes = [b for b, _ in fits]
        faces = [self.pipeline.from_box(image, b, d.score, display_box=d.as_array(), up=u, hog=self.hog, detection=d)
                 for (b, u), d in zip(fits, dets)]
        # A detection continues a track only when its face looks like the track's last one (SAME_FACE, as
        # between followed frames): by position alone, two people who swapped places at a cut too soft for
        # SCENE_CUT took each other's ids (and their smoothed traces blended), and a person sitting down where
        # another had left took the leaver's id.
        looks = [appearance(f) for f in faces]
        found = [d.as_array() for d in dets]
        ids = self.tracker.assign(found, seq, lambda i, t: similarity(t.extra.get("look"), looks[i]) >= SAME_FACE
                                  or self._continues(i, t, found, looks, seq))
        h, w = image.shape[:2]
        for f, tid, box, look in zip(faces, ids, boxes, looks):
            f.id = tid
            t = self.tracker.update(tid, f.box, f.landmarks if f.success else None, f.score, seq)
            whole = t.extra.get("whole")  # the shown box of the track's last detection inside the frame
            t.extra.clear()
            if f.success:
                # Both boxes in the face's own (aligned crop) coordinates: they then move and scale
                # with the rigid landmarks (eyes, nose) in later frames, see _follow.
                m = f.matrix
                shown = _to_crop(m, f.box)
                if not _at_edge(f.box, w, h):
                    whole = shown
                # A face cut by the frame's edge has a detection box of its visible part only: followed back into
                # view it kept that box (104 px wide for a 146 px face, until the next scan); the box it had
                # inside the frame follows it instead, where the track has one
                t.extra.update(fit=_to_crop(m, box), shown=whole if whole is not None else shown, whole=whole,
                               matrix=m, look=look, disagreement=f.disagreement, blur=f.blur, noise=f.noise)
        self._need_detect = any(not f.success for f in faces)
        return faces

    def _continues(self, i: int, t: Track, boxes: list[np.ndarray], looks: list, seq: int) -> bool:
        """Whether detection ``i`` continues track ``t`` although it no longer looks like ``t``'s last face: ``t``
        was followed up to the frame before (no gap, no scene cut: a cut ends the tracks), the detection lies on
        ``t``'s box (IoU ≥ :data:`CONTINUE_IOU`) and is the only one there, another face is beside it (within
        :data:`BESIDE_SIDES` box sides) — or the frames compared lie apart in the file and it still looks like
        ``t``'s last face :data:`GAP_LOOK` — and it looks like no other track. A
        face covered bit by bit — another person crossing in front, a hand — changes its look at every frame: it
        was re-detected and given a new id each time (one person behind a passer-by got 4 ids in 2 s, two of them
        one frame long). Two people who swap places still get new ids: each new face looks like the other's track."""
        if t.last_frame != seq - 1 or iou(boxes[i], t.box) < CONTINUE_IOU:
            return False
        if any(j != i and iou(b, t.box) >= self.tracker.min_iou for j, b in enumerate(boxes)):
            return False
        # only beside another face (the passer-by): a face that changed all at once where no one else is, is
        # taken for someone else — a jump cut to another person framed alike (a cut too soft for SCENE_CUT) must
        # not join two people's traces under one id
        if not any(centre_gap(b, t.box) <= BESIDE_SIDES for j, b in enumerate(boxes) if j != i):
            # ... unless the frames compared lie apart in the file: a look that changed over 5–30 frames is
            # mostly a face that moved and changed expression (a jump cut there keeps the id unless the frame
            # changed enough for SCENE_CUT: the look cannot tell two people apart over such a gap)
            if self._gap <= 1 or similarity(t.extra.get("look"), looks[i]) < GAP_LOOK:
                return False
        others = [u for u in self.tracker.tracks.values() if u.id != t.id and u.extra.get("look") is not None]
        return looks[i] is not None and not any(similarity(u.extra["look"], looks[i]) >= SAME_FACE for u in others)

    def _fit_followed(self, image: np.ndarray, t: Track, m: np.ndarray, box: tuple[float, float, float, float]) -> Face:
        """Track ``t``'s face fitted from ``box`` (image pixels), ``m`` its last frame's transform; fitted again
        from where the fit ends while that is far from where it started (:data:`REFIT_SHIFT`)."""
        off = np.subtract(box[:2], _from_crop(m, t.extra["fit"])[:2])
        shown = np.asarray(_from_crop(m, t.extra["shown"]), np.float32) + np.r_[off, 0, 0].astype(np.float32)
        f = self.pipeline.from_box(image, box, t.score, display_box=shown, up=_up(m), detected=False, hog=self.hog)
        for _ in range(REFITS):
            # A face that moved far since the last frame is fitted only part of the way from the box
            # where it was: fitted again from the box its new fit gives (see REFIT_SHIFT)
            if not f.success or _shift(box, moved := _from_crop(f.matrix, t.extra["fit"])) <= REFIT_SHIFT:
                break
            box = moved
            shown = np.asarray(_from_crop(f.matrix, t.extra["shown"]), np.float32)
            f = self.pipeline.from_box(image, box, t.score, display_box=shown, up=_up(f.matrix), detected=False,
                                       hog=self.hog)
            self.n_refit += 1
        return f

    def _follow(self, image: np.ndarray, seq: int, tracks: list[Track]) -> list[Face] | None:
        """Fit each tracked face in the box its previous frame predicts, or None (→ detect)."""
        faces = []
        h, w = image.shape[:2]
        for t in tracks:
            m = t.extra["matrix"]
            box = _from_crop(m, t.extra["fit"])
            if not (0 <= box[0] + box[2] / 2 < w and 0 <= box[1] + box[3] / 2 < h):  # leaving the frame
                return None
            f = self._fit_followed(image, t, m, box)
            look = appearance(f) if f.success else None
            same = similarity(t.extra.get("look"), look) if f.success else -1.0
            if same < STEADY_LOOK and self._before is not None:
                # less like its last frame than a steady face: it may have moved too far for a fit started
                # where it was (a face panned 76 px a frame was fitted 0.53 face widths off, its look at 0.51);
                # the face's patch of the last frame is looked for around it, and fitted there too
                moved = face_motion(self._before, image, box)
                if moved is not None:
                    g = self._fit_followed(image, t, m, moved)
                    g_look = appearance(g) if g.success else None
                    g_same = similarity(t.extra.get("look"), g_look) if g.success else -1.0
                    self.n_refit += 1
                    if g_same > same:
                        f, look, same = g, g_look, g_same
            if not f.success or f.fit_error > REDETECT_FIT_ERROR:
                return None
            if same < SAME_FACE:  # not the face of the last frame
                return None
            f.id = t.id
            f.extra["look"] = look
            # the detection's box carried by this frame's own fit: it was carried by the fit the box was started
            # from (the last frame's, or a partial fit's when the face moved far), so it lagged a frame and, in a
            # fast pan, swelled (152/193/154/189 px for a face of 146) while the landmarks were right
            f.box = np.asarray(_from_crop(f.matrix, t.extra["shown"]), np.float32)
            # as its score: its last detection's (the blur measure costs 0.3 ms of the face stage, which bounds
            # a video's speed; a blurred recording stays blurred between scans 0.4 s apart)
            f.disagreement = t.extra.get("disagreement", float("nan"))
            f.blur, f.noise = t.extra.get("blur", float("nan")), t.extra.get("noise", float("nan"))
            faces.append(f)
        for f, t in zip(faces, tracks):
            self.tracker.update(t.id, f.box, f.landmarks, t.score, seq)
            t.extra.update(matrix=f.matrix, look=f.extra.pop("look"))
        return faces

    def __call__(self, image: np.ndarray, index: int, thumb: np.ndarray | None = None,
                 prefetched: tuple[int, list[Detection]] | None = None) -> list[Face]:
        """The faces of frame ``index`` (an ``(H, W, 3)`` uint8 RGB image), sorted by track id. Frames come
        in order; ``index`` is the frame's number in the file (the scans run every ``detect_every`` of
        those; the tracker counts the calls)."""
        faces = None
        seq = self._seq + 1
        self._gap, self._index = (index - self._index if self._index is not None else 1), index
        tracks = self.tracker.active(self._seq)
        thumb = thumbnail(image) if thumb is None else thumb  # a reader may have made it (another thread)
        # a cut: the frame changed more than a shot does, even once the camera's own motion is undone
        cut = replaced = False
        if self._thumb is not None and difference(self._thumb, thumb) > SCENE_CUT:
            if self._last_image is None:
                cut = True
            else:
                change, shift, light = camera_motion(self._last_image, image)
                cut = change > SCENE_CUT
                if not cut:
                    # the camera moved; a face whose own region changed all the same, its motion undone, is
                    # someone else there now (a cut to the same set from a camera 60 px aside, other people in
                    # it, read 19.5 whole: three of them took the ids of those before)
                    for t in tracks:
                        if region_changed(self._last_image, image, t.box, shift, light):
                            self.tracker.end(t.id)
                            replaced = True
                    tracks = [t for t in tracks if t.id in self.tracker.tracks]
        self._thumb = thumb
        if cut and self._last_image is not None:
            # another shot where a face was: whoever is there now is not known to be that person (their
            # traces must be neither joined nor smoothed across the cut), so that track ends and the
            # detection below starts a new one. Only where the face's own region changed: one tile of a
            # video call going dark changes the whole frame's thumbnail, not the other people.
            # A track not seen in the last frame (a face hidden for a moment) cannot be checked: it ends too,
            # or whoever stands there in the new shot would inherit its id.
            active = {t.id for t in tracks}
            for t in list(self.tracker.tracks.values()):
                if t.id not in active or region_changed(self._last_image, image, t.box):
                    self.tracker.end(t.id)
            tracks = []
        self._before, self._last_image = self._last_image, image
        periodic = False  # the interval's scan of a frame whose faces are all being followed
        if not self._need_detect and not cut and not replaced and tracks:
            # ``detect_every`` counts the file's frames: with ``every=8`` a scan every 10 analysed frames
            # left a face that appeared (or came back) unreported for 80 frames (3 s at 25 fps)
            if self._detect_index is not None and 0 <= index - self._detect_index < self.detect_every:
                faces = self._follow(image, seq, tracks)
                if faces is None:
                    self.n_redetect += 1
            else:
                periodic = True
        if faces is None:
            faces = self._detect(image, seq, tracks if periodic else None, prefetched, index)
            self._detect_index = index
        self._seq = seq
        return sorted(faces, key=lambda f: f.id)
