"""Partitioned output and Dask runs where something goes wrong around them: an external cluster whose
workers run elsewhere, a part that cannot be written, parts left by a killed run, cut parts and tables
under --resume, a damaged manifest, a scheduler without workers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from aulib.batch import AnalyzerSpec, PerInputSink, part_name, read_manifest, read_partitioned, run_batch
from aulib.io import expand_inputs

from .conftest import input_tree

SPEC = AnalyzerSpec(emotion_model="none")
VIDEO = {"max_frames": 3, "every": 8}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    return input_tree(tmp_path_factory.mktemp("repairs") / "in")


def test_a_part_that_cannot_be_written_still_has_its_row(inputs, analyzer, tmp_path):
    """The input's analysis worked but its part could not be stored: the input had no row anywhere (the
    summary said "error rows written"), read_partitioned crashed on the manifest's ``part: null``, and the
    error said "analysis failed"."""
    files = [inputs / "a.jpg", inputs / "b" / "multi.jpg"]
    out = tmp_path / "parts"
    (out / part_name(str(files[0]))).mkdir(parents=True)  # a folder squats the part's name
    res = run_batch(files, SPEC, out=out, partitioned=True, analyzer=analyzer, retries=1)
    assert res.failed == [str(files[0])]
    df = read_partitioned(out)
    assert df["input"].tolist()[0] == str(files[0]) and df["success"].tolist()[0] == 0
    assert "its part could not be written after 2 attempts (IsADirectoryError" in df["error"].iloc[0]
    assert (df["input"] == str(files[1])).sum() == 5
    assert res.table["input"].tolist() == df["input"].tolist()


def test_a_new_run_removes_every_part_a_killed_run_left(inputs, analyzer, tmp_path):
    """A killed run writes parts between manifest saves (every 5 s): a new run removed only the parts its
    manifest listed, and pd.read_parquet(prefix) then mixed the old inputs into the new table."""
    out = tmp_path / "parts"
    run_batch([inputs / "a.jpg"], SPEC, out=out, partitioned=True, analyzer=analyzer)
    stale = out / part_name("in/not-in-the-manifest.jpg")
    (out / part_name(str(inputs / "a.jpg"))).rename(stale)
    (out / "_notes.txt").write_text("mine")  # not aulib's (and hidden from pd.read_parquet): kept
    run_batch([inputs / "b" / "multi.jpg"], SPEC, out=out, partitioned=True, analyzer=analyzer)
    assert not stale.exists() and (out / "_notes.txt").exists()
    assert set(pd.read_parquet(out)["input"]) == {str(inputs / "b" / "multi.jpg")}


def test_a_part_a_killed_run_was_writing_is_removed_by_the_next_run(inputs, analyzer, tmp_path):
    """``kill -9`` mid-video left the part being written (``.part-….parquet.PID.tmp``, growing with the video);
    neither --resume nor a new run removed it."""
    out = tmp_path / "parts"
    for resume in (True, False):
        run_batch([inputs / "a.jpg"], SPEC, out=out, partitioned=True, analyzer=analyzer)
        left = out / f".{part_name('in/c/clip.mp4')}.4242.tmp"
        left.write_bytes(b"PAR1" + bytes(1000))
        run_batch([inputs / "a.jpg"], SPEC, out=out, partitioned=True, resume=resume, analyzer=analyzer)
        assert not left.exists(), resume


def test_parts_without_a_manifest_are_not_removed(inputs, analyzer, tmp_path):
    """Only a folder with aulib's manifest is known to be aulib's: --resume there with the manifest gone
    removed every part (it took the "new run" path)."""
    out = tmp_path / "parts"
    out.mkdir()
    theirs = out / part_name("someone else's")
    theirs.write_bytes(b"PAR1")
    for resume in (True, False):
        run_batch([inputs / "a.jpg"], SPEC, out=out, partitioned=True, resume=resume, analyzer=analyzer)
        (out / "_aulib_manifest.json").unlink()
        assert theirs.exists()


def test_resume_redoes_a_cut_part_and_a_cut_per_input_table(inputs, analyzer, tmp_path):
    files = [inputs / "a.jpg", inputs / "c" / "clip.mp4"]
    out = tmp_path / "parts"
    first = run_batch(files, SPEC, out=out, partitioned=True, analyzer=analyzer, video_options=VIDEO).table
    part = out / part_name(str(files[1]))
    os.truncate(part, part.stat().st_size // 2)
    res = run_batch(files, SPEC, out=out, partitioned=True, resume=True, analyzer=analyzer, video_options=VIDEO)
    assert res.skipped == [str(files[0])] and res.analysed == [str(files[1])]
    pd.testing.assert_frame_equal(read_partitioned(out), first)
    # one CSV per input: a cut last row still parses, so the input counted as done
    per = tmp_path / "per"
    run_batch(files, SPEC, per_input=per, analyzer=analyzer, video_options=VIDEO)
    csv = PerInputSink(per, "csv", files, True).target(files[1])
    whole = csv.read_bytes()
    csv.write_bytes(whole[: len(whole) - 20])
    res = run_batch(files, SPEC, per_input=per, resume=True, analyzer=analyzer, video_options=VIDEO)
    assert res.analysed == [str(files[1])] and csv.read_bytes() == whole


@pytest.mark.parametrize("damage", ["[]", "5", '{"inputs": null, "options": {}}', '{"aulib_run": 1, "colu'])
def test_a_damaged_manifest_is_one_clear_error_and_a_new_run_replaces_it(inputs, analyzer, tmp_path, damage):
    """It gave "unexpected AttributeError … a bug in aulib", and blocked even a new run without --resume."""
    out = tmp_path / "parts"
    run_batch([inputs / "a.jpg"], SPEC, out=out, partitioned=True, analyzer=analyzer)
    (out / "_aulib_manifest.json").write_text(damage)
    for call in (lambda: run_batch([inputs / "a.jpg"], SPEC, out=out, partitioned=True, resume=True,
                                   analyzer=analyzer), lambda: read_partitioned(out), lambda: read_manifest(out)):
        with pytest.raises(ValueError, match="not a manifest aulib wrote, or damaged"):
            call()
    run_batch([inputs / "a.jpg"], SPEC, out=out, partitioned=True, analyzer=analyzer)
    assert read_manifest(out)["inputs"][0]["status"] == "done" and len(read_partitioned(out)) == 1


@pytest.fixture
def scheduler(tmp_path):
    """A Dask scheduler with no worker (workers are started by the tests, elsewhere)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=0, processes=True, dashboard_address=None) as c:
        yield c.scheduler_address


@pytest.mark.slow
def test_scheduler_runs_read_relative_inputs_and_write_where_the_user_is(inputs, analyzer, tmp_path,
                                                                        scheduler, monkeypatch):
    """The workers of an external cluster run in their own folder: relative inputs were "no such file" on
    every worker and the parts were written into the worker's folder. Names stay as the user gave them."""
    elsewhere = tmp_path / "worker-home"
    elsewhere.mkdir()
    worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", scheduler, "--nworkers", "1",
                               "--nthreads", "1", "--no-dashboard"], cwd=elsewhere,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        monkeypatch.chdir(inputs.parent)
        files = expand_inputs(["in"])
        serial = run_batch(files, SPEC, analyzer=analyzer, video_options=VIDEO).table
        run_batch(files, SPEC, out="run/", scheduler=scheduler, video_options=VIDEO)
        got = read_partitioned("run/")
        pd.testing.assert_frame_equal(got, serial)
        assert got["input"].str.startswith("in/").all() and not list(elsewhere.rglob("*.parquet"))
        combined = run_batch(files, SPEC, out=Path("all.csv"), scheduler=scheduler, video_options=VIDEO).table
        pd.testing.assert_frame_equal(combined, serial)
    finally:
        worker.terminate()
        worker.wait(30)


def test_a_scheduler_without_workers_is_an_error_not_a_hang(inputs, tmp_path, scheduler, monkeypatch):
    monkeypatch.setenv("AULIB_DASK_WORKER_WAIT", "2")
    t = time.monotonic()
    with pytest.raises(OSError, match=r"no Dask worker joined this scheduler within 2 s \(start one: dask worker"):
        run_batch([inputs / "a.jpg"], SPEC, out=tmp_path / "parts", partitioned=True, scheduler=scheduler)
    assert time.monotonic() - t < 30
    # refused before the output is touched (an earlier run's parts there would have been cleared)
    assert not (tmp_path / "parts" / "_aulib_manifest.json").exists()


def test_resume_knows_an_input_named_another_way(inputs, analyzer, tmp_path, monkeypatch):
    """A run on "in/…" resumed on "/abs/…/in/…" (or from another folder) redid every input and the table
    held each twice; a failed input redone under its new name kept its old error row too."""
    monkeypatch.chdir(inputs.parent)
    out = tmp_path / "parts"
    rel = [Path("in/a.jpg"), Path("in/b/broken.png")]
    run_batch(rel, SPEC, out=out, partitioned=True, analyzer=analyzer)
    absolute = [p.absolute() for p in rel]
    res = run_batch(absolute, SPEC, out=out, partitioned=True, resume=True, analyzer=analyzer)
    assert res.skipped == [str(absolute[0])] and res.analysed == [str(absolute[1])]  # the failed one is redone
    df = read_partitioned(out)
    assert df["input"].tolist() == ["in/a.jpg", str(absolute[1])]
    assert len(pd.read_parquet(out)) == 2  # the old error part went with its entry


def test_a_combined_table_resume_knows_an_input_named_another_way(inputs, analyzer, tmp_path, monkeypatch):
    """The same for one combined table: "in/a.jpg" resumed as its absolute path was analysed again."""
    monkeypatch.chdir(inputs.parent)
    out = tmp_path / "all.csv"
    run_batch([Path("in/a.jpg")], SPEC, out=out, analyzer=analyzer)
    res = run_batch([Path("in/a.jpg").absolute(), Path("in/b/multi.jpg")], SPEC, out=out, resume=True,
                    analyzer=analyzer)
    assert res.skipped == [str(Path("in/a.jpg").absolute())] and res.analysed == ["in/b/multi.jpg"]
    assert pd.read_csv(out)["input"].value_counts().to_dict() == {"in/a.jpg": 1, "in/b/multi.jpg": 5}


def test_a_partitioned_folder_may_have_dots_in_its_name(inputs, analyzer, tmp_path):
    """"run.v2/" and "2024.05.01" (with --partitioned) were refused as "not a .csv/.json table"."""
    for out, flag in ((f"{tmp_path}/run.v2/", False), (f"{tmp_path}/2024.05.01", True)):
        run_batch([inputs / "a.jpg"], SPEC, out=out, partitioned=flag, analyzer=analyzer)
        assert len(read_partitioned(out)) == 1
    with pytest.raises(ValueError, match="not a .csv/.json table"):
        run_batch([inputs / "a.jpg"], SPEC, out=f"{tmp_path}/t.csv", partitioned=True, analyzer=analyzer)


def test_a_part_damaged_in_place_is_redone_on_resume_and_named_when_read(inputs, analyzer, tmp_path):
    """A part whose bytes changed at the same size was trusted by --resume (the run said it was complete) and
    reading the table failed with pyarrow's "Couldn't deserialize thrift", naming no file."""
    out = tmp_path / "parts"
    run_batch([inputs / "a.jpg", inputs / "b" / "multi.jpg"], SPEC, out=out, partitioned=True, analyzer=analyzer)
    clean = read_partitioned(out)
    part = out / read_manifest(out)["inputs"][0]["part"]
    data = bytearray(part.read_bytes())
    data[-2008:-8] = bytes(2000)  # zeroed in place, footer included: same size, unreadable
    part.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"\(the part of .*a\.jpg\): not a readable Parquet file"):
        read_partitioned(out)
    res = run_batch([inputs / "a.jpg", inputs / "b" / "multi.jpg"], SPEC, out=out, partitioned=True, resume=True,
                    analyzer=analyzer)
    assert res.analysed == [str(inputs / "a.jpg")] and len(res.skipped) == 1
    assert read_partitioned(out).equals(clean)
