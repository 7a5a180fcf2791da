"""Outputs never lose or corrupt data: torn appends, --resume checks, locks, retries, duplicates,
overlay and per-input names, odd file names, video rows streamed as they are produced."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from aulib.batch import AnalyzerSpec, CombinedSink, run_batch
from aulib.cli import app
from aulib.table import read_table, table_text, text_path
from aulib.video import analyze_video_rows, iter_video_rows

from .conftest import sample

runner = CliRunner()
SPEC = AnalyzerSpec(emotion_model="none")
VIDEO = {"max_frames": 4, "every": 6}
# names that broke something once: CSV NA parsing, rich markup, line-based logs, quoting, bytes
TRICKY = ["NA.jpg", "None", "null", "nan", "a [red]b[x].jpg", "new\nline.jpg", "sep\u2028ar.jpg",
          'q"uo,te.jpg', "back\\slash.jpg", os.fsdecode(b"bad\xff\xfe.jpg"), " lead space.jpg"]


def flat(text: str) -> str:
    """Console output without whitespace (rich wraps long lines at the terminal width)."""
    return "".join(text.split())


def _inputs(tmp_path: Path, names: list[str], src: Path | None = None) -> list[Path]:
    d = tmp_path / "in"
    d.mkdir(exist_ok=True)
    src = src or sample("single_face.jpg")
    files = []
    for n in names:
        shutil.copy(src, d / n)
        files.append(d / n)
    return files


@pytest.mark.parametrize("ext", [".csv", ".parquet", ".json"])
def test_tricky_names_round_trip_and_resume(tmp_path, analyzer, ext):
    files = _inputs(tmp_path, TRICKY[:6] + TRICKY[6:])
    out = tmp_path / f"t{ext}"
    res = run_batch(files, SPEC, out=out, per_input=tmp_path / "per", per_input_format=ext[1:], analyzer=analyzer)
    got = read_table(out)
    names = [table_text(str(p)) for p in files]
    assert got["input"].tolist() == names == res.table["input"].tolist()
    assert [os.fsencode(text_path(n)) for n in got["input"]] == [os.fsencode(p) for p in files]
    assert got["success"].eq(1).all()
    for p in files:  # one table per input, its own name inside
        assert read_table(res_target(tmp_path / "per", p, ext))["input"].tolist() == [table_text(str(p))]
    again = run_batch(files, SPEC, out=out, resume=True, analyzer=analyzer)
    assert again.skipped == names and again.analysed == []
    pd.testing.assert_frame_equal(read_table(out), got)


def res_target(root: Path, p: Path, ext: str) -> Path:
    return root / (p.name + ext)


def test_cli_prints_paths_literally_and_dedupes(tmp_path):
    files = _inputs(tmp_path, ["x [bold]y[x].jpg"])
    out = tmp_path / "o [b].csv"
    res = runner.invoke(app, ["analyze", str(files[0]), str(files[0]), str(files[0].parent), "-o", str(out),
                              "--emotion-model", "none"])
    assert res.exit_code == 0, res.output
    assert flat("o [b].csv") in flat(res.output) and flat("2 inputs given more than once") in flat(res.output)
    assert flat(f"wrote 1 row for 1 input to {out}") in flat(res.output)
    assert read_table(out)["input"].tolist() == [str(files[0])]


def test_resume_refuses_other_options(tmp_path, analyzer):
    files = _inputs(tmp_path, ["a.jpg"])
    out = tmp_path / "t.csv"
    run_batch(files, SPEC, out=out, video_options=VIDEO, analyzer=analyzer)
    before = out.read_bytes()
    with pytest.raises(ValueError, match=r"--resume with other options.*every 6 → 2"):
        run_batch(files, SPEC, out=out, resume=True, video_options={**VIDEO, "every": 2}, analyzer=analyzer)
    assert out.read_bytes() == before
    res = runner.invoke(app, ["analyze", str(files[0]), "-o", str(out), "--resume", "--every", "6",
                              "--max-frames", "4", "--emotion-model", "cnn"])
    assert res.exit_code == 2 and flat("emotion_model 'none' → 'cnn'") in flat(res.output)
    assert "columnsdiffer" in flat(res.output)
    assert out.read_bytes() == before
    # a table without metadata (an older version, or the table copied alone): its options cannot be checked,
    # and equal columns do not mean equal options (--no-gaze leaves the gaze columns empty)
    (tmp_path / "t.csv.meta.json").unlink()
    with pytest.raises(ValueError, match="no run metadata"):
        run_batch(files, AnalyzerSpec(), out=out, resume=True, video_options=VIDEO)


def test_second_writer_is_refused(tmp_path, analyzer):
    files = _inputs(tmp_path, ["a.jpg"])
    out = tmp_path / "t.parquet"
    with open(tmp_path / "t.parquet.lock", "a") as held:  # what a running aulib process holds
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ValueError, match="another aulib process is writing"):
            run_batch(files, SPEC, out=out, analyzer=analyzer)
        res = runner.invoke(app, ["analyze", str(files[0]), "-o", str(out), "--emotion-model", "none"])
        assert res.exit_code == 2 and flat("another aulib process") in flat(res.output)
        assert not out.exists()
    run_batch(files, SPEC, out=out, analyzer=analyzer)  # released: works
    assert len(read_table(out)) == 1
    assert not (tmp_path / "t.parquet.lock").exists()  # and leaves no lock file behind


def test_faces_takes_the_writers_lock_and_drops_an_analyze_runs_metadata(tmp_path, analyzer):
    """`aulib faces -o` ignored the lock of an `analyze -o` writing the same table: it replaced the table with its
    own rows while that run went on, which then said "wrote 72 rows" — both exited 0, the 72 rows were lost. It now
    waits its turn like a second `analyze`, and a table it replaces loses the metadata and progress log of the
    `analyze` run that wrote it (they described that table: `--resume` compared its options with them)."""
    files = _inputs(tmp_path, ["a.jpg"])
    out = tmp_path / "t.csv"
    with open(tmp_path / "t.csv.lock", "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        res = runner.invoke(app, ["faces", str(files[0]), "-o", str(out)])
        assert res.exit_code == 2 and flat("another aulib process") in flat(res.output)
        assert not out.exists()
    run_batch(files, SPEC, out=out, analyzer=analyzer)
    assert (tmp_path / "t.csv.meta.json").exists()
    res = runner.invoke(app, ["faces", str(files[0]), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "t.csv.meta.json").exists() and not (tmp_path / "t.csv.lock").exists()
    assert "AU12_r" not in read_table(out).columns


def test_a_run_into_a_folder_another_run_writes_is_refused_either_way_round(tmp_path, analyzer):
    """Locks were per folder and per file: a run with ``--per-input res/sub`` (or ``-o res/sub/a.jpg.csv``) while
    another wrote ``--per-input res`` went ahead, both said they wrote their rows, and one table replaced the
    other's. Now the later run is refused, whichever of the two started first."""
    files = _inputs(tmp_path, ["a.jpg"])
    res = tmp_path / "res"
    (res / "sub").mkdir(parents=True)

    def held(lock):  # what a running aulib process holds
        f = open(lock, "a")
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return f

    with held(res / ".aulib.lock"):  # another run writes --per-input res
        outputs = ({"per_input": res / "sub"}, {"out": res / "sub" / "t.csv"}, {"out": str(res / "sub" / "p") + "/"})
        for kwargs in outputs:
            with pytest.raises(ValueError, match=r"another aulib process is writing .*res \(lock"):
                run_batch(files, SPEC, analyzer=analyzer, **kwargs)
    other = tmp_path / "sub" / "a.jpg"  # with in/a.jpg: tables res/in/a.jpg.csv and res/sub/a.jpg.csv
    other.parent.mkdir()
    shutil.copy(files[0], other)
    with held(res / "sub" / ".aulib.lock"):  # another run writes --per-input res/sub; this one res
        with pytest.raises(ValueError, match=r"a.jpg.csv: another aulib process is writing .*sub \(lock"):
            run_batch([files[0], other], SPEC, analyzer=analyzer, per_input=res)
    assert not (res / "in").exists()
    run_batch(files, SPEC, analyzer=analyzer, per_input=res / "sub")  # nobody else writing: works


def test_a_lock_file_removed_as_it_was_locked_is_locked_again(tmp_path, monkeypatch):
    """The lock file is removed at the end of a run. A second process that opened it just before could
    then lock the removed file while a third locks a new one: both would write. After locking, the path
    must still name the locked file; if it does not (the run just ended), the new file is locked instead,
    and a path that keeps changing counts as held."""
    from aulib.batch import output_lock

    lock = tmp_path / "t.csv.lock"
    real_flock = fcntl.flock
    replaced: list = []

    def flock_then_replaced(times: int):
        def flock(fd, op):  # the holder ends (removes the file) just as we lock, ``times`` times
            real_flock(fd, op)
            if op & fcntl.LOCK_EX and len(replaced) < times:
                replaced.append(1)
                lock.unlink()
                lock.touch()
        return flock

    monkeypatch.setattr(fcntl, "flock", flock_then_replaced(1))
    with output_lock(lock, tmp_path / "t.csv"):
        assert lock.exists() and replaced == [1]
    assert not lock.exists()
    replaced.clear()
    monkeypatch.setattr(fcntl, "flock", flock_then_replaced(100))
    with pytest.raises(ValueError, match="another aulib process is writing"), output_lock(lock, tmp_path / "t.csv"):
        pass
    monkeypatch.setattr(fcntl, "flock", real_flock)
    with output_lock(lock, tmp_path / "t.csv"):
        assert lock.exists()
    assert not lock.exists()


def _interrupt_after(n: int):
    done = []

    def progress(p):
        done.append(p)
        if len(done) == n:
            raise KeyboardInterrupt

    return progress


@pytest.mark.parametrize("ext", [".csv", ".json"])
def test_any_torn_append_is_dropped_and_redone(tmp_path, analyzer, ext):
    files = _inputs(tmp_path, ["a.jpg", "multi\nline \"q\", name.jpg", "c.jpg"], sample("multi_face.jpg"))
    full = tmp_path / f"full{ext}"
    run_batch(files, SPEC, out=full, analyzer=analyzer)
    reference = read_table(full)
    raw = full.read_bytes()
    out = tmp_path / f"t{ext}"
    with pytest.raises(KeyboardInterrupt):
        run_batch(files, SPEC, out=out, analyzer=analyzer, progress=_interrupt_after(1))
    head = out.read_bytes()
    rest = raw[len(head):]  # what the next two inputs append
    # the second input's name holds a newline inside a quoted field: cut there, mid-line, mid-row
    cuts = sorted({1, rest.index(b"\n") + 1, rest.index(b"line") + 2, len(rest) // 2, len(rest) - 3})
    for cut in cuts:
        out.write_bytes(head + rest[:cut])
        log = out.with_name(out.name + ".done")
        res = run_batch(files, SPEC, out=out, resume=True, analyzer=analyzer)
        assert res.skipped == [str(files[0])] and len(res.analysed) == 2, cut
        pd.testing.assert_frame_equal(read_table(out), reference)
        assert not log.exists()
        # back to the interrupted state for the next cut
        out.write_bytes(head)
        log.write_text(json.dumps({"base": 0}) + "\n" + json.dumps({"input": str(files[0]), "end": len(head)})
                       + "\n" + '{"input": "half a log li', encoding="utf-8")


def test_torn_parquet_part_is_redone(tmp_path, analyzer):
    files = _inputs(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    out = tmp_path / "t.parquet"
    with pytest.raises(KeyboardInterrupt):
        run_batch(files, SPEC, out=out, analyzer=analyzer, progress=_interrupt_after(2))
    parts = sorted((tmp_path / "t.parquet.parts").glob("*.parquet"))
    assert len(parts) == 2 and not out.exists()
    parts[1].write_bytes(parts[1].read_bytes()[:300])  # a part cut short (e.g. a crash before the disk sync)
    res = run_batch(files, SPEC, out=out, resume=True, analyzer=analyzer)
    assert len(res.skipped) == 1 and len(res.analysed) == 2
    df = read_table(out)
    assert df["input"].tolist() == [str(p) for p in files] and df["success"].eq(1).all()


def test_failed_inputs_are_retried_not_faceless_ones(tmp_path, analyzer):
    d = tmp_path / "in"
    files = _inputs(tmp_path, ["face.jpg"])
    broken, empty = d / "broken.jpg", d / "sky.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    shutil.copy(sample("free-mountain-vector-01.jpg"), empty)
    files += [broken, empty]
    for ext in (".csv", ".parquet", ".json"):
        out = tmp_path / f"t{ext}"
        broken.write_bytes(b"\xff\xd8 not a jpeg")
        first = run_batch(files, SPEC, out=out, analyzer=analyzer)
        assert first.failed == [str(broken)]
        shutil.copy(sample("single_face.jpg"), broken)  # fixed in the meantime
        res = run_batch(files, SPEC, out=out, resume=True, analyzer=analyzer)
        assert res.analysed == [str(broken)] and res.skipped == [str(files[0]), str(empty)]
        df = read_table(out)
        assert df["input"].tolist() == [str(p) for p in files]  # input order kept
        assert df["success"].tolist() == [1, 1, 0] and df["error"].iloc[2] == "no face detected"


def test_same_input_twice_is_analysed_once(tmp_path, analyzer):
    files = _inputs(tmp_path, ["a.jpg", "b.jpg"])
    res = run_batch([files[0], files[1], files[0], Path(str(files[0]).replace("/in/", "/in/./"))], SPEC,
                    out=tmp_path / "t.csv", analyzer=analyzer)
    assert res.analysed == [str(files[0]), str(files[1])] and len(res.duplicates) == 2
    assert read_table(tmp_path / "t.csv")["input"].tolist() == [str(files[0]), str(files[1])]


def test_same_names_in_other_folders_get_distinct_outputs(tmp_path, analyzer):
    root = tmp_path / "in"
    for sub in ("x", "y", "a.jpg.csv"):
        (root / sub).mkdir(parents=True)
    files = [root / "x" / "a.jpg", root / "y" / "a.jpg", root / "x" / "a.png", root / "a.jpg",
             root / "a.jpg.csv" / "b.jpg"]  # the last one's folder is the per-input table of root/a.jpg
    for p in files:
        shutil.copy(sample("single_face.jpg"), p)
    ov, per = tmp_path / "ov", tmp_path / "per"
    res = run_batch(files, SPEC, per_input=per, overlay=ov, analyzer=analyzer)
    assert not res.warnings
    overlays = sorted(p.relative_to(ov).as_posix() for p in ov.rglob("*_overlay.*"))
    assert len(overlays) == 5 and "y/a_overlay.jpg" in overlays and "x/a_overlay.png" in overlays, overlays
    tables = sorted(per.rglob("*.csv"))
    tables = [t for t in tables if t.is_file()]
    assert len(tables) == 5
    assert sorted(read_table(t)["input"].iloc[0] for t in tables) == sorted(str(p) for p in files)


def test_unwritable_overlay_keeps_the_rows(tmp_path, analyzer):
    files = _inputs(tmp_path, ["a.jpg"])
    clip = tmp_path / "in" / "clip.mp4"
    shutil.copy(sample("single_face.mp4"), clip)
    blocker = tmp_path / "ov"
    blocker.write_text("a file where the overlay folder should be")
    res = run_batch(files + [clip], SPEC, out=tmp_path / "t.csv", overlay=blocker, video_options=VIDEO,
                    analyzer=analyzer)
    df = read_table(tmp_path / "t.csv")
    assert df["success"].eq(1).all() and len(df) == 5  # 1 image row + 4 video frames
    assert len(res.warnings) == 2 and all("overlay not written" in w for w in res.warnings)
    # a folder holds the image overlay's name: said once (before the analysis), naming it once
    (tmp_path / "ov2" / "a_overlay.jpg").mkdir(parents=True)
    res = run_batch(files, SPEC, out=tmp_path / "t2.csv", overlay=tmp_path / "ov2", analyzer=analyzer)
    target = str(tmp_path / "ov2" / "a_overlay.jpg")
    assert res.warnings == [f"{target}: overlay not written (a folder is in the way)"], res.warnings
    # a single video's overlay file with an extension FFmpeg cannot write: rows kept, warning given
    res = run_batch([clip], SPEC, out=tmp_path / "v.csv", overlay=tmp_path / "o.flv" / "x" / "bad.wmv",
                    video_options=VIDEO, analyzer=analyzer)
    assert len(read_table(tmp_path / "v.csv")) == 4
    # the command line checks the overlay's folder before the run, as it checks -o: refused, nothing analysed
    r = runner.invoke(app, ["analyze", str(files[0]), str(clip), "-o", str(tmp_path / "c.csv"), "--overlay",
                            str(blocker), "--emotion-model", "none", "--every", "6", "--max-frames", "4"])
    assert r.exit_code == 2 and flat(f"--overlay {blocker}: cannot write there") in flat(r.output)
    assert not (tmp_path / "c.csv").exists()


def test_video_rows_come_in_chunks_as_they_are_produced(analyzer):
    path = sample("single_face.mp4")
    # threaded=False: the models run at each batch of 16 faces, so chunk boundaries are deterministic
    raw = list(iter_video_rows(analyzer, path, every=2, chunk_rows=8, threaded=False, smooth=False))
    assert [len(c) for c in raw] == [16, 16, 4]
    # smoothing (on by default) holds each track's last few rows back for its look-ahead window
    # (0.24 s = 3.6 frames at every=2 of 30 fps), then releases them with the next batch or at the end
    chunks = list(iter_video_rows(analyzer, path, every=2, chunk_rows=8, threaded=False))
    sizes = [len(c) for c in chunks]
    assert len(sizes) == 3 and sum(sizes) == 36 and 16 - 4 <= sizes[0] < 16, sizes
    rows = [r for c in chunks for r in c]
    assert [r["frame"] for r in rows] == list(range(0, 72, 2))
    whole = analyze_video_rows(analyzer, path, every=2)
    assert [r["AU12_r"] for r in rows] == [r["AU12_r"] for r in whole]


def test_interrupted_video_keeps_rows_and_is_redone(tmp_path, analyzer, monkeypatch):
    clip = tmp_path / "clip.mp4"
    shutil.copy(sample("single_face.mp4"), clip)
    out = tmp_path / "t.csv"
    import aulib.video as video

    original = video.iter_video_rows

    written: list[int] = []

    def stop_midway(*a, **k):
        for n, chunk in enumerate(original(*a, **{**k, "chunk_rows": 8})):
            written.append(len(chunk))
            yield chunk
            if n == 1:
                raise KeyboardInterrupt

    monkeypatch.setattr(video, "iter_video_rows", stop_midway)
    with pytest.raises(KeyboardInterrupt):
        run_batch([clip], SPEC, out=out, video_options={"every": 2, "threaded": False}, analyzer=analyzer)
    cut = read_table(out)  # both chunks were on disk, and a last row saying the input was interrupted
    assert len(written) == 2 and len(cut) == sum(written) + 1
    assert cut.success.iat[-1] == 0 and "analysis interrupted" in cut.error.iat[-1]
    monkeypatch.setattr(video, "iter_video_rows", original)
    res = run_batch([clip], SPEC, out=out, resume=True, video_options={"every": 2}, analyzer=analyzer)
    assert res.analysed == [str(clip)]
    assert read_table(out)["frame"].tolist() == list(range(0, 72, 2))


def test_combined_sink_starts_fresh_without_resume(tmp_path):
    out = tmp_path / "t.csv"
    out.write_text("old,table\n1,2\n")
    sink = CombinedSink(out, resume=False)
    assert not out.exists() and sink.done == set()


def test_faces_overlays_of_same_named_inputs_are_distinct(tmp_path):
    from aulib.faces_table import faces_table

    files = []
    for sub in ("x", "y"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        files.append(tmp_path / "in" / sub / "face.jpg")
        shutil.copy(sample("single_face.jpg"), files[-1])
    faces_table(files, overlay=tmp_path / "ov")
    assert sorted(p.relative_to(tmp_path / "ov").as_posix() for p in (tmp_path / "ov").rglob("*.png")) == \
        ["x/face_faces.png", "y/face_faces.png"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished table of two photos, with its metadata."""
    d = tmp_path_factory.mktemp("resume")
    (d / "in").mkdir()
    shutil.copy(sample("single_face.jpg"), d / "in" / "a.jpg")
    shutil.copy(sample("multi_face.jpg"), d / "in" / "b.jpg")
    res = runner.invoke(app, ["analyze", str(d / "in"), "-o", str(d / "full.csv"), "--emotion-model", "none"])
    assert res.exit_code == 0, res.output
    return d


@pytest.mark.parametrize("case,says", [
    ("foreign", "the table's columns differ"),
    ("binary", "not a table aulib wrote"),
    ("cut header", "the table's columns differ"),
    ("cut row", "its last row is cut off"),
    ("log base not a number", "not a progress log aulib wrote"),
    ("log without base", "not a progress log aulib wrote"),
    ("meta a list", "unreadable run metadata"),
    ("meta options null", "unreadable run metadata"),
])
def test_resume_refuses_what_it_cannot_trust_and_keeps_the_table(finished_run, tmp_path, case, says):
    """--resume on a table it cannot make sense of: one clear error naming the file, and the file left as
    it was. Before: a cut header had the next rows glued to it and reported success, a log line without
    its "base" cut the table to 50 bytes before failing, and metadata that was JSON but not an object
    gave "unexpected AttributeError … this is a bug"."""
    full = (finished_run / "full.csv").read_bytes()
    out = tmp_path / "o.csv"
    shutil.copy(finished_run / "full.csv.meta.json", tmp_path / "o.csv.meta.json")
    content = {"foreign": b"a,b\n1,2\n", "binary": b"\xff\xfe" + bytes(range(256)) * 8, "cut header": full[:700],
               "cut row": full[:4000]}.get(case, full)
    out.write_bytes(content)
    if case.startswith("log"):
        line = {"base": "x"} if "number" in case else {"input": "x", "end": 50}
        (tmp_path / "o.csv.done").write_text(json.dumps(line) + "\n")
    if case.startswith("meta"):
        (tmp_path / "o.csv.meta.json").write_text("[]" if "list" in case else '{"options": null}')
    res = runner.invoke(app, ["analyze", str(finished_run / "in"), "-o", str(out), "--emotion-model", "none",
                              "--resume"])
    assert res.exit_code == 2 and says in res.output and "bug" not in res.output, res.output
    assert len(res.output.strip().splitlines()[-1]) and out.read_bytes() == content


def test_an_overlay_never_overwrites_an_input(tmp_path):
    """``--overlay clip.mp4`` on clip.mp4 replaced the video by its 3-frame overlay; overlays written into
    the input folder were written over on the next run before being read as inputs."""
    clip = tmp_path / "clip.mp4"
    shutil.copy(sample("single_face.mp4"), clip)
    before = clip.read_bytes()
    res = runner.invoke(app, ["analyze", str(clip), "--max-frames", "3", "--overlay", str(clip),
                              "-o", str(tmp_path / "t.csv")])
    assert res.exit_code == 2 and "would overwrite the input" in res.output and clip.read_bytes() == before
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(sample("single_face.jpg"), photos / "a.jpg")
    assert runner.invoke(app, ["faces", str(photos), "--overlay", str(photos), "-o", str(tmp_path / "f.csv")]
                         ).exit_code == 0
    again = runner.invoke(app, ["faces", str(photos), "--overlay", str(photos), "-o", str(tmp_path / "f.csv")])
    assert again.exit_code == 2 and "a_faces.png: the overlay of" in again.output
    assert "would overwrite the input" in again.output
    # analyze: the refusal comes before any output is opened, so the last good table is still there
    table = tmp_path / "t2.csv"
    args = ["analyze", str(photos / "a.jpg"), "--overlay", str(photos), "-o", str(table), "--emotion-model", "none"]
    assert runner.invoke(app, args).exit_code == 0
    kept = table.read_bytes()
    args[1] = str(photos)  # now a_overlay.jpg is an input, and a.jpg's overlay would be written over it
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "would overwrite the input" in refused.output
    assert table.read_bytes() == kept and not (tmp_path / "t2.csv.done").exists()


def test_an_interrupted_video_closes_its_overlay(tmp_path):
    """Stopping a video analysis that writes an overlay (Ctrl-C, an abandoned generator) left the overlay
    file open and 48 bytes long; now what was written is flushed, and no handle stays open."""
    from aulib import Analyzer

    a = Analyzer(emotion_model="none")
    overlay = tmp_path / "o.mp4"
    chunks = a.iter_tables(sample("WolfgangLanger_Pexels.mp4"), overlay=overlay, chunk_rows=16)
    next(chunks)
    chunks.close()
    held = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")]
    assert str(overlay) not in held and overlay.stat().st_size > 1000


def test_faces_checks_its_table_before_the_work_and_never_leaves_a_cut_one(tmp_path, monkeypatch):
    """``aulib faces -o`` found a folder or unwritable path only after analysing every input, and
    ``-o in.csv`` with an input in.csv replaced that input; a write that fails (a full disk) left an
    empty or cut table under the name. Now: refused up front, and tables are written beside and renamed."""
    from aulib import table as table_module

    photo = tmp_path / "in.csv"  # a photo that happens to be named .csv
    shutil.copy(sample("single_face.jpg"), photo)
    before = photo.read_bytes()
    res = runner.invoke(app, ["faces", str(photo), "-o", str(photo)])
    assert res.exit_code == 2 and "the output table would overwrite the input" in res.output
    assert photo.read_bytes() == before
    res = runner.invoke(app, ["analyze", str(photo), "-o", str(photo), "--emotion-model", "none"])
    assert res.exit_code == 2 and "the output table would overwrite the input" in res.output
    shutil.copy(sample("single_face.jpg"), tmp_path / "in")
    res = runner.invoke(app, ["analyze", str(tmp_path / "in"), str(photo), "--per-input", str(tmp_path)])
    assert res.exit_code == 2 and "in.csv: the table of" in res.output and photo.read_bytes() == before
    (tmp_path / "in").unlink()
    (tmp_path / "dir.csv").mkdir()
    res = runner.invoke(app, ["faces", str(sample("single_face.jpg")), "-o", str(tmp_path / "dir.csv")])
    assert res.exit_code == 2 and "is a directory" in res.output and "faces" not in res.stdout
    good = tmp_path / "t.csv"
    assert runner.invoke(app, ["faces", str(sample("single_face.jpg")), "-o", str(good)]).exit_code == 0
    kept = good.read_bytes()

    def full_disk(self, df):
        raise OSError(28, "No space left on device", str(self.path))

    monkeypatch.setattr(table_module.TableAppender, "append", full_disk)
    with pytest.raises(OSError):
        table_module.write_table(table_module.read_table(good), good)
    assert good.read_bytes() == kept and sorted(p.name for p in tmp_path.iterdir()) == ["dir.csv", "in.csv", "t.csv"]


def test_an_image_overlay_path_is_a_file_for_one_photo(tmp_path):
    """``--overlay x.png`` for one photo made a folder named x.png (an .mp4 path was already honoured for
    one video); for several inputs it is refused before any work (the whole run was analysed, then a warning said
    no overlay was written), and it never overwrites the input."""
    photo = str(sample("single_face.jpg"))
    res = runner.invoke(app, ["analyze", photo, "-o", str(tmp_path / "a.csv"), "--overlay", str(tmp_path / "o.png"),
                              "--emotion-model", "none"])
    assert res.exit_code == 0 and (tmp_path / "o.png").is_file(), res.output
    from PIL import Image

    assert Image.open(tmp_path / "o.png").size == Image.open(photo).size
    res = runner.invoke(app, ["faces", photo, "--overlay", str(tmp_path / "f.jpg"), "-o", str(tmp_path / "f.csv")])
    assert res.exit_code == 0 and (tmp_path / "f.jpg").is_file(), res.output
    res = runner.invoke(app, ["analyze", photo, str(sample("multi_face.jpg")), "-o", str(tmp_path / "b.csv"),
                              "--overlay", str(tmp_path / "two.png"), "--emotion-model", "none"])
    assert res.exit_code == 2 and "error: " in res.output
    assert "an image overlay file is only for a single image input" in res.output
    assert not (tmp_path / "two.png").exists() and not (tmp_path / "b.csv").exists()
    res = runner.invoke(app, ["faces", photo, str(sample("multi_face.jpg")), "--overlay", str(tmp_path / "two.png")])
    assert res.exit_code == 2 and "an image overlay file is only for a single image input" in res.output
    copy = tmp_path / "in.jpg"
    shutil.copy(photo, copy)
    res = runner.invoke(app, ["analyze", str(copy), "-o", str(tmp_path / "c.csv"), "--overlay", str(copy)])
    assert res.exit_code == 2 and "would overwrite the input" in res.output


def test_rows_without_a_face_have_confidence_zero(analyzer, tmp_path):
    """A faceless or unreadable input's row had an empty confidence, a refused fit 0 (OpenFace writes 0)."""
    from .conftest import sample

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    df = analyzer.analyze([sample("free-mountain-vector-01.jpg"), bad, sample("single_face.jpg")])
    assert df["success"].tolist() == [0, 0, 1]
    assert df["confidence"].tolist()[:2] == [0.0, 0.0] and df["confidence"].iat[2] > 0.8


def test_an_overlay_of_a_one_pixel_wide_video_is_refused_in_words(tmp_path):
    """yuv420p wants even sizes, so a 1-pixel row or column leaves nothing to write: the warning read
    "overlay not written (IndexError: tuple index out of range)"."""
    from fractions import Fraction

    import numpy as np

    from aulib.video.overlay import OverlayWriter

    writer = OverlayWriter(tmp_path / "ov.mp4", Fraction(25))
    writer.write(np.zeros((1, 64, 3), np.uint8), [], 0.0)
    writer.close()
    assert writer.error == f"{tmp_path / 'ov.mp4'}: overlay not written (ValueError: frames of 64×1 px are too small " \
                           "for an overlay video)"
    assert not (tmp_path / "ov.mp4").exists()


def test_a_high_speed_clips_overlay_keeps_its_timing(tmp_path):
    """Overlay frames were timed in milliseconds: a 2000 fps clip's frames, 0.5 ms apart, were pushed a tick
    apart each and the overlay ran at half speed."""
    from fractions import Fraction

    import av
    import numpy as np

    from aulib.video.overlay import OverlayWriter

    writer = OverlayWriter(tmp_path / "ov.mp4", Fraction(2000))
    for k in range(20):
        writer.write(np.full((48, 64, 3), 10 * k, np.uint8), [], k / 2000)
    writer.close()
    assert writer.error == ""
    with av.open(str(tmp_path / "ov.mp4")) as c:
        times = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    np.testing.assert_allclose(np.array(times) - times[0], [k / 2000 for k in range(20)], atol=1e-4)
