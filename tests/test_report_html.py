"""``aulib report``: a self-contained HTML page from a real analysis, opened in headless Chromium.

Screenshots go to $AULIB_SCREENSHOTS (e.g. docs/), else a scratch folder: a test run never rewrites docs/.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from aulib.batch import AnalyzerSpec, run_batch
from aulib.cli import app
from aulib.face.record import EMOTIONS
from aulib.models import read_manifest
from aulib.plot import read_checked
from aulib.report_html import au_summary, emotion_summary, render, top_moments, write_report

from .app_helpers import find_chromium, python_has
from .conftest import sample
from .test_plot import synthetic

runner = CliRunner()
SHOTS = Path(os.environ.get("AULIB_SCREENSHOTS") or tempfile.mkdtemp(prefix="aulib-shots-"))


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """A real table of a 20 s sample clip (every 3rd frame) written by the batch runner (with its .meta.json)."""
    tmp = tmp_path_factory.mktemp("report")
    clip = tmp / "clip.mp4"
    shutil.copy(sample("WolfgangLanger_Pexels.mp4"), clip)
    out = tmp / "clip.csv"
    run_batch([clip], AnalyzerSpec(emotion_model="cnn"), out=out, video_options={"every": 3, "detect_every": 10})
    return out, clip


def test_report_from_a_real_video(analysed, tmp_path):
    table, clip = analysed
    res = runner.invoke(app, ["report", str(table), "-o", str(tmp_path / "r.html"), "--video", str(clip)])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "frames analysed" in page and ">158<" in page  # 472 frames, every 3rd
    assert "AU12" in page and "lip corner puller" in page and "% frames present" in page
    assert "Emotion timeline" in page and "Top moments" in page
    assert len(re.findall(r"src='data:image/png;base64,", page)) >= 1
    assert len(re.findall(r"src='data:image/jpeg;base64,", page)) >= 1  # thumbnails from the video
    assert "detect_every" in page and "<td>3</td>" in page  # the run's settings from clip.csv.meta.json
    assert "strongest happiness" in page  # the clip ends in a broad smile
    sha = read_manifest()["models"]["au_svm.npz"]["sha256"][:12]
    assert sha in page
    # self-contained: nothing fetched from anywhere
    assert not re.search(r"(src|href)=['\"]?(https?:|//)", page) and "http://" not in page and "https://" not in page


def test_report_escapes_text_and_works_without_video_or_metadata(tmp_path):
    df = synthetic(60)
    df["input"] = "<script>alert(1)</script>.mp4"
    out = write_report(df, tmp_path / "s.html")
    page = out.read_text(encoding="utf-8")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "No run metadata" in page and "for thumbnails" in page
    assert "happiness" in page and "peak of AU12" in page  # a top moment ("strongest" was matched in a caption)


def test_report_errors_are_one_line(analysed, tmp_path):
    table, _ = analysed
    (tmp_path / "notes.jpg").write_text("hello, I am not a video")
    cases = [
        (["-o", str(tmp_path / "r.pdf")], "name it .html"),
        (["-o", str(tmp_path / "r.html"), "--video", str(sample("single_face.jpg"))], "single_face.jpg"),
        (["-o", str(tmp_path / "r.html"), "--video", str(tmp_path / "missing.mp4")], "missing.mp4"),
        # FFmpeg probes a text file as a (0-frame) video: it used to give a report with a note inside
        (["-o", str(tmp_path / "r.html"), "--video", str(tmp_path / "notes.jpg")], "notes.jpg: --video takes the "
                                                                                    "analysed video, and this is not"),
        (["-o", str(tmp_path / "r.html"), "--face", "7"], "no successfully analysed face"),
        (["-o", str(tmp_path / "r.html"), "--input", "other.mp4"], "no input 'other.mp4'"),
    ]
    for args, msg in cases:
        res = runner.invoke(app, ["report", str(table), *args])
        one_line = len(res.output.strip().splitlines()) == 1
        assert res.exit_code == 2 and msg in res.output and one_line, (args, res.output)
    foreign = tmp_path / "foreign.csv"
    foreign.write_text("a,b\n1,2\n")
    res = runner.invoke(app, ["report", str(foreign), "-o", str(tmp_path / "r.html")])
    assert res.exit_code == 2 and "not a table written by aulib analyze" in res.output


@pytest.mark.browser
@pytest.mark.slow
def test_report_figures_render_in_chromium(analysed, tmp_path):
    missing = python_has("playwright")
    chromium = find_chromium()
    if missing or not chromium:
        pytest.skip("needs playwright and Chromium (/usr/bin/chromium)")
    from playwright.sync_api import sync_playwright

    table, clip = analysed
    out = write_report(table, tmp_path / "report.html", video=clip)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(out.as_uri(), wait_until="load")
            images = page.evaluate("() => [...document.images].map(i => [i.alt, i.complete, i.naturalWidth])")
            assert len(images) >= 2 and all(ok and w > 0 for _, ok, w in images), images
            assert page.locator("h1").inner_text().startswith("aulib report")
            assert not [u for u in requests if not u.startswith(("file:", "data:"))], requests
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "report.png"), full_page=True)
        finally:
            browser.close()


def test_plot_of_the_real_video(analysed):
    """The README's plot: chosen AUs as small multiples, smoothed, with the CNN emotions stacked."""
    from aulib.plot import plot_table

    from .test_plot import assert_real_png

    table, _ = analysed
    SHOTS.mkdir(parents=True, exist_ok=True)
    res = runner.invoke(app, ["plot", str(table), "-o", str(SHOTS / "plot.png"), "--aus", "1,4,6,12,25",
                              "--smooth", "0.5"])
    assert res.exit_code == 0, res.output
    assert_real_png(SHOTS / "plot.png", (1000, 600))
    assert_real_png(plot_table(table, SHOTS / "plot_heatmap.png", style="heatmap", smooth=0.5), (1000, 600))


def test_report_reads_the_settings_of_partitioned_and_per_input_outputs_and_flags_an_unfinished_run(tmp_path):
    """A partitioned folder and a --per-input table keep the run's options in their manifest / the folder's
    .aulib-run.meta: the report said "No run metadata next to the table" for both. A table whose run was
    stopped (its OUT.done progress log still beside it) was reported as if it were complete."""
    photo = tmp_path / "in" / "a.jpg"
    photo.parent.mkdir()
    shutil.copy(sample("single_face.jpg"), photo)
    spec = AnalyzerSpec(emotion_model="none")
    run_batch([photo], spec, out=tmp_path / "part", partitioned=True, video_options={"every": 7})
    run_batch([photo], spec, per_input=tmp_path / "per", video_options={"every": 7})
    run_batch([photo], spec, out=tmp_path / "t.csv", video_options={"every": 7})
    for table in (tmp_path / "part", tmp_path / "per" / "a.jpg.csv", tmp_path / "t.csv"):
        page = write_report(table, tmp_path / "r.html").read_text(encoding="utf-8")
        assert "No run metadata" not in page and "<td>every</td><td>7</td>" in page, table
        assert "has not finished" not in page
    (tmp_path / "t.csv.done").write_text('{"base": 0}\n')
    res = runner.invoke(app, ["report", str(tmp_path / "t.csv"), "-o", str(tmp_path / "r.html")])
    assert res.exit_code == 0 and "has not finished" in res.output, res.output
    assert "has not finished" in (tmp_path / "r.html").read_text(encoding="utf-8")
    res = runner.invoke(app, ["plot", str(tmp_path / "t.csv"), "-o", str(tmp_path / "p.png")])
    assert res.exit_code == 0 and "has not finished" in " ".join(res.output.split()), res.output


def test_plot_and_report_refuse_to_write_over_the_table_or_its_input(tmp_path):
    """``aulib plot t.csv -o photo.jpg`` replaced the analysed photo with the figure (analyze refuses this)."""
    photo = tmp_path / "a.jpg"
    shutil.copy(sample("single_face.jpg"), photo)
    table = tmp_path / "t.csv"
    run_batch([photo], AnalyzerSpec(emotion_model="none"), out=table)
    before = photo.read_bytes()
    for args in (["plot", str(table), "-o", str(photo)], ["plot", str(table), "-o", str(tmp_path / "." / "a.jpg")]):
        res = runner.invoke(app, args)
        assert res.exit_code != 0 and "is the input" in res.output, res.output
    res = runner.invoke(app, ["plot", str(table), "-o", str(tmp_path / "t.png")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["plot", str(table), "-o", str(tmp_path / "t.png")])  # its own figure: replaced
    assert res.exit_code == 0, res.output
    assert photo.read_bytes() == before


# ------------------------------------------------------------------------------------------ top moments
def test_top_moment_of_a_short_clip_is_a_real_peak_of_the_values():
    """On a 0.1 s OpenFace clip the 0.5 s window covered every row, the smoothed trace was flat and its first row
    was the card "peak of AU04 … 0.00 s · frame 1", where AU04 was at the clip's minimum."""
    df = read_checked(sample("OpenFace_Test.csv"))
    ok = df[df["success"] == 1]
    (m,) = [m for m in top_moments(ok, smooth=0.5) if m.why.startswith("peak of AU04")]
    au04 = ok.set_index("frame")["AU04_r"]
    assert au04[m.frame] == au04.max() > au04.min(), (m.frame, au04[m.frame], au04.max())
    assert f"intensity {au04.max():.2f} in this frame" in m.why
    flat = ok.assign(**{c: 1.0 for c in ok.columns if re.fullmatch(r"AU\d\d_r", c)})
    assert not [m for m in top_moments(flat, smooth=0.5) if m.why.startswith("peak of")]  # no peak, no card


def test_top_moment_numbers_are_named_for_what_they_are():
    """A smile's onset over 10 frames: the card read "strongest happiness (50% CNN probability)" above "CNN:
    happiness 98%" — the 50 % was the mean over the 0.5 s window, labelled as the frame's CNN probability."""
    df = synthetic(10)
    rise = np.linspace(0.0, 0.98, 10)
    for e in EMOTIONS:
        df[f"p_{e}"] = 0.0
    df["p_happiness"], df["p_neutral"] = rise, 1 - rise
    (m,) = [m for m in top_moments(df, smooth=0.5) if "happiness" in m.why]
    assert m.frame == 9 and m.emotion == "happiness 98%"
    mean = re.fullmatch(r"strongest happiness \(CNN probability 98% in this frame, (\d+)% averaged over 0\.5 s\)",
                        m.why)
    assert mean and 50 <= int(mean.group(1)) < 98, m.why


# ------------------------------------------------------------------------------------------ columns removed
def test_each_summary_figure_is_a_dash_only_when_its_columns_are_absent():
    """A table with `emotion` dropped read 0 % CNN label for every emotion; with AUxx_c dropped, 0 % prototype
    matches everywhere; with the p_* columns dropped, the labels still there were shown as "–" and the neutral row
    was gone."""
    df = synthetic(30)
    label, matched = "% frames (CNN label)", "% frames prototype fully matched"
    full = emotion_summary(df).set_index("emotion")
    assert full[label].notna().all() and full.loc["happiness", matched] >= 0
    no_label = emotion_summary(df.drop(columns=["emotion"])).set_index("emotion")
    assert no_label[label].isna().all() and no_label["mean probability"].notna().all()
    no_occ = emotion_summary(df.drop(columns=[c for c in df.columns if c.endswith("_c")])).set_index("emotion")
    assert no_occ[matched].isna().all() and no_occ[label].notna().all()
    no_probs = emotion_summary(df.drop(columns=[c for c in df.columns if c.startswith("p_")])).set_index("emotion")
    assert list(no_probs.index) == list(EMOTIONS)  # neutral included
    pd.testing.assert_series_equal(no_probs[label], full[label])
    assert no_probs["mean probability"].isna().all()


# ------------------------------------------------------------------------------------------ AU peaks
def test_au_peak_is_the_earliest_of_equal_maxima_and_names_the_face():
    """AU09 reaching 1.00 in many frames: its "peak at (s)" was the first such row of the file, so shuffled rows
    moved it (3.88 → 4.25 s); with several faces it did not say whose peak, and a photo's was "0.00 s"."""
    df = synthetic(40)
    df["AU04_r"] = 0.5
    df.loc[df["frame"].isin([7, 12, 30]), "AU04_r"] = 1.0
    for seed in range(3):
        shuffled = df.sample(frac=1, random_state=seed)
        row = au_summary(shuffled).set_index("AU").loc["AU04"]
        assert row["peak at (s)"] == pytest.approx(7 / 30) and "face at peak" not in row.index
    two = synthetic(20, faces=2)
    two.loc[:, "AU04_r"] = 0.0
    two.loc[(two["face"] == 1) & (two["frame"] == 5), "AU04_r"] = 3.0
    row = au_summary(two).set_index("AU").loc["AU04"]
    assert row["face at peak"] == 1 and row["peak at (s)"] == pytest.approx(5 / 30)
    photo = synthetic(1, faces=3, name="group.jpg")
    photo.loc[:, "AU04_r"] = [0.5, 2.0, 1.0]
    row = au_summary(photo).set_index("AU").loc["AU04"]
    assert "peak at (s)" not in row.index and row["face at peak"] == 1
    page = render(photo)
    assert "peak at (s)" not in page and "face at peak" in page


# ------------------------------------------------------------------------------------------ no face at all
def test_report_of_a_video_without_any_face(tmp_path):
    """A video with no face in any frame failed with "no successfully analysed face": that is the finding."""
    df = synthetic(25)
    measured = [c for c in df.columns if re.fullmatch(r"(AU\d\d_[rc]|p_\w+|emotion|face_\w+)", c)]
    df[measured] = np.nan
    df["success"], df["error"] = 0, "no face detected"
    table = tmp_path / "none.csv"
    df.to_csv(table, index=False)
    res = runner.invoke(app, ["report", str(table), "-o", str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "No face in any of the 25 frames" in page and "(0 of 25)" in page and "0 (0 %)" in page


# ------------------------------------------------------------------------------------------ control characters
def test_names_with_control_characters_are_escaped_in_the_page_and_figure(tmp_path):
    """A name holding ESC and BEL (from a table written before names were escaped, or a DataFrame) reached
    matplotlib, which printed "UserWarning: Glyph 27 missing from font(s)" with aulib's source path."""
    import warnings

    df = synthetic(30).assign(input="ansi\x1b[31mRED\x1b]0;t\x07\u9854.mp4")  # synthetic() escapes it, as tables do
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        page = write_report(df, tmp_path / "r.html").read_text(encoding="utf-8")
    assert not [str(w.message) for w in seen if "Glyph" in str(w.message)]
    assert "\x1b" not in page and "\x07" not in page and "ansi\\u001b[31mRED" in page
    assert "\u9854.mp4" in page  # the page's text keeps what a browser can show; only the figure escapes it


def test_report_with_video_picks_that_videos_input_from_a_mixed_table(tmp_path):
    """``aulib analyze photos/ clip.mp4 -o out.csv`` then ``aulib report out.csv --video clip.mp4`` was refused:
    the first input (a photo) was the default, "--video is for a video's table"."""
    from aulib.batch import AnalyzerSpec, run_batch
    from aulib.report_html import render

    clip = sample("single_face.mp4")
    df = run_batch([sample("single_face.jpg"), clip], AnalyzerSpec(emotion_model="none"), keep_table=True,
                   video_options={"max_frames": 12}).table
    page = render(df, video=clip)
    assert "single_face.mp4" in page and "is one image" not in page


def test_an_input_that_could_not_be_read_has_no_frames_analysed(tmp_path):
    """The error row of an unreadable input was counted as a frame: "1 frames analysed", "No face in empty.jpg";
    a cut clip's closing error row was one more frame than the clip gave."""
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    cut = tmp_path / "cut.mp4"
    data = sample("single_face.mp4").read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "t.csv"
    run_batch([empty, cut], AnalyzerSpec(emotion_model="none", gaze=False), out=out)
    df = pd.read_csv(out)
    page = render(df, str(empty))
    assert "<b>0</b>frames analysed" in page and "No face in" not in page, page
    assert "could not be read" in page and "empty file (0 bytes)" in page
    clip = df[df["input"] == str(cut)]
    page = render(df, str(cut))
    assert f"<b>{clip['frame'].nunique() - 1}</b>frames analysed" in page
