"""Model files and their manifest.

Models are data, not code: every model file the pipeline loads is listed in ``manifest.json``
with its sha256, size, where it comes from and (for our own models) what it was trained on and
its evaluation figures. :func:`model_path` verifies the checksum before anything reads the file,
so a truncated download, a hand-edited file or a model from another AU set is refused with a
:class:`ModelFileError` naming the file instead of giving silently wrong predictions.

Most files live in this folder. An entry with a ``package`` field names a file inside another
installed distribution instead (dlib's 100 MB 68-point predictor stays in the
``face-recognition-models`` wheel rather than being copied into ours); it is located with
``importlib.util.find_spec`` (without importing that package) and verified the same way.

Verification cost: hashing all model files (~115 MB) takes a few hundred ms, longer than the
rest of start-up. So a successful full hash is remembered (see :func:`verify`) and later loads
of the same unchanged file only ``stat`` it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

MODELS_DIR = Path(__file__).resolve().parent
MANIFEST = MODELS_DIR / "manifest.json"


class ModelFileError(RuntimeError):
    """A model file is missing, corrupted (checksum mismatch) or not the kind expected."""


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


REINSTALL = "reinstall aulib (pip install --force-reinstall aulib)"


def read_manifest(manifest: str | Path = MANIFEST) -> dict[str, Any]:
    """The manifest as a dict (``{"models": {name: entry}}``); empty when there is none yet (a training run's
    own manifest). The shipped one missing, unreadable or not of that shape is a :class:`ModelFileError` naming it
    (a missing one read as "model not listed", a list as "a bug in aulib")."""
    manifest = Path(manifest)
    if not manifest.exists() and not manifest.is_symlink():
        if manifest == MANIFEST:
            raise ModelFileError(f"{manifest}: the model manifest is missing; {REINSTALL}")
        return {"models": {}}
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{manifest}: unreadable model manifest ({type(e).__name__}: {e}); {REINSTALL}") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict) or not all(isinstance(v, dict) for v in models.values()):
        raise ModelFileError(f"{manifest}: not a model manifest (a 'models' object of entries); {REINSTALL}")
    return data


def model_entry(name: str, manifest: str | Path = MANIFEST) -> dict[str, Any]:
    """Manifest entry of the shipped model ``name`` (file name inside the models folder)."""
    entries = read_manifest(manifest).get("models", {})
    if name not in entries:
        raise ModelFileError(f"{name}: not listed in {manifest}; {REINSTALL}")
    entry = entries[name]
    if not isinstance(entry.get("sha256"), str) or not isinstance(entry.get("bytes", 0), int):
        raise ModelFileError(f"{manifest}: the entry of {name} has no sha256 text or byte count; {REINSTALL}")
    return entry


def _cache_file() -> Path | None:
    """Where verified-file records are kept: ``$XDG_CACHE_HOME/aulib`` or ``~/.cache/aulib``; None without a home
    folder (:func:`aulib.env.cache_root`): every process then hashes in full, as where the cache is unwritable."""
    from aulib.env import cache_root

    root = cache_root()
    return None if root is None else Path(root) / "aulib" / "verified-models.json"


# Records verified in this process (identity key → sha256), so a file checked twice costs one stat.
_VERIFIED: dict[str, str] = {}


def _identity(path: Path) -> tuple[str, str]:
    """(real path, stat identity) of a file: size, mtime, ctime, inode and device."""
    real = os.path.realpath(path)
    st = os.stat(real)
    return real, f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}:{st.st_dev}"


def _read_cache() -> dict[str, Any]:
    cache = _cache_file()
    if cache is None:
        return {}
    try:
        data = json.loads(cache.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _remember(real: str, ident: str, sha: str) -> None:
    """Record a fully hashed file in the user cache; silently does nothing where it is unwritable."""
    _VERIFIED[f"{real}|{ident}"] = sha
    cache = _cache_file()
    if cache is None:
        return
    tmp = None
    try:
        data = _read_cache()
        data[real] = {"stat": ident, "sha256": sha}
        cache.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=cache.parent, prefix=".verified-", delete=False) as f:
            tmp = f.name
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, cache)  # atomic: concurrent processes never read a half-written file
        tmp = None
    except OSError:
        pass
    finally:  # a full disk, or a folder where the file should be: its temporary copy was left, 14 per run
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _cached_sha256(real: str, ident: str) -> str | None:
    key = f"{real}|{ident}"
    if key in _VERIFIED:
        return _VERIFIED[key]
    if _full_verification():
        return None
    rec = _read_cache().get(real)
    if isinstance(rec, dict) and rec.get("stat") == ident and isinstance(rec.get("sha256"), str):
        _VERIFIED[key] = rec["sha256"]
        return rec["sha256"]
    return None


def _full_verification() -> bool:
    """``AULIB_VERIFY_MODELS=full`` (any case): every model file hashed in full, no cached record trusted."""
    from aulib.env import OFF

    value = os.environ.get("AULIB_VERIFY_MODELS", "").strip().lower()
    if value not in ("", "full", *OFF):
        raise ValueError(f"environment variable AULIB_VERIFY_MODELS={value!r}: give 'full' (or leave it unset)")
    return value == "full"


def verify(path: str | Path, expected_sha256: str, expected_bytes: int | None = None) -> Path:
    """Return ``path`` if it exists and its sha256 matches, else raise :class:`ModelFileError`.

    The first time a file is checked it is hashed in full; the result is then cached, keyed by
    the file's real path and its stat identity (size, mtime_ns, ctime_ns, inode, device), in
    memory and in a small JSON under the user cache dir (``$XDG_CACHE_HOME/aulib`` or
    ``~/.cache/aulib``). Later checks of the unchanged file cost one ``stat`` instead of hashing
    ~115 MB (about 0.3 s of every start-up).

    Trade-off: any normal change to the file — a re-download, truncation, an editor or a copy over
    it — changes its size, mtime or at least its ctime (which user programs cannot set), so it is
    hashed again. What the cache does not defend against is someone who can write the user's cache
    file and deliberately records a tampered file as verified: the checksum guards against
    corruption and wrong files, it is not a signature. Set ``AULIB_VERIFY_MODELS=full`` to hash
    every file on every load. Where the cache is unwritable, every process hashes in full.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found; {REINSTALL}")
    real, ident = _identity(path)
    size = int(ident.split(":", 1)[0])
    if expected_bytes is not None and size != expected_bytes:
        raise ModelFileError(
            f"{path}: size {size} bytes, manifest says {expected_bytes}; "
            f"the file is truncated, corrupted or is not the model this aulib version ships; {REINSTALL}"
        )
    cached = _cached_sha256(real, ident)
    if cached == expected_sha256:
        return path
    actual = sha256_of(path)
    if actual != expected_sha256:
        raise ModelFileError(
            f"{path}: checksum mismatch (sha256 {actual[:12]}…, manifest says {expected_sha256[:12]}…); "
            f"the file is corrupted or is not the model this aulib version ships; {REINSTALL}"
        )
    _remember(real, ident, actual)
    return path


def shipped_location(name: str, entry: dict[str, Any] | None = None) -> Path:
    """Where the model file ``name`` is installed: this folder, or inside the package it names.

    A ``package`` entry is found without importing that package (face_recognition_models'
    ``__init__`` needs ``pkg_resources``, which recent setuptools no longer ships).
    """
    entry = model_entry(name) if entry is None else entry
    package = entry.get("package")
    if not package:
        return MODELS_DIR / name
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        dist = entry.get("distribution", package)
        raise ModelFileError(f"{name}: model file not found, {dist} is not installed (pip install {dist})")
    return Path(list(spec.submodule_search_locations)[0]) / entry.get("path", name)


def model_path(name: str, path: str | Path | None = None) -> Path:
    """Path of model ``name`` after checking it against the manifest.

    ``path`` overrides where the file is read from (e.g. a user's copy); the checksum recorded
    for ``name`` must still match, so a wrong or damaged file never loads.
    """
    entry = model_entry(name)
    where = Path(path) if path is not None else shipped_location(name, entry)
    return verify(where, entry["sha256"], entry.get("bytes"))


def register(path: str | Path, info: dict[str, Any], manifest: str | Path = MANIFEST) -> dict[str, Any]:
    """Add or replace the manifest entry of ``path`` (a file in the models folder) with its sha256.

    Used by the training commands so the manifest is always generated, never edited by hand.
    """
    path = Path(path)
    data = read_manifest(manifest)
    entry = {"sha256": sha256_of(path), "bytes": path.stat().st_size, **info}
    data.setdefault("models", {})[path.name] = entry
    data.setdefault(
        "licence",
        "Models trained on CK+ (Cohn-Kanade extended) and FER2013/FER+ data: these datasets are licensed "
        "for non-commercial research only, and so are the shipped weights derived from them.",
    )
    _write_manifest(data, manifest)
    return entry


def _write_manifest(data: dict[str, Any], manifest: str | Path) -> None:
    """The manifest written whole or not at all (a Ctrl-C or a full disk mid-write left every model unverifiable)."""
    path = Path(manifest)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def unregister(name: str, manifest: str | Path = MANIFEST) -> None:
    """Drop the entry of a model file that is no longer shipped (the file itself is left alone)."""
    data = read_manifest(manifest)
    data.get("models", {}).pop(name, None)
    _write_manifest(data, manifest)


class GatedSession:
    """An onnxruntime session whose runs are native stretches (:func:`aulib.background.native`): the
    interpreter's exit waits for a run in any thread to end instead of cutting it off (an abort, exit
    134). Everything else is the session's own."""

    __slots__ = ("session", "label")

    def __init__(self, session: Any, label: str | Path = "") -> None:
        self.session = session
        self.label = label

    def run(self, *args: Any, **kwargs: Any) -> Any:
        from aulib.background import native

        with native():
            out = self.session.run(*args, **kwargs)
        # a network whose weights hold a NaN (a diverged training run installed, a damaged edit) gave NaN AUs and
        # emotions with success=1 and turned AUs absent without a word
        import numpy as np

        for o in out:
            if getattr(o, "dtype", None) is not None and o.dtype.kind == "f" and not np.isfinite(o).all():
                raise ModelFileError(f"{self.label}: the network gives non-finite outputs (NaN or inf): its weights "
                                     f"are damaged or a training run diverged; {REINSTALL}, or retrain it")
        return out

    def check(self, inputs: dict[str, tuple], outputs: dict[str, tuple]) -> GatedSession:
        """ModelFileError unless the network has these inputs and outputs (names, and each int dimension; None:
        any): a file swapped for another network failed at every input with its internals' words ("not enough
        values to unpack", "cannot reshape array of size 1344")."""
        have = {**{i.name: i.shape for i in self.session.get_inputs()},
                **{o.name: o.shape for o in self.session.get_outputs()}}
        for name, shape in {**inputs, **outputs}.items():
            got = have.get(name)
            ok = got is not None and len(got) == len(shape) and all(
                want is None or not isinstance(g, int) or g == want for g, want in zip(got, shape))
            if not ok:
                def show(d: dict) -> str:
                    return ", ".join(f"{k} {list(v)}" for k, v in d.items())
                raise ModelFileError(
                    f"{self.label}: not the network aulib expects here (it has {show(have)}; expected "
                    f"{show({k: ['*' if d is None else d for d in v] for k, v in {**inputs, **outputs}.items()})}): "
                    f"the file was replaced by another model; {REINSTALL}")
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)



def onnx_session(model: str | Path | bytes | Callable[[], str | bytes], label: str | Path, threads: int = 1,
                 cache_key: str | None = None) -> GatedSession:
    """:func:`_onnx_session`, built and run as native stretches (see :class:`GatedSession`)."""
    from aulib.background import native

    with native():
        return GatedSession(_onnx_session(model, label, threads, cache_key), label)


def _onnx_session(model: str | Path | bytes | Callable[[], str | bytes], label: str | Path, threads: int = 1,
                  cache_key: str | None = None) -> Any:
    """An onnxruntime CPU session of ``model`` (a verified path, or its bytes after a graph edit, or a
    function making those bytes: called only when the cached optimised graph cannot be used, since
    reading and editing a 13 MB network costs ≈20 ms of every start-up),
    ``threads`` intra-op threads (1 by default: aulib's networks are small and callers parallelise
    across frames); any failure to load is a :class:`ModelFileError` naming ``label`` (the file).

    ``cache_key`` (the verified file's sha256, plus a tag for an edited graph): keep onnxruntime's
    fully optimised graph in the user cache and load that next time with optimisation off — building
    a session spends most of its time optimising the graph (retinaface 9.9 → 2.7 ms, each emotion
    network 15 → 6 ms; ≈ 40 ms of every photo's start-up over the five networks). The optimised graph
    is specific to this machine (onnxruntime lays convolutions out for its vector width), so the file
    name carries the onnxruntime version and the CPU's signature. It is trusted only while its stat
    identity is the one recorded when aulib wrote it (as for :func:`verify`: an edited or replaced
    file is rebuilt; ``AULIB_VERIFY_MODELS=full`` never uses it); ``AULIB_ORT_CACHE=0`` turns it off.
    """
    import onnxruntime as ort

    _no_telemetry(ort)

    def options(optimise: bool = True) -> Any:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        if not optimise:
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        return opts

    providers = ["CPUExecutionProvider"]
    cached = _optimised_path(cache_key) if cache_key else None
    if cached is not None and _trusted_cache(cached):
        try:
            return ort.InferenceSession(str(cached), options(optimise=False), providers=providers)
        except Exception:  # an unusable cache entry (another onnxruntime build): rebuild it below
            pass
    if callable(model):
        model = model()
    source = model if isinstance(model, bytes) else str(model)
    tmp = None
    if cached is not None:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            if os.access(cached.parent, os.W_OK):
                tmp = cached.with_name(f".{cached.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        except OSError:  # unwritable cache: no caching
            tmp = None
    session = None
    if tmp is not None:
        opts = options()
        opts.optimized_model_filepath = str(tmp)
        try:
            session = ort.InferenceSession(source, opts, providers=providers)
        except Exception:  # e.g. the optimised copy could not be written: build it without saving
            tmp.unlink(missing_ok=True)
            tmp = None
    if session is None:
        try:
            session = ort.InferenceSession(source, options(), providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for unreadable models
            raise ModelFileError(f"{label}: not a loadable ONNX model ({e})") from None
    if cached is not None and tmp is not None and tmp.is_file():
        try:
            os.replace(tmp, cached)  # atomic: a concurrent process never loads a half-written graph
            real, ident = _identity(cached)
            _remember(real, ident, sha256_of(cached))
        except OSError:
            tmp.unlink(missing_ok=True)
    return session


@functools.lru_cache(maxsize=1)
def _no_telemetry(ort: Any) -> None:
    """Switch off onnxruntime's telemetry events (a queue of session events with model file names, kept in
    ``~/.cache/Microsoft`` by some builds, and a warning on every run where that folder is unwritable): aulib is
    offline and sends nothing, and its networks' use is nobody else's business."""
    with contextlib.suppress(Exception):
        ort.disable_telemetry_events()


def session_cache_key(name: str, tag: str = "") -> str:
    """The :func:`onnx_session` ``cache_key`` of the shipped model ``name``: its manifest sha256
    (prefix), plus ``tag`` for a graph edited before the session is built."""
    return f"{str(model_entry(name)['sha256'])[:24]}{tag}"


@functools.lru_cache(maxsize=1)
def _cpu_signature() -> str:
    """onnxruntime's version, the architecture and the CPU's model and feature flags, hashed: what an
    optimised graph depends on."""
    import platform

    import onnxruntime as ort

    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags", "Features"))]
        cpu = "".join(sorted(set(lines)))
    except OSError:
        cpu = platform.processor()
    return hashlib.sha256(f"{ort.__version__}|{platform.machine()}|{cpu}".encode()).hexdigest()[:12]


def _optimised_path(cache_key: str) -> Path | None:
    from aulib.env import flag

    if not flag("AULIB_ORT_CACHE", True) or _full_verification():
        return None  # (with full verification a cached graph could never be trusted: do not write one)
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in cache_key)
    if len(safe) > 80:  # keep it a short file name, but never drop a tag at the end of the key
        safe = f"{safe[:40]}-{hashlib.sha256(safe.encode()).hexdigest()[:16]}"
    cache = _cache_file()
    return None if cache is None else cache.parent / "onnxruntime" / f"{safe}-{_cpu_signature()}.onnx"


def _trusted_cache(path: Path) -> bool:
    """The optimised graph is the file aulib wrote (its stat identity is recorded with its hash)."""
    try:
        return path.is_file() and _cached_sha256(*_identity(path)) is not None
    except OSError:
        return False
