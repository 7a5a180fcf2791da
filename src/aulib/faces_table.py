"""The ``aulib faces`` table and overlay: boxes and 68 landmarks per face, no AU models needed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from aulib.face import Face, FacePipeline
from aulib.io import ImageReadError, read_image
from aulib.output import output_paths
from aulib.results import FACE_COLUMNS, empty_row, face_rows, to_frame


def draw_faces(image: np.ndarray, faces: list[Face], labels: list[str] | None = None) -> np.ndarray:
    """Copy of an RGB image with boxes, landmark points and their indices drawn on it."""
    out = image.copy()
    scale = max(1.0, max(image.shape[:2]) / 800)
    for n, f in enumerate(faces):
        x, y, w, h = (int(round(v)) for v in f.box)
        color = (0, 200, 0) if f.success else (220, 0, 0)
        cv2.rectangle(out, (x, y), (x + w, y + h), color, max(1, int(2 * scale)))
        text = labels[n] if labels else f"face {n}"
        cv2.putText(out, text, (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, color, max(1, int(scale)))
        if f.landmarks is not None:
            for i, (px, py) in enumerate(f.landmarks):
                cv2.circle(out, (int(px), int(py)), max(1, int(2 * scale)), (255, 60, 60), -1)
                if w >= 150:
                    cv2.putText(out, str(i), (int(px) + 2, int(py) - 2), cv2.FONT_HERSHEY_PLAIN,
                                0.6 * scale, (255, 255, 0), 1)
    return out


def faces_table(files: list[Path], cropped: bool = False, detector: str = "retinaface",
                overlay: Path | None = None, on_done: Callable[[Path], None] | None = None) -> pd.DataFrame:
    """One row per face of each file; unreadable files get a ``success=0`` row naming the problem."""
    fp = FacePipeline(detector=detector, features=False)
    rows: list[dict] = []
    # overlay/<input's folder below the inputs' common parent>/<stem>_faces.png, distinct per input
    targets = output_paths(files, overlay, lambda n: f"{Path(n).stem}_faces.png", text_names=True) \
        if overlay is not None else [None] * len(files)
    for p, target in zip(files, targets):
        try:
            img = read_image(p)
        except ImageReadError as e:
            rows.append(empty_row(str(p), str(e)))
        else:
            found = [fp.cropped(img)] if cropped else fp(img)
            rows.extend(face_rows(found, str(p)))
            if target is not None:
                target.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(target), draw_faces(img, found)[:, :, ::-1])
        if on_done:
            on_done(p)
    return to_frame(rows, FACE_COLUMNS)
