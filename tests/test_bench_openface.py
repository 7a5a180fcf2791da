"""``aulib bench --openface``: both tools timed as whole processes, in turn, and their time ratio."""

from __future__ import annotations

import stat

import pytest

from aulib.bench import paired_openface

from .conftest import sample


def _fake_openface(tmp_path, body: str):
    """An executable that stands in for FeatureExtraction: it must be run from its own folder."""
    exe = tmp_path / "bin" / "FeatureExtraction"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


# what FeatureExtraction leaves behind: a table with rows in its -out_dir
WRITES_TABLE = ('while [ $# -gt 0 ]; do [ "$1" = "-out_dir" ] && out="$2"; shift; done\n'
                'mkdir -p "$out" && printf "frame, success\\n1, 1\\n" > "$out/clip.csv"\n')


@pytest.mark.slow
def test_paired_ratio_from_whole_processes(tmp_path):
    exe = _fake_openface(tmp_path, 'test "$(pwd)" = "$(dirname "$0")" || exit 3\nsleep 0.2\n' + WRITES_TABLE)
    lines: list[str] = []
    res = paired_openface(sample("single_face.mp4"), exe, pairs=2, log=lines.append)
    assert res["pairs"] == 2 and res["openface_s"] >= 0.2 and res["aulib_s"] > 0
    assert 0 < res["ratio"] < res["aulib_s"] / 0.2  # per-pair ratios, each against a ≥ 0.2 s OpenFace run
    assert "aulib/OpenFace time ratio" in lines[-1]


def test_a_failing_or_missing_openface_gives_no_ratio(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an executable"):
        paired_openface(sample("single_face.mp4"), tmp_path / "nope", pairs=1)
    exe = _fake_openface(tmp_path, "echo 'model/main_clnf_general.txt not found' >&2\nexit 1\n")
    with pytest.raises(OSError, match="failed on single_face.mp4"):
        paired_openface(sample("single_face.mp4"), exe, pairs=1)


def test_a_ratio_of_other_work_is_refused(tmp_path):
    """--frames limited aulib while OpenFace read the whole clip, and a program that exits 0 without writing
    anything (/bin/true) gave a confident ratio (362.77)."""
    exe = _fake_openface(tmp_path, "exit 0\n")
    with pytest.raises(ValueError, match="--frames limits aulib only"):
        paired_openface(sample("single_face.mp4"), exe, pairs=1, frames=5)
    with pytest.raises(OSError, match="exited 0 but wrote no table"):
        paired_openface(sample("single_face.mp4"), exe, pairs=1)
