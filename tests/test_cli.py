"""The ``aulib`` command line on real files: tables, reports, overlays, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from aulib.cli import app

from .conftest import sample
from .test_outputs import flat

runner = CliRunner()


def test_faces_writes_contract_columns_and_overlay(tmp_path):
    out = tmp_path / "faces.csv"
    res = runner.invoke(app, ["faces", str(sample("multi_face.jpg")), str(sample("free-mountain-vector-01.jpg")),
                              "-o", str(out), "--overlay", str(tmp_path / "ov")])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out)
    for c in ["input", "face", "success", "error", "face_x", "face_score", "x_0", "y_67"]:
        assert c in df.columns
    assert (df.success == 1).sum() == 5
    assert df[df.success == 0].error.iloc[0] == "no face detected"
    overlay = np.asarray(Image.open(tmp_path / "ov" / "multi_face_faces.png"))
    original = np.asarray(Image.open(sample("multi_face.jpg")).convert("RGB"))
    assert overlay.shape == original.shape and (overlay != original).any()


def test_faces_on_a_folder_with_mixed_files(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jpg").write_bytes(sample("single_face.jpg").read_bytes())
    (tmp_path / "in" / "empty.png").write_bytes(b"")
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    out = tmp_path / "f.json"
    res = runner.invoke(app, ["faces", str(tmp_path / "in"), "-o", str(out)])
    assert res.exit_code == 0, res.output
    df = pd.read_json(out, lines=True)
    assert len(df) == 2  # the .txt inside a folder is not an input
    assert df.success.tolist() == [1, 0] and "empty file" in df.error.iloc[1]


def test_faces_cropped_mode_parquet(tmp_path, ckplus):
    out = tmp_path / "c.parquet"
    paths = [str(p) for p in ckplus.image_paths()[:3]]
    res = runner.invoke(app, ["faces", *paths, "--cropped", "-o", str(out)])
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(out)
    assert df.success.all() and (df.face_width == 48).all()


def test_analyze_prints_a_readable_report():
    res = runner.invoke(app, ["analyze", str(sample("single_face.jpg")), "--emotion-model", "none"])
    assert res.exit_code == 0, res.output
    assert "AUs present:" in res.output and "AU12" in res.output
    assert "happiness (2 of 2 prototype AUs: AU06+AU12)" in res.output and "AU12 lip corner puller" in res.output


def test_analyze_table_and_bad_inputs_exit_0(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    out = tmp_path / "t.csv"
    res = runner.invoke(app, ["analyze", str(sample("single_face.jpg")), str(bad), "-o", str(out),
                              "--emotion-model", "none"])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out)
    assert df.success.tolist() == [1, 0]
    assert {"AU01_c", "AU27_r", "rule_happiness"} <= set(df.columns)


def test_analyze_exits_2_when_nothing_is_readable(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    res = runner.invoke(app, ["analyze", str(bad), "--emotion-model", "none"])
    assert res.exit_code == 2
    res = runner.invoke(app, ["analyze", str(sample("single_face.jpg")), "-o", str(tmp_path / "x.xlsx")])
    assert res.exit_code == 2 and "unknown output format" in res.output


def test_an_unreachable_url_is_one_error_row_and_the_local_inputs_are_analysed(tmp_path):
    """An ftp:// input whose server refused the connection (FTP connects as its file system is made) stopped the
    whole run while the inputs were listed: exit 2, no table, the local photos beside it unread. It is now an error
    row of its own. A protocol no URL of which can work here is still refused up front, in one line."""
    out = tmp_path / "t.csv"
    url = "ftp://127.0.0.1:9/x.jpg"
    res = runner.invoke(app, ["analyze", str(sample("single_face.jpg")), url, "-o", str(out),
                              "--emotion-model", "none"])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out)
    assert df.input.tolist() == [str(sample("single_face.jpg")), url] and df.success.tolist() == [1, 0]
    assert "Connection refused" in df.error.iloc[1]
    res = runner.invoke(app, ["analyze", str(sample("single_face.jpg")), "nosuchproto://x/y.jpg", "-o", str(out)])
    assert res.exit_code == 2 and "Protocol not known" in res.output and len(res.output.strip().splitlines()) == 1


def test_outputs_that_cannot_be_a_table_file_are_named_for_what_they_are(tmp_path):
    """``-o results`` naming an existing folder said "unknown output format (use .csv …)"; ``-o memory://out/``
    said "wrote 1 row" and the rows vanished as the command ended (fsspec's memory lives in the process)."""
    (tmp_path / "results").mkdir()
    res = runner.invoke(app, ["analyze", str(sample("single_face.jpg")), "-o", str(tmp_path / "results")])
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and "is a folder, not a table file" in text and "end it with /" in text, text
    res = runner.invoke(app, ["analyze", str(sample("single_face.jpg")), "-o", "memory://out/"])
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and "gone when the command ends" in text and "wrote" not in text, text


def test_an_overlay_folder_inside_the_input_folder_is_not_read_back_as_input(tmp_path):
    """``aulib analyze d --overlay d/ov``: run again — or with ``--resume`` after a stop, as the command itself
    advises — it was refused ("the overlay of d/multi_face.jpg would overwrite the input
    d/ov/multi_face_overlay.jpg"), so the run could never be finished. The overlay folder's drawings are not
    inputs; one named on the command line still is."""
    d = tmp_path / "d"
    d.mkdir()
    for name in ("single_face.jpg", "multi_face.jpg"):
        (d / name).write_bytes(sample(name).read_bytes())
    out = tmp_path / "t.csv"
    args = ["analyze", str(d), "--overlay", str(d / "ov"), "-o", str(out), "--emotion-model", "none"]
    assert runner.invoke(app, args).exit_code == 0
    assert sorted(p.name for p in (d / "ov").iterdir()) == ["multi_face_overlay.jpg", "single_face_overlay.jpg"]
    for extra in ([], ["--resume"]):
        res = runner.invoke(app, args + extra)
        text = " ".join(res.output.split())
        assert res.exit_code == 0 and "2 files in the --overlay folder" in text, text
        df = pd.read_csv(out)
        assert sorted(set(df.input)) == [str(d / "multi_face.jpg"), str(d / "single_face.jpg")] and len(df) == 6
    named = d / "ov" / "single_face_overlay.jpg"
    res = runner.invoke(app, ["analyze", str(named), "--overlay", str(d / "ov"), "-o", str(tmp_path / "n.csv"),
                              "--emotion-model", "none"])
    assert res.exit_code == 0 and pd.read_csv(tmp_path / "n.csv").input.tolist() == [str(named)]  # named: kept


def test_malformed_app_and_debug_settings_are_said_not_replaced(monkeypatch):
    """``AULIB_APP_MAX_IMAGE_MB=-1`` became a 1 MB upload limit and ``=50.5`` the default, without a word;
    ``AULIB_DEBUG=true`` was ignored (only ``1`` counted). Both now read as every ``AULIB_*`` setting does."""
    for bad in ("-1", "50.5", "abc"):
        monkeypatch.setenv("AULIB_APP_MAX_IMAGE_MB", bad)
        res = runner.invoke(app, ["app"])
        assert res.exit_code == 2 and "AULIB_APP_MAX_IMAGE_MB" in res.output and "whole number" in res.output
    monkeypatch.delenv("AULIB_APP_MAX_IMAGE_MB")
    monkeypatch.setenv("AULIB_DEBUG", "true")
    res = runner.invoke(app, ["plot", "no such table.csv", "-o", "x.png"])
    assert isinstance(res.exception, ValueError) and "no such file" in str(res.exception)  # raised, not one line
    monkeypatch.setenv("AULIB_DEBUG", "banana")
    res = runner.invoke(app, ["plot", "no such table.csv", "-o", "x.png"])
    assert res.exit_code == 2 and "AULIB_DEBUG='banana'" in res.output and "no such file" in res.output


def test_console_script_is_installed():
    res = subprocess.run([sys.executable, "-m", "aulib.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "analyze" in res.stdout


def test_output_names_that_cannot_be_used_are_refused_in_their_own_words(tmp_path):
    """Before any work, one line naming what was asked for: --per-input naming a file read "…: File exists"
    (mkdir's words); -o under a folder nothing can be created in named the lock file beside it
    ("/proc/out.csv.lock: No such file or directory"); --overlay ov.gif for a video became a folder named
    ov.gif holding the overlay, and ov.qt was analysed, then not written."""
    photo, clip = str(sample("single_face.jpg")), str(sample("single_face.mp4"))
    res = runner.invoke(app, ["analyze", photo, "--per-input", photo])
    assert res.exit_code == 2 and f"{photo}: is a file, not a folder: --per-input" in res.output, res.output
    res = runner.invoke(app, ["analyze", photo, "-o", "/proc/out.csv"])
    assert res.exit_code == 2 and "/proc/out.csv: cannot write this output there" in res.output, res.output
    assert ".lock" not in res.output
    for name in ("ov.gif", "ov.qt", "ov.webm"):
        target = tmp_path / name
        res = runner.invoke(app, ["analyze", clip, "--max-frames", "2", "--overlay", str(target), "-o",
                                  str(tmp_path / "t.csv")])
        assert res.exit_code == 2 and f"aulib cannot write {target.suffix} overlays" in res.output, res.output
        assert not target.exists() and not (tmp_path / "t.csv").exists()
    (tmp_path / "frames.gif").mkdir()  # a folder of that name that exists is a folder
    res = runner.invoke(app, ["analyze", clip, "--max-frames", "2", "--overlay", str(tmp_path / "frames.gif"), "-o",
                              str(tmp_path / "t.csv")])
    assert res.exit_code == 0 and (tmp_path / "frames.gif" / "single_face_overlay.mp4").is_file(), res.output
    # a file where the output's folder goes read "File exists" / "Not a directory"; --format is taken in any case
    copy = tmp_path / "a.jpg"
    copy.write_bytes(Path(photo).read_bytes())
    for out in (copy / "out.csv", copy / "sub" / "out.csv"):
        res = runner.invoke(app, ["analyze", photo, "-o", str(out)])
        assert res.exit_code == 2 and f"{copy}: is a file, so no folder can be made there" in res.output, res.output
    res = runner.invoke(app, ["analyze", photo, "--per-input", str(tmp_path / "per"), "--format", "CSV"])
    assert res.exit_code == 0 and (tmp_path / "per" / "single_face.jpg.csv").is_file(), res.output


def test_the_report_and_help_show_on_a_latin1_terminal():
    """On a Latin-1 or cp1252 terminal the report, ``demo`` and ``--help`` failed: "'latin-1' codec can't encode
    character '\\u2013'", exit 2, nothing shown. Characters the terminal cannot show become "?"."""
    import os

    for args in (["analyze", str(sample("single_face.jpg"))], ["analyze", "--help"]):
        res = subprocess.run([sys.executable, "-m", "aulib", *args], capture_output=True, timeout=120,
                             env={**os.environ, "PYTHONIOENCODING": "latin-1"})
        out = res.stdout.decode("latin-1")
        assert res.returncode == 0, res.stderr.decode("latin-1")
        assert ("happiness" in out) if args[1] != "--help" else ("Usage: aulib analyze" in out)


def test_help_read_by_a_reader_that_stops_early_exits_0_quietly():
    """``aulib --help | head -1`` exited 1 (rich ends the process itself on a closed pipe), so a ``set -o
    pipefail`` script failed where ``aulib demo | head -1`` exits 0. The pipe is closed before anything is
    written, as ``head`` does once it has its line."""
    import os

    for args in (["--help"], ["analyze", "--help"], ["train", "svm", "--help"]):
        read, write = os.pipe()
        os.close(read)
        res = subprocess.run([sys.executable, "-m", "aulib", *args], stdout=write, stderr=subprocess.PIPE,
                             timeout=120)
        os.close(write)
        assert res.returncode == 0, (args, res.returncode, res.stderr)
        assert res.stderr == b"", res.stderr


def test_training_refuses_an_unusable_out_or_reports_folder_before_it_trains(tmp_path):
    """``aulib train svm/svr`` found an --out or --reports folder it could not write only after the whole
    cross-validation had run; ``aulib evaluate`` after the whole evaluation (6 minutes for ``occlusion --limit 5``)."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    data = tmp_path / "data"  # folders of the right names: --data is checked first (a mistyped one made --out)
    for sub in ("ckplus48", "ferplus", "samples"):
        (data / sub).mkdir(parents=True)
    for args, bad in ((["train", "svm", "--out", str(blocker / "models")], blocker / "models"),
                      (["train", "svr", "--reports", str(blocker / "r")], blocker / "r"),
                      (["evaluate", "faces", "--reports", str(blocker / "r")], blocker / "r"),
                      (["evaluate", "occlusion", "--limit", "5", "--reports", str(blocker / "r")], blocker / "r"),
                      (["evaluate", "cnn", "--cache", str(blocker / "c")], blocker / "c")):
        res = runner.invoke(app, [*args, "--data", str(data)])
        assert res.exit_code == 2 and f"{bad}: cannot write there (Not a directory)" in res.output, res.output


def _in_a_terminal(args: list[str], cwd: Path, timeout: float = 180) -> tuple[int | None, str]:
    """Run ``python -m aulib ARGS`` with a pseudo-terminal as its stdin, stdout and stderr (as a user at a
    terminal runs it): its exit code (None when it had not ended after ``timeout`` s: killed) and its output."""
    import os
    import pty
    import select
    import time

    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "100"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "aulib", *args], stdin=slave, stdout=slave, stderr=slave,
                            cwd=cwd, env=env, close_fds=True)
    os.close(slave)
    out = bytearray()
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the terminal closed: the program ended
                    chunk = b""
                if not chunk and proc.poll() is not None:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        code = proc.poll()
        if code is None:
            proc.kill()
        proc.wait()
        return code, out.decode("utf-8", "replace")
    finally:
        os.close(master)


def test_runs_of_several_inputs_in_a_terminal_end_and_write_their_table(tmp_path):
    """In a terminal the progress bar shows, and rich then routes ``sys.stderr`` through the console, whose file
    wrote to ``sys.stderr``: every run of several inputs (and every video's) looped forever at its first line."""
    photos = [str(sample("single_face.jpg")), str(sample("multi_face.jpg")), str(sample("no_face.mp4"))]
    code, out = _in_a_terminal(["analyze", *photos, "-o", "t.csv"], tmp_path)
    assert code == 0, out[-2000:]
    assert "wrote" in out and pd.read_csv(tmp_path / "t.csv").input.nunique() == 3
    code, out = _in_a_terminal(["faces", *photos[:2], "-o", "f.csv"], tmp_path)
    assert code == 0 and (tmp_path / "f.csv").exists(), out[-2000:]


def test_names_with_terminal_controls_are_shown_escaped_on_one_line(tmp_path):
    """A file name holding ESC set the terminal's title and colours when the report named it (``ESC]0;…BEL``
    passes a pipe too), a newline split its report line in two (read as another entry), and a right-to-left
    override reordered what was shown. Names are written with those characters as ``\\uXXXX``, in the report,
    the table (``text_path`` gives the exact name back) and every message."""
    from aulib.table import read_table, text_path

    names = ["ansi\x1b[31mRED\x1b[0m\x1b]0;pwned\x07.jpg", "new\nline.jpg", "x\u202egpj.jpg"]
    for n in names:
        (tmp_path / n).write_bytes(sample("single_face.jpg").read_bytes())
    args = [sys.executable, "-m", "aulib", "analyze", *names]
    res = subprocess.run(args, capture_output=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    for stream in (res.stdout, res.stderr):
        assert not any(c in stream for c in (b"\x1b", b"\x07", "\u202e".encode())), stream
    lines = res.stdout.decode().splitlines()
    assert sum("face 0" in line for line in lines) == 3 and "new\\u000aline.jpg  face 0" in res.stdout.decode()
    res = subprocess.run([*args, "-o", "t\x1b[2J.csv"], capture_output=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0 and b"\x1b" not in res.stderr and b"t\\u001b[2J.csv" in res.stderr, res.stderr
    assert sorted(text_path(n) for n in read_table(tmp_path / "t\x1b[2J.csv").input) == sorted(names)
    res = subprocess.run([sys.executable, "-m", "aulib", "plot", "no\x1b[31m.csv", "-o", "p.png"],
                         capture_output=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 2 and b"\x1b" not in res.stderr and b"no\\u001b[31m.csv" in res.stderr, res.stderr


def test_names_with_emoji_codes_are_shown_as_written(tmp_path):
    """rich turned ``:smile:`` in a message into an emoji: an output folder named ``x:smile:`` was reported as
    ``x😄``, a name the user cannot find. Messages show names as written."""
    photo = tmp_path / "day:smile:1.jpg"
    photo.write_bytes(sample("single_face.jpg").read_bytes())
    (tmp_path / "ro:heart:").mkdir()
    (tmp_path / "ro:heart:" / "t.csv").mkdir()  # a folder where the table would go: refused, naming it
    res = subprocess.run([sys.executable, "-m", "aulib", "analyze", photo.name, "-o", "ro:heart:/t.csv"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 2 and "ro:heart:" in res.stderr and "\u2764" not in res.stderr, res.stderr
    res = subprocess.run([sys.executable, "-m", "aulib", "plot", "no:smile:.csv", "-o", "p.png"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 2 and "no:smile:.csv" in res.stderr and "\U0001f604" not in res.stderr, res.stderr


def test_a_zero_terminal_width_in_the_environment_still_shows_errors(tmp_path):
    """``COLUMNS=0`` made rich lay every message out in no columns: a failed run exited 2 saying nothing."""
    import os

    env = {**os.environ, "COLUMNS": "0", "LINES": "0"}
    for args in (["analyze", "missing.jpg", "-o", "t.csv"], ["analyze", "--bogus"]):
        res = subprocess.run([sys.executable, "-m", "aulib", *args], capture_output=True, text=True, timeout=120,
                             cwd=tmp_path, env=env)
        assert res.returncode == 2 and "error:" in res.stderr, (args, res.stderr)


def test_a_refused_run_in_a_terminal_erases_its_bar_and_shows_the_cursor(tmp_path):
    """A run refused after its progress bar started (--resume with other options, a locked output, an unreachable
    scheduler) left the bar on screen, glued the error to its line and the cursor hidden: the console was
    silenced before rich's stop, which also shows the cursor again."""
    photos = [str(sample("single_face.jpg")), str(sample("multi_face.jpg"))]
    code, _ = _in_a_terminal(["analyze", *photos, "-o", "t.csv", "--emotion-model", "none"], tmp_path)
    assert code == 0
    code, out = _in_a_terminal(["analyze", *photos, "-o", "t.csv", "--emotion-model", "none", "--resume",
                                "--every", "3"], tmp_path)
    assert code == 2 and "--resume with other options" in out, out
    assert out.count("\x1b[?25l") == out.count("\x1b[?25h") >= 1, repr(out)
    import re

    # the bar's line erased, the error written in its place
    assert re.search(r"\x1b\[2K(\x1b\[31m)?error:", out.split("\x1b[?25h")[-1]), repr(out)


def test_a_finished_run_in_a_terminal_ends_with_a_full_bar(tmp_path):
    """--resume never counted the inputs it skipped: a complete run ended at 1/2 (or 0/2)."""
    photos = [str(sample("single_face.jpg")), str(sample("multi_face.jpg"))]
    code, _ = _in_a_terminal(["analyze", photos[0], "-o", "t.csv", "--emotion-model", "none"], tmp_path)
    code, out = _in_a_terminal(["analyze", *photos, "-o", "t.csv", "--emotion-model", "none", "--resume"],
                               tmp_path)
    # the bar's last drawing (each redraw starts with an erased line): a loaded machine draws 1/2 just before it
    final = out.split("\x1b[?25h")[0].split("\x1b[2K")[-1]
    assert code == 0 and "2/2" in final and "1/2" not in final, repr(out)


def test_ctrl_c_suggests_resume_only_where_there_is_an_output(monkeypatch):
    """Ctrl-C in a run without -o or --per-input said "the same command with --resume finishes what is left",
    and that command was refused ("--resume needs -o or --per-input")."""
    import aulib.batch

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(aulib.batch, "run_batch", interrupted)
    photo = str(sample("single_face.jpg"))
    res = runner.invoke(app, ["analyze", photo, "--emotion-model", "none"])
    assert res.exit_code == 130 and "interrupted" in res.output and "--resume" not in res.output, res.output
    res = runner.invoke(app, ["analyze", photo, "--emotion-model", "none", "-o", "never.csv"])
    assert res.exit_code == 130 and "--resume finishes what is left" in res.output, res.output


def test_faces_says_an_animation_was_read_on_its_first_frame(tmp_path):
    """``aulib analyze anim.gif`` warned that only the first of its frames was analysed; ``aulib faces`` said
    nothing."""
    from PIL import Image

    face = Image.open(sample("single_face.jpg"))
    face.save(tmp_path / "anim.gif", save_all=True, append_images=[face.transpose(Image.FLIP_LEFT_RIGHT), face])
    res = runner.invoke(app, ["faces", str(tmp_path / "anim.gif"), "-o", str(tmp_path / "f.csv")])
    assert res.exit_code == 0 and "3 frames or pages; only the first was analysed" in res.output, res.output


def test_a_video_among_several_inputs_counts_its_frames_beside_the_bar(tmp_path):
    """The bar of a run of several inputs counted inputs only: it stood still while a long clip was analysed."""
    inputs = [str(sample("single_face.jpg")), str(sample("single_face.mp4"))]
    code, out = _in_a_terminal(["analyze", *inputs, "-o", "t.csv", "--emotion-model", "none"], tmp_path)
    assert code == 0 and "analyze (video frame 72/72)" in out and "2/2" in out, repr(out[-2000:])


@pytest.mark.parametrize("group", [[], ["train"], ["evaluate"]])
def test_the_command_list_breaks_descriptions_only_where_the_screen_ends(group):
    """``aulib --help`` listed each command's docstring with its source line breaks ("… face box" / "and score,
    x_0..x_67 …" on a 200-column screen, "per-AU mean … (FACS names)," / "emotion timeline" at 80)."""
    import os

    res = subprocess.run([sys.executable, "-m", "aulib", *group, "--help"], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "COLUMNS": "300", "NO_COLOR": "1"})
    assert res.returncode == 0, res.stderr
    listing = res.stdout.split("Commands")[1]
    rows = [line.strip(" │") for line in listing.splitlines()[1:] if line.strip(" │╰─╯")]
    import typer

    command = typer.main.get_command(app)
    for name in group:
        command = command.commands[name]
    names = set(command.commands)
    assert len(rows) == len(names) and {row.split()[0] for row in rows} == names, rows  # one line per command


def test_a_run_logged_to_a_file_says_how_far_it_is(monkeypatch, tmp_path):
    """With stderr a file or a pipe (``nohup aulib analyze … 2> log``) rich draws no bar until the run ends: an
    hours-long batch said nothing in its log. A plain line now comes every few seconds."""
    import aulib.cli

    monkeypatch.setattr(aulib.cli, "_LOG_EVERY", 0.0)
    photos = [str(sample("single_face.jpg")), str(sample("multi_face.jpg"))]
    res = runner.invoke(app, ["analyze", *photos, "--emotion-model", "none", "-o", str(tmp_path / "t.csv")])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert "analyze 1/2 0:00:" in res.output and any(line.startswith("analyze 2/2 0:00:") for line in lines), lines
    res = runner.invoke(app, ["analyze", str(sample("single_face.mp4")), "--emotion-model", "none", "--max-frames",
                              "20", "-o", str(tmp_path / "v.csv")])
    assert res.exit_code == 0 and "analyze 20/20 0:00:" in res.output, res.output


@pytest.mark.parametrize("args", [["--help"], [], ["analyze", "--help"]])
def test_help_that_cannot_be_written_is_one_line_naming_standard_output(args):
    """``aulib --help > /dev/full`` (and a bare ``aulib``) ended in a traceback; ``aulib analyze --help`` said
    "[Errno 28] No space left on device", naming nothing."""
    with open("/dev/full", "w") as full:
        res = subprocess.run([sys.executable, "-m", "aulib", *args], stdout=full, stderr=subprocess.PIPE, text=True,
                             timeout=120)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == ["error: standard output: No space left on device, so the help cannot "
                                               "be shown"]


def test_an_output_that_is_a_named_pipe_is_refused_not_replaced(tmp_path):
    """``-o pipe.csv`` (a FIFO a reader waits on) was replaced by a regular file, and the reader hung."""
    import os

    fifo = tmp_path / "t.csv"
    os.mkfifo(fifo)
    res = runner.invoke(app, ["analyze", str(sample("single_face.jpg")), "-o", str(fifo)])
    assert res.exit_code == 2 and "a named pipe (FIFO), not a regular file" in res.output
    assert fifo.is_fifo()


def test_counts_and_frame_rates_out_of_range_are_refused_up_front(tmp_path):
    """``--fps 1.7e308`` overflowed into a failure row per video; ``faces`` said "wrote 1 rows"."""
    res = runner.invoke(app, ["analyze", str(sample("single_face.mp4")), "--fps", "1.7e308", "-o",
                              str(tmp_path / "t.csv")])
    assert res.exit_code == 2 and "--fps" in res.output and not (tmp_path / "t.csv").exists()
    import aulib

    with pytest.raises(ValueError, match="fps must be at most"):
        aulib.analyze(sample("single_face.mp4"), fps=1.7e308)
    res = runner.invoke(app, ["faces", str(sample("single_face.jpg")), "-o", str(tmp_path / "f.csv")])
    assert res.exit_code == 0 and "wrote 1 row to" in res.output


def test_a_bad_matplotlib_backend_variable_does_not_stop_plot_or_report(tmp_path):
    """``MPLBACKEND=garbage`` failed ``aulib report`` at matplotlib's import with "error: t.csv: Key backend:
    'garbage' is not a valid value" (blaming the table); the program draws without a GUI backend."""
    import os

    table = tmp_path / "t.csv"
    assert runner.invoke(app, ["analyze", str(sample("single_face.jpg")), "-o", str(table)]).exit_code == 0
    env = {**os.environ, "MPLBACKEND": "garbage"}
    res = subprocess.run([sys.executable, "-m", "aulib", "report", str(table), "-o", str(tmp_path / "r.html")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "r.html").stat().st_size > 1000


def test_an_overlay_that_cannot_be_written_is_refused_before_the_run(tmp_path):
    """An --overlay folder that cannot be written was found only after the whole run, which then warned "overlay
    not written" and exited 0 (an -o there is refused before any work, exit 2)."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for overlay in (blocker / "ov", blocker / "ov.png"):
        for command in ("analyze", "faces"):
            res = runner.invoke(app, [command, str(sample("single_face.jpg")), "--overlay", str(overlay)])
            assert res.exit_code == 2 and flat(f"--overlay {overlay}: cannot write there") in flat(res.output), \
                (command, res.output)
