"""The table module: the full column list (golden), rows from Face records, column-group helpers."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aulib import table
from aulib.face.record import Face

from .conftest import sample

SHIPPED_AUS = [1, 2, 4, 5, 6, 7, 9, 12, 14, 15, 17, 20, 23, 24, 25, 26, 27]
MT_AUS = [1, 2, 4, 5, 6, 7, 9, 12, 15, 17, 23, 24, 25, 27]


def test_golden_column_list_and_order():
    """The DESIGN.md contract, pinned: any change to names or order must change this test on purpose."""
    cols = table.columns(SHIPPED_AUS, MT_AUS, emotion=True)
    head = ["input", "frame", "timestamp", "face", "success", "error",
            "face_x", "face_y", "face_width", "face_height", "face_score"]
    expected = (
        head
        + [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)]
        # each AU block ends with blink, as OpenFace's: df.loc[:, "AU01_r":"AU45_r"] is the intensities
        + [f"AU{a:02d}_c" for a in SHIPPED_AUS] + ["AU45_c"] + [f"AU{a:02d}_r" for a in SHIPPED_AUS] + ["AU45_r"]
        + ["rule_anger", "rule_contempt", "rule_disgust", "rule_fear", "rule_happiness", "rule_sadness",
           "rule_surprise"]
        + ["emotion", "p_neutral", "p_happiness", "p_surprise", "p_sadness", "p_anger", "p_disgust", "p_fear",
           "p_contempt"]
        + [f"mt_AU{a:02d}_c" for a in MT_AUS]
        # OpenFace 2 channels, added after every existing column (issue 12): names as in OpenFace's CSV
        + ["face_id", "confidence", "pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]
        # gaze, after those (issue 12, second landing)
        + ["gaze_0_x", "gaze_0_y", "gaze_0_z", "gaze_1_x", "gaze_1_y", "gaze_1_z", "gaze_angle_x", "gaze_angle_y"]
        # calibrated AU probabilities, last (issue 13)
        + [f"AU{a:02d}_p" for a in SHIPPED_AUS]
    )
    assert cols == expected
    assert len(cols) == 11 + 136 + 34 + 7 + 9 + 14 + 10 + 8 + 17
    no_emotion = table.columns(SHIPPED_AUS, emotion=False)
    assert "emotion" not in no_emotion and not any(c.startswith("p_") for c in no_emotion)


def _face(i: int = 0) -> Face:
    rng = np.random.default_rng(i)
    pts = rng.uniform(10, 90, (68, 2)).astype(np.float32)
    probs = np.array([0.1, 0.6, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05], np.float32)
    return Face(box=np.array([5, 6, 100, 110], np.float32), score=0.99, id=i, landmarks=pts,
                matrix=np.eye(2, 3, dtype=np.float32), aus=(1, 12),
                au_occurrence=np.array([0, 1], np.int8), au_intensity=np.array([0.2, np.inf]),
                rules=np.arange(7, dtype=np.float32) * 10, emotion_probs=probs,
                mt_aus=(12,), mt_au_occurrence=np.array([1], np.int8))


def test_rows_from_face_records_and_helpers_read_them_back():
    faces = [_face(0), _face(1)]
    cols = table.columns([1, 12], [12], emotion=True)
    df = table.to_frame(table.face_rows(faces, "x.jpg", frame=3, timestamp=0.1), cols)
    assert list(df.columns) == cols and len(df) == 2
    assert df["face"].tolist() == [0, 1] and df["success"].tolist() == [1, 1]
    assert df["emotion"].tolist() == ["happiness", "happiness"]
    assert table.aus(df) == [1, 12] and table.mt_aus(df) == [12]
    assert table.au_occurrence(df).columns.tolist() == ["AU01", "AU12"]
    assert table.au_occurrence(df)["AU12"].tolist() == [1, 1]
    inten = table.au_intensity(df)
    assert inten["AU01"].tolist() == pytest.approx([0.2, 0.2]) and inten["AU12"].isna().all()  # inf → NaN
    assert table.emotion_probs(df).columns.tolist()[:2] == ["neutral", "happiness"]
    assert table.rule_scores(df)["contempt"].tolist() == [10.0, 10.0]
    assert table.mt_au_occurrence(df)["AU12"].tolist() == [1, 1]
    assert table.au_probability(df).isna().all(axis=None)  # these records have no probabilities
    faces[0].au_prob = np.array([0.1, 0.9])
    probs = table.au_probability(table.to_frame(table.face_rows(faces, "x.jpg"), cols))
    assert probs.columns.tolist() == ["AU01", "AU12"] and probs.iloc[0].tolist() == [0.1, 0.9]
    assert table.au_probability(df.drop(columns=["AU01_p", "AU12_p"])).shape == (2, 0)  # an older table
    lm = table.landmarks(df)
    assert lm.shape == (2, 68, 2)
    np.testing.assert_allclose(lm[1], faces[1].landmarks, rtol=1e-6)
    np.testing.assert_allclose(table.boxes(df)[0], [5, 6, 100, 110])


def test_no_face_rows_are_marked_and_nan():
    cols = table.columns([1], emotion=True)
    df = table.to_frame(table.face_rows([], "empty.jpg"), cols)
    assert df["success"].tolist() == [0] and df["error"].tolist() == ["no face detected"]
    assert df["AU01_c"].isna().all() and np.isnan(table.landmarks(df)).all()
    # the text columns have the dtype they read back with from a written table (emotion was object)
    mixed = table.to_frame(table.face_rows([_face(0)], "x.jpg") + table.face_rows([], "empty.jpg"), cols)
    back = pd.read_csv(__import__("io").StringIO(mixed.to_csv(index=False)))
    assert [mixed[c].dtype for c in table.TEXT_COLUMNS] == [back[c].dtype for c in table.TEXT_COLUMNS]
    assert mixed["emotion"].tolist()[0] == "happiness" and pd.isna(mixed["emotion"].iat[1])
    failed = Face(box=np.zeros(4, np.float32), score=0.5, error="landmark fit failed")
    row = table.face_row(failed, "a.jpg")
    assert row["success"] == 0 and "AU01_c" not in row


def test_helpers_on_foreign_table_are_empty_not_errors():
    df = pd.DataFrame({"a": [1, 2]})
    assert table.aus(df) == [] and table.au_intensity(df).shape == (2, 0)
    assert not table.is_aulib_table(df)


# Values a cell of each kind can hold: floats of every magnitude incl. -0.0, NaN and ±inf; text with
# quotes, commas, CR/LF, backslashes, U+2028 and undecodable bytes (lone surrogates); missing values.
_floats = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6))
_pieces = st.one_of(st.characters(exclude_categories=("Cs",)),
                    st.sampled_from(['"', ",", "\r", "\n", "\\", "\u2028", "\udc80", "\udcff", "NA", "nan"]))
_texts = st.one_of(st.none(), st.lists(_pieces, max_size=8).map("".join))


@st.composite
def _rows(draw: st.DrawFn) -> tuple[list[dict], list[str]]:
    cols = table.columns([1, 12], [12], emotion=True)
    n = draw(st.integers(0, 4))
    rows = []
    for _ in range(n):
        r: dict = {"input": draw(_texts), "error": draw(_texts), "frame": draw(st.integers(0, 10**6)),
                   "face": draw(st.integers(0, 9)), "face_id": draw(st.integers(0, 9)),
                   "success": draw(st.integers(0, 1)),
                   "emotion": draw(st.one_of(st.none(), st.sampled_from(["happiness", "neutral"])))}
        for c in cols:
            if c not in r and draw(st.booleans()):
                v = draw(_floats)
                r[c] = (None if v is None or (isinstance(v, float) and not np.isfinite(v)) else int(v) % 2) \
                    if c.endswith("_c") else v
        rows.append(r)
    return rows, cols


@settings(max_examples=60, deadline=None)
@given(_rows())
def test_csv_writer_is_byte_identical_to_pandas(data: tuple[list[dict], list[str]]) -> None:
    """Rows are written to CSV by the standard library (a one-photo run never imports pandas); the
    bytes must be exactly what pandas writes for the same table (text quoted, numbers bare), but for a
    missing value: an empty field, not pandas' quoted ``""`` (polars read such columns as text)."""
    rows, cols = data
    df = table.to_frame(rows, cols)
    missing = "\x00aulib missing\x00"  # (text columns are never missing: no text cell can be it)
    expected = df.to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC, na_rep=missing).replace(f'"{missing}"', "")
    assert table.csv_text(table.Rows(rows, cols)) == expected
    # a table read back and appended again (--resume rewrites) is written the same way too
    assert table.csv_text(table.Rows.from_frame(df)) == expected


def test_a_missing_value_is_an_empty_csv_field_that_other_readers_take_for_missing(tmp_path):
    """A faceless frame's numbers were written as the quoted ``""`` pandas writes: polars then read every column
    with one as text (its mean None, no error), duckdb typed them VARCHAR, numpy.genfromtxt failed. An empty
    field is missing to all of them; text stays quoted (an empty ``error`` is ``""``: the empty text)."""
    rows = [table.face_row(_face(0), "a.jpg"), table.empty_row("b.jpg", "no face detected")]
    cols = table.columns([1, 12], [12], emotion=True)
    path = table.write_table(table.Rows(rows, cols), tmp_path / "t.csv")
    header, ok, failed = path.read_text(encoding="utf-8").splitlines()
    assert '""' not in failed and failed.startswith('"b.jpg",0,0.0,0,0,"no face detected",'), failed
    assert ',"",' in ok  # the face row's empty error
    cells = next(csv.reader([failed]))
    assert cells[cols.index("AU12_r")] == cells[cols.index("AU12_c")] == cells[cols.index("emotion")] == ""
    back = np.genfromtxt(path, delimiter=",", names=True, usecols=(cols.index("AU01_r"), cols.index("AU12_c")))
    assert back["AU01_r"][0] == 0.2 and back["AU12_c"][0] == 1 and np.isnan(back["AU01_r"][1]) and \
        np.isnan(back["AU12_c"][1])
    got = table.read_table(path)
    assert got["error"].tolist() == ["", "no face detected"] and got["emotion"].isna().tolist() == [False, True]


def test_json_lines_read_back_equal(tmp_path):
    rows = [table.face_row(_face(0), "a/b\udc80.jpg"), table.empty_row("c.jpg", "no face detected")]
    cols = table.columns([1, 12], [12], emotion=True)
    path = table.write_table(table.Rows(rows, cols), tmp_path / "t.json")
    got, want = table.read_table(path), table.to_frame(rows, cols)
    assert got["emotion"].fillna("").tolist() == want["emotion"].fillna("").tolist() == ["happiness", ""]
    pd.testing.assert_frame_equal(got.drop(columns="emotion"), want.drop(columns="emotion"), check_dtype=False)
    assert all(ord(ch) < 128 for ch in path.read_text(encoding="utf-8"))


def test_a_photo_to_csv_runs_without_pandas(tmp_path):
    """The small job's start-up: rows go to CSV with the standard library, pandas is never imported."""
    from tests.conftest import sample

    out = tmp_path / "x.csv"
    code = ("import sys; from aulib.cli import main\n"
            f"sys.argv = ['aulib', 'analyze', {str(sample('single_face.jpg'))!r}, '-o', {str(out)!r}]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print('pandas' in sys.modules, 'pyarrow' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "False"]
    df = table.read_table(out)
    assert df["success"].tolist() == [1] and df["AU12_r"].notna().all()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_a_full_disk_is_an_error_naming_the_table(tmp_path, fmt):
    """Writes into a full file system fail with an OSError that names the table (a file object's
    own error says only "[Errno 28] No space left on device"), and the CLI prints it as one line."""
    from aulib.cli import error_line

    out = tmp_path / f"full.{fmt}"
    out.symlink_to("/dev/full")  # every write fails
    rows = table.Rows.from_frame(table.to_frame([table.empty_row("x.jpg", "no face detected")] * 50,
                                                 table.columns([1, 2])))
    with pytest.raises(OSError) as info:
        with table.TableAppender(out, fmt) as w:
            for _ in range(200):  # past any buffering
                w.append(rows)
            w.size()
    assert info.value.filename == str(out)  # ENOSPC from a write, or EINVAL from /dev/full's fsync
    assert error_line(info.value) == f"{out}: {info.value.strerror}"


def test_the_readable_report_shows_confidence_and_warns_below_the_usual_filter(analyzer):
    """A face whose mouth is below the frame (confidence < 0.8) was reported with its AUs and no word of doubt."""
    from aulib.io import read_image

    from .conftest import sample

    img = read_image(sample("single_face.jpg"))
    whole = table.report(analyzer.analyze(img))
    cut_df = analyzer.analyze(np.ascontiguousarray(img[:330]))
    cut = table.report(cut_df)
    assert "confidence 1.00" in whole and "warning" not in whole
    assert cut_df["confidence"].iat[0] < table.LOW_CONFIDENCE
    assert f"confidence {cut_df['confidence'].iat[0]:.2f}" in cut and "warning: confidence below 0.8" in cut


def test_the_emotion_column_has_one_type_with_or_without_faces(tmp_path):
    """A faceless image's emotion column was ``object`` (the face table's ``str``), so pd.concat of two runs'
    tables was ``object``; JSON read back the same way."""
    import aulib

    from .conftest import sample

    an = aulib.Analyzer()
    none, face = an.analyze(sample("free-mountain-vector-01.jpg")), an.analyze(sample("single_face.jpg"))
    assert none["emotion"].dtype == face["emotion"].dtype and none["emotion"].isna().all()
    assert pd.concat([none, face])["emotion"].dtype == face["emotion"].dtype
    for ext in ("csv", "parquet", "json"):
        table.write_table(none, tmp_path / f"t.{ext}")
        back = table.read_table(tmp_path / f"t.{ext}")
        assert back["emotion"].dtype == face["emotion"].dtype and back["emotion"].isna().all(), ext


def test_a_table_of_no_rows_reads_back_with_the_same_dtypes_in_every_format(tmp_path, analyzer):
    """A CSV header alone read 207 number columns as object, where Parquet and the API give float64."""
    from aulib.table import read_table, write_table

    empty = analyzer.analyze(sample("single_face.jpg")).iloc[:0]
    for ext in ("csv", "parquet"):
        back = read_table(write_table(empty, tmp_path / f"t.{ext}"))
        assert list(back.columns) == list(empty.columns)
        assert (back.dtypes == empty.dtypes).all(), (ext, back.dtypes[back.dtypes != empty.dtypes].head())


def test_read_table_takes_what_analyze_takes_and_names_a_file_it_cannot_parse(tmp_path):
    """The table reader of the Python API: one column name alone read as the columns 'A', 'U', '1', …; a bytes path
    (aulib.analyze takes one) was a TypeError; an empty CSV or a damaged Parquet raised pandas' or pyarrow's own
    error ("No columns to parse from file", "Parquet magic bytes not found"), which named no file."""
    from aulib.table import read_table, write_table

    good = tmp_path / "t.csv"
    write_table(pd.DataFrame({"input": ["a.jpg"], "frame": [0], "AU12_r": [1.5]}), good)
    assert read_table(good, columns="AU12_r").columns.tolist() == ["AU12_r"]
    assert read_table(os.fsencode(good))["AU12_r"].iat[0] == 1.5
    empty, cut = tmp_path / "empty.csv", tmp_path / "cut.parquet"
    empty.write_bytes(b"")
    cut.write_bytes(b"PAR1 not really")
    for bad in (empty, cut):
        for columns in (None, ["AU12_r"]):
            with pytest.raises(ValueError, match=rf"{bad.name}: not a table aulib can read"):
                read_table(bad, columns=columns)


def test_a_csv_table_cut_in_its_last_row_is_said_and_that_row_left_out(analyzer, tmp_path):
    """A table cut inside its last row (an interrupted copy, a full disk) was read with that row's missing fields
    as NaN and a cut number as a value (AU12_r 3.4 for 3.4539…, success 1, no emotion); plot and report drew it
    without a word. The row is now left out with a warning, and the commands say so. OpenFace's tables, which
    end without a newline, are whole and read as they are."""
    from typer.testing import CliRunner

    from aulib.cli import app
    from aulib.table import CutTableWarning, read_table, write_table

    from .conftest import DATA, sample

    whole = tmp_path / "whole.csv"
    write_table(analyzer.analyze([sample("single_face.jpg"), sample("multi_face.jpg")]), whole)
    text = whole.read_bytes()
    last = text.rstrip(b"\n").rsplit(b"\n", 1)[1]
    cut = tmp_path / "cut.csv"
    cut.write_bytes(text[:len(text) - len(last) // 2 - 1])
    with pytest.warns(CutTableWarning, match=r"cut\.csv: its last row is cut off \(\d+ of \d+ fields"):
        df = read_table(cut)
    pd.testing.assert_frame_equal(df, read_table(whole).iloc[:-1])
    res = CliRunner().invoke(app, ["plot", str(cut), "-o", str(tmp_path / "p.png")])
    assert res.exit_code == 0 and "last row is cut off" in " ".join(res.output.split()), res.output
    openface = DATA / "samples" / "OpenFace_Test.csv"
    if openface.exists():
        assert not openface.read_bytes().endswith(b"\n")
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error", CutTableWarning)
            assert len(read_table(openface)) == len(pd.read_csv(openface))
