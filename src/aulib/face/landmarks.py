"""68 facial landmarks (iBUG 300-W order) with dlib's shape predictor.

The predictor file comes from the ``face-recognition-models`` wheel (no download) and is verified
against the manifest's sha256 before dlib reads it. Points are
returned in original-image pixels as a ``(68, 2)`` float32 array (x, y).
"""

from __future__ import annotations

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


def predictor_path() -> str:
    """Verified location of ``shape_predictor_68_face_landmarks.dat`` inside face-recognition-models.

    The file stays in that wheel (100 MB; not copied into aulib); the manifest records its sha256
    and size, and :func:`aulib.models.model_path` finds it without importing the package (its
    ``__init__`` needs ``pkg_resources``, which recent setuptools no longer ships) and verifies it.
    """
    from aulib.models import model_path

    return str(model_path(PREDICTOR_FILE))


@lru_cache(maxsize=4)
def _load(path: str) -> Any:
    """The dlib predictor of a verified file, loaded once per process and shared.

    dlib's object is read-only, so every :class:`LandmarkPredictor` can use the same one. Loading
    takes ~0.5 s (dlib deserialises 100 MB of trees, holding the GIL, so a background thread does
    not overlap it with anything) and ~200 MB of memory; a second Analyzer should not pay it again.
    """
    import dlib

    from aulib.models import ModelFileError

    try:
        return dlib.shape_predictor(path)
    except RuntimeError as e:
        raise ModelFileError(f"{path}: cannot load dlib shape predictor ({e})") from None


class LandmarkPredictor:
    """dlib ensemble-of-regression-trees 68-point predictor (≈1 ms per face).

    ``model_path`` reads the predictor from another location (e.g. a user's copy); like every
    model file it must match the manifest's sha256, so a damaged or different file is refused
    with :class:`aulib.models.ModelFileError` naming it.
    """

    def __init__(self, model_path: str | None = None) -> None:
        import dlib

        from aulib.models import model_path as verified

        self._predictor = _load(str(verified(PREDICTOR_FILE, model_path)))
        self._dlib = dlib

    def __call__(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """Fit 68 points inside ``box`` (x, y, w, h) of an RGB or gray uint8 image."""
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        gray = np.ascontiguousarray(gray)
        x, y, w, h = box
        rect = self._dlib.rectangle(round(x), round(y), round(x + w), round(y + h))
        shape = self._predictor(gray, rect)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)


def box_from_landmarks(points: np.ndarray) -> tuple[float, float, float, float]:
    """A dlib-style square box around fitted landmarks, for tracking the face in the next frame."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    side = float(max(hi - lo)) * 1.05
    cx, cy = (lo + hi) / 2
    cy += 0.04 * side  # dlib's boxes sit slightly below the landmark hull's centre (brows are above)
    return float(cx - side / 2), float(cy - side / 2), side, side
