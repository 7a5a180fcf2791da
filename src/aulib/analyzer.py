"""``Analyzer``: the one public object that composes every stage.

image → :class:`~aulib.face.FacePipeline` (faces, landmarks, aligned crops, features) →
AU occurrence SVMs, AU intensity SVRs, emotion rules, CNN emotion → pandas DataFrame with the
DESIGN.md columns, one row per face per frame. Models are loaded once per ``Analyzer``; all the
faces of a call are scored in one batched matrix product / one ONNX run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from aulib.au.embedding import EmotionEmbeddingCNN, embedding_cnn_for
from aulib.au.emotion_rules import EmotionRules
from aulib.au.features import feature_version, features_matrix
from aulib.au.linear import LinearBank
from aulib.au.models import AUIntensity, AUOccurrence
from aulib.cnn.inference import EmotionCNN
from aulib.face import Face, FacePipeline
from aulib.io import ImageReadError, expand_inputs, is_video, read_image, to_rgb
from aulib.models import model_path
from aulib.results import EMOTIONS, RULE_EMOTIONS, au_name, columns, empty_row, face_rows, finite, to_frame

EmotionModel = Literal["cnn", "multitask", "none"]


class Analyzer:
    """Faces, AUs and emotions of images, folders and videos.

    Parameters
    ----------
    detector: ``"retinaface"`` (default) or ``"dlib"``.
    emotion_model: ``"cnn"`` (8-class FER+ EfficientNet, fills ``emotion`` and ``p_*``),
        ``"multitask"`` (same columns from the 15-head network, plus ``mt_AUxx_c``) or ``"none"``
        (no emotion columns; the emotion CNN still runs, its embedding is part of the AU features).
    cropped: treat every image as one already-cropped face (dataset crops such as CK+/FER 48×48).
    """

    def __init__(self, detector: str = "retinaface", emotion_model: EmotionModel = "cnn",
                 cropped: bool = False) -> None:
        self.pipeline = FacePipeline(detector=detector)
        au_version = LinearBank.peek_version(model_path(AUOccurrence.file))
        self.embedder = EmotionEmbeddingCNN(name=embedding_cnn_for(au_version))
        version = feature_version(self.embedder.sha256)
        self.occurrence = AUOccurrence.shipped(features=version)
        self.intensity = AUIntensity.shipped(features=version)
        if self.occurrence.aus != self.intensity.aus:
            raise ValueError("occurrence and intensity models cover different AU sets")
        self.aus = self.occurrence.aus
        self.rules = EmotionRules(self.aus)
        self.emotion_model = emotion_model
        self.cnn = None
        self.mt_aus: list[int] = []
        if emotion_model not in ("cnn", "multitask", "none"):
            raise ValueError(f"emotion_model must be 'cnn', 'multitask' or 'none', not {emotion_model!r}")
        if emotion_model == "cnn" and self.embedder.name != EmotionCNN.name:
            self.cnn = EmotionCNN()  # AU models pinned to an older CNN: emotion from the current one
        elif emotion_model == "multitask":
            from aulib.cnn.inference import MultitaskCNN

            self.cnn = MultitaskCNN()
            self.mt_aus = list(self.cnn.aus)
        self.cropped = cropped
        self.columns = columns(self.aus, self.mt_aus, emotion=emotion_model != "none")

    # ------------------------------------------------------------------ faces → predictions
    def faces(self, image: np.ndarray, cropped: bool | None = None) -> list[Face]:
        """Run the face pipeline on an RGB image (all faces, or the whole image as one face)."""
        cropped = self.cropped if cropped is None else cropped
        return [self.pipeline.cropped(image)] if cropped else self.pipeline(image)

    def features(self, faces: list[Face]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """AU feature matrix (N, D), emotion probabilities (N, 8) and multitask AU probabilities
        (or None) for faces that went through the pipeline successfully — one batched CNN run."""
        X, emo = features_matrix(faces, self.embedder)
        mt = None
        if self.cnn is not None:
            res = self.cnn.predict(np.stack([f.aligned for f in faces]))
            emo, mt = res if isinstance(res, tuple) else (res, None)
        return X, emo, mt

    def predict(self, faces: list[Face]) -> list[dict]:
        """Prediction columns for each face (empty dict for faces that failed), batched."""
        ok = [i for i, f in enumerate(faces) if f.success]
        out: list[dict] = [{} for _ in faces]
        if not ok:
            return out
        X, emo, mt = self.features([faces[i] for i in ok])
        for j, row in zip(ok, self.predict_from_features(X, emo, mt)):
            out[j] = row
        return out

    def predict_from_features(self, X: np.ndarray, emo: np.ndarray, mt: np.ndarray | None = None) -> list[dict]:
        """Prediction columns from precomputed features (e.g. after per-person calibration)."""
        occ = self.occurrence.predict(X)
        inten = finite(self.intensity.predict(X))
        rules = self.rules(occ)
        emo = emo if self.emotion_model != "none" else None
        out: list[dict] = []
        for j in range(len(X)):
            row: dict = {}
            for k, a in enumerate(self.aus):
                row[f"{au_name(a)}_c"] = int(occ[j, k])
            for k, a in enumerate(self.aus):
                row[f"{au_name(a)}_r"] = float(inten[j, k])
            for k, e in enumerate(RULE_EMOTIONS):
                row[f"rule_{e}"] = float(rules[j, k])
            if emo is not None:
                row["emotion"] = EMOTIONS[int(np.argmax(emo[j]))]
                for k, e in enumerate(EMOTIONS):
                    row[f"p_{e}"] = float(emo[j, k])
            if mt is not None:
                for k, a in enumerate(self.mt_aus):
                    row[f"mt_{au_name(a)}_c"] = int(mt[j, k] >= self.cnn.thresholds[k])
            out.append(row)
        return out

    def face_rows(self, faces: list[Face], input_name: str, frame: int = 0, timestamp: float = 0.0,
                  face_ids: list[int] | None = None) -> list[dict]:
        """Table rows for the faces of one image/frame (one ``success=0`` row if there is none)."""
        preds = self.predict(faces) if faces else None
        return face_rows(faces, input_name, frame, timestamp, preds, face_ids)

    # ------------------------------------------------------------------ public API
    def analyze_frame(self, image: np.ndarray, order: Literal["rgb", "bgr"] = "rgb", input_name: str = "",
                      frame: int = 0, timestamp: float = 0.0, cropped: bool | None = None) -> pd.DataFrame:
        """Analyse one image array (RGB by default; ``order="bgr"`` for OpenCV frames)."""
        rgb = to_rgb(image, order)
        return to_frame(self.face_rows(self.faces(rgb, cropped), input_name, frame, timestamp), self.columns)

    def analyze_image(self, path: str | Path, cropped: bool | None = None, overlay: Path | None = None) -> list[dict]:
        """Rows for one image file; unreadable files give a ``success=0`` row naming the problem.

        ``overlay``: also write an annotated copy there (boxes, landmarks, face id and emotion).
        """
        try:
            rgb = read_image(path)
        except ImageReadError as e:
            return [empty_row(str(path), str(e))]
        faces = self.faces(rgb, cropped)
        rows = self.face_rows(faces, str(path))
        if overlay is not None:
            import cv2

            from aulib.faces_table import draw_faces

            labels = [f"#{r['face']} {r['emotion']}" if isinstance(r.get("emotion"), str) else f"#{r['face']}"
                      for r in rows] if faces else None
            Path(overlay).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(overlay), draw_faces(rgb, faces, labels)[:, :, ::-1])
        return rows

    def analyze_path(self, path: str | Path, cropped: bool | None = None, overlay: Path | None = None,
                     **video_options) -> list[dict]:
        """Rows for one image or video file (videos: every frame, see :mod:`aulib.video`)."""
        if is_video(path):
            from aulib.video import analyze_video_rows

            return analyze_video_rows(self, path, overlay=overlay, **video_options)
        return self.analyze_image(path, cropped, overlay)

    def iter_rows(self, paths: Iterable[str | Path], cropped: bool | None = None,
                  progress: Callable[[Path], None] | None = None, **video_options) -> Iterable[tuple[Path, list[dict]]]:
        """Yield ``(input, rows)`` per input (images and videos), for writing results as they come."""
        for p in expand_inputs(paths):
            rows = self.analyze_path(p, cropped, **video_options)
            if progress:
                progress(p)
            yield p, rows

    def analyze(self, paths: str | Path | Iterable[str | Path], cropped: bool | None = None,
                **video_options) -> pd.DataFrame:
        """Analyse image/video files and folders (recursively, sorted) into one DataFrame."""
        if isinstance(paths, (str, Path)):
            paths = [paths]
        rows: list[dict] = []
        for _, r in self.iter_rows(paths, cropped, **video_options):
            rows.extend(r)
        return to_frame(rows, self.columns)


_DEFAULT: Analyzer | None = None


def _default() -> Analyzer:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Analyzer()
    return _DEFAULT


def _single(path: str | Path, cols: list[str]) -> pd.DataFrame:
    df = _default().analyze(path)
    return df[["input", "face", "success", *cols]]


def get_img_aus_occurrences(path: str | Path) -> pd.DataFrame:
    """Seed-compatible wrapper: AU occurrences (``AUxx_c``) per face of one image."""
    a = _default()
    return _single(path, [f"{au_name(x)}_c" for x in a.aus])


def get_img_aus_intensities(path: str | Path) -> pd.DataFrame:
    """Seed-compatible wrapper: AU intensities (``AUxx_r``, 0–5) per face of one image."""
    a = _default()
    return _single(path, [f"{au_name(x)}_r" for x in a.aus])


def get_img_emotions_occurrences(path: str | Path) -> pd.DataFrame:
    """Seed-compatible wrapper: % of each emotion's prototype AUs present (``rule_*``) per face."""
    return _single(path, [f"rule_{e}" for e in RULE_EMOTIONS])
