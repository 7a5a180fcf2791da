"""``aulib plot`` / ``aulib report`` on the tables users actually bring: several faces, rows out of time order,
another video of the same name, missing columns (no AUxx_r, no ``error``, empty ``face``), OpenFace CSVs,
non-finite timestamps and smoothing windows, blink, and outputs that made matplotlib warn.

Most tests start from a real ``aulib analyze`` table of the first frames of single_face.mp4 (so the columns
are exactly what aulib writes) and change what they test.
"""

from __future__ import annotations

import base64
import io
import logging
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from aulib.cli import app
from aulib.face.record import EMOTIONS
from aulib.plot import figure, plot_table, smooth_frame
from aulib.report_html import add_thumbnails, render, top_moments, write_report
from aulib.table import read_table, write_table

from .conftest import sample

runner = CliRunner()
FRAMES = 12


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> Path:
    """``aulib analyze single_face.mp4 --max-frames 12``: one face, CNN emotions, a face in every frame."""
    out = tmp_path_factory.mktemp("inputs") / "clip.csv"
    res = runner.invoke(app, ["analyze", str(sample("single_face.mp4")), "-o", str(out),
                              "--max-frames", str(FRAMES)])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture()
def clip(real) -> pd.DataFrame:
    return read_table(real)


def two_faces(df: pd.DataFrame) -> pd.DataFrame:
    """The clip twice per frame (faces 0 and 1, as a video with two people), face 0 happy (0.9) in every
    frame, face 1 neutral."""
    other = df.assign(face=1, face_x=df["face_x"] + 300)
    both = pd.concat([df, other]).sort_values(["frame", "face"]).reset_index(drop=True)
    for e in EMOTIONS:
        both[f"p_{e}"] = 0.0
    both.loc[both["face"] == 0, "p_happiness"] = 0.9
    both.loc[both["face"] == 0, "p_neutral"] = 0.1
    both.loc[both["face"] == 1, "p_neutral"] = 1.0
    return both


def embedded_pngs(page: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(b))) for b in re.findall(r"data:image/png;base64,([^']+)'", page)]


# ------------------------------------------------------------------------------------------ 1: smoothing
def test_top_moments_smooth_each_face_separately(clip):
    df = two_faces(clip)
    ok = df[df["success"] == 1]
    whys = [m.why for m in top_moments(ok, smooth=0.5)]
    # face 0 and face 1 averaged together gave 45 %: below the 50 % bar, the happy face vanished
    assert any(w.startswith("strongest happiness (CNN probability 90% in this frame, 90% averaged") for w in whys), whys
    # the most active AU's peak is one face's own peak: face 0 smiles briefly (frame 3), face 1 broadly from
    # frame 6; averaged together, face 0's rows at face 1's smile were the peak
    df[[c for c in df.columns if re.fullmatch(r"AU\d\d_r", c)]] = 0.0
    df.loc[(df["face"] == 0) & (df["frame"] == 3), "AU12_r"] = 5.0
    df.loc[(df["face"] == 1) & (df["frame"] >= 6), "AU12_r"] = 4.0
    df.loc[:, [f"p_{e}" for e in EMOTIONS]] = 0.0
    df["p_neutral"] = 1.0
    moments = top_moments(df[df["success"] == 1], smooth=0.1)
    assert [(m.why[:12], m.frame, m.face) for m in moments] == [("peak of AU12", 7, 1)], moments


def test_smooth_frame_aligned_with_rows_in_any_order():
    t = np.arange(40) / 30
    rng = np.random.default_rng(1)
    values = pd.DataFrame({"a": rng.normal(size=40) * 3, "b": np.sin(t * 9)})
    want = smooth_frame(values, t, 0.3)
    order = rng.permutation(40)
    shuffled = values.iloc[order]
    got = smooth_frame(shuffled, t[order], 0.3)
    assert got.index.equals(shuffled.index)
    np.testing.assert_allclose(got.to_numpy(), want.iloc[order].to_numpy())


# ------------------------------------------------------------------------------------------ 2: another video
def write_video(path: Path, fps: float, size: tuple[int, int], frames: int = FRAMES + 4) -> Path:
    import cv2

    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(frames):
        out.write(np.full((size[1], size[0], 3), 90 + 5 * i, np.uint8))
    out.release()
    return path


def test_thumbnails_refuse_another_video_of_the_same_name(clip, tmp_path):
    ok = clip[clip["success"] == 1]
    for d in "abc":
        (tmp_path / d).mkdir()
    # another frame rate: the frame numbers exist but are at other times
    with pytest.raises(ValueError, match="is at 0.*in the table: not the video this table was made from"):
        add_thumbnails(top_moments(ok), write_video(tmp_path / "a" / "single_face.mp4", 25, (640, 360)))
    # another frame size: the table's face boxes are outside its frames
    with pytest.raises(ValueError, match="lies outside the video's 640×180 frames"):
        add_thumbnails(top_moments(ok), write_video(tmp_path / "b" / "single_face.mp4", 30, (640, 180)))
    # same rate and size, but no face there: no (wrong) thumbnail, and the page says why
    other = write_video(tmp_path / "c" / "single_face.mp4", 30, (640, 360))
    page = render(clip, video=other)
    assert "data:image/jpeg" not in page and "no face found where the table has one" in page
    # the real video still gives its thumbnails, without a note
    moments = top_moments(ok)
    assert add_thumbnails(moments, sample("single_face.mp4")) == ""
    assert all(m.thumbnail.startswith("data:image/jpeg") for m in moments)


# ------------------------------------------------------------------------------------------ 3, 8: AU columns
def test_plot_and_report_without_intensity_columns(clip, tmp_path):
    df = clip.drop(columns=[c for c in clip.columns if re.fullmatch(r"AU\d\d_r", c)])
    out = plot_table(df, tmp_path / "no_r.png")  # was: unexpected IndexError
    assert Image.open(out).size[0] >= 1000
    fig = figure(df)
    assert "no AU intensities" in fig.axes[0].get_title(loc="left")
    image = df[df["frame"] == 0].assign(input="face.jpg")
    plot_table(image, tmp_path / "no_r_image.png")
    assert "Emotion timeline" in render(df)


def test_aus_45_plots_blink(clip, tmp_path):
    assert "AU45_r" in clip.columns
    fig = figure(clip, aus=[45, 12])
    labels = [a.get_ylabel() for a in fig.axes]
    assert any("AU45" in x and "blink" in x for x in labels), labels
    res = runner.invoke(app, ["plot", str(_saved(clip, tmp_path)), "-o", str(tmp_path / "b.png"), "--aus", "45"])
    assert res.exit_code == 0, res.output
    default = figure(clip, style="heatmap")  # all AUs: blink is not an AU model's output, left out by default
    assert not any("AU45" in t.get_text() for a in default.axes for t in a.get_yticklabels())


def _saved(df: pd.DataFrame, tmp_path: Path, name: str = "t.csv") -> Path:
    path = tmp_path / name
    write_table(df, path)
    return path


# ------------------------------------------------------------------------------------------ 4: OpenFace
def test_openface_csv_is_read_plotted_and_reported(tmp_path, real):
    path = sample("OpenFace_Test.csv")
    df = read_table(path)
    assert {"frame", "timestamp", "success", "AU12_r"} <= set(df.columns)
    assert list(read_table(path, columns=["frame", "success"]).columns) == ["frame", "success"]
    assert list(read_table(real).columns) == list(pd.read_csv(real, nrows=0).columns)  # aulib's: unchanged
    for cmd, out in (("plot", "of.png"), ("report", "of.html")):
        res = runner.invoke(app, [cmd, str(path), "-o", str(tmp_path / out)])
        assert res.exit_code == 0, res.output
    page = (tmp_path / "of.html").read_text(encoding="utf-8")
    assert "OpenFace_Test.csv" in page and "AU12" in page and "CNN emotion probabilities" not in page


def test_openface_shape_parameters_are_not_range_checked_and_au28_is_listed():
    """OpenFace's shape parameters (p_scale, p_rx … p_33) were reported as "values outside their column's range …
    aulib writes 0–1" (aulib's p_* are its emotion probabilities), and AU28_c (OpenFace writes no AU28_r) was left
    out of the AU table without a word."""
    from aulib.plot import clean, read_checked
    from aulib.report_html import au_summary

    df = read_checked(sample("OpenFace_Test.csv"))
    assert {"p_scale", "p_rx", "p_33", "AU28_c"} <= set(df.columns) and "AU28_r" not in df.columns
    assert clean(df)[1] == []
    assert clean(df.assign(p_happiness=3.0))[1]  # aulib's own probabilities are still checked
    row = au_summary(df[df["success"] == 1]).set_index("AU").loc["AU28"]
    assert np.isnan(row["mean intensity"]) and 0 <= row["% frames present"] <= 100
    page = render(df)
    assert "AU28" in page and "no intensity column in the table" in page


# ------------------------------------------------------------------------------------------ 5: timeline caption
def test_timeline_caption_and_figure_agree_when_one_frame_has_a_face(clip):
    df = clip.copy()
    df.loc[df["frame"] != 4, "success"] = 0
    df.loc[df["frame"] != 4, "error"] = "no face detected"
    page = render(df)
    assert "Emotion timeline" in page and "heatmap" in page
    timeline = embedded_pngs(page)[0]
    assert timeline.size[0] == 1200  # the 12-inch time axis, not the 6-inch single-image bars


# ------------------------------------------------------------------------------------------ 6: input names
def test_plot_names_the_inputs_for_an_unknown_input(clip, tmp_path):
    res = runner.invoke(app, ["plot", str(_saved(clip, tmp_path)), "-o", str(tmp_path / "p.png"),
                              "--input", "nope.mp4"])
    assert res.exit_code == 2 and "the table has no input 'nope.mp4' (it has: " in res.output, res.output
    assert "single_face.mp4" in res.output and len(res.output.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------ 7: internal errors
def test_huge_smoothing_window(clip, tmp_path):
    table = _saved(clip, tmp_path)
    for cmd, out in (("plot", "p.png"), ("report", "r.html")):
        res = runner.invoke(app, [cmd, str(table), "-o", str(tmp_path / out), "--smooth", "1e300"])
        assert res.exit_code == 0, res.output
    # a window covering everything is the mean of everything
    t = np.arange(10) / 30
    got = smooth_frame(pd.DataFrame({"a": np.arange(10.0)}), t, 1e300)
    np.testing.assert_allclose(got["a"], 4.5)


def test_rows_without_timestamp_are_left_out_with_a_note(clip, tmp_path):
    df = clip.copy()
    df.loc[[3, 5], "timestamp"] = np.nan
    plot_table(df, tmp_path / "p.png")
    plot_table(df, tmp_path / "h.png", style="heatmap", smooth=0.3)
    page = render(df)
    assert "2 row(s) without a valid timestamp left out" in page


def test_empty_face_and_missing_error_column(clip, tmp_path):
    empty = clip.assign(face=np.nan)
    write_report(empty, tmp_path / "a.html")  # was: cannot convert float NaN to integer
    assert "read as face 0" in (tmp_path / "a.html").read_text(encoding="utf-8")
    both = two_faces(clip).assign(face=np.nan)
    with pytest.raises(ValueError, match="cannot tell them apart"):
        write_report(both, tmp_path / "b.html")
    no_error = _saved(clip.drop(columns=["error"]), tmp_path, "noerr.csv")
    for cmd, out in (("plot", "p.png"), ("report", "r.html")):
        res = runner.invoke(app, [cmd, str(no_error), "-o", str(tmp_path / out)])
        assert res.exit_code == 0, res.output


# ------------------------------------------------------------------------------------------ 9: warnings
def test_no_matplotlib_warnings_reach_the_user(clip, tmp_path, caplog):
    no_emotions = clip.drop(columns=[c for c in clip.columns if c.startswith(("p_", "rule_"))] + ["emotion"])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        plot_table(no_emotions, tmp_path / "n.png")
        write_report(no_emotions, tmp_path / "n.html")
    assert not [str(w.message) for w in seen if "legend" in str(w.message)]
    with caplog.at_level(logging.WARNING):
        plot_table(clip, tmp_path / "p.eps")
    assert (tmp_path / "p.eps").stat().st_size > 1000
    assert "transparency" not in caplog.text


# ------------------------------------------------------------------------------------------ 10: labels
def test_shares_are_labelled_by_what_they_count(clip):
    one = render(clip)
    assert "% frames present" in one and "% frames (CNN label)" in one
    two = render(two_faces(clip))
    assert "% frames present" not in two and "% frames (CNN label)" not in two
    assert "% face-frames present" in two and "% face-frames (CNN label)" in two


def test_video_page_counts_face_frames_not_frames_with_several_faces(clip):
    """The Video page's "Most frequent CNN emotion: happiness (24 frames)" counted both faces' rows of a 12-frame
    clip as frames."""
    from aulib.app.video_page import emotion_counts

    one = clip[clip["success"] == 1]
    assert emotion_counts(one).endswith("frames)") or emotion_counts(one).endswith("frame)")
    two = two_faces(clip).assign(emotion=lambda d: np.where(d["face"] == 0, "happiness", "neutral"))
    text = emotion_counts(two[two["success"] == 1])
    n = int((two[two["success"] == 1]["face"] == 0).sum())
    assert f"happiness ({n} face-frames)" in text and "2 faces: each frame counts once per face" in text, text
    assert " frames)" not in text


def test_plot_and_report_read_a_partitioned_output(tmp_path):
    """``aulib analyze … -o folder/`` writes one Parquet part per input and a manifest; plot and report
    said "is a directory with no image or video file in it" about their own tool's output."""
    folder = tmp_path / "parts"
    res = runner.invoke(app, ["analyze", str(sample("single_face.jpg")), str(sample("single_face.mp4")),
                              "--every", "12", "-o", f"{folder}/", "--emotion-model", "none"])
    assert res.exit_code == 0, res.output
    for args in (["plot", str(folder), "-o", str(tmp_path / "p.png")],
                 ["report", str(folder), "-o", str(tmp_path / "r.html")]):
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "p.png").size[0] > 100 and "single_face" in (tmp_path / "r.html").read_text()
    (tmp_path / "plain").mkdir()
    res = runner.invoke(app, ["plot", str(tmp_path / "plain"), "-o", str(tmp_path / "q.png")])
    assert res.exit_code == 2 and "a folder, not a table" in res.output


def test_plot_and_report_default_to_the_first_input_with_a_face(tmp_path):
    """A batch table starting with an unreadable file or a faceless photo: plot and report stopped with exit 2
    unless --input was given."""
    t = tmp_path / "batch.csv"
    bad = tmp_path / "a_broken.jpg"
    bad.write_bytes(b"not an image")
    res = CliRunner().invoke(app, ["analyze", str(bad), str(sample("free-mountain-vector-01.jpg")),
                                   str(sample("single_face.jpg")), "-o", str(t)])
    assert res.exit_code == 0, res.output
    assert read_table(t)["success"].tolist() == [0, 0, 1]
    for cmd, out in (("plot", "p.png"), ("report", "r.html")):
        res = CliRunner().invoke(app, [cmd, str(t), "-o", str(tmp_path / out)])
        assert res.exit_code == 0 and (tmp_path / out).stat().st_size > 1000, res.output
    assert "single_face.jpg" in (tmp_path / "r.html").read_text()


def test_tables_in_another_layout_are_named_for_what_they_are(real, tmp_path):
    """A spreadsheet's ';'-separated export repeated its whole 232-column header as "the columns it has"; a
    JSON array (not JSON Lines) read "Invalid object type at position 0"; a table of another format was an
    "unknown output format" although it is the input."""
    df = read_table(real)
    df.to_csv(tmp_path / "semi.csv", sep=";", index=False)
    df.to_json(tmp_path / "array.json", orient="records")
    df.to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    for name, said in (("semi.csv", "its fields are separated by ';': aulib tables are comma-separated"),
                       ("array.json", "JSON Lines, one object per line"),
                       ("t.tsv", "not a table aulib reads (a .csv, .parquet or .json file")):
        res = runner.invoke(app, ["plot", str(tmp_path / name), "-o", str(tmp_path / "p.png")])
        text = " ".join(res.output.split())
        assert res.exit_code != 0 and said in text and len(text) < 600, text


def test_report_video_must_be_a_video_for_a_video_table(real, tmp_path):
    """--video took a photo as "the video", and a video for a photo's table: another person's face was put
    under the caption "strongest happiness"."""
    res = runner.invoke(app, ["report", str(real), "-o", str(tmp_path / "r.html"), "--video",
                              str(sample("single_face.jpg"))])
    assert res.exit_code != 0 and "not a video file" in res.output, res.output
    photo = tmp_path / "photo.csv"
    assert runner.invoke(app, ["analyze", str(sample("single_face.jpg")), "-o", str(photo)]).exit_code == 0
    res = runner.invoke(app, ["report", str(photo), "-o", str(tmp_path / "r.html"), "--video",
                              str(sample("single_face.mp4"))])
    assert res.exit_code != 0 and "is for a video's table" in " ".join(res.output.split()), res.output
    assert not (tmp_path / "r.html").exists()


def test_a_row_with_an_impossible_frame_or_time_is_named(clip, tmp_path):
    """One damaged row (frame 1e15 at 1e12 s) squeezed the plot's time axis into two bars, and the report failed
    in pandas' words ("cannot convert input 1000000000000.0 with the unit 's'")."""
    for col, value in (("frame", 1e15), ("timestamp", 1e12), ("timestamp", -5.0)):
        bad = clip.copy()
        bad[col] = bad[col].astype(np.float64)
        bad.loc[3, col] = value
        path = tmp_path / f"bad_{col}.csv"
        bad.to_csv(path, index=False)
        for cmd in (["plot", str(path), "-o", str(tmp_path / "p.png")],
                    ["report", str(path), "-o", str(tmp_path / "r.html")]):
            r = runner.invoke(app, cmd)
            assert r.exit_code == 2 and f"row 4 has {col}" in r.output, (cmd, r.output)


def test_an_input_whose_name_has_a_backslash_is_found_by_its_own_name(tmp_path, analyzer):
    r"""Tables store a backslash doubled (table text, reversible); ``--input 'wn/back\slash.jpg'`` was "not in the
    table", whose list of inputs showed that very name."""
    import shutil

    from aulib.plot import input_rows
    from aulib.table import text_path

    photo = tmp_path / "back\\slash.jpg"
    shutil.copy(sample("single_face.jpg"), photo)
    df = analyzer.analyze(photo)
    name, rows = input_rows(df, str(photo))
    assert len(rows) == 1 and text_path(name) == str(photo)


def test_values_outside_the_columns_ranges_are_named_in_the_report_and_plot(tmp_path, analyzer):
    """A hand-edited table (AU12_r 99, p_happiness 3) was reported as "AU12 mean 6.28, peak 99.00" on the 0–5 scale
    and plotted clipped to 5 without a word."""
    from aulib.plot import clean
    from aulib.report_html import write_report

    df = analyzer.analyze(sample("single_face.jpg"))
    assert clean(df)[1] == []  # aulib's own table: nothing to say
    edited = df.assign(AU12_r=99.0, p_happiness=3.0, AU06_c=2)
    notes = clean(edited)[1]
    assert len(notes) == 1 and "AU12_r" in notes[0] and "p_happiness" in notes[0] and "AU06_c" in notes[0]
    write_report(edited, tmp_path / "r.html")
    assert "values outside their column" in (tmp_path / "r.html").read_text(encoding="utf-8")


def test_plot_and_report_read_a_table_without_its_landmark_columns(tmp_path, analyzer):
    """Neither shows the 136 landmark columns; read with them, a 100k-row video table took 716 MB (531 MB without)."""
    from aulib.plot import read_checked
    from aulib.table import write_table

    path = write_table(analyzer.analyze(sample("single_face.jpg")), tmp_path / "t.csv")
    df = read_checked(path)
    assert "x_0" not in df.columns and "y_67" not in df.columns and "AU12_r" in df.columns and "face_x" in df.columns


def test_a_table_holding_its_rows_twice_is_shown_once_with_a_note(real, tmp_path):
    """Two runs appended into one table: plot and report averaged both copies (the report said "72 frames
    analysed", AU12 mean 1.19 for 2.38) without a word. The first copy is shown, and a note says so."""
    df = read_table(real)
    both = tmp_path / "both.csv"
    write_table(pd.concat([df, df], ignore_index=True), both)
    page = tmp_path / "both.html"
    write_report(both, page)
    once = tmp_path / "once.html"
    write_report(real, once)
    text, ref = page.read_text(), once.read_text()
    assert f"{FRAMES} row(s) repeating the input, frame and face of an earlier row left out" in text
    row = re.compile(r"AU12</td>.*?</tr>", re.S)  # the AU table's row: mean, % present, peak
    assert row.search(text).group(0) == row.search(ref).group(0)
    plot_table(both, tmp_path / "both.png")


def test_a_photo_table_with_an_intensity_but_no_occurrence_column_is_drawn(tmp_path):
    """A photo's table without ``AU12_c`` (removed), or with a user's ``AU28_r``: plot and report failed with
    "TypeError: boolean value of NA is ambiguous", naming no column. That AU is drawn as not present."""
    photo = tmp_path / "photo.csv"
    assert runner.invoke(app, ["analyze", str(sample("single_face.jpg")), "-o", str(photo),
                               "--emotion-model", "none"]).exit_code == 0
    df = read_table(photo)
    for name, t in (("no_c", df.drop(columns=["AU12_c"])), ("extra", df.assign(AU28_r=1.0))):
        path = tmp_path / f"{name}.csv"
        write_table(t, path)
        plot_table(path, tmp_path / f"{name}.png")
        write_report(path, tmp_path / f"{name}.html")
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
