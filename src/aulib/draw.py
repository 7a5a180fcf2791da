"""Drawing faces on images: the one overlay used by the CLI, the video writer and the web app.

Reads only typed :class:`~aulib.face.Face` fields (box, landmarks, id, emotion, AU intensities),
never table column names, so every front end shows the same thing for the same face.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


# Gap in pixels between a label and what it is placed against (another label; a box: this beyond its line).
LABEL_GAP = 2
Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1/y1 exclusive


@dataclass(frozen=True)
class Label:
    """One text of an overlay and where it goes: ``rect`` (x0, y0, x1, y1) in pixels, x1/y1 exclusive.

    ``kind`` "tag" (``#id emotion 87%`` on a filled box in the face's colour) or "aus" (the three strongest AU
    intensities, yellow text); ``face`` the index of its face in the list drawn.
    """

    text: str
    kind: str
    face: int
    rect: Rect
    font_scale: float
    thickness: int
    baseline: int
    color: tuple[int, int, int]


def _drawing_scale(shape: Sequence[int]) -> tuple[float, int]:
    """Font scale and line width for an image of ``shape`` (H, W, …): a 4K photo and a 640×360 frame look alike."""
    scale = max(0.7, max(int(shape[0]), int(shape[1])) / 700)
    return scale, max(1, int(round(2 * scale)))


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _place(size: tuple[int, int], box: Rect, frame: tuple[int, int], sides: Sequence[str], avoid: Sequence[Rect],
           line: int = 1) -> Rect | None:
    """Where a ``size`` (w, h) label of the face ``box`` (x, y, w, h) goes inside ``frame`` (w, h) without
    touching any rect of ``avoid``, or None. ``sides`` in order of preference: "above"/"below" the box,
    "top"/"bottom" inside it; each left- then right-aligned with the box, and slid away from a label in the way
    (a tag and the AU line of one face stack up) by at most three label heights, so a label stays by its face.
    ``line``: the box's line width, which a label leaves free."""
    lw, lh = size
    W, H = frame
    x, y, w, h = box
    g = LABEL_GAP
    b = g + line // 2  # from the box's edge
    aligned = list(dict.fromkeys((min(max(x, 0), W - lw), min(max(x + w - lw, 0), W - lw))))
    for side in sides:
        y0 = {"above": y - b - lh, "below": y + h + b + 1, "top": y + b + 1, "bottom": y + h - b - lh}[side]
        step = -1 if side in ("above", "bottom") else 1  # slid up from above or the bottom, down otherwise
        for slide in (False, True):  # right against the box, either alignment, before further away
            for x0 in aligned:
                yy = y0
                while abs(yy - y0) <= 3 * lh and 0 <= yy and yy + lh <= H:
                    rect = (x0, yy, x0 + lw, yy + lh)
                    hit = [r for r in avoid if _overlaps(rect, r)]
                    if not hit:
                        return rect
                    if not slide:
                        break
                    yy = min(r[1] for r in hit) - g - lh if step < 0 else max(r[3] for r in hit) + g
    return None


def layout_labels(shape: Sequence[int], faces: Sequence[Face], labels: Sequence[str] | None = None,
                  aus: bool = False) -> list[Label]:
    """Texts :func:`draw_faces` writes for ``faces`` on an image of ``shape`` (H, W, …), placed inside the image
    and clear of each other where there is room (every tag first, then the AU lines): a tag above its box,
    else below it, else inside it; an AU line below its box, else above, else inside. A label goes where it
    also leaves the other faces' boxes free when it can.

    Before, the tag went above the box or else below it and the AU line below the box, clamped to the image's
    last row: a face reaching the bottom of a frame had both written over each other, a tag could run off the
    right edge, and in a group photo a tag was hidden under the next face's box and tag."""
    H, W = int(shape[0]), int(shape[1])
    scale, thick = _drawing_scale(shape)
    font = cv2.FONT_HERSHEY_SIMPLEX
    boxes: dict[int, Rect] = {}  # x, y, w, h of each face with a box
    for n, f in enumerate(faces):
        if f.box is not None:
            x, y, w, h = (int(round(float(v))) for v in f.box)
            boxes[n] = (x, y, w, h)
    texts: list[tuple[str, str, int, float, int, tuple[int, int, int]]] = []
    for n, f in enumerate(faces):
        if n not in boxes:
            continue
        w = boxes[n][2]
        text = labels[n] if labels is not None else face_label(f)
        fs = 0.6 * scale
        tw = cv2.getTextSize(text, font, fs, thick)[0][0]
        if tw > max(1.5 * w, 80):  # small faces (group photos): shrink the tag to about the box width
            fs *= max(1.5 * w, 80) / tw
        texts.append((text, "tag", n, fs, thick, OK_COLOR if f.success else FAIL_COLOR))
    if aus:
        for n, f in enumerate(faces):
            top = top_aus(f)
            if top and n in boxes:
                texts.append((" ".join(f"{k} {v:.1f}" for k, v in top), "aus", n, 0.45 * scale, max(1, int(scale)),
                              (255, 255, 0)))
    placed: list[Label] = []
    for text, kind, n, fs, th_, color in texts:
        (tw, th), base = cv2.getTextSize(text, font, fs, th_)
        pad = 7 if kind == "tag" else 2  # the tag's filled box is wider than its text
        if tw + pad > W:  # wider than the image: written smaller rather than cut
            fs *= max(W - pad, 1) / tw
            (tw, th), base = cv2.getTextSize(text, font, fs, th_)
        size = (min(tw + pad, W), min(th + base + (4 if kind == "tag" else 2), H))
        sides = ("above", "below", "top", "bottom") if kind == "tag" else ("below", "above", "bottom", "top")
        own = [lab.rect for lab in placed]
        others = [(x, y, x + w, y + h) for m, (x, y, w, h) in boxes.items() if m != n]
        box = boxes[n]
        rect = (_place(size, box, (W, H), sides, own + others, thick) or _place(size, box, (W, H), sides, own, thick)
                or _place(size, box, (W, H), sides[:1], [], thick))
        if rect is None:  # not even alone: against the image's edge
            x0, y0 = min(max(box[0], 0), W - size[0]), min(max(box[1] - LABEL_GAP - size[1], 0), H - size[1])
            rect = (x0, y0, x0 + size[0], y0 + size[1])
        placed.append(Label(text, kind, n, rect, fs, th_, base, color))
    return placed


def draw_faces(image: np.ndarray, faces: Sequence[Face], labels: Sequence[str] | None = None,
               numbers: bool = False, aus: bool = False) -> np.ndarray:
    """Copy of an RGB ``(H, W, 3)`` uint8 image with each face's box, 68 points, iris centres and gaze
    lines (when the gaze stage ran) and a label tag.

    ``labels``: one text per face (default :func:`face_label`). ``numbers``: also write each
    landmark's index (useful on a still photo, unreadable on a live face). ``aus``: write the three
    strongest AU intensities by the box (video overlays). Line widths and fonts scale with the
    image so a 4K photo and a 640×360 frame look alike. The texts are placed by :func:`layout_labels`
    and written after every face's box and points (a neighbour's box was drawn over a tag before).
    """
    out = np.ascontiguousarray(image).copy()
    scale, thick = _drawing_scale(image.shape)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for f in faces:
        if f.box is None:
            continue
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
    for lab in layout_labels(image.shape, faces, labels, aus):
        x0, y0, x1, y1 = lab.rect
        if lab.kind == "tag":
            cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), lab.color, -1)
            cv2.putText(out, lab.text, (x0 + 4, y1 - lab.baseline - 1), font, lab.font_scale, (0, 0, 0),
                        lab.thickness, cv2.LINE_AA)
        else:
            cv2.putText(out, lab.text, (x0 + 1, y1 - lab.baseline - 1), font, lab.font_scale, lab.color,
                        lab.thickness, cv2.LINE_AA)
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
