"""The Image and Video pages driven by Streamlit's own test runner (no browser): what a user sees when
they leave a page and come back, cancel a job, upload damaged or same-named files.

A stand-in for ``st.navigation`` runs only the chosen page's script, as the real app does (Streamlit
forgets a widget's value while its page is not shown); downloads are captured as they are offered.
"""

from __future__ import annotations

import io
import re
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from .conftest import sample, two_camera_video

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

SCRIPT = textwrap.dedent("""
    import streamlit as st
    from streamlit.delta_generator import DeltaGenerator
    from aulib.app import image_page, video_page

    real, real_st = DeltaGenerator.download_button, st.download_button

    def capture(self, label, data, *args, **kwargs):
        st.session_state.setdefault("downloads", {})[label] = data
        return real(self, label, data, *args, **kwargs)

    DeltaGenerator.download_button = capture  # columns' buttons
    st.download_button = lambda *args, **kwargs: capture(st._main, *args, **kwargs)  # bound at import
    try:
        (video_page if st.session_state.get("page", "video") == "video" else image_page).page()
    finally:
        DeltaGenerator.download_button, st.download_button = real, real_st
""")

@pytest.fixture
def app(tmp_path, monkeypatch) -> AppTest:
    monkeypatch.setenv("AULIB_APP_VIDEO_WORKERS", "1")
    script = tmp_path / "pages.py"
    script.write_text(SCRIPT)
    at = AppTest.from_file(str(script), default_timeout=240)
    at.run()
    return at


def _upload(path: Path, name: str | None = None) -> tuple[str, bytes, str]:
    return (name or path.name, path.read_bytes(), "application/octet-stream")


def _texts(at: AppTest) -> str:
    """The page's messages as a reader sees them (the Markdown source without ``**`` and escapes)."""
    text = "\n".join(str(e.value) for kind in ("error", "warning", "info", "success", "caption", "subheader")
                     for e in getattr(at, kind))
    return re.sub(r"\\(.)", r"\1", text.replace("**", ""))


def _until(at: AppTest, done, limit: float = 180) -> AppTest:
    t = time.monotonic()
    while time.monotonic() - t < limit:
        at.run()
        if done(at):
            return at
        time.sleep(0.5)
    raise AssertionError(f"timed out; the page shows: {_texts(at)}")


def _go(at: AppTest, page: str) -> None:
    at.session_state["page"] = page
    at.run()


@pytest.mark.slow
def test_leaving_the_video_page_keeps_the_result_and_the_running_job(app):
    """Leaving the Video page emptied its uploader, which the page read as "file removed": it cancelled a
    running analysis and dropped a finished one, without a word."""
    at = app
    at.number_input[0].set_value(4)
    at.file_uploader(key="video_upload").set_value(_upload(sample("single_face.mp4")))
    at = _until(at, lambda a: "video_job" not in a.session_state)
    assert "Analysed 18 frames of single_face.mp4" in _texts(at), _texts(at)
    _go(at, "image")
    _go(at, "video")
    assert not at.exception
    assert "Analysed 18 frames of single_face.mp4" in _texts(at) and "Last video" in _texts(at), _texts(at)
    assert at.session_state["downloads"]["Download CSV"]
    # a running job goes on while the user looks at another page
    at.number_input[0].set_value(4)  # forgotten too while the page was not shown
    at.file_uploader(key="video_upload").set_value(_upload(sample("WolfgangLanger_Pexels.mp4")))
    at.run()
    job = at.session_state["video_job"].job
    _go(at, "image")
    _go(at, "video")
    assert job.state in ("queued", "running", "done"), job.state
    assert at.number_input[0].value == 4  # the box showed 1 beside a result made with 4
    at = _until(at, lambda a: "video_job" not in a.session_state, limit=300)
    assert "Analysed 118 frames of WolfgangLanger_Pexels.mp4" in _texts(at), _texts(at)


@pytest.mark.slow
def test_a_page_reloaded_mid_analysis_finds_its_job_again(app, tmp_path):
    """Reloading the Video page while a video was analysed started a session that could not see the job: no
    progress, no Cancel, no result, while the job ran on (and held the only worker) until Streamlit dropped
    the old session 2 minutes later. The page's address names the job; a reload takes it over."""
    at = app
    at.number_input[0].set_value(2)
    at.file_uploader(key="video_upload").set_value(_upload(sample("WolfgangLanger_Pexels.mp4")))
    at.run()
    job = at.session_state["video_job"].job
    token = at.query_params["video"]
    token = token[0] if isinstance(token, list) else token
    assert token == job.token and len(token) >= 16
    reloaded = AppTest.from_file(at._script_path, default_timeout=240)  # the same address, a new session
    reloaded.query_params["video"] = token
    reloaded.run()
    assert reloaded.session_state["video_job"].job is job
    shown = re.sub(r"\\(.)", r"\1", " ".join(str(p.proto.text) for p in reloaded.get("progress")))
    assert "Analysing WolfgangLanger_Pexels.mp4" in shown or "waiting for a free video worker" in _texts(reloaded), \
        (shown, _texts(reloaded))
    at.session_state["video_job"]._finalizer()  # what the old session's end does (Streamlit drops it later)
    assert job.state in ("queued", "running", "done"), job.state  # the job is the reloaded page's now
    reloaded = _until(reloaded, lambda a: "video_job" not in a.session_state, limit=300)
    assert "Analysed 236 frames of WolfgangLanger_Pexels.mp4" in _texts(reloaded), _texts(reloaded)
    stranger = AppTest.from_file(reloaded._script_path, default_timeout=60)
    stranger.query_params["video"] = "not-a-job"
    stranger.run()
    assert not stranger.exception and "video_job" not in stranger.session_state


@pytest.mark.slow
def test_a_cancelled_job_is_not_a_refused_file_and_can_be_run_again(app):
    at = app
    at.number_input[0].set_value(4)
    at.file_uploader(key="video_upload").set_value(_upload(sample("WolfgangLanger_Pexels.mp4")))
    at.run()
    at.button(key="video_cancel").click()
    at.run()
    text = _texts(at)
    assert "The analysis of WolfgangLanger_Pexels.mp4 was cancelled." in text and "refused" not in text, text
    at.button(key="video_retry").click()
    at.run()
    at = _until(at, lambda a: "video_job" not in a.session_state, limit=300)
    assert "Analysed 118 frames of WolfgangLanger_Pexels.mp4" in _texts(at), _texts(at)


def test_the_video_page_names_the_other_video_streams_as_the_command_line_does(app, tmp_path):
    """A file with two cameras' streams: the command line and the API say which one was analysed and how to
    extract the other; the page showed only "no face found" (the black camera) without a word of them."""
    at = app
    clip = two_camera_video(tmp_path / "two cameras.mkv")
    at.file_uploader(key="video_upload").set_value(_upload(clip, "studio take.mkv"))
    at = _until(at, lambda a: "video_job" not in a.session_state)
    text = _texts(at)
    assert "studio take.mkv: 2 video streams; stream 0" in text and "-map 0:1" in text, text
    assert str(tmp_path) not in text and "/tmp" not in text, text  # the server's copy is not named


def test_a_cut_gif_is_refused_on_the_video_page(app, tmp_path):
    """FFmpeg decodes a cut GIF's partial frame without an error: it was analysed as a clean one-frame
    video, while the Image page and the command line refuse it as truncated."""
    from PIL import Image

    frames = [Image.open(sample("single_face.jpg")).convert("RGB").resize((160, 200)).rotate(a) for a in (0, 5)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    at = app
    at.file_uploader(key="video_upload").set_value(("cut.gif", buf.getvalue()[: len(buf.getvalue()) // 3], "image/gif"))
    at.run()
    assert "cut.gif was refused: truncated or corrupt GIF" in _texts(at), _texts(at)
    assert "video_job" not in at.session_state
    assert not [b for b in at.button if b.key == "video_retry"]  # retrying cannot mend the file


def test_image_page_table_is_the_command_line_table(app):
    """Several uploads: the downloaded CSV holds a refused file's success=0 row (it had none) and tells
    two files of the same name apart (their rows were indistinguishable); names are shown as typed."""
    _go(app, "image")
    at = app
    face = sample("single_face.jpg")
    odd = "party *best* [night](http://x.example) $x^2$.jpg"
    # an animation whose first frame has no face: its row says only that frame was read, as the CLI's does
    anim = io.BytesIO()
    frames = [Image.new("RGB", (320, 240), (90, 90, 90)), Image.open(face).convert("RGB").resize((320, 240))]
    frames[0].save(anim, format="GIF", save_all=True, append_images=frames[1:])
    at.file_uploader(key="image_upload").set_value([
        _upload(face, "photo.jpg"), _upload(sample("multi_face.jpg"), "photo.jpg"),
        ("notes.jpg", b"hello, not an image", "image/jpeg"), _upload(face, odd),
        _upload(sample("single_face.mp4"), "clip.jpg"), ("anim.gif", anim.getvalue(), "image/gif")])
    at.run()
    assert not at.exception
    raw = at.session_state["downloads"]["Download the table (CSV)"]
    # the command line's CSV: text quoted (an upload named NA stays a name), a missing number an empty field
    assert raw.startswith(b'"input","frame","timestamp"') and b'\n"notes.jpg",0,0.0,0,0,"' in raw, raw[:300]
    df = pd.read_csv(io.BytesIO(raw))
    assert df.groupby("input", sort=False).size().to_dict() == {"photo.jpg": 1, "photo.jpg (2)": 5, "notes.jpg": 1,
                                                                odd: 1, "clip.jpg": 1, "anim.gif": 1}
    assert "only the first is analysed" in df.set_index("input").loc["anim.gif", "error"]
    bad = df.set_index("input").loc[["notes.jpg", "clip.jpg"]]
    assert (bad["success"] == 0).all()
    assert "not an image file" in bad.loc["notes.jpg", "error"]
    text = _texts(at)
    assert "clip.jpg was refused: a video file with an image's name: rename it (e.g. to .mp4), then use the Video" \
        " page" in text, text
    from aulib.app.common import md

    subheaders = [s.value for s in at.subheader]  # Markdown source: escaped, so shown as typed
    assert md("photo.jpg (2)") in subheaders and md(odd) in subheaders and r"\*best\* \[night\]" in md(odd)


def test_removing_a_refused_file_leaves_no_last_video(app):
    """After × on a refused notes.txt the page said "Last video: notes.txt", calling a text file a video."""
    at = app
    at.file_uploader(key="video_upload").set_value(("notes.txt", b"just text", "text/plain"))
    at.run()
    assert "notes.txt was refused" in _texts(at), _texts(at)
    at.file_uploader(key="video_upload").set_value(None)
    at.run()
    text = _texts(at)
    assert "notes.txt" not in text and "Upload a video" in text, text


def test_a_sliver_image_gets_a_preview_streamlit_can_show():
    """A 20000×3 image's preview was 1600×1 px; shown stretched to the column it was 0 px high and Streamlit
    raised a traceback on the page (every rerun, the other files' results lost with it)."""
    import cv2

    from aulib.app.image_page import MIN_PREVIEW_SIDE, preview

    for shape in ((3, 20000, 3), (2, 3000, 3), (3000, 1, 3)):
        jpeg, scale = preview(np.full(shape, 128, np.uint8), [])
        shown = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert min(shown.shape[:2]) >= MIN_PREVIEW_SIDE and max(shown.shape[:2]) <= 1600, shape
    # any image array aulib reads (gray, float 0–1) is drawn; one that is none is refused in words (a float
    # image raised inside OpenCV's putText, an empty one divided by zero)
    from aulib.io import ImageReadError

    for odd in (np.full((40, 60), 200, np.uint8), np.full((40, 60, 3), 0.5, np.float32)):
        jpeg, _ = preview(odd, [])
        assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (40, 60, 3)
    with pytest.raises(ImageReadError):
        preview(np.zeros((0, 0, 3), np.uint8), [])


def test_a_video_named_gif_is_read_as_a_video_and_a_long_gif_is_checked_in_bounded_time(tmp_path, monkeypatch):
    """An MP4 named .gif was refused as a 'truncated or corrupt GIF' with Streamlit's UploadedFile(…upload
    URL…) in the message; a 1500-frame 2000×2000 GIF was decoded whole before the page showed anything."""
    from PIL import Image

    from aulib.app import video_page

    mp4 = sample("single_face.mp4").read_bytes()
    assert video_page.check_video("clip.gif", io.BytesIO(mp4), len(mp4)) == ""
    frames = [Image.new("RGB", (64, 64), (i * 20, 0, 0)) for i in range(12)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    from PIL import ImageSequence

    decoded = []
    real_next = ImageSequence.Iterator.__next__
    monkeypatch.setattr(ImageSequence.Iterator, "__next__", lambda self: decoded.append(1) or real_next(self))
    monkeypatch.setattr(video_page, "GIF_CHECK_PIXELS", 3 * 64 * 64)
    assert video_page.gif_damage(buf) == "" and len(decoded) == 4  # a complete GIF: the first frames only
    cut = io.BytesIO(buf.getvalue()[:-40])
    said = video_page.gif_damage(cut)
    assert said.startswith("truncated or corrupt GIF") and "UploadedFile" not in said and "<" not in said


def test_after_stop_the_live_panel_says_stopped_not_no_camera():
    """After the user pressed STOP, the live panel showed "No camera, or access to it was denied?" as on a page
    that never streamed."""

    def page(frames: int) -> None:
        from types import SimpleNamespace

        from aulib.app.live import LiveState, live_panel

        state = LiveState()
        state.frames = frames
        live_panel(SimpleNamespace(state=SimpleNamespace(playing=False)), state)

    def panel(frames: int) -> str:
        import sys

        main = sys.modules.get("__main__")
        try:
            at = AppTest.from_function(page, args=(frames,), default_timeout=60).run()
        finally:  # AppTest leaves its script as __main__, which every later spawned process (Dask's workers) runs
            sys.modules["__main__"] = main
        assert not at.exception
        return " ".join([m.value for m in at.markdown] + [i.value for i in at.info])

    never, stopped = panel(0), panel(120)
    assert "Not streaming" in never and "access to it was denied" in never
    assert "Stopped" in stopped and "denied" not in stopped


def test_the_live_stream_reads_blinks_as_a_video_does():
    """The live page decided AU45_c frame by frame at one threshold, where landmark noise flickers eyes near it,
    while a video file's analysis decides it along each face's track with hysteresis. The Pexels clip's camera
    stream read 9 closures (two of them flickers at 112 and 122) for its 5 blinks and 2 long closures."""
    import av

    from aulib.analyzer import Analyzer
    from aulib.app.live import LiveState, make_callback

    state = LiveState()
    callback = make_callback(Analyzer(emotion_model="none"), state)
    closed = []
    with av.open(str(sample("WolfgangLanger_Pexels.mp4"))) as c:
        for frame in c.decode(video=0):
            callback(frame)
            f = state.face
            closed.append(int(f is not None and f.blink is not None and f.blink[1] == 1))
    runs = [i for i in range(len(closed)) if closed[i] and (i == 0 or not closed[i - 1])]
    assert len(closed) == 472 and len(runs) <= 7, runs
    assert all(closed[i] for i in (0, 100, 153, 248, 288, 387, 450)), runs  # blinks and closures counted by eye
