"""Eye gaze (OpenFace's ``gaze_0_*``, ``gaze_1_*``, ``gaze_angle_x/y``) from iris centres and the head pose.

Two steps, each replaceable:

1. **Pupils.** Each eye is cropped from the image around its two corners (of the 68 points): a 64×64
   square 2.3× the corner distance, corners horizontal (:func:`eye_crops`, done by the face pipeline
   while it has the image). MediaPipe's iris network (Apache-2.0; converted to ONNX by
   ``scripts/build_iris_onnx.py``, ≈1.7 ms per eye on one core, both eyes of a batch of faces in one
   call) finds the iris centre in it. It is trained on one eye only, the one MediaPipe calls "left":
   face-mesh points 33/133 (``iris_landmark_left_and_right_from_face_landmarks_cpu.pbtxt``), which are
   dlib's 36/39, the eye on the image's left (the subject's right); the other eye's crop is mirrored —
   MediaPipe's own recipe (``iris_landmark_cpu.pbtxt``). Until this release aulib mirrored the wrong eye
   (it read "left" as the subject's): both networks' inputs were eyes the network never learnt, and
   the eyes diverged by 21° on WolfgangLanger_Pexels.mp4 (OpenFace: converging by 7°, aulib now by 4°;
   per-eye horizontal angles from OpenFace's 12.9°/17.1° → 6.6°/8.3°). Why not the 68 points: they
   have no pupil; why not MediaPipe's 478-point face mesh: it is a 256×256 network per face (≈3× the
   cost) for the same iris points. The same network's eyelid head gives the eye's corners (its contour points 0,
   outer, and 8, inner), which are what the iris is measured against: dlib's corners and the network's iris are
   two models' readings, and dlib's are not mirror-consistent (one face's corners land 0.5–1 px apart in an image
   and in its mirror — at a 12 mm eyeball 2–5° of gaze — and the gaze of a photo and of its mirror image summed to
   −3.3° where it should be 0; −0.9° with the network's corners). The network's corners lie a fixed way off dlib's
   (outer ≈ 2.7 px of its 64 px crop inwards; the eyeball model is defined on 68-point canthi): that mean offset,
   measured on 168 eyes of the samples (:data:`CORNER_SHIFT`, ``scripts/eye_corner_offset.py``), is added
   back, so the eyes' mean vergence stays where dlib's corners put it (with the raw network corners each eye
   turned 5–10° outwards). Where the two disagree by more than :data:`CORNER_AGREEMENT` the network has not
   read the eye the 68 points found (a profile, a blurred eye) and dlib's corners are used.
2. **Gaze rays.** OpenFace 2's geometric model (Wood et al., 2015; ``GazeEstimation.cpp``): the eyeball
   is a 12 mm sphere whose centre sits 7 mm behind and 3.5 mm above the midpoint of the eye corners,
   placed in camera space by the head pose (:mod:`aulib.face.pose`: the same 3D mean face and camera);
   the ray from the camera through the iris centre meets the sphere, and the gaze is the unit vector
   from the eyeball centre to that point. ``gaze_angle_x/y`` are ``atan2(g_x, −g_z)`` and
   ``atan2(g_y, −g_z)`` of the mean of both eyes' vectors, as OpenFace writes them (radians; 0, 0 =
   looking straight into the camera; x positive = looking towards the image's right, i.e. the
   subject's left; y positive = looking down).

OpenFace's order: ``gaze_0`` is the eye with landmarks 36–41 (image left, the subject's right eye),
``gaze_1`` the eye with 42–47. Camera coordinates: x right, y down, z away from the camera.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from aulib.face.blink import eye_aspect_ratios, hidden_eyes
from aulib.face.pose import HeadPose, matrix_from_euler, mean_face_3d
from aulib.face.record import Face

if TYPE_CHECKING:
    from aulib.video.keyframes import Keyframes

IRIS_FILE = "iris_landmark.onnx"
EYE_CROP = 64  # the network's input side (pixels)
EYE_SCALE = 2.3  # crop side / eye-corner distance (MediaPipe's eye region)
# Per eye, OpenFace order: (image-left corner, image-right corner, mirrored for the network).
EYES = ((36, 39, False), (42, 45, True))
EYEBALL_RADIUS = 12.0  # mm (OpenFace)
EYEBALL_OFFSET = np.array([0.0, -3.5, 7.0])  # mm from the corners' midpoint, face axes (OpenFace)
# An eye whose aspect ratio (:func:`aulib.face.blink.eye_aspect_ratios`) is below this shows too
# little of its iris to place it: its gaze is NaN. Eye crops of WolfgangLanger_Pexels.mp4 looked at by
# aspect-ratio band: below 0.13 every eye was shut or a slit, and the iris network put the "iris"
# on the lid line (vertical eye angles of 25–110°); 0.13–0.15 held two shut eyes, one under a finger
# and one slit; above 0.15 most eyes show part of the iris. Blinks (0.10–0.20) lose their gaze too.
SHUT_EAR = 0.15
# The eye turns at most ≈ 50° in its orbit (the human oculomotor range); a gaze further from the
# head's forward direction comes from a misplaced iris (a shut eye, a hand over it), not a look.
MAX_EYE_ROTATION = np.deg2rad(50.0)
# Largest angle between a gaze and the direction from the eye to the camera that still shows the camera the
# iris it was found from (at 80° the iris is foreshortened to a sixth of its width; at 90° it is edge-on).
MAX_CAMERA_ANGLE = np.deg2rad(80.0)
# (outer, inner) eye corner: dlib's minus the eyelid head's, mean over 168 eyes of the samples, crop pixels
# (x towards the inner corner, y down; the crop is 2.3 eye widths: 2.7 px ≈ 0.1 eye widths)
CORNER_SHIFT = np.array([[-2.7, 0.4], [-0.3, 0.3]])
# Largest distance (crop pixels, ≈ 0.2 eye widths; 4 standard deviations of the difference on the samples) between
# the network's shifted corner and dlib's at which the network is taken to have read the same eye
CORNER_AGREEMENT = 6.0
CONTOUR_CORNERS = [0, 8]  # outer, inner in the eyelid head's 71 points
CHUNK = 8  # eyes per network call: 1.75 ms per eye up to 16, 2.1 ms at 32 (activations leave the cache)


def eye_crops(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both eyes as the iris network sees them: ``(2, 64, 64, 3)`` uint8 crops and their ``(2, 2, 3)``
    image → crop affine matrices (mirrored crop for the eye with landmarks 42–47)."""
    pts = np.asarray(landmarks, np.float64)
    crops = np.empty((2, EYE_CROP, EYE_CROP) + image.shape[2:], np.uint8)
    mats = np.empty((2, 2, 3), np.float64)
    for e, (a, b, mirror) in enumerate(EYES):
        left, right = pts[a], pts[b]
        d = right - left
        dist = float(np.hypot(*d))
        centre = (left + right) / 2
        m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(np.degrees(np.arctan2(d[1], d[0]))),
                                    EYE_CROP / max(EYE_SCALE * dist, 1e-6))
        m[:, 2] += EYE_CROP / 2 - centre
        if mirror:
            m = np.array([[-1.0, 0.0, EYE_CROP], [0.0, 1.0, 0.0]]) @ np.vstack([m, [0.0, 0.0, 1.0]])
        mats[e] = m
        crops[e] = cv2.warpAffine(image, m, (EYE_CROP, EYE_CROP), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)
    return crops, mats


@lru_cache(maxsize=2)
def _session(path: str) -> Any:
    from aulib.models import onnx_session, session_cache_key

    return onnx_session(path, path, cache_key=session_cache_key(IRIS_FILE)).check(
        {"input_1": (None, 3, 64, 64)}, {"output_eyes_contours_and_brows": (None, 213), "output_iris": (None, 15)})


class IrisModel:
    """MediaPipe's iris network: iris points of eye crops (``models/iris_landmark.onnx``, checked
    against the manifest's sha256 on load)."""

    def __init__(self, model_path: str | None = None) -> None:
        from aulib.models import model_path as checked

        self.session = _session(str(checked(IRIS_FILE, model_path)))
        self._input = self.session.get_inputs()[0].name
        self._outputs = ["output_eyes_contours_and_brows", "output_iris"]

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """``(N, 7, 2)`` crop pixels of ``(N, 64, 64, 3)`` uint8 RGB crops: the iris centre, 4 iris boundary points,
        then the eye's outer and inner corner from the eyelid head, shifted by :data:`CORNER_SHIFT`."""
        if not len(crops):
            return np.zeros((0, 7, 2), np.float32)
        x = np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32) * np.float32(1 / 255)
        lids, iris = [], []
        for i in range(0, len(x), CHUNK):
            c, r = self.session.run(self._outputs, {self._input: x[i:i + CHUNK]})
            lids.append(c)
            iris.append(r)
        corners = np.concatenate(lids).reshape(len(crops), 71, 3)[:, CONTOUR_CORNERS, :2] + CORNER_SHIFT
        return np.concatenate([np.concatenate(iris).reshape(len(crops), 5, 3)[:, :, :2], corners], axis=1)


def to_image(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Crop pixels → image pixels through the inverse of an image → crop affine ``matrix``."""
    inv = cv2.invertAffineTransform(np.asarray(matrix, np.float64))
    return np.asarray(points, np.float64) @ inv[:, :2].T + inv[:, 2]


def gaze_vectors(pupils: np.ndarray, pose: np.ndarray, intrinsics: tuple[float, float, float, float],
                 landmarks: np.ndarray | None = None, model: np.ndarray | None = None,
                 corners: np.ndarray | None = None) -> np.ndarray:
    """``(8,)``: gaze_0 xyz, gaze_1 xyz (unit vectors, camera axes) and gaze_angle_x, gaze_angle_y
    (radians) from the two iris centres ``pupils`` (2, 2) in image pixels and the head ``pose``.

    The eye corners are ``corners`` ``(2, 2, 2)`` (per eye, the corners of :data:`EYES` in that order, image
    pixels; an eye's may be NaN), else the image ``landmarks``, lifted to the depth the posed 3D mean face gives
    them (the rigid mean face alone puts a person's corners a few pixels off, which at a 12 mm eyeball is
    several degrees); without either the mean face's corners are used. NaN when the pose is not
    finite. An eye's vector is NaN when its pupil is not finite, when it is shut (aspect ratio of its
    ``landmarks`` below :data:`SHUT_EAR`) or when it would be turned more than :data:`MAX_EYE_ROTATION`
    from the head's forward direction: none of these says where the eye looks, and a number there would
    be read as a look, nor when it is turned more than :data:`MAX_CAMERA_ANGLE` from the eye-to-camera
    direction (the camera would see no iris to place). The angles come from the eyes that have a vector
    (both NaN when neither has)."""
    out = np.full(8, np.nan)
    pupils = np.asarray(pupils, np.float64)
    if not np.isfinite(pose).all():
        return out
    shape = mean_face_3d() if model is None else model
    r, t = matrix_from_euler(*pose[3:]), np.asarray(pose[:3], np.float64)
    forward = r @ np.array([0.0, 0.0, -1.0])  # where the face looks (towards the camera when frontal)
    fx, fy, cx, cy = intrinsics
    shut = (eye_aspect_ratios(landmarks) < SHUT_EAR) if landmarks is not None else np.zeros(2, bool)
    for e, (a, b, _) in enumerate(EYES):
        if shut[e] or not np.isfinite(pupils[e]).all():
            continue
        ends = shape[[a, b]] @ r.T + t
        seen = corners[e] if corners is not None and np.isfinite(corners[e]).all() else \
            landmarks[[a, b]] if landmarks is not None and np.isfinite(landmarks[[a, b]]).all() else None
        if seen is not None:
            z = ends[:, 2]
            ends = np.c_[(seen[:, 0] - cx) / fx * z, (seen[:, 1] - cy) / fy * z, z]
        centre = ends.mean(0) + r @ EYEBALL_OFFSET
        ray = np.array([(pupils[e, 0] - cx) / fx, (pupils[e, 1] - cy) / fy, 1.0])
        ray /= np.linalg.norm(ray)
        along = float(ray @ centre)
        disc = along * along - (float(centre @ centre) - EYEBALL_RADIUS ** 2)
        # the nearer intersection; a ray that misses the sphere (a pupil found outside the eyeball's
        # outline) is taken at its closest approach, i.e. the gaze at the sphere's rim
        hit = ray * (along - np.sqrt(disc) if disc > 0 else along)
        g = hit - centre
        n = np.linalg.norm(g)
        # and an eye whose iris the camera can place looks towards the camera: one turned more than
        # MAX_CAMERA_ANGLE from the eye-to-camera direction shows at most a sliver of it (a half-face crop, its
        # head pose pitched 48° down and its eyes 50° further, read gaze_angle_x −147°, y 92°)
        if n > 0 and float(g @ forward) / n >= np.cos(MAX_EYE_ROTATION) and \
                -float(g @ centre) / (n * np.linalg.norm(centre)) >= np.cos(MAX_CAMERA_ANGLE):
            out[3 * e:3 * e + 3] = g / n
    out[6:] = gaze_angles(out[:6])
    return out


def gaze_angles(vectors: np.ndarray) -> np.ndarray:
    """``(2,)`` gaze_angle_x, gaze_angle_y (radians) of the ``(6,)`` per-eye unit vectors, OpenFace's
    ``atan2(g_x, −g_z)`` and ``atan2(g_y, −g_z)`` of their mean, from the eyes that have one (NaN when
    neither has). Also what video smoothing recomputes the angles with, from the smoothed vectors."""
    v = np.asarray(vectors, np.float64).reshape(2, 3)
    seen = v[np.isfinite(v).all(axis=1)]
    if not len(seen):
        return np.full(2, np.nan)
    mean = seen.mean(axis=0)
    return np.array([np.arctan2(mean[0], -mean[2]), np.arctan2(mean[1], -mean[2])])


class Gaze:
    """Model stage: fills ``Face.gaze`` (8,) of successful faces that have eye crops and a head pose
    (run after :class:`~aulib.face.pose.HeadPose`, whose camera it uses), and ``Face.extra["iris"]``
    (2, 5, 2) the iris points in image pixels (for overlays). One network call per batch."""

    def __init__(self, pose: HeadPose | None = None, model_path: str | None = None) -> None:
        self.pose = pose or HeadPose()
        self._model_path = model_path
        self._iris: IrisModel | None = None

    @property
    def iris(self) -> IrisModel:
        if self._iris is None:
            self._iris = IrisModel(self._model_path)
        return self._iris

    def run(self, faces: Sequence[Face], keyframes: Keyframes | None = None) -> Sequence[Face]:
        """``keyframes`` (video, :mod:`aulib.video.keyframes`): an open eye of a face it names takes the
        time-weighted mean of its neighbours' iris points (eye-crop pixels: the crop's axes follow the
        eye corners, so the head's motion between the frames is the face's own) when that eye is open
        in both; otherwise the network reads it."""
        todo = [f for f in faces if f.success and f.eyes is not None and f.eye_matrices is not None
                and f.pose is not None]
        if not todo:
            return faces
        # A shut eye has no gaze (gaze_vectors): its crop is not run through the network at all (3.5 ms
        # per face with both eyes; WolfgangLanger_Pexels.mp4 opens with 4 s of closed eyes).
        seen = np.array([[True, True] if f.landmarks is None else ~(eye_aspect_ratios(f.landmarks) < SHUT_EAR)
                         for f in todo])
        hidden = np.array([hidden_eyes(f) for f in todo]).reshape(seen.shape)  # dark glasses: no iris to read
        for f, h in zip(todo, hidden):
            f.extra["hidden_eyes"] = h  # for the blink stage, which runs later
        seen &= ~hidden
        between = keyframes.within(todo) if keyframes else [None] * len(todo)
        pos = {id(f): k for k, f in enumerate(todo)}
        pairs = {k: (pos[id(b[0])], pos[id(b[1])], b[2]) for k, b in enumerate(between) if b is not None}
        take = np.zeros_like(seen)
        for k, (a, c, _) in pairs.items():
            take[k] = seen[k] & seen[a] & seen[c]
        run = seen & ~take
        crops = np.stack([f.eyes for f in todo])
        pts = np.full((len(todo), 2, 7, 2), np.nan)
        pts[run] = self.iris(crops[run])
        for k, (a, c, w) in pairs.items():
            pts[k, take[k]] = (1 - w) * pts[a, take[k]] + w * pts[c, take[k]]
        for k, f in enumerate(todo):
            assert f.eye_matrices is not None and f.pose is not None
            seen_pts = np.stack([to_image(pts[k, e], f.eye_matrices[e]) for e in range(2)])
            f.extra["iris"] = seen_pts[:, :5]
            f.gaze = gaze_vectors(seen_pts[:, 0], f.pose, self.pose.camera(f), f.landmarks,
                                  corners=eye_corners(pts[k, :, 5:], seen_pts[:, 5:], f))
        return faces


def landmark_corners(face: Face) -> np.ndarray:
    """``(2, 2, 2)`` dlib's (outer, inner) corners of each eye in its crop's pixels (the mirrored crop shows the
    outer corner on its left too, as the eyelid head's are): what the network's are compared with, and
    :data:`CORNER_SHIFT` measured against (``scripts/eye_corner_offset.py``)."""
    assert face.landmarks is not None and face.eye_matrices is not None
    pts = np.asarray(face.landmarks, np.float64)
    out = np.empty((2, 2, 2))
    for e, (a, b, mirror) in enumerate(EYES):
        m = np.asarray(face.eye_matrices[e], np.float64)
        out[e] = pts[[b, a] if mirror else [a, b]] @ m[:, :2].T + m[:, 2]
    return out


def eye_corners(crop: np.ndarray, image: np.ndarray, face: Face) -> np.ndarray:
    """``(2, 2, 2)`` the eyes' corners in :data:`EYES` order, image pixels, from the network's (outer, inner)
    corners of each eye in ``crop`` pixels and ``image`` pixels; an eye's are NaN where they are more than
    :data:`CORNER_AGREEMENT` crop pixels from dlib's (the network did not read the eye the 68 points found: the
    caller then takes dlib's)."""
    out = np.full((2, 2, 2), np.nan)
    if face.landmarks is None or face.eye_matrices is None:
        return out
    dlib = landmark_corners(face)
    for e, (_, _, mirror) in enumerate(EYES):
        if np.isfinite(crop[e]).all() and np.hypot(*(crop[e] - dlib[e]).T).max() <= CORNER_AGREEMENT:
            out[e] = image[e][::-1] if mirror else image[e]  # back to (a, b)
    return out
