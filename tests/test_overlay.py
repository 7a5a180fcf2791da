"""What the annotated video and photo overlays show: the table's own values, and labels that stay readable.

The video overlay was drawn from the models' raw records, before the smoothing, the interpolation between network
frames, the calibration and the occurrence rule the table's rows go through (its top AUs differed from the table's
``AUxx_r`` by up to 1.24 on the Pexels clip); a face at the bottom of a frame had its tag and AU line written over
each other, and in the group photo a tag was hidden under the next face's box.
"""

from __future__ import annotations

from itertools import combinations

import cv2
import numpy as np
import pytest

import aulib.draw as draw
import aulib.video.overlay as overlay_module
from aulib.face.record import Face
from aulib.io import read_image
from aulib.table import intensity_column, to_frame
from aulib.video import VideoAnalysis, analyze_video_rows, iter_video_rows

from .conftest import sample

Rect = tuple[int, int, int, int]


@pytest.fixture(scope="module")
def full():
    """The default analyzer, emotion CNN included: its networks run on every third frame of a clip and the frames
    between are interpolated, and the tags name an emotion (the session's ``analyzer`` has no CNN)."""
    from aulib.analyzer import Analyzer

    return Analyzer()


@pytest.mark.parametrize("calibrate", [False, True])
def test_the_video_overlay_draws_the_values_of_the_table(full, tmp_path, monkeypatch, calibrate):
    """Per frame, the faces drawn carry the table's face id, emotion label and top-3 ``AUxx_r`` (names and values):
    smoothed, interpolated and (two-pass) calibrated, as written."""
    drawn: list[list[dict]] = []
    real = overlay_module.draw_faces

    def spy(image, faces, *args, **kwargs):
        drawn.append([{"id": f.id, "success": f.success, "label": draw.face_label(f), "top": draw.top_aus(f)}
                      for f in faces])
        return real(image, faces, *args, **kwargs)

    monkeypatch.setattr(overlay_module, "draw_faces", spy)
    waiting: list[int] = []  # frames (images) the overlay still holds after each batch's rows are drawn
    real_draw = VideoAnalysis._draw

    def draw_spy(self, rows):
        real_draw(self, rows)
        waiting.append(len(self._to_draw))

    monkeypatch.setattr(VideoAnalysis, "_draw", draw_spy)
    kept: list[int] = []  # images handed to the model stage with each batch
    real_models = VideoAnalysis._models

    def models_spy(self, batch):
        kept.append(sum(ff.image is not None for ff in batch))
        real_models(self, batch)

    monkeypatch.setattr(VideoAnalysis, "_models", models_spy)
    path = sample("single_face.mp4")  # 2.4 s: long enough for two-pass calibration to calibrate the track
    df = to_frame(analyze_video_rows(full, path, overlay=tmp_path / "ov.mp4", calibrate=calibrate), full.columns)
    frames = [g for _, g in df.groupby("frame", sort=True)]
    assert len(drawn) == len(frames) == 72
    aus = [intensity_column(a) for a in full.aus]
    checked = 0
    for faces, rows in zip(drawn, frames):
        rows = rows[rows.success == 1]
        ok = [f for f in faces if f["success"]]
        assert [f["id"] for f in ok] == rows.face_id.tolist()
        for f, (_, r) in zip(ok, rows.iterrows()):
            probs = r[[c for c in df.columns if c.startswith("p_")]].astype(float)
            assert f["label"] == f"#{int(r.face_id)} {r.emotion} {probs.max():.0%}"
            table_top = sorted(((c[:4], float(r[c])) for c in aus if np.isfinite(r[c])), key=lambda kv: -kv[1])[:3]
            assert [k for k, _ in f["top"]] == [k for k, _ in table_top], r.frame
            np.testing.assert_allclose([v for _, v in f["top"]], [v for _, v in table_top], rtol=0, atol=1e-9)
            checked += 1
    assert checked == 72
    # bounded memory: at most the smoothing's look-ahead of 0.24 s (7.2 frames at 30 fps) waits for its rows;
    # two-pass calibration keeps no image (it reads the video again)
    if calibrate:
        assert waiting == [] and sum(kept) == 0
    else:
        assert 0 < max(waiting) <= 8 and sum(kept) == 72


def test_a_faceless_stretch_streams_its_rows(analyzer):
    """A stretch without faces never filled a model batch (16 faces): its rows (and an overlay's images) were all
    held to the end of the video; a batch now also ends after 64 frames."""
    chunks = list(iter_video_rows(analyzer, sample("no_face.mp4"), chunk_rows=8, threaded=False))
    # 95 frames: one chunk at the end before; now the first 64 less the smoothing's 0.24 s look-ahead come early
    assert sum(map(len, chunks)) == 95 and len(chunks) == 2


class _Recorder:
    """Stands in for cv2 inside :mod:`aulib.draw`: draws as cv2 does and notes what each call covered, in order,
    so a test sees which texts were drawn where and whether anything was drawn over them afterwards."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(cv2, name)

    def putText(self, img, text, org, font, scale, color, thickness=1, *rest):  # noqa: N802 - cv2's name
        (tw, th), base = cv2.getTextSize(text, font, scale, thickness)
        self.calls.append(("text", (text, (org[0], org[1] - th, org[0] + tw, org[1] + base))))
        return cv2.putText(img, text, org, font, scale, color, thickness, *rest)

    def rectangle(self, img, p1, p2, color, thickness=1, *rest):
        (x0, y0), (x1, y1) = p1, p2
        if thickness < 0:
            covers = [(x0, y0, x1 + 1, y1 + 1)]
        else:  # an outline covers its four edges only
            t = (thickness + 1) // 2
            covers = [(x0 - t, y0 - t, x1 + t + 1, y0 + t + 1), (x0 - t, y1 - t, x1 + t + 1, y1 + t + 1),
                      (x0 - t, y0 - t, x0 + t + 1, y1 + t + 1), (x1 - t, y0 - t, x1 + t + 1, y1 + t + 1)]
        self.calls.append(("shape", covers))
        return cv2.rectangle(img, p1, p2, color, thickness, *rest)

    def circle(self, img, c, r, *args):
        self.calls.append(("shape", [(c[0] - r, c[1] - r, c[0] + r + 1, c[1] + r + 1)]))
        return cv2.circle(img, c, r, *args)

    def texts(self) -> list[tuple[str, Rect, list[Rect]]]:
        """Each text, its rect, and the rects drawn after it (other texts' and shapes')."""
        out = []
        for i, (kind, what) in enumerate(self.calls):
            if kind != "text":
                continue
            later = [r for k, w in self.calls[i + 1:] for r in ([w[1]] if k == "text" else w)]
            out.append((what[0], what[1], later))
        return out


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _check_readable(image: np.ndarray, faces, monkeypatch, aus: bool, n_texts: int) -> list[tuple[str, Rect]]:
    rec = _Recorder()
    monkeypatch.setattr(draw, "cv2", rec)
    draw.draw_faces(image, faces, aus=aus)
    monkeypatch.setattr(draw, "cv2", cv2)
    texts = rec.texts()
    assert len(texts) == n_texts
    H, W = image.shape[:2]
    for text, r, later in texts:
        assert 0 <= r[0] and 0 <= r[1] and r[2] <= W and r[3] <= H, (text, r, (W, H))  # inside the image
        hidden = [o for o in later if _overlaps(r, o)]
        assert not hidden, (text, r, hidden)  # nothing drawn over it
    for (t1, a, _), (t2, b, _) in combinations(texts, 2):
        assert not _overlaps(a, b), (t1, a, t2, b)
    return [(t, r) for t, r, _ in texts]


def test_group_photo_labels_are_inside_the_image_and_apart(full, monkeypatch):
    """Tag #1 ("#1 happiness 99%") ran under face 2's box, drawn after it."""
    img = read_image(sample("multi_face.jpg"))
    faces = full.get(img)
    assert len(faces) == 5
    _check_readable(img, faces, monkeypatch, aus=False, n_texts=5)
    _check_readable(img, faces, monkeypatch, aus=True, n_texts=10)  # with the AU lines of a video overlay
    lays = draw.layout_labels(img.shape, faces)
    assert [lab.face for lab in lays] == list(range(5)) and all(lab.kind == "tag" for lab in lays)


def _face(box, i=0) -> Face:
    probs = np.full(8, 0.01)
    probs[1] = 0.93
    return Face(box=np.asarray(box, float), score=0.99, id=i, matrix=np.eye(2, 3), aus=(6, 12, 25),
                au_intensity=np.array([1.0, 2.2, 3.1]), emotion_probs=probs / probs.sum())


@pytest.mark.parametrize("boxes", [
    [(332, 20, 223, 298)],  # the Pexels clip's frame 300: no room above, the face reaching the bottom
    [(332, 40, 223, 318)],  # the box down to the last row: the AU line goes above the tag
    [(560, 100, 78, 90)],  # at the right edge: the tag would run off it
    [(0, 0, 640, 360)],  # the whole frame: both inside the box
    [(100, 120, 120, 140), (200, 100, 120, 150), (330, 130, 110, 120)],  # side by side, overlapping boxes
])
def test_video_labels_stay_inside_the_frame_and_apart(monkeypatch, boxes):
    """Before, a face reaching the bottom of a 640×360 frame had its tag ("#0 happiness 93%") and its AU line
    written on the same rows."""
    faces = [_face(b, i) for i, b in enumerate(boxes)]
    _check_readable(np.zeros((360, 640, 3), np.uint8), faces, monkeypatch, aus=True, n_texts=2 * len(faces))
