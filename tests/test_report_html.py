"""``aulib report``: a self-contained HTML page from a real analysis, opened in headless Chromium.

Screenshots go to $AULIB_SCREENSHOTS (e.g. docs/), else a scratch folder: a test run never rewrites docs/.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aulib.batch import AnalyzerSpec, run_batch
from aulib.cli import app
from aulib.models import read_manifest
from aulib.report_html import write_report

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
    assert "happiness" in page and "strongest" in page


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
