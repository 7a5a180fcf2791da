"""The face pipeline as one object: image → boxes → 68 landmarks → aligned crop → mask → features.

Each stage is also usable alone (``aulib.face.detect``, ``landmarks``, ``align``, ``hog``);
:class:`FacePipeline` composes them and carries the results in a :class:`Face` record.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from aulib.face.align import Aligner, FaceMasker, matched_detail
from aulib.face.detect import Detection, DlibHogDetector, RetinaFaceDetector, iou, make_detector, scanning
from aulib.face.exposure import brightened, exposure_gain
from aulib.face.gaze import eye_crops
from aulib.face.hog import HogExtractor, geometry
from aulib.face.landmarks import LandmarkPredictor
from aulib.face.record import Face
from aulib.face.sharpness import face_detail

# RMS distance of the rigid landmarks from the template (crop-size units) above which a fit is
# not a plausible face. Measured: CK+48 crops median 0.019, max 0.059; FER2013Valid median 0.041,
# 95th percentile 0.091 (head yaw is not a similarity transform); 3/4-profile BWPictureHuman 0.077.
# 0.1 rejects 2.7 % of FER crops (the worst fits) and keeps every real face in the samples.
MAX_FIT_ERROR = 0.1
# Faces smaller than this (landmark-box side, pixels) are too small for a reliable 68-point fit.
MIN_FACE_SIZE = 20.0
# Roll (in-plane rotation, radians) beyond which landmarks are fitted on an upright copy of the face:
# dlib's trees handle moderate tilt, and below this the fit is the plain one (results unchanged).
MAX_UPRIGHT_ROLL = np.deg2rad(30.0)

# Cropped mode: whether a crop holds a face at all. dlib's 68-point fit and the rigid-point error
# cannot say it (a blank image fits the mean shape with error 0.017, better than most real faces),
# nor can dlib's HOG detector (it misses 5 % of FER crops even at threshold -0.77). RetinaFace on the
# crop scaled to CROP_CHECK_SIDES px and framed with a black border of half its side separates them
# cleanly: every CK+48 crop scores ≥ 0.99, 99 % of FER2013Valid crops ≥ 0.5, and no blank, noise,
# landscape or video-background patch reached 0.07. Measured by ``aulib evaluate faces`` (reports/faces.md):
# refused 0/1305 CK+48 crops, 84/3579 FER2013Valid (20 no face, 64 landmark fit), 5/300 FER2013Train,
# 417/417 non-faces (blank, noise, 1 px, landscape and video-background patches).
CROP_FACE_THRESHOLD = 0.5
CROP_CHECK_SIDES = (192, 128)  # the second size only for crops the first one rejects
# a crop read with less (:func:`_crop_confidence`) is tried turned by each other quarter turn too: of 240 CK+ crops
# turned 90°/180°/270°, 78 of the 80 read in a wrong orientation had confidence < 0.15, the other two 0.36 and
# 0.49; a quarter of FER2013Valid's upright crops (hard, in-the-wild faces) are under 0.5, nearly half under 0.8
CROP_RETRY_CONFIDENCE = 0.5
MIN_CROP_SIZE = 16  # pixels; smaller images cannot show a face whose landmarks mean anything
# Longest side at which an image with no face found is scanned again, turned (FacePipeline.turned_detections):
# a photo that lost its orientation tag shows big faces; full 1280 px scans cost 0.2 s per faceless photo.
TURNED_SCAN_SIDE = 640
# An image whose usual (shrunk) scan finds no face is scanned again in tiles, at the scale that makes this
# many pixels of it (FacePipeline.tiled_detections); tiles overlap by TILE_OVERLAP px so a face on a border
# is whole in one of them.
TILED_SCAN_PIXELS = 6_000_000
TILED_SCAN_BELOW = 0.35  # only images the usual scan shrinks below this (longest side above ≈ 3700 px)
TILE_OVERLAP = 160
# A face found by the usual scan smaller than this (pixels of the shrunk image) means a photo of small faces:
# it is scanned in tiles too (RetinaFace finds faces down to ≈ 16–24 px there; others near that size may be missed).
# At 48 px a 4000×3000 phone photo of one 150 px face paid a 1 s tiled scan for nothing new.
NEAR_LIMIT_FACE = 32.0
# A face found by the usual scan smaller than this (pixels of the shrunk image), in an image it did not scan in
# tiles, is detected again around itself at full size (FacePipeline._closer, one small detector run): its box
# from the shrunk image is rough (that 150 px face: confidence 0.71, detected again 0.97).
ROUGH_BOX_FACE = 64.0
# A photo's landmarks are the mean of fits from its box and from the box moved by this fraction of its side along
# each diagonal (FacePipeline.fit). dlib's trees read whole pixels from a box of whole pixels, and one fit moves
# with the box: cropping 1–3 px off a photo (or framing it in a border, which moves the detector's box when the
# image is shrunk for detection) moved the points by 1.2 % of the eye distance on average, 3.2 % at the 95th
# percentile, and flipped an AU in 14 % of the faces. The mean of five halves that (0.70 % / 1.4 %; nine fits,
# adding the four sides: 0.57 % / 1.2 %), lies 0.6 % of the eye distance from the single fit, and gives the
# points below a pixel, which the eye closure reads. Videos fit once per frame and smooth along time instead.
PHOTO_FIT_SHIFT = 0.02
# Roll beyond which every face of an image lying that way makes the image itself look turned (FacePipeline).
TURNED_IMAGE_ROLL = np.deg2rad(45.0)


def fit_boxes(detector, image: np.ndarray, dets: list[Detection]) -> list[tuple[tuple[float, float, float, float],
                                                                                 np.ndarray | None]]:
    """Each detection's landmark box and mouth-to-eyes direction (:meth:`Detection.landmark_box`,
    :meth:`Detection.up`). RetinaFace's keypoints collapse on a face turned more than ≈ 100°
    (upside down), which spoils both: for those faces only, the detector runs again on the image
    turned 180°, where such a face is within ±80° of upright, and its box and direction there are
    turned back. Costs nothing when every face has usable keypoints."""
    out = [(d.landmark_box(), d.up()) for d in dets]
    lost = [i for i, (d, (_, u)) in enumerate(zip(dets, out)) if u is None and d.keypoints is not None]
    if not lost:
        return out
    h, w = image.shape[:2]
    turned = detector(cv2.rotate(image, cv2.ROTATE_180))
    for i in lost:
        d = dets[i]
        cx, cy = w - (d.x + d.width / 2), h - (d.y + d.height / 2)  # its centre in the turned image
        near = [t for t in turned if t.up() is not None
                and np.hypot(t.x + t.width / 2 - cx, t.y + t.height / 2 - cy) < 0.35 * max(d.width, d.height)]
        if near:
            t = max(near, key=lambda t: t.score)
            x, y, bw, bh = t.landmark_box()
            out[i] = ((w - x - bw, h - y - bh, bw, bh), -t.up())  # type: ignore[operator]
    return out


def _crop_confidence(face: Face) -> float:
    """How well a crop's fit is read (:func:`~aulib.face.quality.fit_confidence` × the keypoint factor: the
    parts of ``confidence`` a turn of the crop changes); 0 for a failed one."""
    from aulib.face.quality import fit_confidence, keypoint_factor  # quality reads this module's constants

    if not face.success:
        return 0.0
    return fit_confidence(face.score, face.fit_error) * keypoint_factor(face.disagreement)


def _unturned(points: np.ndarray, turns: int, shape: tuple[int, int]) -> np.ndarray:
    """Points (pixel centres) found in ``np.rot90(image, turns)``, in ``image``'s own pixels (``shape``: its
    height and width). One ``np.rot90`` sends pixel (x, y) of an image W wide to (y, W − 1 − x); the turns are
    undone last first, each with the width of the image it turned."""
    h, w = shape
    p = np.asarray(points, np.float64)
    for j in reversed(range(turns % 4)):
        width = w if j % 2 == 0 else h
        p = np.column_stack([width - 1 - p[:, 1], p[:, 0]])
    return p.astype(np.float32)


def _unscaled(points: np.ndarray, big: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Points (pixel centres) found in ``big``, a ``cv2.resize`` of ``image``, in ``image``'s pixels.

    Pixel centres map as ``(x + 0.5) · s − 0.5``: dividing by the scale alone put every landmark of a
    48 px crop 0.375 px right of and below the face (s = 4), which biased the gaze of cropped faces by
    ≈ 6° and kept it from flipping with a mirrored crop."""
    s = np.array([big.shape[1] / image.shape[1], big.shape[0] / image.shape[0]], np.float32)
    return ((points + 0.5) / s - 0.5).astype(np.float32)


def with_finer(coarse: list[Detection], fine: list[Detection]) -> list[Detection]:
    """The faces of the usual scan and of the finer tiled scan together, left to right. A face both found is
    the finer scan's (its box is closer: the coarse one of an 80 px face shrunk to 13 px was 13 % too wide,
    which cost its fit 0.1–0.3 of confidence); a coarse face that only parts of finer finds lie in (a face
    bigger than a tile, cut by tile borders) stays whole; the other finer finds are added."""
    if not fine:
        return coarse
    out: list[Detection] = []
    used: set[int] = set()

    def inside(part: Detection, whole: Detection) -> float:  # the fraction of ``part`` inside ``whole``
        ax, ay, aw, ah = part.as_array()[:4]
        bx, by, bw, bh = whole.as_array()[:4]
        ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
        iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
        return float(ix * iy / max(aw * ah, 1e-9))

    for d in coarse:
        overlaps = [(iou(d.as_array(), k.as_array()), i) for i, k in enumerate(fine) if i not in used]
        best = max(overlaps, default=(0.0, -1))
        if best[0] > 0.4:
            out.append(fine[best[1]])
            used.add(best[1])
        else:
            out.append(d)
            used |= {i for i, k in enumerate(fine) if inside(k, d) > 0.5}
    out += [k for i, k in enumerate(fine) if i not in used and all(inside(k, o) <= 0.5 for o in out)]
    return sorted(out, key=lambda d: d.x)

# Smallest side of the aligned crop: HOG's 8-px cells in 2×2 blocks need two cells a side.
MIN_CROP_SIDE = 16


def as_image(image: object) -> np.ndarray:
    """``image`` as the ``(H, W, 3)`` uint8 RGB array every stage reads: such an array as it is (no copy), a file's
    path through :func:`aulib.io.read_image`, anything else through :func:`aulib.io.to_rgb` (gray, RGBA, float,
    PIL) — a gray array reached OpenCV's channel check after detection, a path ``'str' has no attribute 'ndim'``."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 \
            and min(image.shape[:2]) > 0:
        return image
    from aulib.io import read_image, to_rgb

    if isinstance(image, (str, bytes, os.PathLike)):
        return read_image(os.fsdecode(image))
    return to_rgb(image)  # type: ignore[arg-type]


class FacePipeline:
    """Detect, fit, align, mask and describe every face in an RGB image.

    ``detector``: ``"retinaface"`` (default: found all 5 faces of ``multi_face.jpg`` and the B/W
    portrait where dlib's HOG found 4 and 0) or ``"dlib"``. ``size``: side of the aligned crop.
    ``features=False`` skips mask and HOG when only boxes/landmarks/crops are wanted.
    """

    def __init__(self, detector: str = "retinaface", size: int = 112, features: bool = True) -> None:
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or not MIN_CROP_SIDE <= size <= 4096:
            # 0 divided by zero, 7 failed in HOG's windows, 112.0 in OpenCV's overload resolution
            raise ValueError(f"size must be a whole number of pixels from {MIN_CROP_SIDE} to 4096, not {size!r}")
        if not isinstance(features, (bool, np.bool_)):
            raise TypeError(f"features must be True or False, not {features!r}")  # "no" was taken as True
        size = int(size)
        self.detector = make_detector(detector)
        self.landmarker = LandmarkPredictor()
        self.aligner = Aligner(size)
        self.masker = FaceMasker()
        self.hog = HogExtractor(size)
        self.size = size
        self.features = features
        self._crop_detector: DlibHogDetector | None = None
        self._crop_checker: RetinaFaceDetector | None = None

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Face boxes, left to right."""
        return self.detector(as_image(image))

    def from_box(
        self, image: np.ndarray, box: tuple[float, float, float, float], score: float = 1.0,
        display_box: np.ndarray | None = None, up: np.ndarray | None = None, detected: bool = True,
        hog: bool = True, detection: Detection | None = None, averaged: bool = False,
    ) -> Face:
        """Run landmarks → alignment → mask → features for one dlib-style ``box`` (x, y, w, h).

        ``up``: the face's mouth-to-eyes direction in the image when known (the detector's
        keypoints, or the previous frame's fit); a face rolled by more than :data:`MAX_UPRIGHT_ROLL`
        is fitted upright (see :meth:`fit_rolled`). ``detected``: the box comes from the detector
        (``False``: from the previous frame's fit, already as good as a box gets). ``hog=False`` leaves
        ``Face.hog`` for the caller (:meth:`add_hog`; a video computes it in its model thread).
        ``detection``: the detector's find this box came from; its keypoints tell how far the fit lies from
        the detector's own eyes, nose and mouth (``Face.disagreement``; not for a face fitted upright, whose
        keypoints are rough). ``averaged``: the landmarks are :meth:`fit`'s mean of five fits (photos).
        """
        image = as_image(image)
        shown = np.asarray(display_box if display_box is not None else box, dtype=np.float32)
        face = Face(box=shown, score=float(score))
        if len(box) != 4 or not all(isinstance(v, numbers.Real) and math.isfinite(v) for v in box):
            face.error = f"face box {tuple(box)} is not four finite numbers (x, y, width, height)"
            return face
        if min(box[2], box[3]) < MIN_FACE_SIZE:
            face.error = f"face too small for landmarks ({min(box[2], box[3]):.0f} px < {MIN_FACE_SIZE:.0f} px)"
            return face
        gain = exposure_gain(image, box)
        if gain > 1.0:  # darker than any training face: read it brightened (aulib.face.exposure)
            image = brightened(image, gain)
        rolled = up is not None and np.isfinite(up).all() and -float(up[1]) < np.cos(MAX_UPRIGHT_ROLL)
        if rolled:
            face.landmarks, face.disagreement, face.spread = self.fit_rolled_checked(image, box, up, detected,
                                                                                     averaged)
        else:
            face.landmarks, face.spread = self.fit(image, box, averaged)
            if detection is not None:
                face.disagreement = detection.disagreement(face.landmarks)
        return self.describe(image, face, hog=hog, blur=detected)

    def fit(self, image: np.ndarray, box: tuple[float, float, float, float],
            averaged: bool = False) -> tuple[np.ndarray, float]:
        """68 landmarks in ``box`` and their spread: one fit (spread NaN), or with ``averaged`` the mean of the fits
        from ``box`` and from ``box`` moved by :data:`PHOTO_FIT_SHIFT` of its side along each diagonal (≈ 4 fits
        more, 6 ms per face), which makes a photo's points, and the AUs read from them, depend far less on where
        exactly the box lies. The spread is how far the five fits lie from their mean (``Face.spread``)."""
        if not averaged:
            return self.landmarker(image, box), float("nan")
        x, y, w, h = (float(v) for v in box)
        dx, dy = PHOTO_FIT_SHIFT * w, PHOTO_FIT_SHIFT * h
        fits = np.stack([self.landmarker(image, (x + sx * dx, y + sy * dy, w, h))
                         for sx, sy in ((0, 0), (1, 1), (-1, -1), (1, -1), (-1, 1))]).astype(np.float64)
        mean = fits.mean(axis=0)
        eyes = float(np.linalg.norm(mean[36:42].mean(axis=0) - mean[42:48].mean(axis=0)))
        spread = float(np.linalg.norm(fits - mean, axis=2).mean() / eyes) if eyes > 0 else float("inf")
        return mean.astype(np.float32), spread

    def fit_rolled_checked(self, image: np.ndarray, box: tuple[float, float, float, float], up: np.ndarray,
                           redetect: bool = True, averaged: bool = False) -> tuple[np.ndarray, float, float]:
        """:meth:`fit_rolled`, checked: (landmarks, their disagreement with the detector's keypoints found again
        on the upright patch, their :meth:`fit` spread). RetinaFace's keypoints on a face turned 130–160° point
        the wrong way (the sample smile at 130°/140°/155° gave rolls of 75°/42°/32°), and the face fitted
        "upright" by them was read wrongly at confidence 1.00 (140°: sadness). When the fit disagrees with the
        patch's keypoints (more than :data:`~aulib.face.quality.KEYPOINTS_OK`), the face is fitted turned by each
        other quarter turn too and the fit that agrees best is kept; its disagreement gives a fit still on the
        wrong features confidence 0, as for upright faces. NaN without ``redetect`` (a followed video face,
        turned by its previous fit, keeps its scan's disagreement)."""
        from aulib.face.quality import KEYPOINTS_OK

        def attempt(u: np.ndarray) -> tuple[np.ndarray, float, float]:
            pts, found, m, spread = self.fit_rolled(image, box, u, redetect, checked=True, averaged=averaged)
            if found is None:
                return pts, float("nan"), spread
            return pts, found.disagreement(pts.astype(np.float64) @ m[:, :2].T + m[:, 2]), spread

        best = attempt(up)
        if not redetect or (np.isfinite(best[1]) and best[1] <= KEYPOINTS_OK):
            return best
        for k in (1, 2, 3):  # the other quarter turns of ``up``
            c, s_ = np.cos(k * np.pi / 2), np.sin(k * np.pi / 2)
            other = attempt(np.array([c * up[0] - s_ * up[1], s_ * up[0] + c * up[1]]))
            if np.isfinite(other[1]) and not other[1] >= best[1]:
                best = other
        return best

    def fit_rolled(self, image: np.ndarray, box: tuple[float, float, float, float], up: np.ndarray,
                   redetect: bool = True, checked: bool = False, averaged: bool = False) -> Any:
        """68 landmarks of a face rolled in the image plane (head tilted far, a camera on its side,
        a person lying down, a phone video without its rotation tag): the patch around ``box`` is
        rotated about the box centre until ``up`` points up, fitted there, and the points rotated
        back. dlib's regression trees start from an upright mean face, so beyond ≈ 30° of roll they
        fit an upright face to the wrong features with a confident-looking fit (the sample smile
        turned 60° lost AU06 and AU25).

        ``redetect``: the box came from the detector, whose keypoints on a face turned 90° are rough
        (two of the five faces of multi_face.jpg turned 90° got landmarks 21–24 px off, on faces of
        80–120 px): the detector runs again on the upright patch and the face nearest its centre
        gives the box (≈ 3 ms, once per detection of a rolled face; followed video frames keep the
        previous fit's box)."""
        x, y, w, h = (float(v) for v in box)
        cx, cy = x + w / 2, y + h / 2
        ux, uy = float(up[0]), float(up[1])
        rot = np.array([[-uy, ux], [-ux, -uy]])  # maps ``up`` to (0, -1)
        side = int(np.ceil(2 * max(w, h)))
        m = np.hstack([rot, (np.array([side / 2, side / 2]) - rot @ np.array([cx, cy]))[:, None]])
        patch = cv2.warpAffine(image, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        fit_box = (side / 2 - w / 2, side / 2 - h / 2, w, h)
        found: Detection | None = None
        if redetect and isinstance(self.detector, RetinaFaceDetector):  # dlib's boxes carry no keypoints
            def off_centre(d: Detection) -> float:
                return float(np.hypot(d.x + d.width / 2 - side / 2, d.y + d.height / 2 - side / 2))

            near = [d for d in self.detector(patch) if d.keypoints is not None and off_centre(d) < 0.35 * side]
            if near:
                found = min(near, key=off_centre)
                fit_box = found.landmark_box()
        pts, spread = self.fit(patch, fit_box, averaged)
        inv = cv2.invertAffineTransform(m)
        out = (pts.astype(np.float64) @ inv[:, :2].T + inv[:, 2]).astype(np.float32)
        # ``checked`` (fit_rolled_checked): also the patch's detection (keypoints in patch pixels), the
        # image → patch transform and the fits' spread
        return (out, found, m, spread) if checked else out

    def describe(self, image: np.ndarray, face: Face, hog: bool = True, blur: bool = True) -> Face:
        """Align, mask and extract features for a face whose ``landmarks`` are set (``hog=False``: all
        but the HOG descriptor, see :meth:`add_hog`; ``blur=False``: without ``Face.blur`` and
        ``Face.noise``, 0.3 ms — a video face followed between scans keeps its scan's, as it keeps its
        score)."""
        assert face.landmarks is not None
        face.image_size = (int(image.shape[1]), int(image.shape[0]))
        al = self.aligner(image, face.landmarks)
        face.fit_error = al.fit_error
        if not np.isfinite(al.fit_error) or al.fit_error > MAX_FIT_ERROR:
            face.error = f"landmark fit failed (rigid-point error {al.fit_error:.3f} > {MAX_FIT_ERROR})"
            return face
        face.aligned, face.aligned_landmarks = matched_detail(al.crop, al.matrix), al.landmarks
        face.matrix = al.matrix
        if blur:
            face.blur, face.noise = face_detail(image, face.landmarks)  # one shrunk face region for both
        if self.features:
            face.eyes, face.eye_matrices = eye_crops(image, face.landmarks)
            gray = cv2.cvtColor(al.crop, cv2.COLOR_RGB2GRAY)  # full detail: who the face is (video ids)
            face.masked, face.mask = self.masker(gray, al.landmarks)
            if hog:
                self.add_hog([face])
            face.geometry = geometry(al.landmarks, self.size)
        return face

    def add_hog(self, faces: Sequence[Face]) -> None:
        """Fill ``Face.hog`` of the described faces that were left without it (``describe(hog=False)``).

        The HOG reads the model crop ``Face.aligned`` (brought to the training faces' detail, see
        :func:`~aulib.face.align.matched_detail`) under the face's mask; ``Face.masked`` keeps the crop's full
        detail, which tells two people apart (a video's ids: two faces at the training faces' detail correlate
        0.53 where the ids' threshold is 0.5, and two people swapping places swapped ids)."""
        for f in faces:
            if f.hog is None and f.masked is not None and f.mask is not None and f.aligned is not None:
                gray = cv2.cvtColor(f.aligned, cv2.COLOR_RGB2GRAY)
                f.hog = self.hog(np.where(f.mask, gray, np.uint8(0)))

    def __call__(self, image: np.ndarray) -> list[Face]:
        """All faces of an ``(H, W, 3)`` uint8 RGB image, left to right, ``id`` 0, 1, … (empty: no face).

        An image with no face found is searched again turned by 90°, 180° and 270°
        (:meth:`turned_detections`): a photo whose orientation tag was lost shows its faces on their side.
        So is an image whose every face found lies rolled by more than 45°: such a photo is turned, and
        RetinaFace, which finds upright faces best, missed the rest (``multi_face.jpg`` turned 180°: 3 of 5
        faces, 90°: 4 of 5); the faces found turned that overlap none already found are added.

        ``image`` may also be gray, RGBA, of another dtype, a PIL image or a file's path (read as
        :meth:`aulib.Analyzer.get` reads them, :func:`as_image`)."""
        image = as_image(image)
        dets, turned_up = self.detect(image), None
        if not dets or self._small_faces_found(image, dets):
            dets = with_finer(dets, self.tiled_detections(image))
        else:
            dets = self._rough_boxes_again(image, dets)
        if not dets:
            dets, turned_up = self.turned_detections(image)
        fits = fit_boxes(self.detector, image, dets)
        if turned_up is not None:  # a face upright in the turned image whose keypoints give no direction (profile)
            fits = [(box, turned_up if up is None else up) for box, up in fits]
        elif any(up is not None for _, up in fits) and all(up is None or -float(up[1]) < np.cos(TURNED_IMAGE_ROLL)
                                                            for _, up in fits):  # dlib's boxes have no direction
            more, turned_up = self.turned_detections(image)
            more = [d for d in more if all(iou(d.as_array(), o.as_array()) < 0.3 for o in dets)]
            if more and turned_up is not None:
                extra = [(box, turned_up if up is None else up) for box, up in fit_boxes(self.detector, image, more)]
                order = np.argsort([d.x for d in dets + more], kind="stable")
                dets, fits = [(dets + more)[i] for i in order], [(fits + extra)[i] for i in order]
        faces = [self.from_box(image, box, d.score, display_box=d.as_array(), up=up, detection=d, averaged=True)
                 for d, (box, up) in zip(dets, fits)]
        for i, f in enumerate(faces):
            f.id = i
        return faces

    def tiled_detections(self, image: np.ndarray) -> list[Detection]:
        """Faces of a large image in which the usual scan (the whole image shrunk to 1280 px) found none,
        or only small ones (:meth:`_small_faces_found`), looked for again in tiles of the image at a
        finer scale: as much of it as :data:`TILED_SCAN_PIXELS` allows. The usual scan shrank a 108 MP
        group photo's 100 px faces to 11 px, below what RetinaFace finds (≈ 16 px; now 24 px); a
        10000×100 strip's 34 px face to 4 px. ≈ 0.3–0.4 s, only for such images."""
        if not isinstance(self.detector, RetinaFaceDetector):
            return []
        h, w = image.shape[:2]
        coarse = min(1.0, self.detector.max_side / max(h, w))
        fine = min(1.0, float(np.sqrt(TILED_SCAN_PIXELS / (h * w))))
        if coarse > TILED_SCAN_BELOW or fine < 1.5 * coarse:
            return []  # a photo of ordinary size, or the usual scan already looked about this closely
        big = cv2.resize(image, (max(1, round(w * fine)), max(1, round(h * fine))), interpolation=cv2.INTER_AREA) \
            if fine < 1 else image
        side, step = self.detector.max_side, self.detector.max_side - TILE_OVERLAP
        found: list[Detection] = []
        for y0 in range(0, max(1, big.shape[0] - TILE_OVERLAP), step):
            for x0 in range(0, max(1, big.shape[1] - TILE_OVERLAP), step):
                found += [d.from_patch(x0, y0, fine) for d in self.detector(big[y0:y0 + side, x0:x0 + side])]
        kept: list[Detection] = []  # a face on a tile border is found twice: the better one stays
        for d in sorted(found, key=lambda d: -d.score):
            if all(iou(d.as_array(), k.as_array()) < 0.4 for k in kept):
                kept.append(d)
        return sorted((self._closer(image, d) for d in kept), key=lambda d: d.x)

    def _small_faces_found(self, image: np.ndarray, dets: list[Detection]) -> bool:
        """Whether the usual scan found a face small enough at its scale (:data:`NEAR_LIMIT_FACE` px) that
        smaller ones beside it may have been below what the detector finds: a group photo. The tiled scan
        then looks again (an 8000×5000 photo of six 80 px faces: 4 found, shrunk to 13 px; all six in
        tiles). A photo whose faces are all big (a phone portrait) is not scanned again."""
        max_side = getattr(self.detector, "max_side", 0)
        if not max_side:
            return False
        coarse = min(1.0, max_side / max(image.shape[:2]))
        return min(min(d.width, d.height) for d in dets) * coarse < NEAR_LIMIT_FACE

    def _rough_boxes_again(self, image: np.ndarray, dets: list[Detection]) -> list[Detection]:
        """``dets`` with each face the usual scan found under :data:`ROUGH_BOX_FACE` px of its shrunk image
        detected again around itself at full size (:meth:`_closer`)."""
        max_side = getattr(self.detector, "max_side", 0)
        if not max_side or not isinstance(self.detector, RetinaFaceDetector):
            return dets
        coarse = max_side / max(image.shape[:2])
        if coarse >= 1:
            return dets
        return [self._closer(image, d) if min(d.width, d.height) * coarse < ROUGH_BOX_FACE else d for d in dets]

    def _closer(self, image: np.ndarray, d: Detection) -> Detection:
        """A face found at a coarse scale detected again in its own neighbourhood at full size: a 24 px
        detection's box is a few pixels off, and the landmark fit starting from it ended 15 px away."""
        h, w = image.shape[:2]
        side = 3 * max(d.width, d.height)
        x0, y0 = int(max(0, d.x + d.width / 2 - side / 2)), int(max(0, d.y + d.height / 2 - side / 2))
        x1, y1 = int(min(w, x0 + side)), int(min(h, y0 + side))
        near = [e for e in (e.from_patch(x0, y0) for e in self.detector(image[y0:y1, x0:x1]))
                if iou(e.as_array(), d.as_array()) > 0.3]
        return max(near, key=lambda e: e.score) if near else d

    def turned_detections(self, image: np.ndarray) -> tuple[list[Detection], np.ndarray | None]:
        """Faces found in the image turned by 90°, 180° or 270° (the turn whose best face scores highest:
        the one that shows them upright), in the image's own pixels, left to right, and the direction
        that is "up" for them in the image (None when none is found). RetinaFace misses faces lying on
        their side or upside down (the B/W sample portrait turned any of those ways: none found); once
        found, :meth:`fit_rolled` fits them upright. Costs three detector runs at
        :data:`TURNED_SCAN_SIDE` px, only for images in which no face was found or whose every face found
        lies rolled (:meth:`__call__`)."""
        h, w = image.shape[:2]
        scan = scanning(self.detector, TURNED_SCAN_SIDE)
        best: tuple[float, list[Detection], Any, np.ndarray] | None = None
        # per turn: turned pixels → image pixels, and the turned image's up (0, −1) in the image
        for code, back, up in ((cv2.ROTATE_90_CLOCKWISE, lambda p: np.c_[p[:, 1], h - p[:, 0]], (-1.0, 0.0)),
                               (cv2.ROTATE_180, lambda p: np.c_[w - p[:, 0], h - p[:, 1]], (0.0, 1.0)),
                               (cv2.ROTATE_90_COUNTERCLOCKWISE, lambda p: np.c_[w - p[:, 1], p[:, 0]], (1.0, 0.0))):
            found = scan(cv2.rotate(image, code))
            if found and (best is None or max(d.score for d in found) > best[0]):
                best = (max(d.score for d in found), found, back, np.array(up))
        if best is None:
            return [], None
        _, found, back, turned_up = best
        out = []
        for d in found:
            corners = back(np.array([[d.x, d.y], [d.x + d.width, d.y + d.height]], np.float64))
            (x0, y0), (x1, y1) = corners.min(0), corners.max(0)
            kp = None if d.keypoints is None else back(np.asarray(d.keypoints, np.float64)).astype(np.float32)
            out.append(Detection(float(x0), float(y0), float(x1 - x0), float(y1 - y0), d.score, kp))
        return sorted(out, key=lambda d: d.x), turned_up

    def crop_face(self, image: np.ndarray) -> tuple[float, Detection | None]:
        """RetinaFace's best face (score 0–1, box in image pixels) for an image that should be one
        cropped face.

        The crop is scaled so its longer side is 192 px (then 128 px if that finds nothing) and
        framed with a black border of half its side: RetinaFace needs context around a face that a
        tight 48 px dataset crop lacks, and its anchors suit faces of 100–200 px. Used by
        :meth:`cropped` to refuse blank, noise and scenery images the landmark fit alone would accept.
        """
        if self._crop_checker is None:
            self._crop_checker = RetinaFaceDetector(score_threshold=0.02, min_size=0.0)
        h, w = image.shape[:2]
        best: Detection | None = None
        for side in CROP_CHECK_SIDES:
            s = side / max(h, w)
            big = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))),
                             interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
            pad = side // 4
            framed = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
            for d in self._crop_checker(framed):
                if best is None or d.score > best.score:
                    best = d.from_patch(-pad, -pad, s)
            if best is not None and best.score >= CROP_FACE_THRESHOLD:
                break
        return (best.score if best is not None else 0.0), best

    def _fit_crop(self, image: np.ndarray, face: Face, found: Detection | None) -> Face:
        """:meth:`cropped`'s landmark fit of an upright crop: dlib's detector proposes the box (else the whole
        image), then a second try from RetinaFace's keypoints (``found``) when the first fit fails."""
        h, w = image.shape[:2]
        scale = max(1.0, 192.0 / min(h, w))
        big = image if scale == 1.0 else cv2.resize(
            image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC
        )
        if self._crop_detector is None:
            self._crop_detector = DlibHogDetector(upsample=0)
        dets = self._crop_detector(big)
        bh, bw = big.shape[:2]
        if dets:
            d = max(dets, key=lambda d: d.width * d.height)
            box = (d.x, d.y, d.width, d.height)
        else:
            box = (0.0, 0.0, float(bw), float(bh))
        face.landmarks = _unscaled(self.landmarker(big, box), big, image)
        face = self.describe(image, face)
        if not face.success and found is not None and found.keypoints is not None:
            # Second try from RetinaFace's eyes and mouth (turned or tilted FER faces that dlib's
            # detector missed); faces the first fit got right keep exactly those landmarks.
            retry = Face(box=face.box, score=face.score)
            x, y, bw_, bh_ = found.landmark_box()
            fitted = self.landmarker(big, (x * scale, y * scale, bw_ * scale, bh_ * scale))
            retry.landmarks = _unscaled(fitted, big, image)
            retry = self.describe(image, retry)
            if retry.success:
                face = retry
        return face

    def _crop_turns(self, image: np.ndarray, found: Detection | None) -> tuple[int, Detection | None]:
        """Quarter turns (``np.rot90``'s k) that bring the face of a crop upright, from the crop check's
        keypoints, and the crop check's face in the turned crop: 0 (and ``found``) for a face within 45° of
        upright, or one that no quarter turn brings within :data:`MAX_UPRIGHT_ROLL` of upright. RetinaFace's
        keypoints collapse on a face near upside down: the crop turned half way is then checked for a face
        upright there."""
        up = found.up() if found is not None else None
        if up is None:
            if found is None or found.keypoints is None:
                return 0, found
            score, turned = self.crop_face(np.ascontiguousarray(np.rot90(image, 2)))
            turned_up = turned.up() if turned is not None and score >= CROP_FACE_THRESHOLD else None
            if turned_up is not None and abs(np.degrees(np.arctan2(turned_up[0], -turned_up[1]))) <= 45:
                return 2, turned
            return 0, found
        roll = float(np.degrees(np.arctan2(up[0], -up[1])))  # 0 upright, 90: the top of the head points right
        turns = int(round(roll / 90.0)) % 4
        # only where the turn leaves the face within dlib's reach of upright (MAX_UPRIGHT_ROLL): a head tilted
        # 50° (a FER face resting on a hand) is not read better turned 90° the other way
        if not turns or abs(roll - 90.0 * round(roll / 90.0)) > np.degrees(MAX_UPRIGHT_ROLL):
            return 0, found
        _, turned = self.crop_face(np.ascontiguousarray(np.rot90(image, turns)))
        return turns, turned

    def cropped(self, image: np.ndarray) -> Face:
        """Treat the whole image as one already-cropped face (48×48 CK+/FER crops, say).

        First decides *whether* the image shows a face (:meth:`crop_face` score ≥
        ``CROP_FACE_THRESHOLD``; images under ``MIN_CROP_SIZE`` px are refused outright), so a
        blank, noisy or scenery image is ``success=False`` with a reason instead of a fitted mean
        face. Then the image is upscaled to at least 192 px, dlib's detector proposes the landmark
        box (falling back to the whole image), and the 68 points are fitted inside it; landmarks are
        returned in the original image's pixels. ``box`` is the whole image, ``score`` the face score.
        A crop darker than any training face is read brightened (:mod:`aulib.face.exposure`), as whole images
        are: a CK+-style crop at 4 % of its light lost every AU.
        """
        image = as_image(image)
        h, w = image.shape[:2]
        face = Face(box=np.array([0, 0, w, h], np.float32), score=0.0)
        if min(h, w) < MIN_CROP_SIZE:
            face.error = f"image too small for a face ({w}×{h} px < {MIN_CROP_SIZE} px)"
            return face
        gain = exposure_gain(image, (0.0, 0.0, float(w), float(h)))
        if gain > 1.0:  # a crop darker than any training face: read it brightened, as from_box does
            image = brightened(image, gain)
        face = self._fit_cropped(image, face)
        if _crop_confidence(face) >= CROP_RETRY_CONFIDENCE:
            return face
        # The turn read from the crop check's keypoints is wrong for many small crops turned a quarter or half way
        # (on 60 other CK+ peak crops: the emotion of the upright crop for 48, 46 and 37 of them turned 90°, 180°
        # and 270°; the others read upside down or sideways, happiness as sadness, at confidence ≈ 0). A poor fit
        # is therefore tried from each other quarter turn as well and the most confident kept (60 of 60 each):
        # 3 more crop checks and fits for such a crop; crops read well at once (every upright CK+ crop) cost
        # nothing more.
        best, best_turns = face, 0
        for turns in (1, 2, 3):
            turned = self._fit_cropped(np.ascontiguousarray(np.rot90(image, turns)),
                                       Face(box=face.box.copy(), score=0.0))
            if _crop_confidence(turned) > _crop_confidence(best) + 1e-6:
                best, best_turns = turned, turns
        if not best.success:
            return face  # with its own reason (no face, a fit refused)
        # the kept fit described last, on the crop itself: its warp is the last the aligner made, as for every other
        # face (the training pack records that warp to rebuild the crop; it got a losing turn's)
        back = Face(box=face.box, score=best.score)
        back.landmarks = _unturned(best.landmarks, best_turns, image.shape[:2]) if best_turns else best.landmarks
        kept = self.describe(image, back)
        kept.disagreement = best.disagreement
        return kept

    def _fit_cropped(self, image: np.ndarray, face: Face) -> Face:
        """:meth:`cropped` on an image already checked for size and brightened: the crop check, the turn its
        keypoints give, the landmark fit."""
        face.score, found = self.crop_face(image)
        if face.score < CROP_FACE_THRESHOLD:
            face.error = f"no face in the cropped image (face score {face.score:.2f} < {CROP_FACE_THRESHOLD})"
            return face
        turns, upright_found = self._crop_turns(image, found)
        if turns:
            # a crop turned a quarter or half way (a phone photo without its rotation tag, a scan): fitted upright
            # and its points turned back. dlib's trees fitted an upright face to the turned one (confidence 0,
            # success 1, AU12_r 1.0 for a broad smile; roll 0.24 rad for a face at 90°)
            upright = np.ascontiguousarray(np.rot90(image, turns))
            inner = self._fit_crop(upright, Face(box=face.box, score=face.score), upright_found)
            face.landmarks = _unturned(inner.landmarks, turns, image.shape[:2])
            if upright_found is not None:
                # the face score of the crop as it was read (upright), as the upright crop itself gets: the turned
                # crop's lower score made confidence depend on the turn (0.95 upright, 0.77 turned 180°, same AUs)
                face.score = upright_found.score
            face = self.describe(image, face)
            # the crop check's keypoints where they say something: in the upright crop (collapsed upside down)
            found, fitted = upright_found, inner.landmarks
        else:
            face = self._fit_crop(image, face, found)
            fitted = face.landmarks
        if found is not None and fitted is not None:  # the crop check's keypoints: see from_box
            face.disagreement = found.disagreement(fitted)
        return face
