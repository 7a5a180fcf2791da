"""Model files: every file the pipeline loads is in the manifest and verified; the verification cache.

A missing, tampered or foreign model file must raise :class:`aulib.models.ModelFileError` naming the
file — for our own models, the shipped RetinaFace ONNX and dlib's predictor in face-recognition-models.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

import pytest

import aulib.models as models
from aulib.models import MODELS_DIR, ModelFileError, model_path, read_manifest, shipped_location, verify


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own verification cache (on disk and in memory)."""
    cache = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.delenv("AULIB_VERIFY_MODELS", raising=False)
    monkeypatch.setattr(models, "_VERIFIED", {})
    return cache


def test_manifest_lists_every_model_file_with_a_matching_sha256(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AULIB_VERIFY_MODELS", "full")
    entries = read_manifest()["models"]
    shipped = {p.name for p in MODELS_DIR.iterdir()
               if p.is_file() and p.suffix not in (".py", ".pyc") and p.name != "manifest.json"}
    assert shipped <= set(entries), shipped - set(entries)
    for required in ("retinaface_mnet025.onnx", "shape_predictor_68_face_landmarks.dat", "emotion_cnn.onnx"):
        assert required in entries
    for name, entry in entries.items():
        path = model_path(name)  # full sha256 of every file, wherever it is installed
        assert path.stat().st_size == entry["bytes"]
    dlib_entry = entries["shape_predictor_68_face_landmarks.dat"]
    assert dlib_entry["source"] == "face-recognition-models 0.3.0 wheel"
    assert "face_recognition_models" in str(shipped_location("shape_predictor_68_face_landmarks.dat"))


def test_missing_detector_model_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aulib.face.detect import RetinaFaceDetector

    monkeypatch.setattr(models, "MODELS_DIR", tmp_path)
    with pytest.raises(ModelFileError, match=r"retinaface_mnet025\.onnx: model file not found"):
        RetinaFaceDetector()


@pytest.mark.parametrize("missing,options", [
    ("iris_landmark.onnx", {}), ("emotion_cnn_ema.onnx", {}), ("multitask_cnn.onnx", {"gaze": False}),
])
def test_networks_loaded_on_first_use_are_checked_when_the_analyzer_is_made(
        missing: str, options: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The iris network and the images' second opinions load when first needed: a broken install missing
    one gave every input of a batch its own error row; now the analyzer is refused once, naming the file.
    Without the option that needs it (``gaze=False``, ``tta=False``), the analyzer works without the file."""
    from aulib import Analyzer

    for f in MODELS_DIR.iterdir():
        if f.is_file() and f.name != missing:
            (tmp_path / f.name).symlink_to(f)
    monkeypatch.setattr(models, "MODELS_DIR", tmp_path)
    with pytest.raises(ModelFileError, match=rf"{missing.replace('.', '[.]')}: model file not found"):
        Analyzer(**options)
    without = {"iris_landmark.onnx": {"gaze": False}}.get(missing, {"tta": False, **options})
    assert Analyzer(**without).get(str(Path(__file__).parent.parent / "src/aulib/data/sample_face.jpg"))


def test_tampered_or_foreign_detector_model_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "retinaface_mnet025.onnx"
    data = bytearray((MODELS_DIR / "retinaface_mnet025.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum mismatch") as e:
        model_path("retinaface_mnet025.onnx", bad)
    assert str(bad) in str(e.value) and "reinstall aulib" in str(e.value)  # what to do, as the README promises
    foreign = tmp_path / "other.onnx"
    shutil.copy(MODELS_DIR / "emotion_cnn.onnx", foreign)
    with pytest.raises(ModelFileError, match="manifest says") as e:
        model_path("retinaface_mnet025.onnx", foreign)
    assert str(foreign) in str(e.value) and "reinstall aulib" in str(e.value)


def test_tampered_landmark_predictor_is_refused(tmp_path: Path) -> None:
    """Same size as dlib's file (sparse, all zeros), so it takes the full-hash path."""
    from aulib.face import LandmarkPredictor

    fake = tmp_path / "shape_predictor_68_face_landmarks.dat"
    with open(fake, "wb") as f:
        f.truncate(read_manifest()["models"]["shape_predictor_68_face_landmarks.dat"]["bytes"])
    with pytest.raises(ModelFileError, match="checksum mismatch") as e:
        LandmarkPredictor(str(fake))
    assert str(fake) in str(e.value)


def test_landmark_predictor_package_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "face_recognition_models" else real(name, *a))
    with pytest.raises(ModelFileError, match=r"shape_predictor_68_face_landmarks\.dat.*pip install face-recognition"):
        model_path("shape_predictor_68_face_landmarks.dat")


def test_verification_is_cached_by_file_identity(tmp_path: Path, private_cache: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "au_svm.npz"
    shutil.copy2(MODELS_DIR / "au_svm.npz", path)
    sha = read_manifest()["models"]["au_svm.npz"]["sha256"]
    verify(path, sha)
    record = json.loads((private_cache / "aulib" / "verified-models.json").read_text())
    assert record[os.path.realpath(path)]["sha256"] == sha

    def no_hashing(p: object) -> str:
        raise AssertionError("an unchanged, already verified file was hashed again")

    monkeypatch.setattr(models, "sha256_of", no_hashing)
    monkeypatch.setattr(models, "_VERIFIED", {})  # a new process: only the on-disk record remains
    assert verify(path, sha) == path


def test_file_changed_after_caching_is_hashed_again(tmp_path: Path) -> None:
    """Editing in place and restoring the mtime still changes the ctime: the cache does not hide it."""
    path = tmp_path / "au_svm.npz"
    shutil.copy2(MODELS_DIR / "au_svm.npz", path)
    sha = read_manifest()["models"]["au_svm.npz"]["sha256"]
    verify(path, sha)
    st = path.stat()
    time.sleep(0.01)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        verify(path, sha)


def test_unwritable_cache_falls_back_to_full_hashing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    calls = []
    real = models.sha256_of
    monkeypatch.setattr(models, "sha256_of", lambda p: calls.append(p) or real(p))
    sha = read_manifest()["models"]["au_svm.npz"]["sha256"]
    for _ in range(2):
        monkeypatch.setattr(models, "_VERIFIED", {})  # two "processes"
        verify(MODELS_DIR / "au_svm.npz", sha)
    assert len(calls) == 2


def test_a_cache_file_that_cannot_be_replaced_leaves_no_temporary_copies(private_cache: Path) -> None:
    """Where verified-models.json could not be replaced (a folder of that name, a full disk), each run left its
    temporary copy behind: 14 files per run."""
    record = private_cache / "aulib" / "verified-models.json"
    record.mkdir(parents=True)  # os.replace onto a folder fails, as on a full disk
    sha = read_manifest()["models"]["au_svm.npz"]["sha256"]
    verify(MODELS_DIR / "au_svm.npz", sha)
    assert sorted(p.name for p in record.parent.iterdir()) == ["verified-models.json"]


def test_a_bank_with_nan_weights_and_a_valid_checksum_is_refused(tmp_path: Path) -> None:
    """A training run that wrote NaN weights records a valid checksum: every face then got NaN probabilities,
    read as "absent", with success=1 and no word."""
    import numpy as np

    from aulib.au.models import AUIntensity, AUOccurrence

    for cls, name, key in ((AUOccurrence, "au_svm.npz", "coef"), (AUIntensity, "au_svr.npz", "intercept")):
        with np.load(MODELS_DIR / name) as z:
            arrays = dict(z)
        arrays[key] = arrays[key] * np.nan
        bad = tmp_path / name
        np.savez(bad, **arrays)
        with pytest.raises(ModelFileError, match=rf"^{bad}: {key} holds NaN or infinite values"):
            cls.load(bad)


def test_embedding_output_edit_equals_the_onnx_package_edit() -> None:
    """The protobuf-level edit gives the very bytes ``onnx`` would produce (onnx is a dev/train extra)."""
    onnx = pytest.importorskip("onnx")
    from aulib.au.embedding import add_embedding_output

    raw = (MODELS_DIR / "emotion_cnn.onnx").read_bytes()
    model = onnx.load_from_string(raw)
    name = [n for n in model.graph.node if n.op_type in ("Gemm", "MatMul")][-1].input[0]
    model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    edited = add_embedding_output(raw)
    assert edited == model.SerializeToString()
    assert add_embedding_output(edited) == edited  # already an output: unchanged
    with pytest.raises(ValueError):
        add_embedding_output(raw[: len(raw) // 3])
    with pytest.raises(ValueError):
        add_embedding_output(b"not an onnx model at all")


def _retina_outputs(session) -> list:
    import numpy as np

    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 160, 160)).astype(np.float32)
    return session.run(None, {session.get_inputs()[0].name: x})


def test_optimised_graphs_are_cached_per_machine_and_rebuilt_when_touched(private_cache: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime's optimised graph is kept in the user cache and loaded without re-optimising (a
    third of a photo's model loading); outputs are identical; a cached file that was changed, or a
    cache that cannot be written, or AULIB_ORT_CACHE=0, falls back to building the session."""
    import numpy as np

    from aulib.models import onnx_session

    path = MODELS_DIR / "retinaface_mnet025.onnx"
    key = read_manifest()["models"][path.name]["sha256"][:24]
    plain = onnx_session(path, path)  # no key: never cached
    assert not (private_cache / "aulib" / "onnxruntime").exists()
    first = onnx_session(path, path, cache_key=key)
    (cached,) = (private_cache / "aulib" / "onnxruntime").glob(f"{key}-*.onnx")
    built = []
    real = models.sha256_of
    monkeypatch.setattr(models, "sha256_of", lambda p: built.append(p) or real(p))
    monkeypatch.setattr(models, "_VERIFIED", {})  # a new process
    second = onnx_session(path, path, cache_key=key)  # from the cache: nothing written or hashed
    assert built == []
    for a, b, c in zip(_retina_outputs(plain), _retina_outputs(first), _retina_outputs(second)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(b, c)
    time.sleep(0.01)
    cached.write_bytes(cached.read_bytes()[:5000])  # damaged after it was recorded
    third = onnx_session(path, path, cache_key=key)  # not trusted: rebuilt and recorded again
    assert built == [cached] and cached.stat().st_size > 5000
    np.testing.assert_array_equal(_retina_outputs(third)[0], _retina_outputs(plain)[0])
    monkeypatch.setenv("AULIB_ORT_CACHE", "0")
    shutil.rmtree(cached.parent)
    onnx_session(path, path, cache_key=key)
    assert not cached.parent.exists()
    monkeypatch.delenv("AULIB_ORT_CACHE")
    blocker = private_cache.parent / "file-not-dir"
    blocker.write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    np.testing.assert_array_equal(_retina_outputs(onnx_session(path, path, cache_key=key))[0],
                                  _retina_outputs(plain)[0])


def _nan_network() -> bytes:
    """The shipped emotion network with one weight set to NaN (what a diverged training run installs)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(MODELS_DIR / "emotion_cnn_ema.onnx"))
    t = next(t for t in m.graph.initializer if len(t.dims) == 4)
    a = numpy_helper.to_array(t).copy()
    a.flat[0] = np.nan
    t.CopyFrom(numpy_helper.from_array(a, t.name))
    return m.SerializeToString()


def test_a_network_giving_nan_is_refused_naming_its_file() -> None:
    """NaN weights with a valid checksum gave NaN AUs and emotions with success=1 and turned AUs absent."""
    import numpy as np

    session = models.onnx_session(_nan_network(), "emotion_cnn_ema.onnx")
    with pytest.raises(ModelFileError, match=r"^emotion_cnn_ema\.onnx: the network gives non-finite outputs"):
        session.run(None, {"image": np.full((1, 3, 112, 112), 128, np.float32)})


def test_a_network_swapped_for_another_is_refused_when_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file swapped for another network (checksums made to match) failed at every input in its internals'
    words: "not enough values to unpack", "Required inputs (['input_1']) are missing", "cannot reshape array"."""
    from aulib.cnn.inference import MultitaskCNN
    from aulib.face.detect import RetinaFaceDetector
    from aulib.face.gaze import _session

    monkeypatch.setattr("aulib.cnn.inference.model_path", lambda name, path=None: MODELS_DIR / "emotion_cnn_ema.onnx")
    with pytest.raises(ModelFileError, match=r"emotion_cnn_ema\.onnx: not the network aulib expects here .*au_probs"):
        MultitaskCNN()
    monkeypatch.setattr(models, "model_path", lambda name, path=None: MODELS_DIR / "iris_landmark.onnx")
    with pytest.raises(ModelFileError, match=r"iris_landmark\.onnx: not the network aulib expects here"):
        RetinaFaceDetector()
    with pytest.raises(ModelFileError, match=r"retinaface_mnet025\.onnx: not the network aulib expects here"):
        _session.__wrapped__(str(MODELS_DIR / "retinaface_mnet025.onnx"))


@pytest.mark.parametrize("text,why", [
    ("[]", "not a model manifest"), ("null", "not a model manifest"), ('{"models": {"a.onnx": "x"}}',
                                                                        "not a model manifest"),
    (b"\xff\xfe{", "unreadable model manifest"), ("{", "unreadable model manifest")])
def test_a_malformed_manifest_is_named_with_what_to_do(tmp_path: Path, text, why) -> None:
    """A list was "unexpected AttributeError … a bug in aulib"; bad bytes "'utf-8' codec can't decode" unnamed."""
    path = tmp_path / "manifest.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ModelFileError, match=rf"^{path}: {why}.*reinstall aulib"):
        read_manifest(path)


def test_a_missing_manifest_or_entry_field_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped manifest missing read as "retinaface_mnet025.onnx: not listed in …/manifest.json"."""
    path = tmp_path / "manifest.json"
    monkeypatch.setattr(models, "MANIFEST", path)
    with pytest.raises(ModelFileError, match="the model manifest is missing; reinstall aulib"):
        read_manifest(path)
    path.write_text(json.dumps({"models": {"a.onnx": {"bytes": 5}}}))
    with pytest.raises(ModelFileError, match="the entry of a.onnx has no sha256"):
        models.model_entry("a.onnx", path)


def test_an_edited_graphs_cached_copy_is_not_reused_after_the_edit_changes(tmp_path: Path, private_cache: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The optimised copy of an edited graph was keyed by the model's checksum and a fixed tag: a copy made by
    another aulib version's edit was loaded after an upgrade (AU12_r off by 1.4, success=1). The key now holds the
    editing module's source."""
    import importlib
    import sys

    code = '''
from aulib.au.embedding import EmotionEmbeddingCNN


class Edited(EmotionEmbeddingCNN):
    graph_tag = "-probe"

    def _model(self):
        return {body}
'''
    mod = tmp_path / "edited_graph_probe.py"
    monkeypatch.syspath_prepend(str(tmp_path))
    mod.write_text(code.format(body="super()._model()"))  # the embedding as an extra output
    first = importlib.import_module("edited_graph_probe").Edited()
    assert len(first.session.get_outputs()) == 2
    mod.write_text(code.format(body="str(self.path)") + "\n# another version's edit: none\n")
    sys.modules.pop("edited_graph_probe")
    importlib.invalidate_caches()
    second = importlib.import_module("edited_graph_probe").Edited()
    assert len(second.session.get_outputs()) == 1  # its own graph, not the first version's cached copy
    sys.modules.pop("edited_graph_probe")


def test_an_import_failure_says_what_to_do() -> None:
    """A missing aulib.models made the error handler fail on its own import (two tracebacks); a broken core
    dependency was told to install an extra."""
    from aulib.cli import error_line

    assert "reinstall it (pip install --force-reinstall aulib)" in error_line(
        ModuleNotFoundError("No module named 'aulib.models'", name="aulib.models"))
    assert "cv2 is a dependency of aulib" in error_line(ModuleNotFoundError("No module named 'cv2'", name="cv2"))
    assert "extra" in error_line(ModuleNotFoundError("No module named 'streamlit'", name="streamlit"))


def test_settings_from_the_environment_read_the_usual_words_and_name_a_bad_value(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """AULIB_ORT_CACHE=off and AULIB_VERIFY_MODELS=FULL were ignored; AULIB_MAX_TEMP_BYTES=abc gave "invalid literal
    for int()" naming nothing; a relative XDG_CACHE_HOME wrote the cache into the working folder."""
    from aulib import env

    monkeypatch.setenv("AULIB_ORT_CACHE", "off")
    assert models._optimised_path("abc") is None
    monkeypatch.setenv("AULIB_ORT_CACHE", "1")
    monkeypatch.setenv("AULIB_VERIFY_MODELS", "FULL")
    assert models._full_verification()
    monkeypatch.setenv("AULIB_VERIFY_MODELS", "everything")
    with pytest.raises(ValueError, match="AULIB_VERIFY_MODELS"):
        models._full_verification()
    monkeypatch.setenv("AULIB_MAX_TEMP_BYTES", "abc")
    with pytest.raises(ValueError, match=r"environment variable AULIB_MAX_TEMP_BYTES='abc': give a whole number"):
        env.number("AULIB_MAX_TEMP_BYTES", 5, 0, int)
    monkeypatch.setenv("AULIB_MAX_TEMP_BYTES", "-5")
    with pytest.raises(ValueError, match="from 0 to"):
        env.number("AULIB_MAX_TEMP_BYTES", 5, 0, int)
    # inf was taken, and every URL then read "no such file" (asyncio's OverflowError hid the cause)
    from aulib.storage import url_timeout

    for bad in ("inf", "1e400", "nan", "-inf"):
        monkeypatch.setenv("AULIB_URL_TIMEOUT", bad)
        with pytest.raises(ValueError, match=f"AULIB_URL_TIMEOUT='{bad}': give a number from 0.1 to 1e"):
            url_timeout()
    monkeypatch.setenv("XDG_CACHE_HOME", "rel")
    assert env.cache_root() == os.path.join(os.path.expanduser("~"), ".cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert env.cache_root() == str(tmp_path)
    # a home folder that does not exist (a service account's /nonexistent) is not created for the cache, and an
    # empty HOME does not put it at the root: no cache then, and the models still load
    from aulib.models import model_path

    monkeypatch.delenv("XDG_CACHE_HOME")
    for name in ("AULIB_VERIFY_MODELS", "AULIB_ORT_CACHE"):  # set to bad values above
        monkeypatch.delenv(name, raising=False)
    for home in (str(tmp_path / "nonexistent"), ""):
        monkeypatch.setenv("HOME", home)
        assert env.cache_root() is None
        assert model_path("iris_landmark.onnx").is_file()
    assert not (tmp_path / "nonexistent").exists()


def test_onnxruntime_keeps_no_telemetry_file_and_prints_no_telemetry_warning(tmp_path):
    """onnxruntime's telemetry wrote a device-id file under the cache folder and, where that folder could not be
    written, printed "Failed to persist telemetry device ID" on every run (piped output, every Dask worker):
    ``disable_telemetry_events()`` came after the import that does both."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    code = "import aulib.models as m; m.onnx_session(m.model_path('retinaface_mnet025.onnx'), 'retinaface')"
    for cache in (tmp_path / "cache", "/proc/no-such-folder"):
        env.update(HOME=str(tmp_path), XDG_CACHE_HOME=str(cache))
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
        assert res.returncode == 0 and "telemetry" not in res.stderr, res.stderr
    assert not list(tmp_path.rglob("*Microsoft*")) and not list(tmp_path.rglob("*onnxruntime.db"))
