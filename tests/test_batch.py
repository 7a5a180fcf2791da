"""Many inputs: folders, combined and per-input tables, keeping finished work, --resume, Dask."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from aulib.batch import AnalyzerSpec, run_batch
from aulib.cli import app
from aulib.io import expand_inputs
from aulib.table import read_table

from .conftest import input_tree, sample

runner = CliRunner()
SPEC = AnalyzerSpec(emotion_model="none")
VIDEO = {"max_frames": 4, "every": 6}


@pytest.fixture()
def folder(tmp_path):
    """in/a.jpg, in/b/multi.jpg, in/b/broken.png (unreadable), in/c/clip.mp4."""
    return input_tree(tmp_path / "in")


def test_cli_folder_combined_per_input_and_resume(folder, tmp_path):
    out, per = tmp_path / "all.csv", tmp_path / "per"
    args = ["analyze", str(folder), "-o", str(out), "--per-input", str(per), "--emotion-model", "none",
            "--every", "6", "--max-frames", "4"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    df = read_table(out)
    files = [str(p) for p in expand_inputs([folder])]
    assert list(dict.fromkeys(df["input"])) == files  # sorted, recursive, all inputs
    assert (df["input"] == files[-1]).sum() == 4  # the clip: 4 analysed frames
    assert df.loc[df.input.str.endswith("broken.png"), "success"].eq(0).all()
    assert sorted(p.relative_to(per).as_posix() for p in per.rglob("*.csv")) == \
        ["a.jpg.csv", "b/broken.png.csv", "b/multi.jpg.csv", "c/clip.mp4.csv"]
    pd.testing.assert_frame_equal(read_table(per / "b" / "multi.jpg.csv"),
                                  df[df.input.str.endswith("multi.jpg")].reset_index(drop=True), check_dtype=False)
    res = runner.invoke(app, args + ["--resume"])
    # the unreadable input is retried, the others are kept; same table, same order
    assert res.exit_code == 0 and "skipped 3" in res.output and "for 1 input to" in res.output, res.output
    pd.testing.assert_frame_equal(read_table(out), df)


def test_interrupted_run_keeps_finished_inputs_and_resumes(folder, tmp_path, analyzer):
    files = expand_inputs([folder])
    for out in (tmp_path / "t.csv", tmp_path / "t.parquet", tmp_path / "t.json"):
        done = []

        def stop_after_two(p, done=done):
            done.append(p)
            if len(done) == 2:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            run_batch(files, SPEC, out=out, video_options=VIDEO, progress=stop_after_two, analyzer=analyzer)
        if out.suffix != ".parquet":  # appended as it went
            assert list(dict.fromkeys(read_table(out)["input"])) == [str(p) for p in files[:2]]
        res = run_batch(files, SPEC, out=out, resume=True, video_options=VIDEO, analyzer=analyzer)
        # files[1] is the unreadable one: retried with the two that were not reached
        assert res.skipped == [str(files[0])] and len(res.analysed) == 3
        full = run_batch(files, SPEC, video_options=VIDEO, analyzer=analyzer).table
        got = read_table(out)
        assert got["input"].tolist() == full["input"].tolist()
        pd.testing.assert_series_equal(got["AU12_r"], full["AU12_r"], check_exact=False, rtol=1e-6)


def test_a_dask_run_stopped_while_its_workers_run_marks_the_input_in_hand(folder, tmp_path, analyzer, monkeypatch):
    """SIGTERM while the Dask workers analysed: the table held the finished inputs and no word of the ones cut
    short, though a serial run ends the input in hand with a row saying so. The input the table waits for now
    gets that row; --resume analyses it and the rest."""
    import aulib.batch as batch

    files = expand_inputs([folder])

    def stopped_after_the_first(todo, spec, video_options, overlays, conn, columns, warn):
        yield 0, list(analyzer.iter_rows(todo[0]))
        raise KeyboardInterrupt  # waiting for the second input's rows

    monkeypatch.setattr(batch, "_dask_connect", lambda *a, **k: (None, None))
    monkeypatch.setattr(batch, "_with_dask", stopped_after_the_first)
    out = tmp_path / "t.csv"
    with pytest.raises(KeyboardInterrupt):
        run_batch(files, SPEC, out=out, dask=True, video_options=VIDEO, analyzer=analyzer)
    df = read_table(out)
    assert list(dict.fromkeys(df["input"])) == [str(p) for p in files[:2]]
    last = df.iloc[-1]
    assert last["input"] == str(files[1]) and last["success"] == 0
    assert "analysis interrupted before any of its rows were written" in last["error"]
    monkeypatch.undo()
    res = run_batch(files, SPEC, out=out, resume=True, video_options=VIDEO, analyzer=analyzer)
    assert res.skipped == [str(files[0])] and len(res.analysed) == len(files) - 1


@pytest.mark.parametrize("before_any_row", [False, True])
def test_a_video_interrupted_ends_with_a_row_saying_so(folder, tmp_path, analyzer, monkeypatch, before_any_row):
    """Ctrl-C in the middle of a video: a CSV/JSON table kept the frames done so far, all success=1, and nothing
    (pandas, aulib plot, aulib report: "266 frames analysed") told them from the whole clip. The input now ends
    with a success=0 row saying it was interrupted; --resume drops it with the partial rows and redoes it. A smoothed
    video's first rows come seconds in: Ctrl-C or SIGTERM before them left the table without the input (or, for a
    video alone, no table at all) and pandas read one input fewer without a word: it gets that row too. The row
    takes the frame after the last one analysed (it repeated that frame's ``(input, frame, face)`` key). A Parquet
    table (written whole at the end) and a --per-input table (a hidden part file until finished) were not there at
    all after a stop — a job killed at its time limit left no results: both are written with that row."""
    import aulib.batch as batch

    files = [p for p in expand_inputs([folder]) if str(p).endswith((".mp4", "a.jpg"))]
    clip = str(files[-1])
    assert len(files) == 2 and clip.endswith(".mp4")
    real = batch.iter_input

    def stops_in_the_video(analyzer, path, *a, **k):
        if str(path) != clip:
            yield from real(analyzer, path, *a, **k)
            return
        if not before_any_row:
            yield next(iter(real(analyzer, path, *a, **k)))
        raise KeyboardInterrupt

    options = {**VIDEO, "chunk_rows": 1}
    per_input = tmp_path / "per"
    for out in (tmp_path / "t.csv", tmp_path / "t.json", tmp_path / "t.parquet", None):
        monkeypatch.setattr(batch, "iter_input", stops_in_the_video)
        kind = {"out": out} if out is not None else {"per_input": per_input}
        with pytest.raises(KeyboardInterrupt):
            run_batch(files, SPEC, **kind, video_options=options, analyzer=analyzer)
        monkeypatch.setattr(batch, "iter_input", real)
        tables = [out] if out is not None else sorted(per_input.rglob("*.csv"))
        assert len(tables) == (1 if out is not None else 2), tables
        cut = pd.concat([read_table(t) for t in tables], ignore_index=True)
        assert sorted(dict.fromkeys(cut["input"])) == sorted(str(p) for p in files)
        video = cut[cut["input"] == clip]
        assert video.success.tolist() == [1] * (len(video) - 1) + [0]
        said = "before any of its rows were written" if before_any_row else f"after {len(video) - 1} row(s)"
        assert f"analysis interrupted {said}" in video.error.iloc[-1] and "--resume" in video.error.iloc[-1]
        assert not video.duplicated(["frame", "face"]).any()
        if not before_any_row:  # the frame after the last one analysed, later in time
            assert video.frame.iloc[-1] == video.frame.iloc[-2] + 1
            assert video.timestamp.iloc[-1] > video.timestamp.iloc[-2]
        run_batch(files, SPEC, **kind, video_options=options, resume=True, analyzer=analyzer)
        whole = pd.concat([read_table(t) for t in tables], ignore_index=True)
        assert (whole["input"] == clip).sum() == 4 and (whole.success == 1).all()


def test_a_new_run_replaces_the_table_in_every_format(folder, tmp_path, analyzer):
    """Without --resume the output holds this run's inputs only: a Parquet table kept the earlier run's
    rows (while saying "wrote 5 rows"), and one written with other options failed to merge."""
    files = expand_inputs([folder])
    for out in (tmp_path / "t.parquet", tmp_path / "t.csv", tmp_path / "t.json"):
        run_batch(files[:1], SPEC, out=out, video_options=VIDEO, analyzer=analyzer)
        run_batch(files[2:3], SPEC, out=out, video_options=VIDEO, analyzer=analyzer)
        assert set(read_table(out)["input"]) == {str(files[2])}, out
    out = tmp_path / "t.parquet"
    res = runner.invoke(app, ["analyze", str(files[0]), "-o", str(out), "--emotion-model", "cnn", "--no-tta"])
    assert res.exit_code == 0 and read_table(out)["input"].tolist() == [str(files[0])], res.output
    out.write_bytes(b"not parquet")
    res = runner.invoke(app, ["analyze", str(files[0]), "-o", str(out), "--emotion-model", "cnn", "--resume"])
    assert res.exit_code == 2 and "not a table aulib wrote" in res.output and str(out) in res.output, res.output


def test_a_failing_input_does_not_stop_the_batch(folder, analyzer, monkeypatch, tmp_path):
    files = expand_inputs([folder])
    original = analyzer.iter_rows

    def flaky(path, *a, **k):
        if path.name == "a.jpg":
            raise RuntimeError("boom")
        return original(path, *a, **k)

    monkeypatch.setattr(analyzer, "iter_rows", flaky)
    res = run_batch(files, SPEC, out=tmp_path / "x.csv", video_options=VIDEO, analyzer=analyzer)
    df = read_table(tmp_path / "x.csv")
    bad = df[df.input.str.endswith("a.jpg")]
    assert len(bad) == 1 and "analysis failed" in bad.error.iloc[0] and "boom" in bad.error.iloc[0]
    assert df[df.input.str.endswith("multi.jpg")].success.sum() == 5
    assert len(res.analysed) == 4


@pytest.mark.slow
def test_dask_local_cluster_equals_serial(folder, analyzer, tmp_path):
    distributed = pytest.importorskip("distributed")
    files = expand_inputs([folder])
    serial = run_batch(files, SPEC, video_options=VIDEO, analyzer=analyzer).table
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        out = tmp_path / "dask.csv"
        res = run_batch(files, SPEC, out=out, video_options=VIDEO, scheduler=c.scheduler_address)
    pd.testing.assert_frame_equal(res.table, serial, check_exact=True)  # bit-identical, same order
    assert read_table(out)["input"].tolist() == serial["input"].tolist()


def test_inputs_with_the_longest_legal_names_get_their_own_tables_and_overlays(tmp_path, analyzer):
    """A 251-byte file name is legal, its table ``<name>.csv`` (and the hidden temporary name it is
    written under) is not: the run stopped with "File name too long" and lost the other inputs' tables.
    Long output names are shortened with a hash of the input's path, so two such inputs stay two files."""
    import shutil

    from .conftest import sample

    names = ["a" * 251 + ".jpg", "a" * 250 + "b.jpg", "é" * 125 + ".jpg", "short.jpg"]
    for n in names:
        shutil.copy(sample("single_face.jpg"), tmp_path / n)
    files = [tmp_path / n for n in names]
    per, ov = tmp_path / "per", tmp_path / "ov"
    res = run_batch(files, SPEC, out=tmp_path / "all.csv", per_input=per, overlay=ov, analyzer=analyzer)
    assert res.failed == [] and read_table(tmp_path / "all.csv")["input"].tolist() == [str(f) for f in files]
    tables = sorted(per.glob("*.csv"))
    assert len(tables) == 4 and all(len(os.fsencode(t.name)) <= 200 and t.name.endswith(".jpg.csv") for t in tables)
    assert {read_table(t)["input"].iat[0] for t in tables} == {str(f) for f in files}
    assert len(list(ov.glob("*_overlay.jpg"))) == 4


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_resume_analyses_again_an_input_that_changed_since_its_rows_were_written(tmp_path, analyzer, fmt):
    """``--resume`` trusted an input by its name: a clip analysed while it was still being copied (its rows up to
    where the copy had reached, and "video truncated") and a photo replaced by another kept their old rows after
    the copy finished, "2 skipped", without a word. An input modified after the table was written is redone."""
    from .conftest import sample

    src = tmp_path / "in"
    src.mkdir()
    clip, photo = src / "a.mp4", src / "c.jpg"
    clip.write_bytes(sample("single_face.mp4").read_bytes()[:60_000])  # a copy in progress
    photo.write_bytes(sample("single_face.jpg").read_bytes())
    keep = src / "b.jpg"
    keep.write_bytes(sample("single_face.jpg").read_bytes())
    out = tmp_path / f"t.{fmt}"
    first = run_batch(expand_inputs([src]), SPEC, out=out, analyzer=analyzer)
    assert len(first.analysed) == 3
    assert read_table(out).groupby("input").size()[str(clip)] < 72
    t = out.stat().st_mtime_ns
    clip.write_bytes(sample("single_face.mp4").read_bytes())  # the copy finished
    photo.write_bytes(sample("multi_face.jpg").read_bytes())  # replaced
    for f in (clip, photo):
        os.utime(f, ns=(t + 10**9, t + 10**9))
    again = run_batch(expand_inputs([src]), SPEC, out=out, resume=True, analyzer=analyzer)
    assert again.skipped == [str(keep)] and sorted(again.analysed) == [str(clip), str(photo)]
    assert any("2 input(s) changed since their rows were written" in w for w in again.warnings)
    df = read_table(out)
    assert df.groupby("input").size().to_dict() == {str(clip): 72, str(keep): 1, str(photo): 5}
    assert list(df.input.drop_duplicates()) == [str(clip), str(keep), str(photo)]  # the inputs' order
    assert not df.error.fillna("").str.contains("truncated").any()


def test_a_scheduler_that_cannot_be_reached_leaves_the_tables_metadata(folder, tmp_path, analyzer):
    """A run whose --scheduler could not be reached kept the previous table but had already replaced its
    metadata with its own options: the next --resume with those options was accepted and appended rows made
    with other ones to the old table (and one with the table's real options was refused)."""
    files = expand_inputs([folder])[:1]
    out, per = tmp_path / "t.csv", tmp_path / "per"
    run_batch(files, SPEC, out=out, per_input=per, video_options=VIDEO, analyzer=analyzer)
    metas = [out.with_name("t.csv.meta.json"), per / ".aulib-run.meta"]
    before = [m.read_bytes() for m in metas]
    with pytest.raises(Exception, match="localhost"):
        run_batch(files, SPEC, out=out, per_input=per, video_options={"every": 5}, scheduler="localhost")
    assert [m.read_bytes() for m in metas] == before
    with pytest.raises(ValueError, match="other options"):
        run_batch(files, SPEC, out=out, video_options={"every": 5}, resume=True, analyzer=analyzer)


def test_run_batch_takes_its_settings_from_the_analyzer_it_is_given(folder, tmp_path):
    """Dask workers build their own analyzer from the run's spec: given ``analyzer=`` they built the default
    one (gaze and the image TTA on although the analyzer had them off, while the columns followed it)."""
    from aulib.analyzer import Analyzer

    a = Analyzer(emotion_model="none", gaze=False, tta=False)
    assert AnalyzerSpec.of(a) == AnalyzerSpec(emotion_model="none", gaze=False, tta=False)
    assert AnalyzerSpec.of(a).build().columns == a.columns
    out = tmp_path / "t.csv"
    run_batch(expand_inputs([folder])[:1], out=out, analyzer=a)
    import json

    options = json.loads(out.with_name("t.csv.meta.json").read_text())["options"]
    assert options["gaze"] is False and options["tta"] is False and options["emotion_model"] == "none"
    with pytest.raises(ValueError, match="disagree"):
        run_batch(expand_inputs([folder])[:1], SPEC, out=out, analyzer=a)


# ------------------------------------------------------------------- outputs that collide, inputs that move
@pytest.fixture()
def two_days(tmp_path):
    """days/day1/photo.jpg (one face) and days/day2/photo.jpg (five): the same file name in two folders."""
    from .conftest import sample

    for day, photo in (("day1", "single_face.jpg"), ("day2", "multi_face.jpg")):
        (tmp_path / "days" / day).mkdir(parents=True)
        (tmp_path / "days" / day / "photo.jpg").write_bytes(sample(photo).read_bytes())
    return tmp_path / "days"


@pytest.mark.parametrize("resume", [True, False])
def test_a_per_input_table_of_another_input_is_neither_taken_as_done_nor_replaced(two_days, tmp_path, analyzer,
                                                                                  resume):
    """Two runs into one --per-input folder, each with a photo.jpg: both tables are photo.jpg.csv. --resume took
    the second photo as done (its five faces never analysed); a plain run replaced the first one's table."""
    per = tmp_path / "per"
    run_batch([two_days / "day1" / "photo.jpg"], SPEC, per_input=per, resume=resume, analyzer=analyzer)
    with pytest.raises(ValueError, match=r"photo.jpg.csv: holds the table of .*day1/photo.jpg, not of .*day2"):
        run_batch([two_days / "day2" / "photo.jpg"], SPEC, per_input=per, resume=resume, analyzer=analyzer)
    assert read_table(per / "photo.jpg.csv")["input"].tolist() == [str(two_days / "day1" / "photo.jpg")]


def test_outputs_that_are_one_file_are_refused_before_any_work(two_days, tmp_path, analyzer):
    """-o one of the --per-input tables: the combined table was replaced by one input's (the run said "wrote 6
    rows"). --overlay the -o table: a folder was made where the table was to go and the run failed at its end."""
    files = [two_days / "day1" / "photo.jpg", two_days / "day2" / "photo.jpg"]
    per = tmp_path / "per"
    with pytest.raises(ValueError, match=r"-o is also the --per-input table of .*day1/photo.jpg"):
        run_batch(files, SPEC, out=per / "day1" / "photo.jpg.csv", per_input=per, analyzer=analyzer)
    out = tmp_path / "ov" / "x.csv"
    with pytest.raises(ValueError, match="--overlay and -o name the same path"):
        run_batch(files, SPEC, out=out, overlay=out, analyzer=analyzer)
    assert not per.exists() and not out.parent.exists()


def test_a_table_written_through_a_link_goes_where_the_link_points(two_days, tmp_path, analyzer):
    """The atomic rename replaced the link by a file, and the file it pointed to kept the old table."""
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "res.csv").write_text("old\n")
    link = tmp_path / "out.csv"
    link.symlink_to(tmp_path / "real" / "res.csv")
    run_batch([two_days / "day1" / "photo.jpg"], SPEC, out=link, analyzer=analyzer)
    assert link.is_symlink() and len(read_table(tmp_path / "real" / "res.csv")) == 1


def test_resume_from_another_folder_is_refused(two_days, tmp_path, analyzer, monkeypatch):
    """Inputs are named relative to the folder the run started in: --resume from another one took every input
    for a new one (days/day1/photo.jpg, then day1/photo.jpg: each photo twice in the table)."""
    out = tmp_path / "ab.csv"
    monkeypatch.chdir(tmp_path)
    run_batch(expand_inputs(["days"]), SPEC, out=out, analyzer=analyzer)
    monkeypatch.chdir(two_days)
    with pytest.raises(ValueError, match=r"--resume from another folder than the run that wrote it"):
        run_batch(expand_inputs(["."]), SPEC, out=out, resume=True, analyzer=analyzer)
    assert len(read_table(out)) == 6
    # absolute names are the same files from anywhere
    out2 = tmp_path / "abs.csv"
    run_batch(expand_inputs([str(two_days)]), SPEC, out=out2, analyzer=analyzer)
    monkeypatch.chdir(tmp_path)
    res = run_batch(expand_inputs([str(two_days)]), SPEC, out=out2, resume=True, analyzer=analyzer)
    assert len(res.skipped) == 2 and len(read_table(out2)) == 6


@pytest.mark.parametrize("kind", ["table", "per_input", "partitioned"])
def test_resume_redoes_a_photo_replaced_by_one_with_an_older_time(two_days, tmp_path, analyzer, kind):
    """``cp -p``, ``mv``, ``rsync -a`` and ``tar x`` keep a file's modification time: a photo replaced that way kept
    the old photo's rows (-o compared modification times only; --per-input and partitioned outputs never looked)."""
    photo = two_days / "day1" / "photo.jpg"
    other = two_days / "day2" / "photo.jpg"
    old = os.stat(photo).st_mtime_ns - 10**11  # an older photo
    os.utime(other, ns=(old, old))
    kw = {"table": {"out": tmp_path / "t.csv"}, "per_input": {"per_input": tmp_path / "per"},
          "partitioned": {"out": tmp_path / "parts", "partitioned": True}}[kind]
    run_batch([photo], SPEC, analyzer=analyzer, **kw)
    tmp = photo.with_name("new.jpg")
    tmp.write_bytes(other.read_bytes())
    os.utime(tmp, ns=(old, old))
    os.replace(tmp, photo)  # mv: the older time kept, the file replaced
    res = run_batch([photo], SPEC, analyzer=analyzer, resume=True, **kw)
    assert res.skipped == [] and res.faces == 5


def test_the_same_file_however_named_is_analysed_once_and_another_file_never_dropped(tmp_path, analyzer):
    """Inputs were compared as text after abspath: ``L/../x.jpg`` with ``L`` a link to ``A/B`` is ``A/x.jpg``, another
    photo, and was dropped as a repeat of ``x.jpg`` (its five faces lost); a link to a file is that file."""
    from .conftest import sample

    (tmp_path / "A" / "B").mkdir(parents=True)
    (tmp_path / "A" / "x.jpg").write_bytes(sample("multi_face.jpg").read_bytes())
    (tmp_path / "x.jpg").write_bytes(sample("single_face.jpg").read_bytes())
    (tmp_path / "L").symlink_to(tmp_path / "A" / "B")
    (tmp_path / "y.jpg").symlink_to(tmp_path / "x.jpg")
    res = run_batch([tmp_path / "x.jpg", tmp_path / "L" / ".." / "x.jpg", tmp_path / "y.jpg"], SPEC, analyzer=analyzer,
                    keep_table=True)
    assert res.duplicates == [str(tmp_path / "y.jpg")] and res.faces == 6


@pytest.mark.parametrize("ext", ["csv", "json", "parquet"])
def test_a_full_disk_leaves_the_tables_at_their_last_complete_input(folder, tmp_path, analyzer, monkeypatch, ext):
    """ENOSPC in the middle of an input left a CSV ending mid-row (a damaged table for anyone but --resume), a
    Parquet part and a --per-input part file behind."""
    import errno

    import aulib.table as table_mod

    files = expand_inputs([folder])
    out, per = tmp_path / f"t.{ext}", tmp_path / "per"
    real = table_mod.TableAppender._append
    calls = []

    def fills_up(self, chunk):
        calls.append(1)
        if len(calls) > 4:  # past the first input's rows (combined and per-input tables)
            self._f.write(b'"half a row') if self._f is not None else None
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        return real(self, chunk)

    monkeypatch.setattr(table_mod.TableAppender, "_append", fills_up)
    with pytest.raises(OSError, match="No space left") as info:
        run_batch(files, SPEC, out=out, per_input=per, per_input_format=ext, video_options=VIDEO, analyzer=analyzer)
    monkeypatch.setattr(table_mod.TableAppender, "_append", real)
    # named by an output the user gave, not the hidden file being written ("t.parquet.parts/a03f….tmp")
    assert info.value.filename == str(out) or info.value.filename.startswith(str(per) + "/"), info.value.filename
    assert not info.value.filename.endswith((".tmp", ".aulib-part")), info.value.filename
    if ext != "parquet":
        kept = list(dict.fromkeys(read_table(out)["input"]))  # whole inputs only: those before the full disk
        assert kept == [str(p) for p in files[: len(kept)]] and len(kept) < len(files)
        assert out.read_bytes().endswith(b"\n") and b"half a row" not in out.read_bytes()
    assert not list(out.parent.glob("*.parts/*.tmp")) and not list(per.rglob(".*aulib-part"))
    res = run_batch(files, SPEC, out=out, per_input=per, per_input_format=ext, resume=True, video_options=VIDEO,
                    analyzer=analyzer)
    assert res.skipped == [str(files[0])]
    assert list(dict.fromkeys(read_table(out)["input"])) == [str(p) for p in files]


def test_a_full_disk_stops_a_partitioned_run_naming_the_output(folder, tmp_path, analyzer, monkeypatch):
    """ENOSPC writing a part was taken for a failure of that input: each input analysed three times, the run
    ended "no input could be read", the disk named nowhere but inside the manifest."""
    import errno

    import aulib.table as table_mod

    files = expand_inputs([folder])
    calls = []

    def full(self, chunk):
        calls.append(1)
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    monkeypatch.setattr(table_mod.TableAppender, "_append", full)
    out = tmp_path / "parts"
    with pytest.raises(OSError, match="No space left") as info:
        run_batch(files, SPEC, out=out, partitioned=True, video_options=VIDEO, analyzer=analyzer)
    assert info.value.filename == str(out) and len(calls) == 1


def test_a_signal_while_a_videos_rows_are_being_written_still_marks_it_cut_short(folder, tmp_path, analyzer,
                                                                                  monkeypatch):
    """SIGTERM right after the first chunk reached the file, before it was counted: 266 rows of 472 and no row
    saying the video was cut short (the CI caught it once in two runs)."""
    import aulib.table as table_mod

    clip = [p for p in expand_inputs([folder]) if str(p).endswith(".mp4")]
    real = table_mod.TableAppender._append

    calls = []

    def stops_inside_the_write(self, chunk):
        real(self, chunk)
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt  # after the first rows are written, before anyone counted them

    monkeypatch.setattr(table_mod.TableAppender, "_append", stops_inside_the_write)
    out = tmp_path / "t.csv"
    with pytest.raises(KeyboardInterrupt):
        run_batch(clip, SPEC, out=out, video_options={**VIDEO, "chunk_rows": 2}, analyzer=analyzer)
    monkeypatch.setattr(table_mod.TableAppender, "_append", real)
    cut = read_table(out)
    assert len(cut) >= 2 and cut.success.iloc[-1] == 0 and "analysis interrupted" in cut.error.iloc[-1]


@pytest.mark.parametrize("partitioned", [False, True])
def test_a_damaged_video_is_said_in_the_run_warnings(tmp_path, analyzer, partitioned):
    """A video with frames lost to damage said so only in the table's last row: the run printed "1 done, 0 failed"
    and nothing else (an animation's other frames were warned of)."""
    from .test_video import damaged_clip

    bad = damaged_clip(tmp_path)
    out = tmp_path / ("parts" if partitioned else "t.csv")
    res = run_batch([bad], SPEC, out=out, partitioned=partitioned, analyzer=analyzer)
    assert not res.failed and any(w.startswith(f"{bad}: video damaged: ") for w in res.warnings), res.warnings
    healthy = run_batch([sample("single_face.mp4")], SPEC, out=tmp_path / "h.csv", analyzer=analyzer)
    assert not healthy.warnings


def test_a_per_input_table_of_the_same_file_under_another_name_is_its_own(tmp_path, analyzer, monkeypatch):
    """The table's ``input`` is table text (a backslash written ``\\\\``): the same photo named relatively in a
    second run was refused as another input's table, since the escaped name was looked up as a file."""
    from .conftest import sample

    folder = tmp_path / "take\\1"
    folder.mkdir()
    (folder / "photo.jpg").write_bytes(sample("single_face.jpg").read_bytes())
    per = tmp_path / "per"
    run_batch([folder / "photo.jpg"], SPEC, per_input=per, analyzer=analyzer)
    monkeypatch.chdir(folder)
    run_batch([Path("photo.jpg")], SPEC, per_input=per, resume=True, analyzer=analyzer)
    from aulib.table import table_text

    assert read_table(per / "photo.jpg.csv")["input"].tolist() == [table_text(str(folder / "photo.jpg"))]


def test_a_full_disk_is_named_by_the_output_that_failed(folder, tmp_path, analyzer, monkeypatch):
    """The failing file was told apart by a string prefix: a --per-input folder named like the combined table
    (``t.csv`` and ``t.csv.d/``) had its full disk reported as the combined table's."""
    import errno

    import aulib.table as table_mod

    out, per = tmp_path / "t.csv", tmp_path / "t.csv.d"
    real = table_mod.TableAppender._append

    def fills_up(self, chunk):
        if str(per) in str(self.path):
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        return real(self, chunk)

    monkeypatch.setattr(table_mod.TableAppender, "_append", fills_up)
    with pytest.raises(OSError, match="No space left") as info:
        run_batch(expand_inputs([folder])[:1], SPEC, out=out, per_input=per, analyzer=analyzer)
    assert info.value.filename.startswith(str(per) + os.sep), info.value.filename
