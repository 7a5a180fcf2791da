"""The ONNX conversion of dlib's 68-point predictor gives dlib's own integer points.

``scripts/compare_landmarks.py`` runs the full comparison (316 sample faces, 6,000 dataset crops:
all identical); here a subset that still covers out-of-image feature pixels and off-centre boxes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from aulib.face import LandmarkPredictor, RetinaFaceDetector
from aulib.face.landmarks import ONNX_DATA, ONNX_FILE
from aulib.io import read_image
from aulib.models import MODELS_DIR, ModelFileError

from .conftest import DATA, sample


@pytest.fixture(scope="module")
def predictors() -> tuple[LandmarkPredictor, LandmarkPredictor]:
    return LandmarkPredictor(backend="dlib"), LandmarkPredictor()


def test_default_backend_is_onnx(predictors):
    assert predictors[1].backend == "onnx"
    assert LandmarkPredictor(str(MODELS_DIR / ONNX_FILE)).backend == "onnx"


@pytest.mark.parametrize("name", ["single_face.jpg", "multi_face.jpg", "BWPictureHuman.jpg"])
def test_same_points_as_dlib_on_sample_photos(predictors, name):
    dlib_lm, onnx_lm = predictors
    img = read_image(sample(name))
    dets = RetinaFaceDetector()(img)
    assert dets
    for d in dets:
        box = d.landmark_box()
        a, b = dlib_lm(img, box), onnx_lm(img, box)
        assert b.dtype == np.float32 and b.shape == (68, 2)
        np.testing.assert_array_equal(a, b)


def test_same_points_as_dlib_on_boxes_partly_outside_the_image(predictors):
    """Feature pixels off the image read 0 in dlib; shifted, scaled boxes reach every corner."""
    dlib_lm, onnx_lm = predictors
    img = read_image(sample("single_face.jpg"))
    h, w = img.shape[:2]
    rng = np.random.default_rng(1)
    for _ in range(40):
        side = float(rng.uniform(30, 1.5 * max(h, w)))
        box = (float(rng.uniform(-side, w)), float(rng.uniform(-side, h)), side, side)
        np.testing.assert_array_equal(dlib_lm(img, box), onnx_lm(img, box))


@pytest.mark.parametrize("folder", ["ckplus48/images", "ferplus/FER2013Valid"])
def test_same_points_as_dlib_on_dataset_crops(predictors, folder):
    root = DATA / folder
    if not root.exists():
        pytest.skip(f"dataset not available: {root}")
    files = sorted(root.rglob("*.png"))[::50][:60]
    assert len(files) >= 20
    dlib_lm, onnx_lm = predictors
    for f in files:
        g = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        big = cv2.resize(g, (192, 192), interpolation=cv2.INTER_CUBIC)
        for box in [(0.0, 0.0, 192.0, 192.0), (20.5, 31.2, 150.0, 150.0)]:
            np.testing.assert_array_equal(dlib_lm(big, box), onnx_lm(big, box), err_msg=str(f))


def test_photo_analysis_does_not_load_dlib():
    """dlib's 0.5 s deserialisation was a third of a photo's start-up; the default path skips dlib."""
    code = ("import sys; from aulib import Analyzer; from aulib.io import read_image; "
            f"a = Analyzer(); df = a.analyze_frame(read_image({str(sample('single_face.jpg'))!r})); "
            "assert len(df) == 1; print('dlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_missing_weights_file_is_named(tmp_path: Path):
    graph = tmp_path / ONNX_FILE
    shutil.copy(MODELS_DIR / ONNX_FILE, graph)
    with pytest.raises(ModelFileError, match=f"{ONNX_DATA} is missing") as e:
        LandmarkPredictor(str(graph))
    assert str(graph) in str(e.value)


def test_damaged_weights_file_is_refused(tmp_path: Path):
    graph = tmp_path / ONNX_FILE
    shutil.copy(MODELS_DIR / ONNX_FILE, graph)
    data = tmp_path / ONNX_DATA
    with open(data, "wb") as f:  # right size, wrong bytes: takes the full-hash path
        f.truncate((MODELS_DIR / ONNX_DATA).stat().st_size)
    with pytest.raises(ModelFileError, match="checksum mismatch") as e:
        LandmarkPredictor(str(graph))
    assert str(data) in str(e.value)


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="'onnx' or 'dlib'"):
        LandmarkPredictor(backend="mediapipe")


def test_same_points_as_dlib_on_a_face_in_a_large_noisy_frame(predictors):
    """The ONNX path reads only the region around the box; on a 4K frame with textured surroundings
    (which would show if it read too little) the points are still dlib's."""
    dlib_lm, onnx_lm = predictors
    img = read_image(sample("multi_face.jpg"))
    rng = np.random.default_rng(3)
    big = rng.integers(0, 256, (2160, 3840, 3), dtype=np.uint8)
    y, x = 900, 1700
    big[y:y + img.shape[0], x:x + img.shape[1]] = img
    for d in RetinaFaceDetector()(img):
        bx, by, bw, bh = d.landmark_box()
        box = (bx + x, by + y, bw, bh)
        np.testing.assert_array_equal(dlib_lm(big, box), onnx_lm(big, box))
        np.testing.assert_array_equal(onnx_lm(big, box), onnx_lm(img, d.landmark_box()) + np.float32([x, y]))


@pytest.mark.parametrize("box", [(float("nan"), 0.0, 100.0, 100.0), (0.0, 0.0, float("inf"), 100.0)])
def test_non_finite_box_is_a_clear_error(predictors, box):
    img = read_image(sample("single_face.jpg"))
    for lm in predictors:
        with pytest.raises(ValueError, match="not finite"):
            lm(img, box)


def test_far_off_box_gives_finite_points(predictors):
    """A box far outside the image (every feature pixel reads 0): dlib's mean-shape fit, no overflow."""
    img = read_image(sample("single_face.jpg"))
    a, b = (lm(img, (-5e5, -5e5, 2e5, 2e5)) for lm in predictors)
    assert np.isfinite(b).all()
    np.testing.assert_array_equal(a, b)
