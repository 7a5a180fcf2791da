"""Head pose from the 68 landmarks: a 3D mean face, a pinhole camera and ``cv2.solvePnP``.

Output follows OpenFace 2 (``pose_Tx, pose_Ty, pose_Tz, pose_Rx, pose_Ry, pose_Rz``): the camera is at
the origin with x to the image right, y down and z along the optical axis; the translation (mm) is the
position of the 3D face's origin (the mean of its 68 points, about the nose bridge, 4 cm behind the
nose tip); the rotation (radians) is the face's rotation in camera coordinates written as Euler angles
with ``R = Rx · Ry · Rz`` (OpenFace's convention): ``Rx`` pitch (positive = looking down),
``Ry`` yaw (positive = turned towards the image's left, i.e. the subject's right),
``Rz`` roll (positive = head tilted clockwise as seen in the image).

Why a fixed 3D mean face and PnP rather than MediaPipe's mesh: it is cheap (≈0.8 ms per face
against ≈9 ms per frame for MediaPipe's detector + landmark network), it reuses the 68 landmarks every
other stage already has, and it agrees with OpenFace within a few degrees on the sample clips (see the
README). The 3D face (``shape68_3d.json``) is licence-clean: aulib's own 2D mean shape with depths from
MediaPipe's Apache-2.0 canonical mesh (``scripts/build_shape68_3d.py``). OpenFace's own model is
non-commercial and not used.

Camera: OpenFace's defaults when no intrinsics are given, ``fx = fy = 500 · width / 640`` and the
principal point at the image centre; pass real ``(fx, fy, cx, cy)`` for a calibrated camera.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from aulib.face.landmarks import checked_points
from aulib.face.record import Face

Intrinsics = tuple[float, float, float, float]
MAX_PIXELS = 1e6  # the largest focal length / principal point (pixels) that is not a unit error

# Points used for the fit: brows, nose, eyes and outer lips (17-59). Left out: the jaw contour (0-16),
# which dlib puts on the visible silhouette, so it slides over the 3D face as the head turns, and the
# inner lips (60-67), which move with speech. Against OpenFace on the two reference clips this subset
# gave the smallest pitch/roll differences (mean |diff| Rx 3.4°/2.4°, Ry 4.4°/3.0°, Rz 2.0°/0.2°; all
# 68 points: Rx 4.5°/3.8°, Ry 4.1°/3.7°, Rz 2.3°/0.3°).
POSE_POINTS = np.r_[17:60]


@lru_cache(maxsize=1)
def mean_face_3d() -> np.ndarray:
    """(68, 3) float64 3D mean face in mm, camera axes (x right, y down, z away), origin at its mean."""
    data = json.loads(Path(__file__).with_name("shape68_3d.json").read_text())
    pts = np.asarray(data["points"], np.float64)
    if pts.shape != (68, 3):
        raise ValueError(f"shape68_3d.json: expected 68 3D points, got {pts.shape}")
    return pts


def default_intrinsics(width: float, height: float) -> Intrinsics:
    """OpenFace's camera when none is given: ``fx = fy = 500 · width / 640``, centre of the image."""
    f = 500.0 * width / 640.0
    return f, f, width / 2.0, height / 2.0


def camera_matrix(intrinsics: Intrinsics) -> np.ndarray:
    fx, fy, cx, cy = intrinsics
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def euler_from_matrix(r: np.ndarray) -> np.ndarray:
    """(Rx, Ry, Rz) radians with ``R = Rx · Ry · Rz`` (OpenFace's decomposition)."""
    ry = np.arcsin(np.clip(r[0, 2], -1.0, 1.0))
    rx = np.arctan2(-r[1, 2], r[2, 2])
    rz = np.arctan2(-r[0, 1], r[0, 0])
    return np.array([rx, ry, rz])


def matrix_from_euler(rx: float, ry: float, rz: float) -> np.ndarray:
    """Rotation matrix ``Rx · Ry · Rz`` (inverse of :func:`euler_from_matrix`)."""
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    mx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    my = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    mz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return mx @ my @ mz


def project(points3d: np.ndarray, pose: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """(N, 2) image pixels of 3D model points under ``pose`` (Tx, Ty, Tz, Rx, Ry, Rz)."""
    fx, fy, cx, cy = intrinsics
    cam = points3d @ matrix_from_euler(*pose[3:]).T + pose[:3]
    return np.c_[fx * cam[:, 0] / cam[:, 2] + cx, fy * cam[:, 1] / cam[:, 2] + cy]


def solve_pose(landmarks: np.ndarray, intrinsics: Intrinsics,
               model: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Pose (Tx, Ty, Tz mm, Rx, Ry, Rz rad) of 68 image landmarks, and the RMS reprojection error in pixels.

    SQPnP (Terzakis & Lourakis, ECCV 2020) gives a global optimum of the object-space error without a
    guess (≈0.05 ms), Levenberg–Marquardt then minimises the image reprojection error (≈0.7 ms): on the
    OpenFace reference clips SQPnP alone was up to 0.4° further from OpenFace in yaw. Returns NaNs when
    the points are not finite or the solver fails (never raises on bad landmarks).
    """
    pts3 = (mean_face_3d() if model is None else model)[POSE_POINTS]
    pts2 = checked_points(landmarks, finite=False)[POSE_POINTS]
    nan = np.full(6, np.nan)
    if not np.isfinite(pts2).all():
        return nan, float("nan")
    k = camera_matrix(intrinsics)
    try:
        ok, rvec, tvec = cv2.solvePnP(pts3, pts2, k, None, flags=cv2.SOLVEPNP_SQPNP)
        if not ok:
            return nan, float("nan")
        rvec, tvec = cv2.solvePnPRefineLM(pts3, pts2, k, None, rvec, tvec)
    except cv2.error:
        return nan, float("nan")
    r, _ = cv2.Rodrigues(rvec)
    if tvec[2, 0] <= 0:  # the face behind the camera: a degenerate solution
        return nan, float("nan")
    pose = np.r_[tvec.ravel(), euler_from_matrix(r)]
    err = float(np.sqrt(np.mean(np.sum((project(pts3, pose, intrinsics) - pts2) ** 2, axis=1))))
    return pose, err


class HeadPose:
    """Model stage: fills ``Face.pose`` (6,) = Tx, Ty, Tz (mm), Rx, Ry, Rz (rad) of successful faces.

    ``intrinsics``: ``(fx, fy, cx, cy)`` in pixels of the analysed image; ``None`` uses OpenFace's
    defaults for each face's image size (:func:`default_intrinsics`). ``Face.extra["pose_error"]``
    gets the RMS reprojection error (pixels) for diagnostics.
    """

    def __init__(self, intrinsics: Intrinsics | None = None) -> None:
        if intrinsics is not None:
            values = list(intrinsics) if isinstance(intrinsics, (list, tuple, np.ndarray)) else None
            if values is None or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
                raise TypeError(f"intrinsics must be four numbers (fx, fy, cx, cy) in pixels, not {intrinsics!r}")
            if len(values) != 4 or not all(np.isfinite(v) for v in values):
                raise ValueError(f"intrinsics must be four finite numbers fx, fy, cx, cy, not {intrinsics!r}")
            if values[0] <= 0 or values[1] <= 0:
                raise ValueError(f"focal lengths must be positive, not {tuple(values[:2])!r}")
            # a focal length or principal point beyond a million pixels is a unit error (mm, m), and the
            # pose fit gives NaN there while the row still says success
            if max(values[:2]) > MAX_PIXELS or not all(abs(v) <= MAX_PIXELS for v in values[2:]) \
                    or min(values[:2]) < 1:
                raise ValueError(f"intrinsics must be in pixels: fx, fy between 1 and {MAX_PIXELS:.0e}, "
                                 f"|cx|, |cy| at most {MAX_PIXELS:.0e}; got {tuple(values)!r}")
            intrinsics = tuple(values)
        self.intrinsics = None if intrinsics is None else tuple(float(v) for v in intrinsics)

    def camera(self, face: Face) -> Intrinsics:
        """The intrinsics used for ``face``: the given ones, else OpenFace's for its image size."""
        if self.intrinsics is not None:
            return self.intrinsics  # type: ignore[return-value]
        if face.image_size is not None:
            return default_intrinsics(*face.image_size)
        x, y, w, h = (float(v) for v in face.box)  # no image size recorded: a camera centred on the box
        return 500.0, 500.0, x + w / 2, y + h / 2

    def run(self, faces: Sequence[Face]) -> Sequence[Face]:
        for f in faces:
            if f.success and f.landmarks is not None:
                f.pose, f.extra["pose_error"] = solve_pose(f.landmarks, self.camera(f))  # type: ignore[assignment]
        return faces
