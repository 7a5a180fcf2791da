"""The Analyzer end to end with its real defaults (CNN emotion) and with the multitask model.

The photo is the smiling face shipped inside the package, so these tests run wherever aulib is
installed. A smile is AU06 (cheek raiser) + AU12 (lip corner puller) with the lips apart (AU25)
and no brow action: both networks and the SVMs must say so, and the table must be exactly the
Face records' values.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

import aulib
import aulib.cnn.inference
from aulib import table
from aulib.analyzer import Analyzer
from aulib.cnn.inference import MultitaskCNN, au_calibration, au_thresholds, calibrate
from aulib.models import model_entry

SMILE = Path(aulib.__file__).parent / "data" / "sample_face.jpg"


@pytest.fixture(scope="module", params=["cnn", "multitask"])
def full(request) -> Analyzer:
    return Analyzer(emotion_model=request.param)


def test_default_analyzer_uses_the_cnn_emotion_model():
    a = Analyzer()
    assert a.emotion_model == "cnn" and isinstance(a.features.embedder, aulib.cnn.inference.EmotionCNN)
    assert "emotion" in a.columns and not a.mt_aus
    assert a.analyze(SMILE)["emotion"].tolist() == ["happiness"]


def test_smile_end_to_end(full):
    df = full.analyze(SMILE)
    assert list(df.columns) == full.columns and len(df) == 1 and df["success"].tolist() == [1]
    assert df["emotion"].tolist() == ["happiness"]
    probs = table.emotion_probs(df)
    assert list(probs.columns) == list(aulib.face.EMOTIONS)
    assert probs.sum(axis=1).iloc[0] == pytest.approx(1.0, abs=1e-5) and probs["happiness"].iloc[0] > 0.8
    occ = table.au_occurrence(df).iloc[0]
    assert occ["AU06"] == 1 and occ["AU12"] == 1
    assert occ["AU01"] == 0 and occ["AU02"] == 0 and occ["AU04"] == 0
    if full.emotion_model == "multitask":
        mt = table.mt_au_occurrence(df).iloc[0]
        assert list(mt.index) == [aulib.face.au_name(a) for a in full.mt_aus]
        assert mt["AU06"] == 1 and mt["AU12"] == 1 and mt["AU04"] == 0
    else:
        assert table.mt_au_occurrence(df).shape[1] == 0


def test_table_rows_are_the_face_records(full):
    faces = full.get(aulib.read_image(SMILE))
    df = full.analyze_frame(aulib.read_image(SMILE))
    f = faces[0]
    assert f.success and f.id == 0 and f.emotion == df["emotion"].iloc[0]
    np.testing.assert_array_equal(table.au_intensity(df).iloc[0].to_numpy(float), f.au_intensity)
    np.testing.assert_array_equal(table.au_occurrence(df).iloc[0].to_numpy(int), f.au_occurrence)
    np.testing.assert_allclose(table.landmarks(df)[0], f.landmarks)
    np.testing.assert_array_equal(table.emotion_probs(df).iloc[0].to_numpy(), f.emotion_probs.astype(np.float64))


def test_multitask_thresholds_from_the_manifest_reach_the_table():
    cnn = MultitaskCNN()
    entry = model_entry(cnn.name)
    expected = calibrate(au_thresholds(entry, cnn.name), au_calibration(entry, cnn.name))  # the heads' Platt scale
    np.testing.assert_allclose(cnn.thresholds, expected)
    a = Analyzer(emotion_model="multitask")
    f = a.get(aulib.read_image(SMILE))[0]
    np.testing.assert_array_equal(f.mt_au_occurrence, (f.mt_au_probs >= cnn.thresholds).astype(np.int8))


def test_rescore_after_changing_features_changes_only_the_au_outputs(full):
    f = full.get(aulib.read_image(SMILE))[0]
    before = (f.au_intensity.copy(), f.emotion_probs.copy())
    f.features = np.asarray(full.au_feature_mean, np.float32).copy()  # the population mean face
    full.rescore([f])
    assert not np.array_equal(f.au_intensity, before[0])
    np.testing.assert_array_equal(f.emotion_probs, before[1])


def test_images_average_emotion_over_the_mirror_image_video_frames_do_not(full):
    """tta (default): a photo's emotion is the mean over the face and its mirror (with ``cnn``: of both
    ensemble networks) and, with ``cnn``, its AUs are fused with the multitask network's heads;
    ``run(flip=False)`` (what the video and live paths call) is one network on the face alone and
    the SVMs' AUs."""
    from aulib.cnn.inference import SecondOpinion

    image = aulib.read_image(SMILE)
    ensembled = full.get(image)[0]
    plain = full.run(full.pipeline(image), flip=False)[0]
    model = full.cnn if full.cnn is not None else full.features.embedder
    crop = plain.aligned
    views = model.predict(np.stack([crop, crop[:, ::-1]]))
    views = views if isinstance(views, np.ndarray) else views[0]
    np.testing.assert_allclose(plain.emotion_probs, views[0], atol=1e-5)
    expected = views.mean(axis=0)
    if full.emotion_model == "cnn":
        expected = (expected + SecondOpinion().model.predict(crop, flip=True)[0]) / 2
    np.testing.assert_allclose(ensembled.emotion_probs, expected, atol=1e-5)
    assert abs(float(ensembled.emotion_probs.sum()) - 1) < 1e-5
    if full.emotion_model == "cnn":  # images: the multitask heads vote on their AUs (aulib.au.fusion)
        heads = MultitaskCNN().predict(crop)[1][0]
        fused = [full.aus.index(a) for a in full._au_heads.aus]
        rest = [i for i in range(len(full.aus)) if i not in fused]
        np.testing.assert_allclose(ensembled.au_prob[fused], (plain.au_prob[fused] + heads) / 2, atol=1e-5)
        np.testing.assert_allclose(ensembled.au_prob[rest], plain.au_prob[rest])
        np.testing.assert_array_equal(ensembled.au_occurrence, ensembled.au_prob > full._image_fusion.thresholds)
        assert ensembled.mt_au_occurrence is None and not full.mt_aus  # no mt_AUxx_c columns in this mode
    else:  # the multitask model fuses in both modes
        np.testing.assert_array_equal(ensembled.au_intensity, plain.au_intensity)
    no_tta = Analyzer(emotion_model=full.emotion_model, tta=False)
    np.testing.assert_allclose(no_tta.get(image)[0].emotion_probs, plain.emotion_probs, atol=1e-6)


def test_the_laughing_man_is_happiness():
    """Issue 13: a clearly laughing man with a hand on his forehead (Image_with_alpha.png) read as
    sadness 0.49 from one network; the image ensemble (two networks, each with its mirror view) reads him
    (0.71; 0.89 since the models read his crop at the training faces' detail, aulib.face.align.matched_detail)."""
    from .conftest import sample

    face = Analyzer().get(aulib.read_image(sample("Image_with_alpha.png")))[0]
    assert face.emotion == "happiness" and face.emotion_probs[aulib.face.EMOTIONS.index("happiness")] > 0.6


def test_get_and_analyze_frame_take_an_image_path_too(tmp_path):
    """``get``/``analyze_frame`` read a path like ``analyze`` does (they used to report a str as
    "array of shape ()"); a file that is not an image is an ImageReadError naming it."""
    a = Analyzer()
    by_path = a.analyze_frame(SMILE)
    by_array = a.analyze_frame(aulib.read_image(SMILE), input_name=str(SMILE))
    assert by_path["input"].tolist() == [str(SMILE)] and by_path["emotion"].tolist() == ["happiness"]
    assert by_path.drop(columns="input").equals(by_array.drop(columns="input"))
    assert len(a.get(str(SMILE))) == 1
    (tmp_path / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(64))
    for bad, says in ((tmp_path / "none.jpg", "no such file"), (tmp_path, "directory"),
                      (tmp_path / "clip.mp4", "Analyzer.analyze")):
        with pytest.raises(aulib.ImageReadError, match=says) as info:
            a.get(bad)
        assert str(bad) in str(info.value)


def test_analyze_refuses_what_is_not_a_path():
    """``analyze('')`` used to analyse the whole working folder (Path("") is "."), ``analyze(None)``
    failed with "'NoneType' object is not iterable"; a bytes path is a path."""
    a = Analyzer()
    for bad, err, says in (("", ValueError, "empty path"), ([""], ValueError, "empty path"),
                           (None, TypeError, "not NoneType"), (7, TypeError, "not int"),
                           ([SMILE, None], TypeError, "not NoneType"),
                           # iterable, but not lists of paths: a file object would be read line by line as
                           # paths (bytes lines gave "File name too long"), a dict by its keys
                           (open(SMILE, "rb"), TypeError, "not BufferedReader: give the file's path"),
                           (io.BytesIO(SMILE.read_bytes()), TypeError, "not BytesIO"),
                           ({str(SMILE): 1}, TypeError, "not dict")):
        with pytest.raises(err, match=says):
            a.analyze(bad)
    with pytest.raises(aulib.ImageReadError, match="BufferedReader is not an image"):
        a.get(open(SMILE, "rb"))
    # a PIL image is held to the same pixel limit as a file or an array (it used to be decoded whole)
    from PIL import Image

    with pytest.raises(aulib.ImageReadError, match="image too large"):
        a.analyze(Image.new("L", (12000, 11000)))
    assert a.analyze(bytes(SMILE))["emotion"].tolist() == ["happiness"]
    assert len(a.analyze([])) == 0


def test_analyze_takes_an_image_array_or_a_pil_image_as_one_image():
    """Users of other tools pass arrays to ``analyze``/``aulib.analyze``; they used to be read as a list
    of paths (a TypeError printing the array's first row; an empty array gave an empty table, silently).
    An array or PIL image is now the table of that image, as :meth:`Analyzer.analyze_frame` gives it; an
    array that is not an image is an ImageReadError saying its shape; video options are refused."""
    from PIL import Image

    a = Analyzer()
    rgb = aulib.read_image(SMILE)
    want = a.analyze_frame(rgb)
    assert want["emotion"].tolist() == ["happiness"]
    assert a.analyze(rgb).equals(want)
    assert a.analyze(Image.open(SMILE)).equals(want)
    # a palette image is its colours, not its palette indices (np.asarray would give those)
    palette = Image.open(SMILE).convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    for f in (a.analyze, a.analyze_frame):
        assert f(palette)["emotion"].tolist() == ["happiness"]
    assert len(a.get(palette)) == 1
    assert aulib.analyze(rgb[:, :, :1])["success"].tolist() == [1]  # gray, (H, W, 1)
    for bad in (np.zeros((0, 0, 3), np.uint8), np.zeros((2, 50, 50, 3), np.uint8), np.zeros(10, np.uint8)):
        with pytest.raises(aulib.ImageReadError, match=r"array of shape \("):
            a.analyze(bad)
    with pytest.raises(TypeError, match="every"):
        a.analyze(rgb, every=2)
    with pytest.raises(ValueError, match="order must be 'rgb' or 'bgr'"):  # was taken as RGB silently
        a.analyze_frame(rgb, order="brg")  # type: ignore[arg-type]
    # a list of images (and paths): each image's rows carry its position as ``frame``
    mixed = a.analyze([rgb, SMILE, np.zeros((60, 60, 3), np.uint8)])
    assert mixed["frame"].tolist() == [0, 0, 2] and mixed["input"].tolist() == ["", str(SMILE), ""]
    assert mixed["success"].tolist() == [1, 1, 0] and mixed["error"].iloc[2] == "no face detected"
    with pytest.raises(TypeError, match="not NoneType"):  # a bad entry is refused before any work
        a.analyze([rgb, None])


def test_options_of_the_wrong_type_are_refused_by_name():
    """Strings are truthy: ``gaze="no"`` ran the gaze stage and ``cropped="no"`` treated a photo as a crop;
    intrinsics of the wrong type failed inside numpy, and a unit error (1e-300, 1e300) gave NaN head poses
    in rows marked success; an image ignored a misspelt video option that a video refused."""
    for kw, err, says in [({"gaze": "no"}, TypeError, "gaze must be True or False"),
                          ({"tta": "false"}, TypeError, "tta must be True or False"),
                          ({"cropped": "yes"}, TypeError, "cropped must be True or False"),
                          ({"intrinsics": "1234"}, TypeError, "intrinsics must be four numbers"),
                          ({"intrinsics": 500}, TypeError, "intrinsics must be four numbers"),
                          ({"intrinsics": (True, True, 0, 0)}, TypeError, "intrinsics must be four numbers"),
                          ({"intrinsics": (1e-300, 1e-300, 0, 0)}, ValueError, "in pixels"),
                          ({"intrinsics": (500, 500, -1e308, 1e308)}, ValueError, "in pixels")]:
        with pytest.raises(err, match=says):
            Analyzer(emotion_model="none", **kw)
    a = Analyzer(emotion_model="none")
    with pytest.raises(TypeError, match="cropped must be True or False"):
        a.analyze(SMILE, cropped="no")
    for call in (lambda: a.analyze(SMILE, evry=5), lambda: list(a.iter_tables(SMILE, bogus=1))):
        with pytest.raises(TypeError, match="unknown video option"):
            call()
    for bad in (None, 5):
        with pytest.raises(TypeError, match="path must be"):
            list(a.iter_tables(bad))


def test_run_takes_any_iterable_of_faces_and_refuses_other_things():
    """An iterator was used up by the first model stage: the faces came back unscored, without an error."""
    from aulib.io import read_image

    a = Analyzer(emotion_model="none")
    faces = a.pipeline(read_image(SMILE))
    scored = a.run(iter(faces))
    assert len(scored) == 1 and scored[0].au_intensity is not None and np.isfinite(scored[0].gaze).all()
    with pytest.raises(TypeError, match="not NoneType"):
        a.run(None)
    with pytest.raises(TypeError, match="Face records"):
        a.run([1])


class _Mine(Analyzer):
    """A subclass, as a user might write one: it must pickle back as itself."""


def test_an_analyzer_pickles_as_its_settings():
    """``Pool().map(analyzer.analyze, files)`` failed: onnxruntime sessions cannot be pickled. The analyzer
    travels as its settings and is rebuilt on the other side, with the same results."""
    import pickle

    a = Analyzer(emotion_model="none", intrinsics=(500, 500, 320, 240), gaze=False)
    b = pickle.loads(pickle.dumps(a))
    assert b.pose.intrinsics == (500.0, 500.0, 320.0, 240.0) and not b.with_gaze and b.emotion_model == "none"
    pd_a, pd_b = a.analyze(SMILE), b.analyze(SMILE)
    assert pd_a.drop(columns="input").equals(pd_b.drop(columns="input"))

    m = _Mine(emotion_model="none")
    m.tta = False  # a setting changed after construction travels too
    back = pickle.loads(pickle.dumps(m))
    assert type(back) is _Mine and back.tta is False


def test_frame_numbers_and_video_callbacks_of_the_wrong_type_are_refused():
    """``analyze_frame(frame="a")`` failed inside the table builder, ``frame=-1`` and ``timestamp=nan`` were
    written as given; ``stats=5``/``progress=5`` failed after the video had opened."""
    a = Analyzer(emotion_model="none")
    for kw in ({"frame": "a"}, {"frame": -1}, {"timestamp": float("nan")}, {"input_name": 3}):
        with pytest.raises(TypeError, match=next(iter(kw))):
            a.analyze_frame(SMILE, **kw)
    df = a.analyze_frame(SMILE, frame=np.int64(3), timestamp=np.float32(0.5))
    assert df.frame.tolist() == [3] and df.timestamp.tolist() == [0.5]
    from .conftest import sample

    clip = sample("single_face.mp4")
    for kw, err in (({"stats": 5}, TypeError), ({"progress": 5}, TypeError), ({"smooth_sigma": "x"}, ValueError)):
        with pytest.raises(err, match=next(iter(kw))):
            a.analyze(clip, max_frames=2, **kw)


def test_api_options_and_inputs_are_checked_like_the_rest(tmp_path):
    """Accepted before, silently: ``smooth=1`` (kept as 1), ``threaded="no"`` (read as True), ``chunk_rows=0`` or
    -5 (empty tables, one per frame), an all-NaN float image (black: "no face detected"); and ``get`` /
    ``analyze_frame`` read a bytes path as an array ("array of shape ()"), ``analyze`` an array of paths as one
    image. Checked now, the paths read."""
    import numpy as np
    import pytest

    from aulib.io import ImageReadError

    from .conftest import sample

    a = Analyzer()
    clip = sample("single_face.mp4")
    with pytest.raises(ValueError, match="smooth must be True, False, 'offline' or 'causal', not 1"):
        Analyzer(smooth=1)
    with pytest.raises(TypeError, match="threaded must be True or False, not 'no'"):
        a.analyze(clip, max_frames=2, threaded="no")
    for bad in (0, -5):
        with pytest.raises(ValueError, match=f"chunk_rows must be a whole number ≥ 1, not {bad}"):
            list(a.iter_tables(clip, max_frames=2, chunk_rows=bad))
    with pytest.raises(ImageReadError, match="no finite value"):
        a.get(np.full((64, 64, 3), np.nan))
    photo, group = str(sample("single_face.jpg")), str(sample("multi_face.jpg"))
    assert len(a.get(photo.encode())) == 1
    assert a.analyze_frame(photo.encode())["input"].tolist() == [photo]
    df = a.analyze(np.array([photo, group]))
    assert df.groupby("input").size().to_dict() == {photo: 1, group: 5}
    # a column's .to_numpy() (object dtype under pandas 3) and bytes paths (dtype S, which became their repr:
    # "b'/…/single_face.jpg': no such file") are lists of paths too; a 2-D array of them is named
    for paths in (np.array([photo, Path(group)], dtype=object), np.array([photo.encode(), group.encode()])):
        df = a.analyze(paths)
        assert df.groupby("input").size().to_dict() == {photo: 1, group: 5}, paths
    with pytest.raises(TypeError, match=r"an array of shape \(1, 2\) of paths; give them as one list"):
        a.analyze(np.array([[photo, group]]))


def test_video_options_are_checked_before_any_input_is_analysed(analyzer, monkeypatch):
    """every=0 (or smooth="bogus") was accepted for the photos of a list and raised at its first video, after
    the photos' work; and cropped=True with a video ran face detection without a word."""
    from aulib.analyzer import CroppedVideoWarning

    from .conftest import sample

    calls = []
    monkeypatch.setattr(analyzer, "get", lambda *a, **k: calls.append(a) or [])
    for bad in ({"every": 0}, {"smooth": "bogus"}, {"calibrate": "yes"}, {"fps": -1.0}, {"chunk_rows": 0}):
        with pytest.raises((ValueError, TypeError), match=next(iter(bad))):
            analyzer.analyze([sample("single_face.jpg"), sample("single_face.mp4")], **bad)
    assert not calls
    monkeypatch.undo()
    with pytest.warns(CroppedVideoWarning, match="cropped applies to images"):
        df = analyzer.analyze(sample("single_face.mp4"), cropped=True, max_frames=2)
    assert len(df) == 2 and (df.success == 1).all()
