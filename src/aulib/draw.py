"""Drawing faces on images: the one overlay used by the CLI, the video writer and the web app.

Reads only typed :class:`~aulib.face.Face` fields (box, landmarks, id, emotion, AU intensities),
never table column names, so every front end shows the same thing for the same face.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from aulib.face.record import Face, au_name

OK_COLOR = (40, 210, 90)
FAIL_COLOR = (230, 60, 60)
POINT_COLOR = (255, 220, 0)


def face_label(face: Face) -> str:
    """Short tag for a face: ``#id emotion 87%`` (CNN), else ``#id`` alone."""
    text = f"#{face.id}"
    emotion = face.emotion
    if emotion is not None and face.emotion_probs is not None:
        text += f" {emotion} {float(np.max(face.emotion_probs)):.0%}"
    return text


def top_aus(face: Face, n: int = 3) -> list[tuple[str, float]]:
    """The ``n`` strongest AU intensities of a face as ``[("AU12", 2.3), …]`` (finite values only)."""
    if face.au_intensity is None:
        return []
    pairs = [(au_name(a), float(v)) for a, v in zip(face.aus, face.au_intensity) if np.isfinite(v)]
    return sorted(pairs, key=lambda p: -p[1])[:n]


GAZE_COLOR = (0, 200, 255)


def _draw_gaze(out: np.ndarray, face: Face, thick: int) -> None:
    """Each iris centre and a line along that eye's gaze (image-plane part, 1.5 eye widths at 90°); an
    eye without a gaze (shut, see :func:`aulib.face.gaze.gaze_vectors`) gets neither."""
    iris = face.extra.get("iris")
    if iris is None or face.gaze is None or face.landmarks is None:
        return
    length = 1.5 * float(np.linalg.norm(face.landmarks[45] - face.landmarks[42]))
    for e in range(2):
        cx, cy = (float(v) for v in iris[e, 0])
        gx, gy = float(face.gaze[3 * e]), float(face.gaze[3 * e + 1])
        if not np.isfinite([cx, cy, gx, gy]).all():
            continue
        cv2.circle(out, (int(round(cx)), int(round(cy))), max(1, thick), GAZE_COLOR, -1, cv2.LINE_AA)
        cv2.line(out, (int(round(cx)), int(round(cy))), (int(round(cx + length * gx)), int(round(cy + length * gy))),
                 GAZE_COLOR, max(1, thick // 2), cv2.LINE_AA)


def draw_faces(image: np.ndarray, faces: Sequence[Face], labels: Sequence[str] | None = None,
               numbers: bool = False, aus: bool = False) -> np.ndarray:
    """Copy of an RGB ``(H, W, 3)`` uint8 image with each face's box, 68 points, iris centres and gaze
    lines (when the gaze stage ran) and a label tag.

    ``labels``: one text per face (default :func:`face_label`). ``numbers``: also write each
    landmark's index (useful on a still photo, unreadable on a live face). ``aus``: write the three
    strongest AU intensities under the box (video overlays). Line widths and fonts scale with the
    image so a 4K photo and a 640×360 frame look alike.
    """
    out = np.ascontiguousarray(image).copy()
    scale = max(0.7, max(image.shape[:2]) / 700)
    thick = max(1, int(round(2 * scale)))
    font = cv2.FONT_HERSHEY_SIMPLEX
    for n, f in enumerate(faces):
        x, y, w, h = (int(round(float(v))) for v in f.box)
        color = OK_COLOR if f.success else FAIL_COLOR
        cv2.rectangle(out, (x, y), (x + w, y + h), color, thick)
        if f.landmarks is not None:
            r = max(1, min(thick, w // 60))
            for i, (px, py) in enumerate(f.landmarks):
                cv2.circle(out, (int(px), int(py)), r, POINT_COLOR, -1, cv2.LINE_AA)
                if numbers and w >= 150:
                    cv2.putText(out, str(i), (int(px) + 2, int(py) - 2), cv2.FONT_HERSHEY_PLAIN,
                                0.6 * scale, (255, 255, 0), 1)
        _draw_gaze(out, f, thick)
        text = labels[n] if labels is not None else face_label(f)
        fs = 0.6 * scale
        (tw, th), base = cv2.getTextSize(text, font, fs, thick)
        if tw > max(1.5 * w, 80):  # small faces (group photos): shrink the tag to about the box width
            fs *= max(1.5 * w, 80) / tw
            (tw, th), base = cv2.getTextSize(text, font, fs, thick)
        ty = y - 6 if y - th - base - 6 > 0 else y + h + th + 6
        cv2.rectangle(out, (x - 1, ty - th - 4), (x + tw + 6, ty + base), color, -1)
        cv2.putText(out, text, (x + 3, ty - 1), font, fs, (0, 0, 0), thick, cv2.LINE_AA)
        if aus:
            top = top_aus(f)
            if top:
                line = " ".join(f"{k} {v:.1f}" for k, v in top)
                cv2.putText(out, line, (x, min(image.shape[0] - 4, y + h + int(18 * scale))), font,
                            0.45 * scale, (255, 255, 0), max(1, int(scale)), cv2.LINE_AA)
    return out


def draw_corner_tag(image: np.ndarray, text: str) -> np.ndarray:
    """Write ``text`` white on black in the top-left corner of an RGB image, in place (e.g. the frame
    number of a live stream, so a screenshot can be matched to the panel beside it); returns it."""
    scale = max(0.6, image.shape[0] / 480)
    font, thick = cv2.FONT_HERSHEY_SIMPLEX, max(1, int(round(1.5 * scale)))
    (tw, th), base = cv2.getTextSize(text, font, 0.6 * scale, thick)
    cv2.rectangle(image, (4, 4), (12 + tw, 12 + th + base), (0, 0, 0), -1)
    cv2.putText(image, text, (8, 8 + th), font, 0.6 * scale, (255, 255, 255), thick, cv2.LINE_AA)
    return image
