"""The face pipeline on real photos: detection, landmarks, alignment, masking, HOG, cropped mode."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from aulib.face import FacePipeline, HogExtractor, LandmarkPredictor, RetinaFaceDetector
from aulib.face.align import FaceMasker
from aulib.io import read_image
from aulib.models import ModelFileError

from .conftest import sample


def test_single_face_has_one_face_with_landmarks_inside_its_box(pipeline):
    faces = pipeline(read_image(sample("single_face.jpg")))
    assert len(faces) == 1 and faces[0].success
    x, y, w, h = faces[0].box
    pts = faces[0].landmarks
    assert pts.shape == (68, 2)
    # Every landmark within the detector box, allowing the chin to reach just below it.
    assert (pts[:, 0] >= x - 0.1 * w).all() and (pts[:, 0] <= x + 1.1 * w).all()
    assert (pts[:, 1] >= y - 0.1 * h).all() and (pts[:, 1] <= y + 1.1 * h).all()


def test_multi_face_finds_all_five_faces_left_to_right(pipeline):
    # multi_face.jpg: five young people, counted by eye (one with sunglasses).
    faces = pipeline(read_image(sample("multi_face.jpg")))
    assert len(faces) == 5
    assert all(f.success for f in faces)
    centres = [f.box[0] + f.box[2] / 2 for f in faces]
    assert centres == sorted(centres)


@pytest.mark.parametrize("name", ["BWPictureHuman.jpg", "Image_with_alpha.png"])
def test_gray_and_rgba_photos_give_one_face(pipeline, name):
    faces = pipeline(read_image(sample(name)))
    assert len(faces) == 1 and faces[0].success


def test_mountain_has_no_face(pipeline):
    assert pipeline(read_image(sample("free-mountain-vector-01.jpg"))) == []


def test_dlib_fallback_detector_finds_the_single_face():
    p = FacePipeline(detector="dlib")
    faces = p(read_image(sample("single_face.jpg")))
    assert len(faces) == 1 and faces[0].success


def test_alignment_puts_eye_centres_on_the_template(pipeline):
    face = pipeline(read_image(sample("single_face.jpg")))[0]
    t = pipeline.aligner.template
    pts = face.aligned_landmarks
    for eye in (slice(36, 42), slice(42, 48)):
        assert np.linalg.norm(pts[eye].mean(0) - t[eye].mean(0)) < 2.0
    assert face.aligned.shape == (112, 112, 3)


def _umeyama_svd(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Umeyama (1991) as published (SVD of the covariance, reflection corrected): the reference."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(d.T @ s / len(src))
    e = np.diag([1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
    scale = (sig * np.diag(e)).sum() / ((s**2).sum() / len(src))
    r = u @ e @ vt
    return np.hstack([scale * r, (mu_d - scale * r @ mu_s)[:, None]])


def test_similarity_transform_matches_umeyama_and_recovers_a_known_one():
    from aulib.face.align import RIGID_POINTS, umeyama, unit_template

    t = unit_template()[RIGID_POINTS] * 112
    rng = np.random.default_rng(0)
    for _ in range(300):  # noisy, far rotated, mirrored sources: the closed form is the SVD form's matrix
        th, sc = rng.uniform(-np.pi, np.pi), rng.uniform(0.05, 8)
        rot = sc * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
        src = t @ rot.T + rng.normal(0, rng.uniform(0, 40), t.shape) + rng.uniform(-900, 900, 2)
        if rng.random() < 0.2:
            src[:, 0] *= -1  # a reflection: neither form may answer with one
        np.testing.assert_allclose(umeyama(src, t), _umeyama_svd(src, t), rtol=1e-9, atol=1e-9)
    known = np.array([[0.0, -2.0, 5.0], [2.0, 0.0, -3.0]])  # 90° and ×2, then a shift
    np.testing.assert_allclose(umeyama(t, t @ known[:, :2].T + known[:, 2]), known, atol=1e-9)
    assert np.isfinite(umeyama(np.ones((17, 2)), t)).all()  # all points in one place: finite, no division


def test_mask_zeroes_pixels_outside_the_hull(pipeline):
    face = pipeline(read_image(sample("single_face.jpg")))[0]
    assert face.masked[~face.mask].max() == 0
    assert face.masked[face.mask].mean() > 20  # the face itself is kept
    hull = cv2.convexHull(face.aligned_landmarks.astype(np.float32))
    assert cv2.pointPolygonTest(hull, (1.0, 1.0), False) < 0 and not face.mask[1, 1]
    cx, cy = face.aligned_landmarks[30]  # nose tip: inside
    assert face.mask[int(cy), int(cx)]
    # The forehead above the brows is part of the face region.
    brow_y = int(face.aligned_landmarks[17:27, 1].min())
    assert face.mask[brow_y - 3, int(face.aligned_landmarks[27, 0])]


def test_hog_has_documented_dimension_and_is_deterministic(pipeline):
    img = read_image(sample("single_face.jpg"))
    a, b = pipeline(img)[0], pipeline(img)[0]
    assert HogExtractor().dim == 6084 == a.hog.shape[0]
    assert a.geometry.shape == (136,)
    np.testing.assert_array_equal(a.hog, b.hog)


def test_cropped_mode_fits_ckplus_crops(pipeline, ckplus):
    paths = ckplus.image_paths()[::40]
    ok = [pipeline.cropped(read_image(p)).success for p in paths]
    assert np.mean(ok) >= 0.95
    face = pipeline.cropped(read_image(paths[0]))
    assert face.landmarks[:, 0].max() < 60 and face.landmarks[:, 0].min() > -12  # original 48 px frame


def test_tiny_image_gives_no_face_not_a_crash(pipeline, tmp_path):
    Image.fromarray(np.full((10, 10, 3), 128, np.uint8)).save(tmp_path / "t.png")
    assert pipeline(read_image(tmp_path / "t.png")) == []


def test_huge_image_is_downscaled_for_detection(pipeline, tmp_path):
    face = read_image(sample("single_face.jpg"))
    canvas = np.full((9000, 12000, 3), 90, np.uint8)
    big = cv2.resize(face, (face.shape[1] * 4, face.shape[0] * 4))
    canvas[3000:3000 + big.shape[0], 5000:5000 + big.shape[1]] = big
    path = tmp_path / "huge.jpg"
    Image.fromarray(canvas).save(path, quality=80)
    del canvas, big
    faces = pipeline(read_image(path))
    assert len(faces) == 1 and faces[0].success
    x, y, w, h = faces[0].box
    assert 5000 < x < 7300 and 3000 < y < 5300  # in original-image pixels


def test_face_too_small_for_landmarks_is_reported(pipeline):
    img = read_image(sample("single_face.jpg"))
    face = pipeline.from_box(img, (10, 10, 8, 8))
    assert not face.success and "too small" in face.error


def test_corrupted_landmark_model_gives_clear_error(tmp_path):
    bad = tmp_path / "shape_predictor_68_face_landmarks.dat"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(ModelFileError, match=str(bad)):
        LandmarkPredictor(str(bad))


def test_masker_forehead_raise_grows_the_region(pipeline):
    face = pipeline(read_image(sample("single_face.jpg")))[0]
    small = FaceMasker(forehead=0.0).mask(face.aligned_landmarks, 112).sum()
    big = FaceMasker(forehead=0.3).mask(face.aligned_landmarks, 112).sum()
    assert big > small


def test_retinaface_boxes_are_in_original_pixels_when_downscaled():
    img = read_image(sample("single_face.jpg"))
    full = RetinaFaceDetector()(img)[0]
    small = RetinaFaceDetector(max_side=300)(img)[0]
    assert abs(full.x - small.x) < 15 and abs(full.width - small.width) < 25


# ----------------------------------------------------------------------------------------- cropped: is it a face?
def _non_faces() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    land = read_image(sample("free-mountain-vector-01.jpg"))
    return {
        "black": np.zeros((48, 48, 3), np.uint8),
        "white": np.full((48, 48, 3), 255, np.uint8),
        "noise": rng.integers(0, 256, (48, 48, 3), dtype=np.uint8),
        "blurred noise": cv2.GaussianBlur(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8), (9, 9), 3),
        "landscape": land,
        "landscape patch": cv2.resize(land[100:300, 200:400], (48, 48), interpolation=cv2.INTER_AREA),
        "one pixel": np.full((1, 1, 3), 128, np.uint8),
    }


def test_cropped_mode_refuses_non_faces_with_a_reason(pipeline):
    for name, img in _non_faces().items():
        face = pipeline.cropped(img)
        assert not face.success, name
        assert face.error.startswith(("no face in the cropped image", "image too small for a face")), (name, face.error)


def test_cropped_mode_keeps_real_ckplus_and_fer_crops(pipeline, ckplus):
    from .conftest import DATA

    ck = ckplus.image_paths()[::25]
    fer = sorted((DATA / "ferplus" / "FER2013Valid").glob("*.png"))[::120]
    if not fer:
        pytest.skip("FER+ data not available")
    for paths, need in ((ck, 1.0), (fer, 0.93)):
        faces = [pipeline.cropped(read_image(p)) for p in paths]
        assert np.mean([f.success for f in faces]) >= need
        assert all(f.score >= 0.5 for f in faces if f.success)


def _rotated(image: np.ndarray, degrees: float) -> np.ndarray:
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REPLICATE)


@pytest.mark.parametrize("degrees", [45, 60, 90, -90, 120, 130, 140, 155, -145, 180])
def test_a_rolled_face_reads_like_the_upright_one(analyzer, degrees):
    """A face rolled far in the image (camera on its side, head on a pillow, upside down) is fitted
    upright from the detector's keypoints (upside down: from a second detection on the image turned
    180°): its AUs match the upright photo's and the roll shows in pose_Rz. The plain fit put an
    upright mean face on the wrong features (at 60°: AU06 and AU25 lost). At 130–155° the keypoints point
    the wrong way (rolls of 75°/42°/32°): the face read sadness at 140° with confidence 1.00; a fit that
    disagrees with the keypoints found again on its upright patch is now tried at the other quarter turns."""
    img = read_image(sample("single_face.jpg"))
    up = analyzer.analyze_frame(img).iloc[0]
    df = analyzer.analyze_frame(_rotated(img, degrees))
    assert len(df) == 1 and df["success"].tolist() == [1]
    r = df.iloc[0]
    for au in ("AU06_r", "AU12_r", "AU25_r", "AU01_r", "AU04_r"):
        assert abs(r[au] - up[au]) < 0.35, (au, r[au], up[au])
    turn = (np.degrees(r["pose_Rz"] - up["pose_Rz"]) + degrees + 180) % 360 - 180  # 0 when Rz follows
    assert abs(turn) < 5
    assert r["confidence"] > 0.9


@pytest.mark.parametrize("code", [cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_180, cv2.ROTATE_90_COUNTERCLOCKWISE])
def test_faces_turned_90_degrees_get_the_upright_landmarks(pipeline, code):
    """multi_face.jpg turned: the detector's keypoints on faces lying on their side are rough, and two of
    the five fits were 21–24 px off (on 80–120 px faces); the detector now runs again on each upright
    patch. RetinaFace found only 3 of the 5 faces upside down and 4 turned counter-clockwise: an image
    whose every face lies rolled is scanned turned too. Every face is found, its landmarks within 5 px
    RMS of the upright photo's, turned."""
    img = read_image(sample("multi_face.jpg"))
    h, w = img.shape[:2]
    upright = [f.landmarks.astype(float) for f in pipeline(img) if f.success]
    faces = pipeline(cv2.rotate(img, code))
    turned = [f.landmarks.astype(float) for f in faces if f.success]
    assert len(upright) == len(turned) == 5
    assert [f.box[0] for f in faces] == sorted(f.box[0] for f in faces)  # left to right, as always
    for pts in upright:
        expected = {cv2.ROTATE_90_CLOCKWISE: np.c_[h - 1 - pts[:, 1], pts[:, 0]],
                    cv2.ROTATE_180: np.c_[w - 1 - pts[:, 0], h - 1 - pts[:, 1]],
                    cv2.ROTATE_90_COUNTERCLOCKWISE: np.c_[pts[:, 1], w - 1 - pts[:, 0]]}[code]
        rms = min(np.sqrt(((t - expected) ** 2).sum(1).mean()) for t in turned)
        assert rms < 5, rms


def test_upright_photos_pay_for_no_turned_scan(pipeline, monkeypatch):
    """The turned scans (three detector runs) are for photos with no face or with every face rolled: not for
    upright ones, nor for dlib's faces, whose boxes say nothing about their direction."""
    from aulib.face import FacePipeline

    for p in (pipeline, FacePipeline(detector="dlib")):
        calls: list = []
        real = p.turned_detections
        monkeypatch.setattr(p, "turned_detections", lambda img, real=real, calls=calls: calls.append(1) or real(img))
        for name in ("single_face.jpg", "multi_face.jpg"):
            assert p(read_image(sample(name)))
        assert calls == [], p.detector


@pytest.mark.parametrize("code", [cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_180, cv2.ROTATE_90_COUNTERCLOCKWISE])
def test_a_photo_on_its_side_still_shows_its_face(pipeline, code):
    """A photo whose orientation tag was lost: RetinaFace finds no face in the B/W sample portrait
    lying on its side or upside down. An image with no face is searched again turned by 90°, 180° and
    270°, and the face is fitted upright where it lies."""
    img = read_image(sample("BWPictureHuman.jpg"))
    up = [f for f in pipeline(img) if f.success]
    turned = cv2.rotate(img, code)
    assert pipeline.detect(turned) == []  # the plain scan misses it
    found = [f for f in pipeline(turned) if f.success]
    assert len(up) == len(found) == 1
    h, w = img.shape[:2]
    c = up[0].landmarks.astype(float).mean(0)
    expected = {cv2.ROTATE_90_CLOCKWISE: (h - 1 - c[1], c[0]), cv2.ROTATE_180: (w - 1 - c[0], h - 1 - c[1]),
                cv2.ROTATE_90_COUNTERCLOCKWISE: (c[1], w - 1 - c[0])}[code]
    assert np.hypot(*(found[0].landmarks.astype(float).mean(0) - expected)) < 0.1 * up[0].box[3]
    assert pipeline(read_image(sample("free-mountain-vector-01.jpg"))) == []  # and scenery stays faceless


def test_a_rolled_video_is_followed_upright(analyzer, tmp_path):
    """The tracker hands the previous frame's roll to the next fit: a clip turned 50° gives the
    upright clip's AU traces (it did not: AU45 r 0.07, AU06 0.43 on the full clip before). Measured, r between
    the two: AU06 / AU12 / AU25 / AU45 0.79 / 0.90 / 0.88 / 0.93 with the AU heads voting on video frames
    (0.84 / 0.83 / 0.86 / 0.93 with the SVMs alone; AU06 varies little in these 150 frames, std 0.26)."""
    from aulib.table import to_frame
    from aulib.video import FrameReader, analyze_video_rows

    clip = sample("WolfgangLanger_Pexels.mp4")
    frames = [vf.image for vf in FrameReader(clip, max_frames=150, threaded=False)]
    import av

    out = tmp_path / "turned.mkv"
    with av.open(str(out), "w") as c:
        s = c.add_stream("ffv1", rate=30)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(_rotated(f, 50), format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    cols = analyzer.columns
    upright = to_frame(analyze_video_rows(analyzer, clip, max_frames=150), cols)
    turned = to_frame(analyze_video_rows(analyzer, out), cols)
    assert turned["success"].sum() == upright["success"].sum() == 150
    for au, least in (("AU06_r", 0.75), ("AU12_r", 0.85), ("AU25_r", 0.85), ("AU45_r", 0.9)):
        assert np.corrcoef(turned[au], upright[au])[0, 1] > least, au
    assert np.degrees(np.median(turned["pose_Rz"] - upright["pose_Rz"])) == pytest.approx(-50, abs=5)


def test_a_face_cut_by_the_frame_edge_has_low_confidence(analyzer):
    """Landmarks of a face's hidden part are extrapolated (its AUs read from replicated border pixels):
    the confidence counts only the landmarks in the frame, so OpenFace's usual ``confidence >= 0.8``
    filter drops a face whose mouth is below the frame; a face fully in view keeps its confidence."""
    img = read_image(sample("single_face.jpg"))
    full = analyzer.analyze_frame(img).iloc[0]
    cut = analyzer.analyze_frame(img[:330]).iloc[0]  # the mouth and chin below the frame
    side = analyzer.analyze_frame(img[:, :290]).iloc[0]  # half the face beyond the right edge
    assert full["confidence"] > 0.95
    assert cut["success"] == 1 and cut["confidence"] < 0.8
    assert side["success"] == 1 and side["confidence"] < 0.7


class _Spy:
    """A detector that records whether it is the quick (downscaled) one each time it runs."""

    def __init__(self, det, is_quick: bool, log: list[bool]) -> None:
        self.det, self.is_quick, self.log = det, is_quick, log
        self.max_side = getattr(det, "max_side", 0)

    def __call__(self, img):
        self.log.append(self.is_quick)
        return self.det(img)


def test_video_scans_look_at_960_px_only_while_every_followed_face_is_large():
    """Video scans may look at a 960 px copy of the frame (aulib.face.detect.VIDEO_SCAN_SIDE), sharing
    the model: only while faces are followed and the smallest is ≥ MIN_SCAN_FACE px at that scale
    (first scans, lost tracks and small faces get the full 1280 px). Photos keep 1280 px; dlib keeps its
    own size; frames up to 960 px are scanned as they are. A large face's landmarks are the same."""
    from aulib import Analyzer
    from aulib.face.detect import VIDEO_SCAN_SIDE, DlibHogDetector, scanning
    from aulib.video.follow import MIN_SCAN_FACE
    from aulib.video.run import VideoAnalysis

    full = RetinaFaceDetector()
    scan = scanning(full, VIDEO_SCAN_SIDE)
    assert scan is not full and scan._session is full._session and (full.max_side, scan.max_side) == (1280, 960)
    assert scanning(scan, 1280) is scan and scanning(DlibHogDetector(), 960).max_side == 1280
    follower = VideoAnalysis(Analyzer(), "x", threaded=False).follower
    assert follower.quick.max_side == VIDEO_SCAN_SIDE
    face = read_image(sample("single_face.jpg"))
    for side, quick in [(180, False), (700, True)]:  # photo width: faces ≈ 60 and ≈ 240 px in the 1080p frame
        small = cv2.resize(face, (side, side * face.shape[0] // face.shape[1]))
        frame = np.full((1080, 1920, 3), 90, np.uint8)
        frame[300:300 + small.shape[0], 900:900 + small.shape[1]] = small
        assert follower._scanner(frame, []) is follower.detector  # nothing followed yet: full size
        first = follower(frame, 0)
        assert len(first) == 1 and first[0].success
        tracks = follower.tracker.active(follower._seq)  # the tracker counts analysed frames
        expect = min(tracks[0].box[2:4]) * VIDEO_SCAN_SIDE / 1920 >= MIN_SCAN_FACE
        assert expect == quick and (follower._scanner(frame, tracks) is follower.quick) == quick
        # the interval's scan (frame detect_every) uses the quick copy exactly when the face is large
        used: list[bool] = []
        quick_detector, full_detector = follower.quick, follower.detector

        follower.quick, follower.detector = _Spy(quick_detector, True, used), _Spy(full_detector, False, used)
        for i in range(1, follower.detect_every + 1):
            assert len(follower(frame, i)) == 1
        assert used == [quick]
        follower.quick, follower.detector = quick_detector, full_detector
        (a,), (b,) = full(frame), scan(frame)
        lm = LandmarkPredictor()
        la, lb = lm(frame, a.landmark_box()), lm(frame, b.landmark_box())
        eyes = np.linalg.norm(la[36:42].mean(0) - la[42:48].mean(0))
        if quick:
            assert np.median(np.linalg.norm(la - lb, axis=1)) < 0.03 * eyes
        follower.tracker = type(follower.tracker)(max_missed=follower.tracker.max_missed)
        follower._need_detect, follower._prev, follower._thumb = True, -1, None


def test_stages_on_their_own_take_gray_and_rgba_and_refuse_empty_images_clearly():
    """Each stage is public: the detectors, the landmark predictor and HOG read gray (H, W), (H, W, 1),
    gray + alpha and RGBA arrays like RGB, and an empty image is a ValueError saying its shape."""
    from aulib.face.detect import DlibHogDetector

    rgb = read_image(sample("single_face.jpg"))
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    opaque = np.full(gray.shape, 255, np.uint8)
    rgba = np.dstack([rgb, opaque])
    layouts = [gray, gray[:, :, None], np.dstack([gray, opaque]), rgba]
    detectors = [RetinaFaceDetector(), DlibHogDetector()]
    boxes = {type(d).__name__: d(rgb)[0].as_array()[:4] for d in detectors}
    lm = LandmarkPredictor()
    box = RetinaFaceDetector()(rgb)[0].landmark_box()
    for image in layouts:
        for d in detectors:
            (found,) = d(image)
            assert np.abs(found.as_array()[:4] - boxes[type(d).__name__]).max() < 0.05 * found.width
        assert np.abs(lm(image, box) - lm(rgb, box)).max() <= 2
    crop = FacePipeline()(rgb)[0].masked
    np.testing.assert_array_equal(HogExtractor()(crop[:, :, None]), HogExtractor()(crop))
    for d in detectors:
        with pytest.raises(ValueError, match=r"shape \(0, 0, 3\)"):
            d(rgb[:0, :0])
    with pytest.raises(ValueError, match="112×112"):
        HogExtractor()(rgb[:0, :0])


def test_small_faces_in_a_very_large_photo_are_found(pipeline):
    """The whole image is shrunk to 1280 px for detection: multi_face.jpg's 100 px faces pasted into a
    10000×7500 canvas became 13 px there, and the photo had "no face". It is scanned again in tiles."""
    img = read_image(sample("multi_face.jpg"))
    canvas = np.full((7500, 10000, 3), 128, np.uint8)
    canvas[3000:3000 + img.shape[0], 4000:4000 + img.shape[1]] = img
    faces = [f for f in pipeline(canvas) if f.success]
    upright = [f for f in pipeline(img) if f.success]
    assert len(faces) == len(upright) == 5
    for f, g in zip(faces, upright):  # the same faces (the box is the coarse scan's; the landmarks full-size)
        assert np.abs(f.landmarks.mean(0) - g.landmarks.mean(0) - [4000, 3000]).max() < 6
    strip = np.full((100, 10000, 3), 128, np.uint8)  # a 34 px face in a 10000×100 strip: 4 px when shrunk
    small = cv2.resize(read_image(sample("single_face.jpg")), (102, 100))
    strip[:, 5000:5102] = small
    assert [f.success for f in pipeline(strip)] == [1]


def test_a_large_group_photo_keeps_every_small_face_and_a_big_one(pipeline):
    """The tiled scan ran only when the usual scan found no face at all: in an 8000×5000 photo of six 80 px
    faces it found four (13 px when shrunk) and the other two were silently missing, the four found with
    boxes 13 % too wide (confidence 0.72–0.94). Small faces found now send the image to the tiled scan too,
    whose boxes win; a face bigger than a tile, cut by tile borders, stays the usual scan's, whole."""
    img = read_image(sample("single_face.jpg"))
    small = cv2.resize(img, None, fx=80 / 174, fy=80 / 174, interpolation=cv2.INTER_AREA)
    canvas = cv2.resize(read_image(sample("free-mountain-vector-01.jpg")), (8000, 5000))  # a busy background
    spots = [(4000, 500), (4800, 900), (5600, 1300), (6400, 2500), (7000, 3800), (4500, 4000)]
    for x0, y0 in spots:
        canvas[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
    faces = pipeline(canvas)
    assert [f.success for f in faces] == [True] * 6
    assert sorted(int(f.box[0]) // 100 for f in faces) == sorted(x // 100 for x, _ in spots)
    assert all(75 < f.box[2] < 90 for f in faces)  # the tiled scan's tight boxes, not the shrunk scan's
    big = cv2.resize(img, None, fx=6, fy=6)  # a ≈ 1000 px face, wider than a tile
    canvas[:big.shape[0], :big.shape[1]] = big[:5000, :8000]
    faces = pipeline(canvas)
    assert [f.success for f in faces] == [True] * 7 and faces[0].box[2] > 900


def test_a_phone_photo_of_one_mid_size_face_pays_no_tiled_scan(pipeline, monkeypatch):
    """A 4000×3000 photo of one 150 px face (48 px in the shrunk scan) paid a 1 s tiled scan that found nothing
    new; it is detected again around itself at full size instead (≈ 10 ms), which tightens its box."""
    img = read_image(sample("single_face.jpg"))
    canvas = np.full((3000, 4000, 3), 140, np.uint8)
    face = cv2.resize(img, None, fx=150 / 174, fy=150 / 174, interpolation=cv2.INTER_AREA)
    canvas[1400:1400 + face.shape[0], 1900:1900 + face.shape[1]] = face
    calls = []
    monkeypatch.setattr(type(pipeline), "tiled_detections", lambda self, image: calls.append(1) or [])
    (found,) = pipeline(canvas)
    assert found.success and not calls
    (alone,) = pipeline(face)  # the same face in a photo of its own size
    assert abs(found.box[2] - alone.box[2]) < 0.05 * alone.box[2]


@pytest.mark.parametrize("light", [0.05, 0.02])
def test_a_very_dark_face_reads_like_the_lit_one(analyzer, light):
    """A face darker than any training face (aulib.face.exposure) is brightened before it is read: the smile
    at 2–5 % of its light came out "no AU present" with confidence 1.00; faces as bright as the training
    faces are untouched."""
    from aulib.face.exposure import DARK_P98, exposure_gain

    img = read_image(sample("single_face.jpg"))
    lit = analyzer.analyze(img)
    dark = np.clip(img * light, 0, 255).round().astype(np.uint8)
    df = analyzer.analyze(dark)
    occ = [c for c in lit.columns if c.startswith("AU") and c.endswith("_c") and c != "AU45_c"]
    assert len(df) == 1 and df["success"].iat[0] == 1
    assert df[occ].equals(lit[occ]) and {"AU06_c", "AU12_c", "AU25_c"} <= {c for c in occ if df[c].iat[0] == 1}
    au = [c.replace("_c", "_r") for c in occ]
    assert (df[au] - lit[au]).abs().to_numpy().max() < 0.5
    box = tuple(lit[["face_x", "face_y", "face_width", "face_height"]].iloc[0])
    assert exposure_gain(img, box) == 1.0 and exposure_gain(dark, box) > 1.0
    assert exposure_gain(np.full((100, 100, 3), DARK_P98, np.uint8), (10, 10, 50, 50)) == 1.0


def test_a_very_dark_cropped_face_reads_like_the_lit_one(analyzer):
    """``--cropped`` reads a dataset-style crop as it is; one darker than any training crop is brightened
    first, as whole images are: the smile's 48 px crop at 4 % of its light lost every AU."""
    img = read_image(sample("single_face.jpg"))
    crop = cv2.resize(img[190:430, 170:400], (48, 48), interpolation=cv2.INTER_AREA)
    lit = analyzer.analyze(crop, cropped=True)
    occ = [c for c in lit.columns if c.startswith("AU") and c.endswith("_c") and c != "AU45_c"]
    assert {"AU06_c", "AU12_c", "AU25_c"} <= {c for c in occ if lit[c].iat[0] == 1}
    for light in (0.04, 0.02):
        dark = analyzer.analyze(np.clip(crop * light, 0, 255).round().astype(np.uint8), cropped=True)
        assert dark["success"].iat[0] == 1 and dark[occ].equals(lit[occ])


def test_a_cropped_face_turned_a_quarter_or_half_way_reads_like_the_upright_one(analyzer):
    """--cropped fitted dlib's upright mean face to a crop turned 90° or 180° (a scan, a phone photo without its
    rotation tag): success 1 at confidence 0, the smile's AU12_r 1.0 instead of 3.7, roll 0.24 rad at 90°. The
    crop check's keypoints say which way is up; the crop is fitted upright and its points turned back."""
    img = read_image(sample("single_face.jpg"))
    crop = np.ascontiguousarray(img[150:450, 150:420])
    upright = analyzer.analyze(crop, cropped=True)
    for k, roll in ((1, -np.pi / 2), (2, np.pi), (3, np.pi / 2)):  # np.rot90 turns counter-clockwise
        turned = analyzer.analyze(np.ascontiguousarray(np.rot90(crop, k)), cropped=True)
        assert turned.success.iat[0] == 1 and turned.confidence.iat[0] > 0.8, k
        # pose_Rz: the face's roll in the image (±π the same for a face upside down)
        assert abs(np.angle(np.exp(1j * (turned.pose_Rz.iat[0] - upright.pose_Rz.iat[0] - roll)))) < 0.1, k
        for au in ("AU06_r", "AU12_r", "AU25_r"):
            assert abs(turned[au].iat[0] - upright[au].iat[0]) < 0.3, (k, au)


def test_small_dataset_crops_turned_any_quarter_read_like_the_upright_ones(analyzer, ckplus):
    """The crop check's keypoints gave the wrong turn for many 48 px crops (CK+ peak crops turned 90°, 180°,
    270°: 22 of these 63 read with other AUs than upright, at confidence ≈ 0 — happiness read as sadness): a
    crop read that poorly is fitted from each other quarter turn too, and the most confident fit is kept. The
    same analysis has the same ``confidence``: a turned crop's took the face score of the crop as turned
    (0.95 upright, 0.77 turned 180°), so a ``confidence`` filter kept one of two identical readings."""
    from aulib.io import read_image

    mismatched = []
    for path in ckplus.image_paths()[::53]:
        crop = read_image(path)
        upright = analyzer.analyze(crop, cropped=True)
        occ = [c for c in upright.columns if c.startswith("AU") and c.endswith("_c") and c != "AU45_c"]
        for k in (1, 2, 3):
            turned = analyzer.analyze(np.ascontiguousarray(np.rot90(crop, k)), cropped=True)
            if not (turned.success.iat[0] == 1 and turned[occ].equals(upright[occ])
                    and abs(turned.confidence.iat[0] - upright.confidence.iat[0]) < 1e-3):
                mismatched.append((path.name, k))
    assert not mismatched


def test_cropped_landmarks_sit_on_the_crops_own_pixels(pipeline):
    """A 48 px crop is fitted upscaled; its landmarks come back in its own pixels with the pixel-centre
    mapping ``(x + 0.5) / s − 0.5``. Dividing by the scale alone put every point 0.375 px right of and below
    the face, which biased cropped faces' gaze by ≈ 6°. The crop and the same crop upscaled 4× by the user
    give the same points."""
    img = read_image(sample("single_face.jpg"))
    crop = cv2.resize(img[190:430, 170:400], (48, 48), interpolation=cv2.INTER_AREA)
    small = pipeline.cropped(crop)
    big = pipeline.cropped(cv2.resize(crop, (192, 192), interpolation=cv2.INTER_CUBIC))
    assert small.success and big.success
    assert np.abs(small.landmarks - ((big.landmarks + 0.5) / 4 - 0.5)).max() < 1e-4


def test_model_crops_of_sharp_faces_get_the_training_faces_detail_and_dataset_faces_are_untouched(pipeline,
                                                                                                    ckplus):
    """Every model learnt from 48 px faces (crops upscaled ≈ 2.2×); a photo's face gave crops with 3–8× that
    detail, which the models never saw (the laughing man read happiness 0.71 with AU04 at 0.23, now 0.89 / 0.11:
    tests/test_analyzer.py). The model crop (``aligned``) and the HOG now hold the training faces' detail; the
    masked crop keeps the full detail that tells two people apart (video ids); a dataset face is left alone."""
    from aulib.face.align import TRAINED_SOURCE_PX, matched_detail

    def detail(gray: np.ndarray, inside: np.ndarray) -> float:  # energy above the training faces' frequencies
        g = gray.astype(np.float32)
        soft = cv2.resize(cv2.resize(g, (TRAINED_SOURCE_PX,) * 2, interpolation=cv2.INTER_AREA), g.shape[::-1])
        return float(np.abs(g - soft)[inside].mean())

    face = pipeline(read_image(sample("Image_with_alpha.png")))[0]
    scale = float(np.sqrt(np.linalg.det(face.matrix[:, :2].astype(np.float64))))
    assert scale < 0.5  # a 400 px face in a 112 px crop
    model_gray = cv2.cvtColor(face.aligned, cv2.COLOR_RGB2GRAY)
    inside = cv2.erode(face.mask.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0  # away from the mask's edge
    assert detail(model_gray, inside) < 0.5 * detail(face.masked, inside)  # face.masked: full detail
    hog_again = pipeline.hog(np.where(face.mask, model_gray, np.uint8(0)))
    np.testing.assert_array_equal(face.hog, hog_again)  # the HOG reads the model crop
    for path in ckplus.image_paths()[::97]:  # 48 px dataset faces: crop scale ≈ 2.2, nothing changes
        f = pipeline.cropped(read_image(path))
        if f.success:
            assert np.sqrt(np.linalg.det(f.matrix[:, :2].astype(np.float64))) > 1.6
            assert matched_detail(f.aligned, f.matrix) is f.aligned


def test_the_noise_measure_takes_np_medians_value_without_its_import():
    """noise_sigma's median (np.median imported numpy.ma on its first call, 10 ms of each photo) is np.median's."""
    from aulib.face.sharpness import _median

    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 4, 101, 1000):
        for dtype in (np.float32, np.float64):
            v = (rng.random(n) * 100).astype(dtype)
            assert _median(v) == float(np.median(v)), (n, dtype)


def test_a_photos_landmarks_hardly_move_when_a_few_pixels_are_cropped_off(pipeline):
    """One dlib fit moves with its box: cropping 1–3 px off a photo (or framing it in a border, which moves the
    detector's box when the photo is shrunk for detection) moved the points by 1.2 % of the eye distance on
    average, and flipped an AU in 14 % of faces. A photo's landmarks are the mean of five fits from boxes
    2 % apart (FacePipeline.fit): they move far less than one fit does, and lie close to it. (A face whose fits
    fall two ways, as multi_face.jpg's leftmost, moves about as much either way.)"""
    import av

    from aulib.face.pipeline import fit_boxes

    images = [read_image(sample(n)) for n in ("single_face.jpg", "multi_face.jpg", "Image_with_alpha.png")]
    with av.open(str(sample("WolfgangLanger_Pexels.mp4"))) as c:
        images += [f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(video=0)) if i % 80 == 0]
    moved: dict[bool, list[float]] = {False: [], True: []}
    apart: list[float] = []
    for image in images:
        base = fit_boxes(pipeline.detector, image, pipeline.detect(image))
        for s in (1, 2, 3):
            cut = np.ascontiguousarray(image[s:, s:])
            boxes = fit_boxes(pipeline.detector, cut, pipeline.detect(cut))
            assert len(boxes) == len(base)
            for (b0, _), (b1, _) in zip(base, boxes):
                one = pipeline.fit(image, b0)[0].astype(np.float64)
                eyes = np.linalg.norm(one[36:42].mean(0) - one[42:48].mean(0))
                for averaged in (False, True):
                    p0 = pipeline.fit(image, b0, averaged)[0].astype(np.float64)
                    p1 = pipeline.fit(cut, b1, averaged)[0].astype(np.float64) + s
                    moved[averaged].append(float(np.linalg.norm(p1 - p0, axis=1).mean() / eyes))
                    if averaged and s == 1:
                        apart.append(float(np.linalg.norm(p0 - one, axis=1).mean() / eyes))
    single, mean5 = np.mean(moved[False]), np.mean(moved[True])
    assert mean5 < 0.7 * single, (single, mean5)
    assert np.median(moved[True]) < 0.8 * np.median(moved[False])
    assert np.mean(apart) < 0.015  # the same points, less noisy: not a different shape
    # the points are no longer whole pixels (the eye closure reads sub-pixel lid movement)
    face = pipeline(images[0])[0]
    assert not np.allclose(face.landmarks, np.round(face.landmarks))
