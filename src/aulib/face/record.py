"""The :class:`Face` record: everything aulib knows about one face, predictions included.

Stages fill fields in pipeline order (detector → landmarks → alignment → features → models), so a
front end, the table module or a user's script reads typed arrays instead of parsing column names.
All arrays are numpy; shapes and units are given per field. A field left ``None`` was not computed
(stage not run, or the face failed before it: see ``error``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# The eight FER+ classes, in the order of every emotion output (CNNs, ``emotion_probs``, ``p_*`` columns).
EMOTIONS: tuple[str, ...] = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                             "contempt")


def au_name(au: int) -> str:
    """``AU01``-style zero-padded name of an AU number (FACS code)."""
    return f"AU{int(au):02d}"


@dataclass
class Face:
    """One face in one image or video frame.

    Geometry (original-image pixels unless said otherwise):
    ``box`` (4,) x, y, w, h; ``score`` detector confidence; ``landmarks`` (68, 2) iBUG order;
    ``matrix`` (2, 3) similarity transform image → aligned crop; ``aligned`` (S, S, 3) uint8 RGB
    crop; ``aligned_landmarks`` (68, 2) crop pixels; ``mask`` (S, S) bool face region; ``masked``
    (S, S) uint8 gray crop with the background zeroed; ``fit_error`` RMS rigid-point distance from
    the template (fraction of the crop side); ``eyes`` (2, 64, 64, 3) uint8 eye crops for the iris
    network and ``eye_matrices`` (2, 2, 3) their image → crop transforms (:mod:`aulib.face.gaze`).

    Features: ``hog`` (6084,), ``geometry`` (136,), ``embedding`` (1280,) from the emotion CNN,
    ``features`` (7500,) the AU models' input (after per-person calibration when that ran).

    Predictions (``aus`` names the AU numbers of the AU arrays, in order):
    ``au_occurrence`` (K,) int8 0/1; ``au_score`` (K,) SVM margin minus its tuned threshold (> 0 =
    present); ``au_prob`` (K,) calibrated probability of presence; ``au_svr`` (K,) the intensity SVRs'
    own 0–5 output; ``au_intensity`` (K,) 0–5 from both (:func:`aulib.au.models.au_intensity`), ≥ 1
    exactly when present; ``rules`` (7,) % of each emotion prototype's AUs present
    (order of :data:`aulib.au.emotion_rules.PROTOTYPES`); ``emotion_probs`` (8,) in :data:`EMOTIONS`
    order, summing to 1; ``mt_aus`` / ``mt_au_probs`` (M,) / ``mt_au_occurrence`` (M,) the multitask
    network's AU heads.

    OpenFace-style channels: ``pose`` (6,) Tx, Ty, Tz (mm, camera at the origin) and Rx, Ry, Rz
    (radians, ``R = Rx·Ry·Rz``), see :mod:`aulib.face.pose`; ``blink`` (2,) AU45 intensity 0–5 and
    occurrence 0/1 from the eye aspect ratio, see :mod:`aulib.face.blink`; ``confidence`` 0–1 from
    the detector score, the landmark fit, ``blur``, ``noise``, ``disagreement`` and ``spread``, see
    :mod:`aulib.face.quality`; ``spread`` how far a photo's five landmark fits (boxes 2 % apart,
    :meth:`~aulib.face.pipeline.FacePipeline.fit`) lie from their mean, a fraction of the eye distance (NaN for a
    video frame's single fit); ``disagreement`` how far the landmarks lie from the detector's five keypoints
    (:meth:`~aulib.face.detect.Detection.disagreement`; a followed video face keeps its last detection's);
    ``blur`` 0 (sharp) … 1 how blurred the face is and ``noise`` the σ (gray levels) of its noise, both
    at the scale of a 48 px face, see :mod:`aulib.face.sharpness` (a followed video face keeps its last
    scan's); ``gaze`` (8,) the unit gaze vectors of the eyes with landmarks 36–41 and 42–47 (camera
    axes) and the gaze angles x, y (radians), see :mod:`aulib.face.gaze`.
    ``image_size`` (width, height) of the image the face was found in (the default camera for pose).

    ``id``: the face's number in its image (left to right) or its stable track id in a video.
    ``error`` is empty for a face that went through every stage that ran.
    """

    box: np.ndarray
    score: float
    id: int = 0
    landmarks: np.ndarray | None = None
    matrix: np.ndarray | None = None
    aligned: np.ndarray | None = None
    aligned_landmarks: np.ndarray | None = None
    mask: np.ndarray | None = None
    masked: np.ndarray | None = None
    hog: np.ndarray | None = None
    geometry: np.ndarray | None = None
    fit_error: float = float("nan")
    eyes: np.ndarray | None = None
    eye_matrices: np.ndarray | None = None
    embedding: np.ndarray | None = None
    features: np.ndarray | None = None
    aus: tuple[int, ...] = ()
    au_occurrence: np.ndarray | None = None
    au_score: np.ndarray | None = None
    au_prob: np.ndarray | None = None
    au_svr: np.ndarray | None = None
    au_intensity: np.ndarray | None = None
    rules: np.ndarray | None = None
    emotion_probs: np.ndarray | None = None
    mt_aus: tuple[int, ...] = ()
    mt_au_probs: np.ndarray | None = None
    mt_au_occurrence: np.ndarray | None = None
    pose: np.ndarray | None = None
    gaze: np.ndarray | None = None
    blink: np.ndarray | None = None
    confidence: float = float("nan")
    blur: float = float("nan")
    noise: float = float("nan")
    disagreement: float = float("nan")
    spread: float = float("nan")
    image_size: tuple[int, int] | None = None
    error: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def success(self) -> bool:
        """True when the face was fitted and aligned (``matrix`` set, no ``error``): the models can read it.

        Tested on ``matrix``, not on the crop, so it stays true after :meth:`drop_pixels`.
        """
        return not self.error and self.matrix is not None

    @property
    def emotion(self) -> str | None:
        """The most probable of the eight emotions, or None when no emotion model ran."""
        if self.emotion_probs is None:
            return None
        return EMOTIONS[int(np.argmax(self.emotion_probs))]

    def drop_pixels(self) -> None:
        """Forget the crops and masks (≈100 kB per face) once only the numbers are needed."""
        self.aligned = self.mask = self.masked = self.eyes = None

    def compact(self, keep_features: bool = False) -> Face:
        """Keep only what rows and front ends read: drop the pixels, HOG, geometry and embedding, and
        the AU feature vector too unless ``keep_features`` (two-pass calibration re-scores from it)."""
        self.drop_pixels()
        self.hog = self.geometry = self.embedding = None
        if not keep_features:
            self.features = None
        return self
