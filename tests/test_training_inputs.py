"""Bad training inputs are refused early with one line naming the file (and line/column), never a NaN model.

Every test builds its own tiny data in ``tmp_path`` (a few synthetic label rows and 48×48 PNGs), so
none needs ../shared/data and all run in seconds. Each pins a defect of the training readers,
caches or checks: before the fix these inputs trained a NaN model, reused stale crops, or failed
after minutes of work with a pandas/sklearn/pickle message that named no file.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from aulib.au.codes import AUS

HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch (training extra) not installed")

# ---------------------------------------------------------------------------------------- FER+


def _fer_row(name: str, votes: str = "4,0,0,1,3,2,0,0,0,0") -> str:
    return f'{name},"(0, 0, 48, 48)",{votes}'


def _write_ferplus(root: Path, n: int = 8, rows: list[str] | None = None, split: str = "FER2013Train") -> Path:
    """A FER+ split folder with ``n`` random 48×48 gray PNGs and their label rows (or ``rows``)."""
    folder = root / "ferplus" / split
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(split))
    lines = []
    for i in range(n):
        name = f"fer{i:07d}.png"
        cv2.imwrite(str(folder / name), rng.integers(0, 256, (48, 48), dtype=np.uint8))
        lines.append(_fer_row(name, f"{i % 5 + 1},{i % 3},0,1,0,0,0,0,0,0"))
    (folder / "label.csv").write_text("\n".join(rows if rows is not None else lines) + "\n")
    return folder / "label.csv"


@pytest.mark.parametrize(("bad_line", "message"), [
    (_fer_row("fer1.png", "nan,5,0,0,0,0,0,0,0,0"), r"line 2: vote 'nan' is not a finite count"),
    (_fer_row("fer1.png", "5,-1,0,0,0,0,0,0,0,0"), r"line 2: vote '-1' is not a finite count"),
    (_fer_row("fer1.png", "5,inf,0,0,0,0,0,0,0,0"), r"line 2: vote 'inf' is not a finite count"),
    (_fer_row("fer1.png", "5,abc,0,0,0,0,0,0,0,0"), r"line 2: vote 'abc' is not a number"),
    ("fer1.png,1,2,3", r"line 2: 4 fields, expected 12"),
])
def test_ferplus_refuses_bad_votes_and_short_rows_naming_file_and_line(tmp_path: Path, bad_line: str,
                                                                       message: str) -> None:
    from aulib.training.datasets import read_ferplus

    label = _write_ferplus(tmp_path, rows=[_fer_row("fer0.png"), bad_line, _fer_row("fer2.png")])
    with pytest.raises(ValueError, match=message) as e:
        read_ferplus(tmp_path, "train")
    assert str(label) in str(e.value)


def test_ferplus_refuses_a_header_line(tmp_path: Path) -> None:
    from aulib.training.datasets import read_ferplus

    header = "Image name,Face box,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
    label = _write_ferplus(tmp_path, rows=[header, _fer_row("fer0.png")])
    with pytest.raises(ValueError, match=r"label\.csv: line 1: vote 'neutral' is not a number"):
        read_ferplus(tmp_path, "train")
    assert label.is_file()


def test_ferplus_still_reads_good_rows_and_skips_blank_lines(tmp_path: Path) -> None:
    from aulib.training.datasets import read_ferplus

    _write_ferplus(tmp_path, rows=[_fer_row("fer0.png"), "", _fer_row("fer1.png", "0,0,0,0,0,0,0,0,5,0")])
    fer = read_ferplus(tmp_path, "train")
    assert [p.name for p in fer.paths] == ["fer0.png"]  # the unknown-majority row is dropped, as before
    assert np.allclose(fer.soft.sum(1), 1) and (fer.soft >= 0).all()


@needs_torch
def test_emotion_training_stops_on_a_non_finite_loss_and_installs_nothing(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    import aulib.training.cnn as cnn

    _write_ferplus(tmp_path, 8)
    _write_ferplus(tmp_path, 8, split="FER2013Valid")
    installed: list[Path] = []
    monkeypatch.setattr(cnn, "install_model", lambda path, *a, **k: installed.append(path))
    monkeypatch.setattr(cnn, "load_imagenet_backbone", lambda net: [])  # no weights needed to reach the loss
    monkeypatch.setattr(cnn, "soft_cross_entropy", lambda logits, y: (logits * torch.tensor(float("nan"))).mean())
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"epoch 1, step 1: the loss is nan \(not finite\)"):
        cnn.train_emotion(tmp_path, out, epochs=1, batch_size=4, max_batches=1, image_size=32, cache_dir=None,
                          align=False, install=True, ema=None, log=lambda _: None)
    assert not installed
    assert not (out / "emotion_cnn.onnx").exists() and not (out / "best.pt").exists()


# ---------------------------------------------------------------------------------------- CK+

LINE = 1  # the header


def _ck_sheet(subjects: int = 3, per_subject: int = 2) -> pd.DataFrame:
    rows = []
    for s in range(subjects):
        for i in range(per_subject):
            row = {"path": f"images/x/S{s:03d}_{i}.png", "subject": f"S{s:03d}", "sequence": "001", "frame": i + 1,
                   "role": "peak" if i else "neutral_first_frame", "emotion_code": 5, "emotion": "happy",
                   "facs_source": "revised_sheet"}
            row.update({f"AU{a}": (3 if (a == 12 and i) else -1) for a in AUS})
            rows.append(row)
    return pd.DataFrame(rows)


def _write_ck(root: Path, sheet: pd.DataFrame | None = None, text: str | None = None) -> Path:
    labels = root / "ckplus48" / "labels" / "images_au.csv"
    labels.parent.mkdir(parents=True, exist_ok=True)
    if text is not None:
        labels.write_text(text)
    else:
        sheet.to_csv(labels, index=False)
    return labels


def _set(col: str, row: int, value: object):
    def change(t: pd.DataFrame) -> pd.DataFrame:
        t = t.copy()
        t[col] = t[col].astype(object)
        t.loc[row, col] = value
        return t
    return change


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t.drop(columns=["emotion"]), r"missing column\(s\) emotion"),
    (lambda t: t.drop(columns=["path", "role"]), r"missing column\(s\) path, role"),
    (lambda t: t.drop(columns=["facs_source"]), r"missing column\(s\) facs_source"),
    (lambda t: t.drop(columns=["subject"]), r"missing column\(s\) subject"),
    (lambda t: t.drop(columns=["AU12"]), r"missing column\(s\) AU12"),
    (lambda t: t.iloc[:0], r"no image rows \(only a header\)"),
    (_set("AU12", 3, "abc"), r"line 5, column AU12: AU code 'abc' is not one of -1"),
    (_set("AU12", 3, "-1.0x"), r"line 5, column AU12: AU code '-1.0x'"),
    (_set("AU4", 2, 7), r"line 4, column AU4: AU code 7 is not one of -1"),
    (_set("AU4", 2, -2), r"line 4, column AU4: AU code -2 "),
    (_set("AU4", 2, 1.5), r"line 4, column AU4: AU code 1.5 "),
    (_set("emotion", 1, "joy"), r"line 3: unknown emotion 'joy'"),
    (_set("role", 1, "apex"), r"line 3: unknown role 'apex'"),
    (_set("subject", 0, ""), r"line 2: column subject is empty"),
    (lambda t: t.assign(subject="S000"), r"needs at least 3 subjects with AU codes .* \(has 1\)"),
])
def test_malformed_ckplus_sheet_is_refused_naming_file_and_column_or_line(tmp_path: Path, change,
                                                                          message: str) -> None:
    from aulib.training.datasets import CKPlus

    labels = _write_ck(tmp_path, change(_ck_sheet()))
    with pytest.raises(ValueError, match=message) as e:
        CKPlus.load(tmp_path)
    assert str(labels) in str(e.value) and "\n" not in str(e.value)


def test_empty_ckplus_sheet_is_refused_naming_the_file(tmp_path: Path) -> None:
    from aulib.training.datasets import CKPlus

    labels = _write_ck(tmp_path, text="")
    with pytest.raises(ValueError, match="empty file") as e:
        CKPlus.load(tmp_path)
    assert str(labels) in str(e.value)


def test_a_ckplus_sheet_cut_inside_a_row_is_refused_naming_the_line(tmp_path: Path) -> None:
    """A sheet cut 90 bytes into a row (an interrupted copy) loaded without a word: pandas filled the missing AU
    codes with NaN, a blank code reads as absent, and a peak frame trained as a negative of its AUs."""
    from aulib.training.datasets import CKPlus

    text = _ck_sheet().to_csv(index=False)
    lines = text.splitlines(keepends=True)
    labels = _write_ck(tmp_path, text="".join(lines[:5]) + lines[5][:60])
    with pytest.raises(ValueError, match=r"line 6: \d+ fields, expected \d+ \(the file was cut inside it\?\)") as e:
        CKPlus.load(tmp_path)
    assert str(labels) in str(e.value)


def test_valid_ckplus_sheet_loads_and_a_blank_code_reads_as_absent(tmp_path: Path) -> None:
    from aulib.training.datasets import CKPlus

    _write_ck(tmp_path, _set("AU1", 1, None)(_ck_sheet()))
    ck = CKPlus.load(tmp_path)
    assert len(ck) == 6 and len(set(ck.subjects)) == 3
    assert ck.occurrence([1, 12]).tolist() == [[0, 0], [0, 1]] * 3
    assert ck.intensity([12])[1, 0] == 3


# ------------------------------------------------------------------------------- AU bank fit


def _bank():
    from aulib.au.models import AUOccurrence

    return AUOccurrence(au_numbers=(1, 12), Cs=(1.0,), blocks=(8,), block_weights=(1.0,), feature_version="t", cv=2)


def test_an_au_without_positives_in_an_inner_fold_is_named_with_what_to_do() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 8)).astype(np.float32)
    groups = np.repeat(np.arange(4), 10)
    y = np.zeros((40, 2), int)
    y[::2, 0] = 1
    y[:10:3, 1] = 1  # AU12 present in subject 0 only: one inner fold has no positive example
    message = r"AU12: all training labels of inner CV fold \d/2 \(choosing C\) are 0 \(no positive example.*more"
    with pytest.raises(ValueError, match=message):
        _bank().fit(X, y, groups)


def test_an_au_bank_on_one_subject_says_how_many_subjects_it_needs() -> None:
    rng = np.random.default_rng(0)
    y = np.zeros((10, 2), int)
    y[::2] = 1
    with pytest.raises(ValueError, match=r"needs at least 2 subjects \(has 1\)"):
        _bank().fit(rng.normal(size=(10, 8)).astype(np.float32), y, np.zeros(10, int))


# --------------------------------------------------------------------------------- crop cache


def _gray(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((48, 48), value, np.uint8))


def test_crop_cache_is_not_reused_for_an_image_replaced_at_the_same_path(tmp_path: Path) -> None:
    from aulib.training.crops import aligned_crops

    img = tmp_path / "data" / "a.png"
    _gray(img, 10)
    cache = tmp_path / "cache"
    first = np.asarray(aligned_crops([img], cache, align=False)["crops"]).copy()
    st = img.stat()
    _gray(img, 200)
    # A later write has a later mtime; set it explicitly so a coarse file-system clock cannot hide it.
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    second = np.asarray(aligned_crops([img], cache, align=False)["crops"])
    assert first.mean() < 50 and second.mean() > 150


def test_crop_cache_tells_the_same_relative_data_path_in_two_folders_apart(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from aulib.training.crops import aligned_crops

    _gray(tmp_path / "one" / "data" / "a.png", 10)
    _gray(tmp_path / "two" / "data" / "a.png", 200)
    cache = tmp_path / "cache"
    monkeypatch.chdir(tmp_path / "one")
    first = np.asarray(aligned_crops([Path("data/a.png")], cache, align=False)["crops"]).copy()
    monkeypatch.chdir(tmp_path / "two")
    second = np.asarray(aligned_crops([Path("data/a.png")], cache, align=False)["crops"])
    assert first.mean() < 50 and second.mean() > 150


def test_crop_cache_is_reused_for_unchanged_images(tmp_path: Path) -> None:
    from aulib.training.crops import aligned_crops

    img = tmp_path / "a.png"
    _gray(img, 10)
    assert aligned_crops([img], tmp_path / "cache", align=False, only_cached=True) is None
    aligned_crops([img], tmp_path / "cache", align=False)
    assert aligned_crops([img], tmp_path / "cache", align=False, only_cached=True) is not None


# ------------------------------------------------------------------------------ --init-from


@needs_torch
@pytest.mark.parametrize("kind", ["onnx", "no_model", "wrong_network"])
def test_init_from_a_file_that_is_no_emotion_checkpoint_is_refused_before_any_work(tmp_path: Path,
                                                                                   kind: str) -> None:
    import torch

    from aulib.training.multitask import train_multitask

    bad = tmp_path / "bad.pt"
    if kind == "onnx":
        bad.write_bytes(b"\x08\x07\x12\x07pytorch" + bytes(200))  # what an .onnx file starts like
        message = "not a torch checkpoint"
    elif kind == "no_model":
        torch.save({"epoch": 3}, bad)
        message = "without a 'model' state dict"
    else:
        torch.save({"model": {"weight": torch.zeros(3, 3)}}, bad)
        message = "not an EfficientNet-Lite0 checkpoint"
    # No data folder at all: anything but this ValueError means the check came after other work.
    with pytest.raises(ValueError, match=message) as e:
        train_multitask(tmp_path / "no_data", tmp_path / "run", epochs=1, init_from=bad, folds=2,
                        log=lambda _: None)
    assert str(bad) in str(e.value) and "--init-from" in str(e.value)
    assert not (tmp_path / "run").exists()


@needs_torch
def test_init_from_an_emotion_run_folder_is_accepted(tmp_path: Path) -> None:
    import torch

    from aulib.training.multitask import N_EMO, init_checkpoint
    from aulib.training.torch_model import EfficientNetLite0

    torch.save({"model": EfficientNetLite0(N_EMO).state_dict(), "epoch": 0, "image_size": 112,
                "command": "test"}, tmp_path / "best.pt")
    assert init_checkpoint(tmp_path) == tmp_path / "best.pt"


# --------------------------------------------------------------------------- evaluate faces


def test_evaluate_faces_names_a_missing_sample_before_any_work(tmp_path: Path) -> None:
    from aulib.evaluate_faces import SAMPLE_FACES, evaluate_faces

    samples = tmp_path / "samples"
    samples.mkdir()
    for name in (*SAMPLE_FACES, "WolfgangLanger_Pexels.mp4"):  # present (empty: never read), no_face.mp4 missing
        (samples / name).write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"samples/no_face\.mp4"):
        evaluate_faces(tmp_path, tmp_path / "reports", log=lambda _: None)
    assert not (tmp_path / "reports").exists()


@needs_torch
def test_installing_a_new_emotion_cnn_keeps_the_one_the_au_models_read(tmp_path: Path, monkeypatch) -> None:
    """``aulib train cnn`` (installs by default) replaced the CNN whose embedding the AU banks read: every later
    analysis failed "AU models need the CNN with sha256 …, which is not in the manifest"."""
    import shutil

    import aulib.models as models
    from aulib.au.embedding import embedding_cnn_for
    from aulib.au.linear import LinearBank
    from aulib.training.cnn import install_model

    shipped = models.MODELS_DIR
    folder, manifest = tmp_path / "models", tmp_path / "models" / "manifest.json"
    folder.mkdir()
    for name in ("emotion_cnn.onnx", "au_svm.npz", "au_svr.npz"):
        shutil.copyfile(shipped / name, folder / name)
    entries = {n: e for n, e in models.read_manifest().get("models", {}).items()
               if n in ("emotion_cnn.onnx", "au_svm.npz", "au_svr.npz")}
    manifest.write_text(__import__("json").dumps({"models": entries}))
    real_register, real_read = models.register, models.read_manifest
    monkeypatch.setattr(models, "MODELS_DIR", folder)
    monkeypatch.setattr(models, "register", lambda p, info, m=manifest: real_register(p, info, m))
    monkeypatch.setattr(models, "read_manifest", lambda m=manifest: real_read(m))
    new = tmp_path / "run" / "emotion_cnn.onnx"
    new.parent.mkdir()
    new.write_bytes(b"another network")
    said: list[str] = []
    install_model(new, {"kind": "emotion_cnn"}, log=said.append)
    version = LinearBank.peek_version(folder / "au_svm.npz")
    kept = embedding_cnn_for(version)
    assert kept != "emotion_cnn.onnx" and (folder / kept).read_bytes() == (shipped / "emotion_cnn.onnx").read_bytes()
    assert (folder / "emotion_cnn.onnx").read_bytes() == b"another network"
    assert len(said) == 1 and "retrain them" in said[0] and kept in said[0]
    install_model(new, {"kind": "emotion_cnn"}, log=said.append)  # again: nothing more to keep
    assert len(said) == 1 and len(list(folder.glob("emotion_cnn_*.onnx"))) == 1


def test_training_commands_refuse_the_models_folder_and_settings_that_cannot_work(tmp_path: Path) -> None:
    """--out the package's models folder replaced the shipped CNN without its manifest entry; --ema 1 shipped the
    untrained network; quantising a shipped file wrote into the package; an unwritable --cache was found after
    the features were made."""
    from typer.testing import CliRunner

    from aulib.cli import app
    from aulib.models import MODELS_DIR

    runner = CliRunner()
    (tmp_path / "ckplus48").mkdir()  # --data is checked first: the svm case below reaches its --cache
    for args, says in ((["train", "cnn", "--out", str(MODELS_DIR), "--data", str(tmp_path)], "shipped models folder"),
                       (["train", "multitask", "--out", str(MODELS_DIR), "--data", str(tmp_path)],
                        "shipped models folder"),
                       (["train", "cnn", "--ema", "1", "--data", str(tmp_path)], "--ema must be below 1"),
                       (["train", "quantize", str(MODELS_DIR / "emotion_cnn.onnx"), "--data", str(tmp_path)],
                        "a shipped network"),
                       (["train", "svm", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                         "--reports", str(tmp_path / "r"), "--cache", "/proc/no/cache"], "cannot write there")):
        before = sorted(p.name for p in MODELS_DIR.iterdir())
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and says in r.output, (args, r.output)
        assert sorted(p.name for p in MODELS_DIR.iterdir()) == before


def test_a_ferplus_sheet_saved_with_a_bom_is_read(tmp_path: Path) -> None:
    """Excel's byte-order mark became part of the first image's name: "…/\\ufefffer0000000.png: no such file"."""
    from aulib.training.datasets import read_ferplus

    folder = tmp_path / "ferplus" / "FER2013Train"
    folder.mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(folder / f"fer{i:07d}.png"), np.full((48, 48), 100 + i, np.uint8))
    rows = "\n".join(_fer_row(f"fer{i:07d}.png") for i in range(3))
    (folder / "label.csv").write_bytes("\ufeff".encode() + rows.encode() + b"\n")
    got = read_ferplus(tmp_path, "train")
    assert [Path(p).name for p in got.paths] == [f"fer{i:07d}.png" for i in range(3)]


@needs_torch
def test_resuming_with_other_settings_is_refused(tmp_path: Path) -> None:
    """A resumed run ignored a new --lr/--batch-size without a word and recorded them as its provenance."""
    import torch

    from aulib.training.cnn import _optimiser

    last = tmp_path / "last.pt"
    torch.save({"settings": {"lr": 0.001, "batch_size": 64}, "model": {}}, last)
    with pytest.raises(ValueError, match=r"trained with lr 0.001 \(now 0.5\).*--restart"):
        _optimiser(torch.nn.Linear(2, 2), 0.5, 0.05, 10, 1, last, True, lambda _: None,
                   {"lr": 0.5, "batch_size": 64})


def test_a_mistyped_data_folder_is_refused_before_any_output_folder_is_made(tmp_path: Path) -> None:
    """``aulib train svm --data /typo`` made the --out, --cache and --reports folders, then said "no such
    folder"; the data folder is checked first now."""
    from typer.testing import CliRunner

    from aulib.cli import app

    made = {o: tmp_path / o.strip("-") for o in ("--out", "--cache", "--reports")}
    for command in (["train", "svm"], ["train", "svr"], ["evaluate", "occlusion"]):
        args = [a for o, d in made.items() if (o != "--out" or command[0] == "train") for a in (o, str(d))]
        res = CliRunner().invoke(app, [*command, "--data", str(tmp_path / "typo"), *args])
        assert res.exit_code == 2 and "no such folder" in res.output, (command, res.output)
        assert not any(d.exists() for d in made.values()), command


def test_training_progress_is_said_in_plain_lines_when_not_on_a_terminal(capsys):
    """A training run logged to a file showed nothing for the 4–10 minutes its crops and features took: the
    progress bars draw only on a terminal."""
    from aulib.training.crops import progress

    assert list(progress(list(range(95)), "aligned crops")) == list(range(95))
    lines = capsys.readouterr().err.splitlines()
    assert 10 <= len(lines) <= 11 and lines[0].startswith("aligned crops: 9/95 (") and "95/95" in lines[-1], lines
