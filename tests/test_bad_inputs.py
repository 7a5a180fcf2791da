"""Bad inputs, every command: one clear stderr line and exit code 2 (never a traceback), a ``success=0`` row
for each unreadable file in a batch, and a property test over arbitrary image arrays."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from aulib.cli import app
from aulib.io import ImageReadError

from .conftest import DATA, sample

runner = CliRunner()


def one_error_line(res, code: int = 2) -> str:
    """Assert the command failed with ``code`` and exactly one ``error:`` line on stderr; return it."""
    assert res.exit_code == code, (res.exit_code, res.output)
    assert "Traceback" not in res.output and res.exception is None or isinstance(res.exception, SystemExit)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    """A small real ``aulib analyze`` table (one face) to feed to ``aulib plot``."""
    out = tmp_path_factory.mktemp("t") / "t.csv"
    res = runner.invoke(app, ["analyze", str(sample("single_face.jpg")), "-o", str(out), "--emotion-model", "none"])
    assert res.exit_code == 0, res.output
    return out


# ----------------------------------------------------------------------------------------- options
@pytest.mark.parametrize("args,says", [
    (["analyze", "IMG", "--emotion-model", "foo"], "emotion"),
    (["analyze", "IMG", "--detector", "foo"], "detector"),
    (["analyze", "IMG", "-o", "x.xlsx"], "unknown output format"),
    (["analyze", "IMG", "--every", "-1"], "--every"),
    # NaN and infinity pass min= checks: each float option refuses them itself
    (["analyze", "IMG", "--fps", "nan"], "--fps': must be a finite number, not nan"),
    (["analyze", "IMG", "--fps", "inf"], "--fps': must be a finite number, not inf"),
    (["plot", "TABLE", "--smooth", "nan"], "--smooth': must be a finite number"),
    (["report", "TABLE", "--smooth", "inf"], "--smooth': must be a finite number"),
    (["train", "cnn", "--lr", "nan"], "--lr': must be a finite number"),
    (["analyze", "IMG", "--format", "xml", "--per-input", "d"], "--format"),
    (["faces", "IMG", "--detector", "foo"], "--detector must be retinaface or dlib"),
    (["faces", "IMG", "-o", "x.txt"], "unknown output format"),
    (["analyze", "IMG", ""], "empty path"),  # Path("") is ".": it used to analyse the working folder
    (["faces", ""], "empty path"),
    # an empty option value (an unset shell variable) was Path("."): --per-input "" wrote into the
    # working folder, --overlay "" was dropped; refused for every option that takes a value
    (["analyze", "IMG", "--per-input", ""], "'--per-input': an empty value"),
    (["analyze", "IMG", "-o", ""], "'-o': an empty value"),
    (["analyze", "IMG", "--out="], "'--out': an empty value"),
    (["faces", "IMG", "--overlay", ""], "'--overlay': an empty value"),
    (["plot", "TABLE", "-o", ""], "'-o': an empty value"),
    (["train", "svm", "--data", ""], "train svm --help)"),
    # typer made s3://lab/x/ the local folder "s3:/lab/x": the tables went into ./s3:
    (["analyze", "IMG", "--per-input", "s3://lab/x/"], "--per-input writes local files: give a folder, not a URL"),
    (["analyze", "IMG", "--overlay", "gs://lab/o/"], "--overlay writes local files"),
    (["analyze", "IMG", "--partitioned"], "--partitioned needs -o"),
    (["faces", "IMG", "--overlay", "s3://lab/o/"], "--overlay writes local files"),
    (["bench", "VIDEO", "--frames", "-5"], "--frames"),
    (["bench", "VIDEO", "--emotion-model", "foo"], "--emotion-model must be cnn, multitask or none"),
    (["bench", "VIDEO", "--detector", "foo"], "--detector must be"),
    # an OpenFace binary that fails: its exit and last words, not "unexpected RuntimeError … a bug in aulib"
    (["bench", "VIDEO", "--pairs", "1", "--openface", "/bin/false"], "false failed on single_face.mp4 (exit 1)"),
    # --frames timed part of the clip against OpenFace's whole clip: refused before anything runs
    (["bench", "VIDEO", "--frames", "2", "--openface", "/bin/false"], "--frames limits aulib only"),
    (["plot", "TABLE", "-o", "x.xyz"], "x.xyz: unknown image format"),
    (["app", "--port", "-1"], "--port"),
    (["app", "--max-upload-mb", "0"], "--max-upload-mb"),
    (["train", "svm", "--data", "MISSING"], "no such folder"),
    (["train", "svr", "--data", "MISSING"], "no such folder"),
    (["train", "cnn", "--data", "MISSING"], "no such folder"),
    (["train", "cnn", "--epochs", "0"], "--epochs"),
    (["train", "multitask", "--data", "MISSING"], "no such folder"),
    (["train", "multitask", "--data", "DATADIR", "--init-from", "MISSING"], "no such emotion run"),
    (["train", "multitask", "--data", "DATADIR", "--folds", "1"], "--folds"),
    (["evaluate", "faces", "--data", "MISSING"], "no such folder"),
    (["evaluate", "cnn", "--data", "MISSING"], "no such folder"),
    (["evaluate", "faces", "--data", "EMPTYDIR"], "has no ckplus48/"),
    (["demo", "--bogus"], "No such option"),
    (["frobnicate"], "No such command"),
    (["--bogus"], "No such option"),
])
def test_bad_options_give_one_line_and_exit_2(args, says, tmp_path, table):
    subs = {"IMG": str(sample("single_face.jpg")), "VIDEO": str(sample("single_face.mp4")), "TABLE": str(table),
            "MISSING": str(tmp_path / "no[data]"), "EMPTYDIR": str(tmp_path), "DATADIR": str(tmp_path / "data")}
    for sub in ("ckplus48", "ferplus"):  # DATADIR passes the --data check; the option after it must not
        (tmp_path / "data" / sub).mkdir(parents=True)
    line = one_error_line(runner.invoke(app, [subs.get(a, a) for a in args]))
    assert says in line
    if "MISSING" in args:
        assert str(tmp_path / "no[data]") in line  # rich markup did not eat the [data]


def test_faces_help_points_to_no_missing_document():
    res = runner.invoke(app, ["faces", "--help"])
    assert res.exit_code == 0 and "DESIGN.md" not in res.output and "x_0" in res.output


# ----------------------------------------------------------------------------------------- plot
def test_plot_refuses_foreign_and_broken_tables(tmp_path, table):
    d = tmp_path / "odd [dir]"
    d.mkdir()
    rng = np.random.default_rng(0)
    cases = {
        "empty.csv": b"",
        "garbage.csv": rng.integers(0, 256, 4000, dtype=np.uint8).tobytes(),
        "garbage.parquet": b"PAR1" + rng.integers(0, 256, 500, dtype=np.uint8).tobytes(),
        "garbage.json": b"{not json",
        "foreign [x].csv": b"name,age\nann,3\nbob,4\n",
        "text_in_numbers.csv": table.read_text().replace("\n", "\n").splitlines()[0].encode() + b"\n"
                               + b",".join([b"zz"] * len(table.read_text().splitlines()[0].split(","))) + b"\n",
    }
    for name, content in cases.items():
        (d / name).write_bytes(content)
    faces_csv = tmp_path / "faces.csv"
    assert runner.invoke(app, ["faces", str(sample("single_face.jpg")), "-o", str(faces_csv)]).exit_code == 0
    (d / "folder.csv").mkdir()
    for path in [*(d / n for n in cases), faces_csv, d / "folder.csv", d / "missing.csv", d / "notes.txt"]:
        line = one_error_line(runner.invoke(app, ["plot", str(path), "-o", str(tmp_path / "p.png")]))
        assert str(path) in line, line
    assert not (tmp_path / "p.png").exists()
    res = runner.invoke(app, ["plot", str(table), "-o", str(tmp_path / "p.png"), "--face", "7"])
    assert "no successfully analysed face" in one_error_line(res)


# ----------------------------------------------------------------------------------------- bench
def test_bench_refuses_unreadable_videos_and_never_prints_fps(tmp_path):
    video = sample("single_face.mp4").read_bytes()
    (tmp_path / "text.mp4").write_text("not a video")
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "head.mp4").write_bytes(video[:2000])  # a download cut after 2 kB
    (tmp_path / "dir.mp4").mkdir()
    os.mkfifo(tmp_path / "pipe.mp4")
    for path in ["text.mp4", "empty.mp4", "head.mp4", "dir.mp4", "pipe.mp4", "missing.mp4"]:
        res = runner.invoke(app, ["bench", str(tmp_path / path)])
        line = one_error_line(res)
        assert str(tmp_path / path) in line and "fps" not in res.stdout
        assert "Errno" not in line and line.count(str(tmp_path / path)) == 1  # FFmpeg's words, the path once
    line = one_error_line(runner.invoke(app, ["bench", str(sample("single_face.jpg"))]))
    assert "a still image" in line


# ----------------------------------------------------------------------------------------- model files
@pytest.mark.parametrize("damage", ["tampered", "missing", "foreign"])
def test_model_file_problems_are_one_line(damage, tmp_path, monkeypatch):
    import aulib.models as models

    for f in models.MODELS_DIR.iterdir():
        if f.is_file():
            (tmp_path / f.name).symlink_to(f)
    target = tmp_path / "au_svm.npz"
    target.unlink()
    if damage == "tampered":
        data = bytearray((models.MODELS_DIR / "au_svm.npz").read_bytes())
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "foreign":
        target.write_bytes((models.MODELS_DIR / "emotion_cnn.onnx").read_bytes()[:100_000])
    monkeypatch.setattr(models, "MODELS_DIR", tmp_path)
    for args in (["analyze", str(sample("single_face.jpg"))], ["demo"]):
        line = one_error_line(runner.invoke(app, args))
        assert str(target) in line
        assert ("not found" if damage == "missing" else "manifest says") in line


def test_unexpected_errors_are_one_line_with_a_hint_unless_debugging(monkeypatch, table, tmp_path):
    import aulib.plot

    def broken(*a, **k):
        raise TypeError("boom\nsecond line")

    monkeypatch.setattr(aulib.plot, "plot_table", broken)
    line = one_error_line(runner.invoke(app, ["plot", str(table), "-o", str(tmp_path / "p.png")]), code=1)
    assert "unexpected TypeError: boom second line" in line and "AULIB_DEBUG=1" in line
    monkeypatch.setenv("AULIB_DEBUG", "1")
    res = runner.invoke(app, ["plot", str(table), "-o", str(tmp_path / "p.png")])
    assert isinstance(res.exception, TypeError)


# ----------------------------------------------------------------------------------------- real processes
def test_errors_through_a_real_process(tmp_path):
    odd = tmp_path / "odd [name].csv"
    odd.write_bytes(b"\x00\xff garbage \x00")
    (tmp_path / "clip.mp4").write_text("hello")
    cases = [
        (["plot", str(odd), "-o", str(tmp_path / "p.png")], str(odd)),
        (["bench", str(tmp_path / "clip.mp4")], str(tmp_path / "clip.mp4")),
        (["faces", str(sample("single_face.jpg")), "--detector", "nope"], "--detector"),
        (["analyze", "--every", "0", str(sample("single_face.jpg"))], "--every"),
    ]
    for args, says in cases:
        res = subprocess.run([sys.executable, "-m", "aulib.cli", *args], capture_output=True, text=True, timeout=120)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), res.stderr
        assert says in lines[0] and "fps" not in res.stdout
    env = {**os.environ, "AULIB_DEBUG": "1"}
    res = subprocess.run([sys.executable, "-m", "aulib.cli", "plot", str(odd), "-o", str(tmp_path / "p.png")],
                         capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode != 0 and "Traceback" in res.stderr  # the debugging escape hatch


def test_a_fast_no_face_image_exits_cleanly(tmp_path):
    """Regression: a tiny or blank image is done before the image ensemble's second network has
    loaded in its background thread; the process used to abort at exit inside onnxruntime
    ("terminate called without an active exception", exit 134) after writing its row."""
    Image.new("RGB", (5, 5), (90, 60, 40)).save(tmp_path / "tiny.png")
    Image.new("RGBA", (640, 2), (0, 0, 0, 0)).save(tmp_path / "strip.png")
    for name in ("tiny.png", "strip.png", "tiny.png"):
        out = tmp_path / f"{name}.csv"
        res = subprocess.run([sys.executable, "-m", "aulib.cli", "analyze", str(tmp_path / name), "-o", str(out)],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0 and "terminate" not in res.stderr, res.stderr
        row = pd.read_csv(out).iloc[0]
        assert row["success"] == 0 and row["error"] == "no face detected"


@pytest.mark.slow
def test_ctrl_c_during_a_batch_never_aborts(tmp_path):
    """Ctrl-C about a second into a photo + two videos aborted the process about once in 8 (SIGABRT,
    "terminate called without an active exception": native state torn down under a helper thread)."""
    inputs = [str(sample("multi_face.jpg")), str(sample("single_face.mp4")), str(sample("no_face.mp4"))]
    for k in range(8):
        out = tmp_path / f"all{k}.csv"
        proc = subprocess.Popen([sys.executable, "-m", "aulib.cli", "analyze", *inputs, "-o", str(out)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        meta = out.with_name(out.name + ".meta.json")
        deadline = time.monotonic() + 60
        while not meta.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.15 + 0.05 * k)
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[1]
        assert proc.returncode in (0, 130) and "terminate" not in rest and "Fatal" not in rest, (k, rest[-800:])


@pytest.mark.parametrize("sig,code,said", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated"),
                                            (signal.SIGHUP, 129, "terminated")])  # the terminal or ssh closed
def test_ctrl_c_on_a_video_stops_cleanly_and_resume_finishes(tmp_path, sig, code, said):
    """Ctrl-C (or SIGTERM: ``kill``, ``timeout``, a job scheduler) in the middle of a video: one line, exit 130
    (143), no abort from a model or decoder thread still inside native code, the table's last row saying the
    video was cut short; ``--resume`` then completes the table. The program leaves without closing files
    (os._exit), and that row sat in the file's buffer: lost. SIGTERM ended the process on the spot (no word,
    the lock file left; so did SIGHUP, no word, exit 129)."""
    out = tmp_path / "v.csv"
    cmd = [sys.executable, "-m", "aulib", "analyze", str(sample("WolfgangLanger_Pexels.mp4")), "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out.exists() and out.stat().st_size) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # the first rows are on disk: into the video (≈ 4 s of work on 2 cores)
    proc.send_signal(sig)
    rest = proc.communicate(timeout=60)[1]
    assert proc.returncode == code, rest
    assert said in rest and "--resume" in rest and "terminate called" not in rest and "Traceback" not in rest
    cut = pd.read_csv(out)
    assert cut.success.iloc[-1] == 0 and "analysis interrupted" in cut.error.iloc[-1], cut.tail(2)
    assert not out.with_name(out.name + ".lock").exists()
    res = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert len(pd.read_csv(out)) == 472


def test_a_video_analysed_in_a_worker_thread_after_the_main_thread_returned_is_complete():
    """The helper threads stop at interpreter exit, not when the main thread ends: a script whose main
    thread starts a (non-daemon) worker analysing a video and returns gets every frame, and exits 0."""
    script = (
        "import threading, aulib, pandas\n"  # a worker cannot import pandas once the main thread has ended
        "def job():\n"
        f"    df = aulib.Analyzer().analyze({str(sample('single_face.mp4'))!r})\n"
        "    print('rows', len(df), int(df['success'].sum()), flush=True)\n"
        "threading.Thread(target=job).start()\n"
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "terminate" not in res.stderr, res.stderr
    assert res.stdout.split() == ["rows", "72", "72"], res.stdout + res.stderr


_WORKER = """
import os, signal, sys, threading, time
import aulib
a = aulib.Analyzer()
what, mode = sys.argv[1], sys.argv[2]
def work():
    for _ in range(1 if mode == "returns" else 100):
        df = a.analyze(what)
    print("rows", len(df), flush=True)
th = threading.Thread(target=work, daemon=mode == "daemon")
th.start()
if mode == "ctrl-c":  # the user presses Ctrl-C while the main thread waits for its worker
    threading.Timer(1.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    th.join()
else:
    time.sleep(1.0)
"""


_LATE_WORKER = """
import sys, threading, time
import aulib
a = aulib.Analyzer(emotion_model="none")
def work():
    while threading.main_thread().is_alive():  # begin only once the main thread has returned
        time.sleep(0.01)
    df = a.analyze(sys.argv[1])  # imports pandas now, as a slow import on a busy machine would end now
    print("rows", len(df), flush=True)
threading.Thread(target=work).start()
"""


def test_a_thread_that_starts_its_analysis_as_the_program_ends_still_gets_its_table():
    """On a busy machine (CI at load 10) a worker was still inside ``import pandas`` when the main thread
    returned: pandas' readers import concurrent.futures.thread, whose exit hook Python then refuses, and the
    worker lost its table to "can't register atexit after shutdown". The analyzer makes that import."""
    res = subprocess.run([sys.executable, "-c", _LATE_WORKER, str(sample("single_face.jpg"))], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.split() == ["rows", "1"], res.stderr[-800:]


@pytest.mark.parametrize("what,mode,code", [
    ("multi_face.jpg", "ctrl-c", 130), ("WolfgangLanger_Pexels.mp4", "ctrl-c", 130),
    ("WolfgangLanger_Pexels.mp4", "daemon", 0), ("WolfgangLanger_Pexels.mp4", "returns", 0)])
def test_a_users_threads_inside_an_analysis_when_python_exits(what, mode, code):
    """The face stage runs onnxruntime in the caller's thread, and Python does not wait for every thread:
    Ctrl-C while the main thread joined a worker (Python then counts the worker as finished) and the
    end of a program whose daemon thread was analysing aborted with SIGABRT ("terminate called without
    an active exception"); with a video, Ctrl-C could also be lost to a decoder thread and the program
    ran on. A worker whose video was still being analysed when the main thread returned lost its table
    to "can't register atexit after shutdown" (pandas imported at the end)."""
    for _ in range(2):
        res = subprocess.run([sys.executable, "-c", _WORKER, str(sample(what)), mode], capture_output=True,
                             text=True, timeout=120)
        # an uncaught KeyboardInterrupt ends Python by SIGINT: the shell's 130, -2 for subprocess
        assert res.returncode in ((130, -2) if code == 130 else (code,)), res.stderr[-800:]
        assert "terminate" not in res.stderr, res.stderr[-800:]
        if mode == "returns":
            assert res.stdout.split() == ["rows", "472"] and not res.stderr, res.stderr[-800:]


# ----------------------------------------------------------------------------------------- cropped mode
def test_cropped_mode_says_no_face_for_non_faces(tmp_path, ckplus):
    Image.new("RGB", (48, 48), (128, 128, 128)).save(tmp_path / "blank.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8)).save(tmp_path / "noise.png")
    Image.new("L", (1, 1)).save(tmp_path / "dot.png")
    files = [tmp_path / "blank.png", tmp_path / "noise.png", tmp_path / "dot.png",
             sample("free-mountain-vector-01.jpg"), ckplus.image_paths()[0]]
    out = tmp_path / "c.csv"
    res = runner.invoke(app, ["faces", "--cropped", *map(str, files), "-o", str(out)])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out)
    assert df.success.tolist() == [0, 0, 0, 0, 1]
    assert df.error.iloc[:4].str.contains("no face in the cropped image|image too small").all()


# ----------------------------------------------------------------------------------------- files in a batch
def _bad_files(d: Path) -> dict[str, bool]:
    """Every kind of awkward file, with whether it must be read (True) or refused with a row (False)."""
    face = Image.open(sample("single_face.jpg")).convert("RGB")
    rng = np.random.default_rng(0)
    face.convert("L").save(d / "gray.png")
    face.convert("RGBA").save(d / "rgba.png")
    face.convert("CMYK").save(d / "cmyk.jpg")
    arr12 = (np.asarray(face.convert("L")).astype(np.uint16) * 16)  # 12-bit data in a 16-bit PNG
    Image.fromarray(arr12).save(d / "gray12.png")
    frames = [face, face.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    frames[0].save(d / "anim.gif", save_all=True, append_images=frames[1:])
    face.save(d / "png_named.jpg", format="PNG")
    Image.new("RGB", (1, 1)).save(d / "tiny.png")
    jpg = sample("single_face.jpg").read_bytes()
    (d / "cut.jpg").write_bytes(jpg[: len(jpg) // 2])
    face.save(d / "full.png")
    png = (d / "full.png").read_bytes()
    (d / "cut.png").write_bytes(png[: len(png) // 2])
    (d / "empty.jpg").write_bytes(b"")
    (d / "text.jpg").write_text("hello, I am not an image")
    (d / "garbage.png").write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    (d / "video.jpg").write_bytes(sample("no_face.mp4").read_bytes())
    (d / "dir.jpg").mkdir()
    os.mkfifo(d / "pipe.jpg")
    (d / "broken.jpg").symlink_to(d / "moved-away.jpg")  # a link whose target is gone
    from .test_io import _png_of_zeros

    _png_of_zeros(d / "bomb.png", 20000, 20000)
    ok = {"gray.png", "rgba.png", "cmyk.jpg", "gray12.png", "anim.gif", "png_named.jpg", "tiny.png", "full.png"}
    return {p.name: p.name in ok for p in sorted(d.iterdir())}


def test_every_awkward_file_gives_a_result_or_a_clear_row(analyzer, tmp_path):
    expect = _bad_files(tmp_path)
    from aulib.analyzer import MultiFrameImageWarning

    for name, readable in expect.items():
        if name == "anim.gif":  # its first frame is analysed, and the API says the rest was not
            with pytest.warns(MultiFrameImageWarning, match="only the first was analysed"):
                rows = pd.concat(list(analyzer.iter_tables(tmp_path / name))).to_dict("records")
        else:
            rows = pd.concat(list(analyzer.iter_tables(tmp_path / name))).to_dict("records")
        if readable:
            assert "error" not in rows[0] or not rows[0]["error"].startswith(str(tmp_path / name)), rows[0]["error"]
            if name not in ("tiny.png",):
                assert rows[0]["success"] == 1, (name, rows[0]["error"])
        else:
            assert rows[0]["success"] == 0 and rows[0]["error"].startswith(str(tmp_path / name)), (name, rows[0])


def test_a_folder_of_awkward_files_gives_each_one_a_row(analyzer, tmp_path):
    """Listing a folder keeps links even when broken (a row says so; it used to vanish, leaving the
    table one input short without a word); only the FIFO is skipped, never opened."""
    from aulib.io import expand_inputs

    expect = _bad_files(tmp_path)
    listed = {p.name for p in expand_inputs([tmp_path])}
    assert listed == set(expect) - {"pipe.jpg", "dir.jpg"}
    rows = analyzer.analyze(tmp_path / "broken.jpg")
    assert rows.success.tolist() == [0]
    assert rows.error.iat[0].startswith(f"{tmp_path / 'broken.jpg'}: a broken symbolic link")


def test_faces_command_on_a_batch_of_awkward_files(tmp_path):
    expect = _bad_files(tmp_path)
    # bomb.png: its memory bound is tested in test_io; dir.jpg: a folder argument is expanded (here: empty)
    names = [n for n in expect if n not in ("bomb.png", "dir.jpg")]
    out = tmp_path / "out.json"
    res = runner.invoke(app, ["faces", *(str(tmp_path / n) for n in names), "-o", str(out)])
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output
    df = pd.read_json(out, lines=True)
    for name in names:
        row = df[df.input == str(tmp_path / name)].iloc[0]
        assert bool(row.success) == (expect[name] and name != "tiny.png"), (name, row.error)
        if not expect[name]:
            assert row.error.startswith(str(tmp_path / name))


# ----------------------------------------------------------------------------------------- property test
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

DTYPES = [np.uint8, np.uint16, np.int32, np.float32, np.float64, np.bool_]
SHAPES = st.one_of(
    st.tuples(st.integers(0, 80), st.integers(0, 80)),
    st.tuples(st.integers(0, 80), st.integers(0, 80), st.integers(0, 5)),
    st.sampled_from([(1, 1), (1, 1, 3), (0, 0, 3), (7,), (2, 2, 2, 3), (), (1, 400, 3), (400, 1)]),
)


@st.composite
def image_arrays(draw) -> np.ndarray:
    """Arrays a user might hand over: any listed dtype and shape; values zero, constant, full-range noise,
    0–255, 0–1, 12-bit, or a real face scaled to the dtype's range; NaN/inf sprinkled into floats."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    mode = draw(st.sampled_from(["zeros", "const", "noise", "byte", "unit", "12bit", "face"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if mode == "face":
        img = np.asarray(Image.open(sample("single_face.jpg")).convert("RGB").resize((160, 120)), np.float64)
        shape = draw(st.sampled_from([(120, 160, 3), (120, 160)]))
        img = img if len(shape) == 3 else img.mean(axis=2)
        scale = {"uint16": 4095 / 255, "int32": 1.0, "float32": 1 / 255, "float64": 1.0}.get(dtype.name, 1.0)
        a = img * scale
    else:
        shape = draw(SHAPES)
        hi = {"zeros": 0.0, "const": 200.0, "noise": 1e9, "byte": 255.0, "unit": 1.0, "12bit": 4095.0}[mode]
        a = rng.uniform(0, hi, shape) if mode not in ("zeros", "const") else np.full(shape, hi)
        if mode == "noise" and dtype.kind in "ui":
            info = np.iinfo(dtype)
            a = rng.integers(info.min, info.max, shape, dtype=np.int64, endpoint=True)
    if dtype.kind == "b":
        return np.asarray(a, dtype=np.float64) > 0.5 * max(float(np.max(a, initial=0)), 1e-9)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return np.clip(np.asarray(a, np.float64), info.min, info.max).astype(dtype)
    a = np.asarray(a, dtype)
    if a.size and draw(st.booleans()):
        flat = a.reshape(-1)
        idx = rng.integers(0, flat.size, max(1, flat.size // 10))
        flat[idx] = rng.choice([np.nan, np.inf, -np.inf], idx.size)
    return a


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(image=image_arrays(), order=st.sampled_from(["rgb", "bgr"]))
def test_analyze_frame_returns_a_table_or_a_clear_error(analyzer, image, order):
    try:
        df = analyzer.analyze_frame(image, order=order)
    except ImageReadError as e:
        assert str(e).startswith("array of "), e  # says what was wrong with the array
        event("ImageReadError")
        return
    assert isinstance(df, pd.DataFrame) and len(df) >= 1
    event(f"success={int(df['success'].max())}")
    assert set(df["success"].unique()) <= {0, 1}
    assert ((df["success"] == 1) | (df["error"].str.len() > 0)).all()  # a failure always says why


def test_property_test_data_is_present():
    """The property test draws real faces: make sure the sample it needs is there in CI."""
    assert DATA.exists() or os.environ.get("CI") != "true"


@pytest.mark.parametrize("option", [
    {"every": 0}, {"every": 2.5}, {"every": True}, {"fps": 0}, {"fps": float("nan")}, {"fps": -1.0},
    {"max_frames": 0}, {"max_frames": -5}, {"max_frames": 1.5}, {"detect_every": 0}, {"detect_every": 2.5},
])
def test_video_options_the_cli_would_refuse_are_refused_by_the_api(analyzer, option):
    """The CLI's option types refuse these; through the API a fractional ``every`` silently sampled every
    2.5th frame, ``max_frames=0`` analysed one frame, ``fps=nan`` failed deep inside with "cannot convert
    float NaN to integer" and ``detect_every=0`` became 1. Now: one ValueError naming the option and the
    value, before the file is opened (no decode thread left behind)."""
    import threading

    name = next(iter(option))
    before = threading.active_count()
    with pytest.raises(ValueError, match=rf"^{name} must be .*not {re.escape(repr(option[name]))}"):
        analyzer.analyze(sample("single_face.mp4"), **option)
    assert threading.active_count() == before


def test_video_options_on_images_only_are_named_not_silently_ignored(tmp_path):
    """--calibrate (or --every, --no-smooth …) with no video among the inputs changed nothing and said
    nothing: the user believed the table calibrated."""
    out = tmp_path / "c.csv"
    res = runner.invoke(app, ["analyze", str(sample("single_face.jpg")), "--calibrate", "--no-smooth",
                              "-o", str(out), "--emotion-model", "none"])
    assert res.exit_code == 0 and out.is_file(), res.output
    assert "warning: --calibrate, --no-smooth act on videos only, and no input is a video" in res.stderr
    res = runner.invoke(app, ["analyze", str(sample("single_face.jpg")), str(sample("single_face.mp4")),
                              "--calibrate", "--max-frames", "2", "-o", str(out), "--emotion-model", "none",
                              "--no-tta"])
    assert res.exit_code == 0 and "warning" not in res.stderr, res.output
    # and the other way round: an image-only option with only videos (video frames never use the TTA)
    res = runner.invoke(app, ["analyze", str(sample("single_face.mp4")), "--no-tta", "--max-frames", "2",
                              "-o", str(out), "--emotion-model", "none"])
    assert res.exit_code == 0 and "warning: --no-tta acts on images only" in res.stderr, res.output
    # options that cannot act in the run they were given to
    res = runner.invoke(app, ["analyze", str(sample("single_face.mp4")), "--cropped", "--calibrate-mode", "running",
                              "--format", "json", "--workers", "2", "--retries", "1", "--max-frames", "2",
                              "-o", str(out), "--emotion-model", "none"])
    assert res.exit_code == 0 and out.is_file(), res.output
    assert [ln for ln in res.stderr.splitlines() if ln.startswith("warning")] == [
        "warning: --cropped acts on images only (video frames are searched for faces)",
        "warning: --calibrate-mode acts with --calibrate only",
        "warning: --format is the --per-input tables' format (-o's comes from its name)",
        "warning: --workers acts with --dask only (the local cluster's size)",
        "warning: --retries acts with partitioned output only (-o folder/ or --partitioned)"]
    res = runner.invoke(app, ["bench", str(sample("single_face.mp4")), "--frames", "4", "--pairs", "5",
                              "--emotion-model", "none", "--no-gaze"])
    assert res.exit_code == 0 and "warning: --pairs acts with --openface only" in res.stderr, res.output


# ------------------------------------------------------------------------------- folders and permissions
def _without_override(cmd: list[str]) -> list[str]:
    """``cmd`` run so that file permissions apply to it: as root, without the capabilities that ignore
    them (util-linux's setpriv, on every Debian/Ubuntu); as anyone else, as it is."""
    if os.geteuid() != 0:
        return cmd
    return ["setpriv", "--inh-caps", "-dac_override,-dac_read_search",
            "--bounding-set", "-dac_override,-dac_read_search", "--", *cmd]


def test_unreadable_and_empty_folders_and_linked_folders_each_give_rows(tmp_path_factory):
    """One input that cannot be read does not stop the run (a file under a folder without search
    permission raised PermissionError from the folder walk: no table at all); a sub-folder that cannot
    be listed, and a folder given by name with no image or video, are rows saying so (they vanished
    or were a warning only); a linked folder is scanned (its files were dropped), a link loop ends."""
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="aulib-perm-"))
    try:
        for d in ("shut", "tree/sub", "empty", "real/imgs", "tree2"):
            (root / d).mkdir(parents=True)
        face = sample("single_face.jpg")
        for f in ("good.jpg", "shut/x.jpg", "tree/c.jpg", "tree/sub/b.jpg", "real/imgs/r.jpg"):
            shutil.copy(face, root / f)
        (root / "tree2" / "linked").symlink_to(root / "real" / "imgs", target_is_directory=True)
        (root / "tree2" / "loop").symlink_to(root / "tree2", target_is_directory=True)
        os.chmod(root / "shut", 0)
        os.chmod(root / "tree" / "sub", 0)
        out = root / "o.csv"
        cmd = [sys.executable, "-m", "aulib.cli", "analyze", "good.jpg", "shut/x.jpg", "tree", "empty", "tree2",
               "-o", str(out), "--emotion-model", "none"]
        res = subprocess.run(_without_override(cmd), cwd=root, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
        df = pd.read_csv(out).set_index("input")
        assert df.index.tolist() == ["good.jpg", "shut/x.jpg", "tree/c.jpg", "tree/sub", "empty",
                                     "tree2/linked/r.jpg"]
        assert df.success.tolist() == [1, 0, 1, 0, 0, 1]
        assert "permission denied" in df.error["shut/x.jpg"].lower()
        assert df.error["tree/sub"] == "tree/sub: is a directory that cannot be listed (Permission denied)"
        assert df.error["empty"] == "empty: is a directory with no image or video file in it"
    finally:
        for p in (root / "shut", root / "tree" / "sub"):
            os.chmod(p, 0o755)
        shutil.rmtree(root)


def test_closed_or_full_standard_streams(tmp_path):
    """A report that cannot be shown (stdout closed or full) is an error naming standard output (it was
    lost with exit 0, or "[Errno 28]" named nothing); a stderr that is closed or full loses the messages
    but not the run (a finished run that wrote its table exited 1, "a bug in aulib")."""
    photo = str(sample("single_face.jpg"))
    cli = [sys.executable, "-m", "aulib", "analyze", photo, "--emotion-model", "none"]

    def run(redirect: str, *extra: str) -> subprocess.CompletedProcess:
        """The command with a shell redirection; its exit code goes to tmp_path/rc (fd 3)."""
        line = " ".join(f"'{a}'" for a in (*cli, *extra)) + " " + redirect
        return subprocess.run(["bash", "-c", f"exec 3>{tmp_path}/rc; {line}; echo $? >&3"], capture_output=True,
                              text=True, timeout=300)

    for redirect, says in ((">&-", "standard output: closed"), (">/dev/full", "standard output: No space left")):
        res = run(redirect)
        assert (tmp_path / "rc").read_text().strip() == "2" and res.stderr.strip().startswith(f"error: {says}"), \
            res.stderr
    for redirect in ("2>&-", "2>/dev/full"):
        out = tmp_path / f"t{len(redirect)}.csv"
        run(redirect, "-o", str(out))
        assert (tmp_path / "rc").read_text().strip() == "0" and pd.read_csv(out).success.tolist() == [1]
    # aulib bench prints its figures the same way (they were lost with exit 0)
    cli[3:5] = ["bench", str(sample("single_face.mp4"))]
    res = run(">&-", "--frames", "3")
    assert (tmp_path / "rc").read_text().strip() == "2" and "standard output: closed" in res.stderr, res.stderr


def test_a_deleted_working_folder_and_a_full_disk_for_the_run_metadata_are_named(tmp_path):
    """Both ended with a bare "[Errno …]" naming nothing; a relative input in a deleted working folder
    lost the absolute inputs' rows too, and the metadata's temporary file was left behind."""
    gone, photo = tmp_path / "gone", str(sample("single_face.jpg"))
    gone.mkdir()
    res = subprocess.run(["bash", "-c", f"cd '{gone}' && rmdir '{gone}' && '{sys.executable}' -m aulib analyze x.jpg "
                          f"'{photo}' -o '{tmp_path}/o.csv'"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and res.stderr.strip() == \
        "error: the working folder no longer exists (deleted?): cd into a folder, or give absolute paths"
    out = tmp_path / "m.csv"
    (tmp_path / "m.csv.meta.json.tmp").symlink_to("/dev/full")  # every write to it fails: a full disk
    res = runner.invoke(app, ["analyze", photo, "-o", str(out), "--emotion-model", "none"])
    assert one_error_line(res) == f"error: {out}.meta.json: No space left on device"
    assert not (tmp_path / "m.csv.meta.json.tmp").exists()


def test_resume_refusals_and_failed_runs_say_so_in_one_line(tmp_path):
    """--resume without the table's run metadata mixed two runs' options in one table silently (gaze empty for
    one input, filled for the next); a refused --resume left the progress bar printed after its error line;
    a run where no input could be read exited 2 without any error line; --resume with --overlay drew
    nothing for the inputs it skipped, without a word; the options' difference read "gaze None → False"."""
    one, two = str(sample("single_face.jpg")), str(sample("multi_face.jpg"))
    out = tmp_path / "t.csv"
    cli = [sys.executable, "-m", "aulib", "analyze"]
    assert subprocess.run([*cli, one, "-o", str(out), "--no-gaze"], capture_output=True, timeout=300).returncode == 0
    out.with_name("t.csv.meta.json").unlink()
    res = subprocess.run([*cli, one, two, "-o", str(out), "--resume"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and res.stderr.splitlines() == [
        f"error: {out}: no run metadata (t.csv.meta.json) beside it, so --resume cannot check that the run that "
        "wrote it used these options (restore the file, or run without --resume to redo every input)"]
    out2 = tmp_path / "u.csv"
    assert subprocess.run([*cli, one, two, "-o", str(out2)], capture_output=True, timeout=300).returncode == 0
    res = subprocess.run([*cli, one, two, "-o", str(out2), "--resume", "--no-gaze"], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 2 and res.stderr.splitlines() == [
        f"error: {out2}: --resume with other options than the run that wrote it (gaze True → False): use the same "
        "options or a new output"]
    per = tmp_path / "per"  # --per-input tables in another format: every input was redone, both kinds left
    assert runner.invoke(app, ["analyze", one, "--per-input", str(per), "--format", "json"]).exit_code == 0
    res = runner.invoke(app, ["analyze", one, "--per-input", str(per), "--resume"])
    assert res.exit_code == 2 and "(format 'json' → 'csv')" in res.stderr and not list(per.glob("*.csv"))
    res = runner.invoke(app, ["analyze", one, two, "-o", str(out2), "--resume", "--overlay", str(tmp_path / "ov")])
    assert res.exit_code == 0 and "--overlay: the 2 inputs --resume skipped get no overlay" in res.output
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    for args in (["analyze", str(text), "-o", str(tmp_path / "n.csv")], ["analyze", str(text)],
                 ["faces", str(text), "-o", str(tmp_path / "f.csv")]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and \
            "error: no input could be read (1 input; each row's error column says why)" in res.stderr, res.stderr


def test_a_read_error_that_does_not_name_its_file_is_named_and_counted_failed(tmp_path, monkeypatch):
    """The batch tells a failed input by an error that starts with its name: a reader message without it (a too
    large TIFF said "TIFF: image too large") was counted done, and the run exited 0."""
    import aulib.analyzer

    def unnamed(path):
        raise ImageReadError("TIFF: image too large (15000×15000 = 225 MP)")

    monkeypatch.setattr(aulib.analyzer, "read_image", unnamed)
    img = tmp_path / "big.tif"
    img.write_bytes(b"II*\x00")
    res = CliRunner().invoke(app, ["analyze", str(img), "-o", str(tmp_path / "t.csv")])
    assert res.exit_code == 2 and "0 done, 1 failed" in res.output, res.output
    err = pd.read_csv(tmp_path / "t.csv").error.iloc[0]
    assert err == f"{img}: TIFF: image too large (15000×15000 = 225 MP)"


def test_a_files_contents_given_for_a_path_are_refused_in_one_line():
    """open(photo, "rb").read() was taken for a file name: one row whose error held the 180 kB escaped; a
    bytearray or memoryview raised a TypeError about an int."""
    import aulib

    data = sample("single_face.jpg").read_bytes()
    for x in (data, bytearray(data), memoryview(data), [data]):
        with pytest.raises(TypeError, match=r"^got \d+ bytes of a file's contents .* where a path goes") as e:
            aulib.analyze(x)
        assert len(str(e.value)) < 200
    assert aulib.analyze(os.fsencode(sample("single_face.jpg"))).emotion.tolist() == ["happiness"]  # a bytes path


def test_an_output_that_is_a_folder_is_refused_before_anything_is_written_beside_it(tmp_path):
    out = tmp_path / "t.csv"
    out.mkdir()
    res = CliRunner().invoke(app, ["analyze", str(sample("single_face.jpg")), "-o", str(out)])
    assert res.exit_code == 2 and "is a folder, not a table file" in res.output, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]  # no t.csv.meta.json or lock left there


def test_ctrl_c_while_the_command_line_loads_is_one_line(monkeypatch, capsys):
    """The console script imports its entry point before calling it, and the command line takes ≈ 0.3 s to
    import: a Ctrl-C then printed a Python traceback ending in KeyboardInterrupt (exit −2). The console
    script's module loads it itself and says it in one line, with the shell's 130."""
    import builtins
    import importlib.metadata

    import aulib.console

    (script,) = [e for e in importlib.metadata.distribution("aulib").entry_points if e.name == "aulib"]
    assert script.value == "aulib.console:main"
    real = builtins.__import__

    def interrupted(name, *args, **kwargs):
        if name == "aulib.cli":
            raise KeyboardInterrupt
        return real(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "aulib.cli", raising=False)
    monkeypatch.setattr(builtins, "__import__", interrupted)
    with pytest.raises(SystemExit) as stop:
        aulib.console.main()
    assert stop.value.code == 130 and capsys.readouterr().err == "interrupted\n"


def test_an_interrupt_anywhere_in_a_native_stretch_leaves_other_threads_free():
    """A signal's exception (Ctrl-C, a timeout's SIGALRM) raised in the main thread between taking the native
    stretches' lock and entering its block left the lock held: every other thread (the model thread, the
    decoder, a user's workers) blocked on it for good — a loop interrupting ``analyze(video)`` froze after about
    100 interrupts. The exception is raised here at every trace event of a stretch, one after another."""
    import threading

    from aulib import background

    def stretch() -> None:
        with background.native():
            pass

    main = threading.get_ident()
    k = 1
    while True:
        seen = 0

        def tracer(frame, event, arg, k=k):
            nonlocal seen
            seen += 1
            if seen == k:
                raise KeyboardInterrupt
            return tracer

        sys.settrace(tracer)
        try:
            stretch()
            interrupted = False
        except KeyboardInterrupt:
            interrupted = True
        finally:
            sys.settrace(None)
        if not interrupted:
            break
        other = threading.Thread(target=stretch, daemon=True)
        other.start()
        other.join(5)
        assert not other.is_alive(), f"an interrupt at trace event {k} of a native stretch blocked other threads"
        # nothing left that the exit would wait for (a count of the main thread's own, left when the exception
        # cut the way out short, is none: the exit runs in that thread)
        assert set(background._ACTIVE) <= {main} and not background._others_active(), (k, background._ACTIVE)
        k += 1
    background._ACTIVE.pop(main, None)
    assert k > 5  # the stretch was interrupted at each of its steps
