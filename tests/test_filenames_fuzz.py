"""Property test: any file name Linux allows survives every output format and --resume.

Names are generated as bytes (anything but ``/`` and NUL: undecodable UTF-8, newlines, U+2028,
quotes, commas, brackets, ``NA``/``None``/``null``/``nan``), a small batch of real images is run
under those names into CSV, Parquet and JSON lines (combined and per-input), and reading the
tables back must give exactly the names that were written (and, through ``text_path``, the
original bytes); resuming skips every input and leaves the table as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aulib.batch import AnalyzerSpec, run_batch
from aulib.table import read_table, table_text, text_path

from .conftest import sample

SPEC = AnalyzerSpec(emotion_model="none")
EXAMPLES = 25

stems = st.binary(min_size=1, max_size=40).filter(lambda b: b"/" not in b and b"\0" not in b)
names = st.builds(lambda stem, ext: stem + ext, stems,
                  st.sampled_from([b".jpg", b".png", b"", b" [x].jpg", b"\n.jpg", "\u2028.jpg".encode()]))


@pytest.fixture(scope="module")
def face_jpg() -> Path:
    return sample("single_face.jpg")


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batch=st.lists(names, min_size=1, max_size=3, unique=True))
@example(batch=[b"NA", b"None", b"null"])
@example(batch=[b"nan", b'"q",x.jpg', b"\xff\xfe\\x41.jpg"])
@example(batch=[b"a\\b", b"[bold]x[x]", b"\r\n.jpg"])
def test_any_name_survives_every_format_and_resume(batch, analyzer, face_jpg):
    with tempfile.TemporaryDirectory() as d:
        root = os.fsencode(d)
        os.mkdir(os.path.join(root, b"in"))
        raw = [os.path.join(root, b"in", n) for n in batch if n not in (b".", b"..")]
        if not raw:
            return
        for r in raw:
            shutil.copyfile(face_jpg, r)
        files = [Path(os.fsdecode(r)) for r in raw]
        names_ = [table_text(str(p)) for p in files]
        for fmt in ("csv", "parquet", "json"):
            out = Path(d) / f"t.{fmt}"
            per = Path(d) / f"per-{fmt}"
            res = run_batch(files, SPEC, out=out, per_input=per, per_input_format=fmt, analyzer=analyzer)
            got = read_table(out)
            assert got["input"].tolist() == names_ == res.table["input"].tolist(), fmt
            assert [os.fsencode(text_path(n)) for n in got["input"]] == raw
            assert got["success"].eq(1).all() and got["error"].eq("").all()
            # by extension, not "not hidden": an input named "..jpg" has the table "..jpg.csv"
            tables = sorted(t for t in per.rglob("*") if t.is_file() and t.suffix == f".{fmt}")
            assert sorted(read_table(t)["input"].iloc[0] for t in tables) == sorted(names_)
            again = run_batch(files, SPEC, out=out, per_input=per, per_input_format=fmt, resume=True,
                              analyzer=analyzer)
            assert again.skipped == names_ and again.analysed == []
            pd.testing.assert_frame_equal(read_table(out), got)
