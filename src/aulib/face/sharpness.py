"""How blurred a face is, at the scale of the smallest faces the models were trained on.

Why: a blurred face is read with full confidence while its reading fades. The sample smile blurred with
a Gaussian of σ 8 px lost AU06, at σ 12 kept only AU12, at σ 16 read "neutral" — each at confidence
1.00, because the landmark fit on a smooth face looks perfect. The models were trained down to FER2013's
48 px faces, so softness a 48 px face has anyway is no reason for doubt; detail missing even at that
scale is.

Measure: the face's landmark hull, shrunk (area average) so its longer side is :data:`DETAIL_SIDE` px,
scored by Crete et al.'s no-reference blur metric (2007; ``skimage.measure.blur_effect``): 0 sharp, 1 fully
blurred; the share of its edge contrast that survives an 11-pixel box blur is what is missing. Measured at
48 px: FER2013Valid max 0.52, FER2013Train 99.9th percentile 0.516 (1 of 7140 above 0.55), CK+48 max 0.51;
every face of the sample photos 0.31–0.39, every frame of the sample videos ≤ 0.39. The sample smile
blurred σ 2/4/8/12/16 px: 0.32/0.38/0.55/0.63/0.66.

:func:`blur_factor` turns it into a factor of ``confidence`` (:mod:`aulib.face.quality`): 1 up to
:data:`BLUR_OK` (as blurred as the blurriest training faces), falling linearly to 0 at :data:`BLUR_NONE`.

Noise is the other half of a face's detail: white noise pulls the reading towards neutral at full
confidence (the sample smile with noise of σ 80 px read "neutral", AU12 3.4 → 0.9; five faces of a group photo
with high-ISO-like noise of σ 20 lost up to 2.7 of AU12), and the blur metric does not see it. :func:`face_noise`
estimates it on the same 48 px face and :func:`noise_factor` is its factor of ``confidence``.
"""

from __future__ import annotations

import cv2
import numpy as np

from aulib.face.landmarks import as_gray

DETAIL_SIDE = 48  # px: FER2013's faces, the smallest the models were trained on
BLUR_OK = 0.52  # the blurriest training faces at that scale (FER2013Valid max, FER2013Train 99.9 %)
BLUR_NONE = 0.68  # beyond the sample smile at σ 16 px, which read "neutral"
_BOX = 11  # Crete et al.'s (and scikit-image's) re-blur length
# Noise (:func:`face_noise`, gray levels at 48 px). Set on FER2013Valid faces measured at their own size
# (≈ 40 px): 99th percentile 7.7; with white noise of σ 10 / 20 / 35 they measure ≈ 8 / 14 / 23 and are read right
# 0.81 / 0.69 / 0.62 of the time instead of 0.86. The sample photos and videos ≤ 5.4 and ≤ 2.5. Confidence falls
# linearly from NOISE_OK to 0 at NOISE_NONE. Fine texture at that scale reads as noise too: hatched drawings and
# the most deeply wrinkled faces. Faces smaller than 48 px are enlarged to it first (face_noise), where
# noise is largely smoothed away: FER2013Valid measured so, 0.1 % lose confidence, with noise of σ 20 9 %.
NOISE_OK = 7.0
NOISE_NONE = 17.0


def blur_effect(gray: np.ndarray) -> float:
    """Crete et al.'s blur metric of a 2-D image, 0 (sharp) … 1 (blurred); NaN for an image too small to
    tell (under 4 px a side) or without any edge.

    The same numbers as ``skimage.measure.blur_effect(gray, h_size=11)`` (within 1e-6; tested), in
    OpenCV: 0.09 ms instead of 0.8 ms on a 48 px face, paid on every face of every video frame."""
    if gray.ndim != 2 or min(gray.shape) < 4:
        return float("nan")
    f = gray.astype(np.float32)
    box = np.full(_BOX, 1.0 / _BOX, np.float32)
    one = np.ones(1, np.float32)
    inner = (slice(2, f.shape[0] - 1), slice(2, f.shape[1] - 1))
    worst = 0.0
    for dx, dy, kx, ky in ((0, 1, one, box), (1, 0, box, one)):  # along the rows, then the columns
        smooth = cv2.sepFilter2D(f, -1, kx, ky, borderType=cv2.BORDER_REFLECT)
        sharp = np.abs(cv2.Sobel(f, cv2.CV_32F, dx, dy, ksize=3, borderType=cv2.BORDER_REFLECT))
        blurred = np.abs(cv2.Sobel(smooth, cv2.CV_32F, dx, dy, ksize=3, borderType=cv2.BORDER_REFLECT))
        total = float(sharp[inner].sum(dtype=np.float64))
        if total <= 0:
            return float("nan")
        kept = float(np.maximum(sharp - blurred, 0)[inner].sum(dtype=np.float64))
        worst = max(worst, abs(total - kept) / total)
    return worst


def detail_region(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
    """The gray face inside the bounding box of its ``landmarks`` (image pixels) in an RGB or gray uint8
    ``image``, shrunk to :data:`DETAIL_SIDE` px when larger (a smaller face as it is); None when less than
    8 px of the face is inside the image."""
    h, w = image.shape[:2]
    pts = np.asarray(landmarks, np.float64)
    x0, y0 = np.floor(np.maximum(pts.min(axis=0), 0)).astype(int)
    x1, y1 = np.ceil(np.minimum(pts.max(axis=0), (w, h))).astype(int)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    region = as_gray(image[y0:y1, x0:x1])
    scale = DETAIL_SIDE / max(region.shape)
    if scale < 1:
        size = (max(1, round(region.shape[1] * scale)), max(1, round(region.shape[0] * scale)))
        region = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
    return region


def face_blur(image: np.ndarray, landmarks: np.ndarray) -> float:
    """:func:`blur_effect` of the face's :func:`detail_region` (NaN without one)."""
    region = detail_region(image, landmarks)
    return float("nan") if region is None else blur_effect(region)


def noise_sigma(gray: np.ndarray) -> float:
    """Standard deviation (gray levels) of the white noise in a 2-D image: Immerkær's (1996) mask, the
    difference of two Laplacians, cancels smooth shading and straight edges, and the median of its response
    (σ·6 for white noise; 0.6745 its median absolute value's share) ignores what edges remain. NaN for an
    image under 4 px a side."""
    if gray.ndim != 2 or min(gray.shape) < 4:
        return float("nan")
    mask = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    response = cv2.filter2D(gray.astype(np.float32), -1, mask, borderType=cv2.BORDER_REFLECT)[1:-1, 1:-1]
    return _median(np.abs(response).ravel()) / (6 * 0.6745)


def _median(values: np.ndarray) -> float:
    """``np.median`` of a flat array, the same value: np.median's first call imports ``numpy.ma`` (10 ms of
    every photo's whole process) to ask whether its input is a masked array."""
    k = values.size // 2
    if values.size % 2:
        return float(np.partition(values, k)[k])
    part = np.partition(values, (k - 1, k))
    return float(np.mean(part[k - 1:k + 1]))


def face_detail(image: np.ndarray, landmarks: np.ndarray) -> tuple[float, float]:
    """(:func:`face_blur`, :func:`face_noise`) of one face from one :func:`detail_region` (NaN, NaN without
    one): the pipeline measures both at each scan."""
    region = detail_region(image, landmarks)
    if region is None:
        return float("nan"), float("nan")
    return blur_effect(region), _noise_at_detail_side(region)


def face_noise(image: np.ndarray, landmarks: np.ndarray) -> float:
    """:func:`noise_sigma` of the face's :func:`detail_region` brought to :data:`DETAIL_SIDE` px (NaN without
    one): the noise the models see at the scale of the smallest training faces (a photo's sensor noise
    averages out as its face is shrunk). A smaller face is enlarged to that size first: at its own few pixels
    the JPEG blocks and sharpening halos of an ordinary web photo read as noise (a 21 px face, mildly sharpened
    and saved at quality 75: confidence 0.38 for a clean smile)."""
    region = detail_region(image, landmarks)
    return float("nan") if region is None else _noise_at_detail_side(region)


def _noise_at_detail_side(region: np.ndarray) -> float:
    """:func:`noise_sigma` of a :func:`detail_region`, enlarged to :data:`DETAIL_SIDE` px when smaller."""
    if max(region.shape) < DETAIL_SIDE:
        scale = DETAIL_SIDE / max(region.shape)
        size = (max(1, round(region.shape[1] * scale)), max(1, round(region.shape[0] * scale)))
        region = cv2.resize(region, size, interpolation=cv2.INTER_LINEAR)
    return noise_sigma(region)


def noise_factor(noise: float) -> float:
    """The factor of ``confidence`` for a face's :func:`face_noise` (1 when unknown)."""
    if not np.isfinite(noise):
        return 1.0
    return float(np.clip((NOISE_NONE - noise) / (NOISE_NONE - NOISE_OK), 0.0, 1.0))


def blur_factor(blur: float) -> float:
    """The factor of ``confidence`` for a face's :func:`face_blur` (1 when unknown)."""
    if not np.isfinite(blur):
        return 1.0
    return float(np.clip((BLUR_NONE - blur) / (BLUR_NONE - BLUR_OK), 0.0, 1.0))
