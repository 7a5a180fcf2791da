"""Inputs and calls found by probing the Python API and unusual files (each failed before its fix): colour
order and misplaced settings in ``analyze``, arrays that are not brightness, deep TIFFs with a channel that is
not alpha, PNGs with a damaged comment, closed PIL images, overlays that cannot be written, the table of no
rows, and the per-stage classes given the wrong shapes."""

from __future__ import annotations

import io
import json
import os
import struct
import warnings
import zlib

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import aulib
from aulib import table
from aulib.io import ImageReadError, expand_inputs, read_image, to_rgb

from .conftest import sample

SMILE = sample("single_face.jpg")


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return read_image(SMILE)


def test_analyze_takes_opencv_bgr_arrays_and_names_settings_given_to_it(analyzer):
    """A BGR frame was read as RGB (AU intensities off by up to 1.6) and ``order=`` was refused as "a video
    option"; ``aulib.analyze(x, gaze=False)`` was called an unknown video option."""
    bgr = cv2.imread(str(sample("multi_face.jpg")))
    got = analyzer.analyze(bgr, order="bgr")
    want = analyzer.analyze(sample("multi_face.jpg"))
    assert len(got) == len(want) == 5
    assert np.allclose(got["AU12_r"], want["AU12_r"]) and np.allclose(got["AU04_r"], want["AU04_r"])
    with pytest.raises(ValueError, match="order must be"):
        analyzer.analyze(bgr, order="BGR")
    with pytest.raises(TypeError, match=r"gaze: an Analyzer setting.*aulib\.Analyzer\(gaze=False\)"):
        aulib.analyze(bgr, gaze=False)
    with pytest.raises(TypeError, match=r"Analyzer settings, not options.*tta=False"):
        analyzer.analyze(SMILE, tta=False, gaze=True)
    with pytest.raises(TypeError, match="paths must be .* not a DataFrame"):
        analyzer.analyze(pd.DataFrame({"p": [str(SMILE)]}))


def test_arrays_that_are_not_brightness_are_refused(rgb):
    """Normalised (−1…1, ImageNet mean/std) and signed arrays were clipped to black and analysed as a dark
    photo: other AUs, or "no face detected", without a word. A little undershoot (a filter's) is kept."""
    for x in (rgb / 127.5 - 1, rgb.astype(np.int16) - 128, (rgb / 255 - 0.45) / 0.225):
        with pytest.raises(ImageReadError, match="negative.*turned back into pixels"):
            to_rgb(x)
    slight = rgb.astype(np.float32) - 0.5  # only the few pure-black pixels go below 0
    assert np.abs(to_rgb(slight).astype(int) - rgb).max() <= 1


def test_a_float_tiff_in_minus_one_to_one_is_refused_naming_it(tmp_path, rgb):
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "signed.tif"
    tifffile.imwrite(path, rgb.astype(np.float32) / 127.5 - 1, photometric="rgb")
    says = rf"^{path}: array of dtype float32 with negative values \(\d+% of the pixels"
    with pytest.raises(ImageReadError, match=says):
        read_image(path)


def test_a_deep_tiff_with_an_extra_channel_that_is_not_alpha_is_read_as_its_rgb(tmp_path, rgb):
    """A 16-bit RGB TIFF with an "unspecified" 4th sample (a scanner's infrared channel) was blended on white
    as if it were transparency: the smile read as neutral (AU12_r 0.3). Real alpha still counts."""
    tifffile = pytest.importorskip("tifffile")
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    deep = np.dstack([rgb, gray // 4]).astype(np.uint16) * 257
    tifffile.imwrite(tmp_path / "rgbi.tif", deep, photometric="rgb", extrasamples=[0])
    assert np.abs(read_image(tmp_path / "rgbi.tif").astype(int) - rgb).max() <= 1
    clear = deep.copy()
    clear[:, :, 3] = 0
    clear[:50, :50, 3] = 65535  # transparent but a corner: on white
    tifffile.imwrite(tmp_path / "rgba.tif", clear, photometric="rgb", extrasamples=[2])
    shown = read_image(tmp_path / "rgba.tif")
    assert (shown[100:, 100:] == 255).all() and np.abs(shown[:50, :50].astype(int) - rgb[:50, :50]).max() <= 1


def test_a_png_with_a_damaged_comment_is_read_and_a_damaged_header_named(tmp_path, rgb):
    """Pillow refuses any chunk with a bad checksum; the picture was "not an image file"."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    png = buf.getvalue()
    chunk = b"tEXt" + b"Comment\0hello"
    crc = struct.pack(">I", (zlib.crc32(chunk) ^ 1) & 0xFFFFFFFF)
    (tmp_path / "crc.png").write_bytes(png[:33] + struct.pack(">I", len(chunk) - 4) + chunk + crc + png[33:])
    assert np.array_equal(read_image(tmp_path / "crc.png"), rgb)
    (tmp_path / "head.png").write_bytes(png[:40] + b"\0" * 200 + png[240:])
    with pytest.raises(ImageReadError, match="head.png: truncated or corrupt PNG image data"):
        read_image(tmp_path / "head.png")


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_a_png_read_past_a_damaged_comment_keeps_its_exif_orientation(tmp_path, orientation):
    """The pixels-only path (a chunk Pillow refuses) skipped the eXIf chunk: a phone photo stored sideways was
    analysed on its side (head roll 1.6 rad; 3.1 rad upside down), with nothing to say so."""
    face = Image.open(sample("single_face.jpg")).convert("RGB")
    turn = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    face.transpose(turn).save(buf, "PNG", exif=exif)
    png = buf.getvalue()
    chunk = b"tEXt" + b"Comment\0hello"
    crc = struct.pack(">I", (zlib.crc32(chunk) ^ 1) & 0xFFFFFFFF)
    (tmp_path / "turned.png").write_bytes(png[:33] + struct.pack(">I", len(chunk) - 4) + chunk + crc + png[33:])
    np.testing.assert_array_equal(read_image(tmp_path / "turned.png"), np.asarray(face))


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_a_colour_key_makes_pixels_transparent_in_rgb_and_gray_pngs_as_in_palette_ones(tmp_path, mode):
    """A tRNS colour key was honoured in a palette PNG (its key colour composited on white) and ignored in the same
    picture stored as RGB or gray (kept black): one picture, two sets of pixels."""
    canvas = Image.new("RGB", (300, 240))
    canvas.paste(Image.open(sample("single_face.jpg")).convert("RGB").resize((160, 160)), (70, 40))
    picture = canvas.convert(mode)
    key = (0, 0, 0) if mode == "RGB" else 0
    picture.save(tmp_path / "keyed.png", transparency=key)
    palette = picture.convert("RGB").quantize(256)
    black = palette.getpixel((0, 0))
    palette.save(tmp_path / "palette.png", transparency=black)
    keyed, pal = read_image(tmp_path / "keyed.png"), read_image(tmp_path / "palette.png")
    assert (keyed[:40] == 255).all() and (pal[:40] == 255).all()  # the black border: transparent, on white
    assert np.abs(keyed[60:180, 90:210].astype(int) - np.asarray(picture.convert("RGB"))[60:180, 90:210]).max() == 0


def test_a_tiff_with_five_channels_is_named_for_what_it_is(tmp_path, rgb):
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "five.tif", np.dstack([rgb, rgb[:, :, :2]]), photometric="minisblack",
                     planarconfig="contig")
    with pytest.raises(ImageReadError, match="five.tif: a TIFF with 5 samples"):
        read_image(tmp_path / "five.tif")


def test_a_pil_image_whose_file_was_closed_is_refused_clearly(analyzer):
    with Image.open(SMILE) as im:
        pass
    with pytest.raises(ImageReadError, match="closed before its pixels were read"):
        analyzer.analyze(im)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_with_a_video_name_in_a_folder_is_counted_as_left_out(tmp_path):
    (tmp_path / "good.jpg").write_bytes(SMILE.read_bytes())
    os.mkfifo(tmp_path / "fifo.mp4")
    skipped: list = []
    assert expand_inputs([tmp_path], skipped) == [tmp_path / "good.jpg"]
    assert skipped == [tmp_path / "fifo.mp4"]


def test_the_table_of_no_rows_has_text_columns(analyzer):
    """``analyze([])`` gave float64 ``input``/``error``: ``.str`` failed, a concatenation turned them to object."""
    empty, one = analyzer.analyze([]), analyzer.analyze(SMILE)
    assert list(empty.columns) == list(one.columns)
    assert (empty.dtypes == one.dtypes).all()
    assert pd.concat([empty, one]).dtypes["input"] == one.dtypes["input"]
    assert empty["input"].str.endswith(".jpg").tolist() == []


def test_reading_a_column_a_table_lacks_is_one_error_in_every_format(tmp_path, analyzer):
    df = analyzer.analyze(SMILE)
    for ext in ("csv", "parquet", "json"):
        path = tmp_path / f"t.{ext}"
        table.write_table(df, path)
        with pytest.raises(KeyError, match=rf"t.{ext}: no column 'nope' in this table"):
            table.read_table(path, columns=["AU12_r", "nope"])
        assert table.read_table(path, columns=["AU12_r"]).shape == (1, 1)


def test_an_overlay_that_cannot_be_written_is_refused_before_the_analysis(tmp_path, analyzer):
    """An image overlay named x.txt or a folder failed with OpenCV's error after the analysis, a video's
    x.png was skipped without a word, and overlay= the input photo replaced it."""
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(SMILE.read_bytes())
    (tmp_path / "dir.png").mkdir()
    for target, says in ((tmp_path / "x.txt", "the overlay of an image is a file named"),
                         (tmp_path / "dir.png", "a folder is in the way"),
                         (photo, "would overwrite the input")):
        with pytest.raises(ValueError, match=says):
            list(analyzer.iter_tables(photo, overlay=target))
    assert photo.read_bytes() == SMILE.read_bytes()
    with pytest.raises(ValueError, match="the overlay of a video is a file named .mp4"):
        list(analyzer.iter_tables(sample("single_face.mp4"), overlay=tmp_path / "x.png", max_frames=2))
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the overlay's folder should be")
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        rows = pd.concat(analyzer.iter_tables(sample("single_face.mp4"), overlay=blocker / "o.mp4", max_frames=3))
    assert len(rows) == 3 and [w.category for w in said] == [aulib.analyzer.OverlayWarning]
    assert "o.mp4: overlay not written" in str(said[0].message)
    list(analyzer.iter_tables(photo, overlay=tmp_path / "out" / "ok.png"))
    assert (tmp_path / "out" / "ok.png").is_file()


def test_run_batch_takes_one_path_and_folders(tmp_path, analyzer):
    """One path given as a string was analysed character by character (22 rows "w: no such file")."""
    from aulib.batch import run_batch

    res = run_batch(str(SMILE), out=tmp_path / "one.csv", analyzer=analyzer)
    assert table.read_table(tmp_path / "one.csv")["success"].tolist() == [1] and len(res.analysed) == 1
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(SMILE.read_bytes())
    run_batch([folder], out=tmp_path / "f.csv", analyzer=analyzer)
    assert table.read_table(tmp_path / "f.csv")["success"].tolist() == [1]
    with pytest.raises(TypeError, match="files must be a list of paths"):
        run_batch(5, out=tmp_path / "x.csv", analyzer=analyzer)


def test_the_face_pipeline_takes_what_the_analyzer_takes_and_checks_its_settings(pipeline, rgb):
    from aulib.face import FacePipeline

    want = pipeline(rgb)[0].box
    for image in (rgb[:, :, 0], rgb.astype(np.float32) / 255, str(SMILE), Image.fromarray(rgb)):
        faces = pipeline(image)
        assert len(faces) == 1 and np.abs(faces[0].box - want).max() < 8  # gray: the detector sees less
    nan_box = pipeline.from_box(rgb, (np.nan, 100, 200, 200))
    assert not nan_box.success and "not four finite numbers" in nan_box.error
    for bad in (0, 7, 112.0, "112", True):
        with pytest.raises(ValueError, match="size must be a whole number"):
            FacePipeline(size=bad)
    with pytest.raises(TypeError, match="features must be True or False"):
        FacePipeline(features="no")


def test_stages_refuse_landmarks_of_another_shape(pipeline, rgb):
    from aulib.face.align import Aligner, FaceMasker
    from aulib.face.blink import eye_aspect_ratios
    from aulib.face.hog import mirror
    from aulib.face.pose import solve_pose

    face = pipeline(rgb)[0]
    pts = face.landmarks
    calls = [lambda p: Aligner()(rgb, p), lambda p: FaceMasker()(face.aligned, p), lambda p: mirror(face.aligned, p),
             lambda p: solve_pose(p, (500, 500, 320, 240)), eye_aspect_ratios]
    for call in calls:
        with pytest.raises(ValueError, match=r"landmarks must be a \(68, 2\) array .* not shape \(10, 2\)"):
            call(pts[:10])
        call(pts)  # the right shape still works
    with pytest.raises(ValueError, match="landmarks must be finite"):
        Aligner()(rgb, np.full((68, 2), np.nan))
    assert np.isnan(solve_pose(np.full((68, 2), np.nan), (500, 500, 320, 240))[0]).all()  # documented NaN
    assert np.allclose(Aligner()(rgb, pts.ravel()).crop, Aligner()(rgb, pts).crop)


def test_the_emotion_network_reads_float_crops_by_their_range(pipeline, rgb):
    """A 0–1 float crop was clipped as if 0–255 and read near black: neutral for a clear smile."""
    from aulib.cnn.inference import EmotionCNN

    crop = pipeline(rgb)[0].aligned
    cnn = EmotionCNN()
    want = cnn.predict(crop)
    assert np.allclose(cnn.predict(crop / 255.0), want, atol=1e-3)
    with pytest.raises(ValueError, match="crop 0: expected an"):
        cnn.predict(np.zeros((0, 0, 3), np.uint8))


def test_misfed_calls_say_what_they_want(analyzer, rgb):
    """Each was an internal error (AttributeError on 'success', pathlib's TypeError, a 9,000-character
    message repeating the pixels, "not enough values to unpack")."""
    from aulib.face.detect import make_detector
    from aulib.face.landmarks import LandmarkPredictor

    with pytest.raises(TypeError, match="faces must be Face records"):
        analyzer.rescore([1])
    assert read_image(os.fsencode(SMILE)).shape == rgb.shape  # a bytes path, as analyze takes one
    for bad, says in ((rgb, "to_rgb"), (3, "not int")):
        with pytest.raises(TypeError, match=f"read_image reads a file.*{says}"):
            read_image(bad)
    with pytest.raises(TypeError) as e:
        analyzer.analyze(rgb.tolist())
    assert len(str(e.value)) < 300
    assert len(make_detector()(rgb.tolist())) == 1
    with pytest.raises(ValueError, match="face box must be four numbers"):
        LandmarkPredictor()(rgb, (1, 2, 3))
    with pytest.raises(TypeError, match="landmarks need an image array, not list"):
        LandmarkPredictor()(rgb.tolist(), (1, 2, 3, 4))


def test_the_report_reads_partial_tables_or_says_what_it_lacks(analyzer):
    """The seed wrappers' table printed "box (nan, nan, nan×nan)" and "AUs present: none" for a smile; a
    column selection raised KeyError 'frame'."""
    text = table.report(aulib.get_img_aus_intensities(SMILE))
    assert "nan" not in text and "not in this table (no AUxx_c columns)" in text
    with pytest.raises(ValueError, match="lacks frame, face, success, error"):
        table.report(analyzer.analyze(SMILE)[["input", "AU12_r"]])


def test_smoothing_options_that_cannot_act_are_said(analyzer):
    """``smooth_sigma`` and ``interpolate`` with ``smooth=False`` or ``"causal"`` were dropped without a word,
    so a chosen sigma looked applied; with offline smoothing they act and nothing is said."""
    clip = sample("single_face.mp4")
    with pytest.warns(aulib.analyzer.IgnoredOptionWarning, match="smooth_sigma act"):
        raw = analyzer.analyze(clip, smooth=False, smooth_sigma=0.3, max_frames=3)
    assert len(raw) == 3
    with pytest.warns(aulib.analyzer.IgnoredOptionWarning, match="interpolate .*smooth='causal'"):
        analyzer.analyze(clip, smooth="causal", interpolate=False, max_frames=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", aulib.analyzer.IgnoredOptionWarning)
        analyzer.analyze(clip, smooth_sigma=0.3, interpolate=False, max_frames=3)


def test_calibrate_takes_numpy_bools_as_the_other_flags_do(analyzer, tmp_path):
    """``calibrate=np.True_`` (a flag read from a numpy array or a pandas cell) was refused as "not False, True,
    'video' or 'running'" while ``gaze``/``tta``/``smooth`` took numpy's bools; it is True, and the run
    metadata records it as JSON can."""
    from aulib.batch import AnalyzerSpec, run_options

    clip = sample("single_face.mp4")
    a = analyzer.analyze(clip, calibrate=np.True_, max_frames=12)
    b = analyzer.analyze(clip, calibrate=True, max_frames=12)
    assert a.equals(b) and (a.success == 1).sum() > 5
    assert analyzer.analyze(clip, calibrate=np.False_, max_frames=4).equals(analyzer.analyze(clip, max_frames=4))
    assert json.dumps(run_options(AnalyzerSpec(), {"calibrate": np.True_}))
    assert run_options(AnalyzerSpec(), {"calibrate": np.True_})["calibrate"] == "video"


class _Tensor:
    """An image held by another array library (as a torch tensor is): ``__array__`` and ``ndim``, no list."""

    def __init__(self, a: np.ndarray) -> None:
        self._a = a
        self.ndim = a.ndim
        self.shape = a.shape

    def __array__(self, dtype=None, copy=None):
        return self._a if dtype is None else self._a.astype(dtype)

    def __iter__(self):  # torch tensors iterate over their first axis
        return iter(self._a)


def test_an_image_of_another_array_library_is_one_image_for_analyze_as_for_get(analyzer):
    """analyze(tensor) iterated it row by row: "an input must be a path … not Tensor"; get took it."""
    img = read_image(sample("single_face.jpg"))
    one, alone = analyzer.analyze(_Tensor(img)), analyzer.analyze(img)
    assert len(one) == 1 and one.AU12_r.iloc[0] == pytest.approx(alone.AU12_r.iloc[0])
    assert len(analyzer.analyze([_Tensor(img), sample("single_face.jpg")])) == 2


def test_get_given_a_list_of_paths_says_to_use_analyze(analyzer):
    with pytest.raises(TypeError, match=r"get takes one image .* use analyze\("):
        analyzer.get([str(sample("single_face.jpg"))])


@pytest.mark.parametrize("fmt", ["xlsx", "", 5, "parquet"])
def test_write_table_refuses_a_format_it_does_not_write_or_one_the_name_contradicts(tmp_path, fmt):
    """fmt='xlsx' (or 5, '') wrote JSON Lines; fmt='parquet' into x.csv a file read_table then failed on."""
    df = pd.DataFrame({"input": ["a.jpg"], "success": [1]})
    with pytest.raises(ValueError, match="x.csv: "):
        table.write_table(df, tmp_path / "x.csv", fmt)
    assert not (tmp_path / "x.csv").exists()
    table.write_table(df, tmp_path / "x.csv", "CSV")  # any case, as the command line takes it


def test_read_table_of_a_partitioned_folder_points_to_its_reader(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "_aulib_manifest.json").write_text("{}")
    with pytest.raises(IsADirectoryError, match="read it with aulib.batch.read_partitioned"):
        table.read_table(tmp_path / "out")


def _half(path, tmp_path, suffix: str) -> str:
    """The first half of ``path`` re-encoded as ``suffix``: a file cut short, as a failed copy leaves it."""
    out = tmp_path / f"full{suffix}"
    cv2.imwrite(str(out), cv2.imread(str(path)))
    data = out.read_bytes()
    half = tmp_path / f"half{suffix}"
    half.write_bytes(data[: len(data) // 2])
    return str(half)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".bmp"])
def test_a_truncated_file_is_refused_whatever_pillows_truncated_flag_says(analyzer, tmp_path, monkeypatch, suffix):
    """Data-loading code sets ``ImageFile.LOAD_TRUNCATED_IMAGES = True``; half a file then decoded to a picture with
    a gray lower half and was analysed at full confidence (AU12 0.4 for 3.6). aulib decodes strictly, and leaves
    the user's flag as it was."""
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    half = _half(SMILE, tmp_path, suffix)
    df = analyzer.analyze([half, SMILE])
    assert df["success"].tolist() == [0, 1]
    assert "truncated" in df["error"].iloc[0] or "corrupt" in df["error"].iloc[0]
    if suffix == ".png":  # (a TIFF cut in half loses its directory, written last: Pillow cannot open it at all)
        with pytest.raises(ImageReadError, match="truncated"):
            to_rgb(Image.open(half))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True


def test_a_limit_the_process_set_on_pillow_is_named_as_such(tmp_path, monkeypatch):
    """With ``Image.MAX_IMAGE_PIXELS = 1000`` every photo said "image too large (0 MP; aulib reads at most 120 MP)";
    and 12000×10001 said "120 MP; aulib reads at most 120 MP"."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageReadError, match=r"Pillow's Image.MAX_IMAGE_PIXELS, which this process set to 1000"):
        read_image(SMILE)
    with pytest.raises(ImageReadError, match=r"120,012,000 pixels; aulib reads at most 120,000,000 pixels"):
        to_rgb(np.zeros((10001, 12000), np.uint8))


def test_a_bad_image_in_a_list_gets_its_own_row_and_the_others_are_kept(analyzer, rgb):
    """One NaN frame among good ones threw away every row with an error that did not say which item; a bad path
    in the same place gets a success=0 row."""
    bad = np.full((60, 60, 3), np.nan, np.float32)
    df = analyzer.analyze([rgb, bad, rgb])
    assert df["frame"].tolist() == [0, 1, 2]
    assert df["success"].tolist() == [1, 0, 1]
    assert df["error"].iloc[1].startswith("image 1 of the list: array of dtype float32 with no finite value")
    with pytest.raises(ImageReadError, match="no finite value"):  # alone, it is the exception it is
        analyzer.analyze(bad)


def test_a_float_image_is_read_by_the_bulk_of_its_values_not_its_overshoot(analyzer, rgb):
    """A 0–1 image brightened ×1.6 without clipping (augmentation) was taken for 0–255: black, "no face"."""
    unit = rgb.astype(np.float32) / 255
    df = analyzer.analyze([unit, unit * 1.6])
    assert df["success"].tolist() == [1, 1]
    assert abs(df["AU12_r"].iloc[0] - df["AU12_r"].iloc[1]) < 0.5
    sharpened = rgb.astype(np.float32)
    sharpened = np.clip(sharpened + 2 * (sharpened - cv2.GaussianBlur(sharpened, (0, 0), 3)), 0, None)
    assert np.percentile(sharpened, 99.99) > 320  # was read as 10-bit data, 4× too dark
    assert abs(float(to_rgb(sharpened).mean()) - float(rgb.mean())) < 3


def test_several_frames_are_told_by_the_content_not_the_name(analyzer, tmp_path):
    """A two-frame GIF named .jpg (or without an extension) said only "no face detected"; as .gif it says that only
    the first of its frames was read."""
    face = Image.open(SMILE).convert("RGB")
    blank = Image.new("RGB", face.size, "white")
    for name in ("anim.jpg", "anim"):
        blank.save(tmp_path / name, format="GIF", save_all=True, append_images=[face])
    df = analyzer.analyze([str(tmp_path / "anim.jpg"), str(tmp_path / "anim")])
    assert df["error"].str.contains("in the first of its 2 frames or pages").all()


def test_a_pil_image_is_read_as_its_file_is_declared_depth_and_colour_key(tmp_path):
    """A PGM with maxval 65535 holding 3000 read 12 by path and 187 as a PIL image; a 16-bit PNG's transparent
    colour kept its stored value (the same picture in 8 bits is composited on white)."""
    pgm = tmp_path / "deep.pgm"
    pgm.write_bytes(b"P5\n20 20\n65535\n" + np.full((20, 20), 3000, ">u2").tobytes())
    assert read_image(pgm)[0, 0, 0] == to_rgb(Image.open(pgm))[0, 0, 0] == 12
    plain = tmp_path / "plain.png"
    deep = np.full((20, 20), 20000, np.uint16)
    deep[:5] = 7
    cv2.imwrite(str(plain), deep)
    data = plain.read_bytes()
    body = struct.pack(">H", 7)
    chunk = struct.pack(">I", 2) + b"tRNS" + body + struct.pack(">I", zlib.crc32(b"tRNS" + body))
    keyed = tmp_path / "keyed.png"
    keyed.write_bytes(data[:33] + chunk + data[33:])
    for got in (read_image(keyed), to_rgb(Image.open(keyed))):
        assert got[0, 0, 0] == 255 and got[10, 0, 0] == 78


def test_file_objects_and_arrays_that_cannot_be_read_are_image_read_errors(tmp_path):
    """A text-mode file raised UnicodeDecodeError, a closed one "ValueError: read of closed file", an array-like
    whose conversion raises RuntimeError (a torch tensor that requires grad) escaped as that error."""
    with open(SMILE) as text, pytest.raises(ImageReadError, match="opened in text mode"):
        read_image(text)
    f = open(SMILE, "rb")
    f.close()
    with pytest.raises(ImageReadError, match="the file object is closed"):
        read_image(f)

    class Grad:
        def __array__(self, dtype=None, copy=None):
            raise RuntimeError("Can't call numpy() on Tensor that requires grad.")

    with pytest.raises(ImageReadError, match=r"requires grad.*call \.detach\(\) first"):
        to_rgb(Grad())
    with pytest.raises(ImageReadError, match=r"channels first\? give a.transpose\(1, 2, 0\)"):
        to_rgb(np.zeros((3, 40, 50), np.uint8))
    with pytest.raises(ImageReadError, match=r"a batch of one\? give a\[0\]"):
        to_rgb(np.zeros((1, 40, 50, 3), np.uint8))
    link = tmp_path / "gone.jpg"
    link.symlink_to(tmp_path / "missing.jpg")
    with pytest.raises(ImageReadError, match="a broken symbolic link"):
        read_image(link)
    gray = Image.open(SMILE).convert("L")
    assert to_rgb(Image.merge("LA", (gray, gray)).convert("La")).shape == (562, 572, 3)


def test_misplaced_arguments_are_named_briefly_with_where_they_go(analyzer):
    """An array given to ``iter_rows`` printed the whole array in its TypeError; ``analyze(…, overlay=…)`` was
    "unknown video option(s) overlay" although aulib has that option, on another call."""
    with pytest.raises(TypeError) as e:
        list(analyzer.iter_rows(np.zeros((400, 400, 3), np.uint8)))
    assert len(str(e.value)) < 200 and "analyze takes arrays" in str(e.value)
    with pytest.raises(TypeError, match=r"overlay is an option of iter_rows/iter_tables"):
        analyzer.analyze("x.jpg", overlay="ov")
