"""Emotion and multitask CNN inference on onnxruntime (no torch).

Both models take the aligned face crop made by :class:`aulib.face.FacePipeline` (112×112 RGB
uint8). Preprocessing is part of this API so every caller feeds the net exactly as in training:
the crop is converted to gray (FER+ is gray, so colour carries no trained signal), replicated to
three channels and resized to the network's input size; pixel normalisation and
softmax/sigmoid are inside the ONNX graph.

Model files are loaded through :func:`aulib.models.model_path`, which verifies the manifest
sha256, so a missing or corrupted file raises :class:`aulib.models.ModelFileError` naming it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from aulib import background
from aulib.face.record import EMOTIONS, Face  # EMOTIONS: FER+ order, the output order of both models
from aulib.models import ModelFileError, model_entry, model_path, onnx_session, session_cache_key

if TYPE_CHECKING:
    from aulib.video.keyframes import Keyframes

# Faces per onnxruntime call: a whole dataset in one call would need tens of GB of activations, and
# past 16 faces the activations leave the cache (32 per call was ~10 % slower per face, measured).
CHUNK = 16


def _is_single(crops: object) -> bool:
    """True for one crop: (H, W) gray or (H, W, C) with C in 1/3/4 (a 3-D array with another last
    dimension, e.g. (N, 112, 112), is a batch of gray crops)."""
    return isinstance(crops, np.ndarray) and (
        crops.ndim == 2 or (crops.ndim == 3 and crops.shape[-1] in (1, 3, 4))
    )


def _as_batch(items: np.ndarray | list[np.ndarray], size: int) -> np.ndarray:
    """A sequence of crops → float32 (N, 3, size, size), gray replicated, 0–255.

    Each crop may be (H, W) gray, (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA, of any size; uint8, or another
    dtype scaled by :func:`aulib.io.to_8bit`'s value range rule (a float crop in 0–1 was clipped as if 0–255
    and read near black: neutral 0.33 for a smile at 0.98).
    """
    from aulib.io import ImageReadError, to_8bit

    out = np.empty((len(items), 3, size, size), np.float32)
    for i, c in enumerate(items):
        c = np.asarray(c)
        if c.ndim not in (2, 3) or min(c.shape[:2], default=0) == 0:
            raise ValueError(f"crop {i}: expected an (H, W[, 1|3|4]) image, got shape {np.shape(c)}")
        if c.dtype != np.uint8:
            try:
                c = to_8bit(c)
            except ImageReadError as e:
                raise ValueError(f"crop {i}: {e}") from None
        if c.ndim == 3 and c.shape[2] == 4:
            c = cv2.cvtColor(c, cv2.COLOR_RGBA2GRAY)
        elif c.ndim == 3 and c.shape[2] == 3:
            c = cv2.cvtColor(c, cv2.COLOR_RGB2GRAY)
        elif c.ndim == 3:
            c = c[:, :, 0]
        if c.ndim != 2 or min(c.shape) == 0:
            raise ValueError(f"crop {i}: expected an (H, W[, 1|3|4]) image, got shape {np.shape(c)}")
        if c.shape != (size, size):
            interp = cv2.INTER_AREA if min(c.shape) > size else cv2.INTER_CUBIC
            c = cv2.resize(c, (size, size), interpolation=interp)
        out[i] = c[None].astype(np.float32)
    return out


def emotion_classes(entry: dict, name: str) -> list[str]:
    """The class order a CNN's manifest entry records, which must be :data:`aulib.face.record.EMOTIONS`.

    Every front end labels probability columns in ``EMOTIONS`` order, so a model trained with
    another order would silently swap emotions: it is refused instead.
    """
    classes = entry.get("classes")
    if classes is None:
        raise ModelFileError(f"{name}: its manifest entry records no class order ('classes')")
    if tuple(classes) != EMOTIONS:
        raise ModelFileError(f"{name}: classes {list(classes)} differ from aulib's emotion order {list(EMOTIONS)}")
    return list(classes)


def au_thresholds(entry: dict, name: str) -> np.ndarray:
    """Per-AU decision thresholds (in ``aus`` order) from a multitask manifest entry.

    Training writes ``au_thresholds`` (one per AU); models trained before that record one
    ``au_threshold`` for all AUs. Either may be a number or a per-AU list; absent means 0.5.
    """
    aus = entry.get("aus") or []
    value = entry.get("au_thresholds", entry.get("au_threshold", 0.5))
    try:
        t = np.broadcast_to(np.asarray(value, np.float32), (len(aus),)).copy()
    except (TypeError, ValueError):
        raise ModelFileError(f"{name}: au_thresholds {value!r} do not match its {len(aus)} AUs") from None
    if not (np.isfinite(t).all() and ((t > 0) & (t < 1)).all()):
        raise ModelFileError(f"{name}: au_thresholds must lie strictly between 0 and 1, got {t.tolist()}")
    return t


def au_calibration(entry: dict, name: str) -> np.ndarray | None:
    """(K, 2) Platt scaling ``(a, b)`` of each AU head's logit from the manifest's ``au_platt``
    (None: the heads' raw sigmoid, as networks trained before it ship). ``a`` must be positive, so
    the scaling keeps every head's ranking and decisions."""
    value = entry.get("au_platt")
    if value is None:
        return None
    n = len(entry.get("aus") or [])
    try:
        platt = np.asarray(value, np.float64).reshape(n, 2)
    except (TypeError, ValueError):
        raise ModelFileError(f"{name}: au_platt {value!r} is not one (a, b) pair per AU of its {n} AUs") from None
    if not (np.isfinite(platt).all() and (platt[:, 0] > 0).all()):
        raise ModelFileError(f"{name}: au_platt must be finite with a > 0, got {platt.tolist()}")
    return platt


def logit(probs: np.ndarray) -> np.ndarray:
    """The logit of sigmoid outputs (float64), clipped at 1e-7 from 0 and 1: the scale the heads' Platt
    scaling is fitted on (training) and applied on (:func:`calibrate`)."""
    q = np.clip(np.asarray(probs, np.float64), 1e-7, 1 - 1e-7)
    return np.log(q / (1 - q))


def calibrate(probs: np.ndarray, platt: np.ndarray | None) -> np.ndarray:
    """AU head probabilities (N, K) or thresholds (K,) through Platt scaling (unchanged for None)."""
    p = np.asarray(probs)
    if platt is None:
        return p
    z = platt[:, 0] * logit(p) + platt[:, 1]
    return (1.0 / (1.0 + np.exp(-z))).astype(p.dtype)


def au_heads(entry: dict, name: str) -> tuple[list[int], np.ndarray, np.ndarray | None]:
    """(AU numbers, decision thresholds, Platt scaling or None) of a multitask network's heads, from
    its manifest entry. With Platt scaling the thresholds are carried onto the calibrated scale, so
    each head decides as before while its probability becomes one the fusion can average."""
    if not entry.get("aus"):
        raise ModelFileError(f"{name}: its manifest entry records no AU list ('aus')")
    platt = au_calibration(entry, name)
    return [int(a) for a in entry["aus"]], calibrate(au_thresholds(entry, name), platt), platt


def run_chunked(session, crops: np.ndarray | list[np.ndarray], flip: bool = False) -> list[np.ndarray]:
    """Every output of a CNN ``session`` for a non-empty sequence of crops, :data:`CHUNK` at a time
    (preprocessed by :func:`_as_batch` to the session's input size); ``flip``: see :meth:`_OnnxModel._run`."""
    inp = session.get_inputs()[0]
    size = int(inp.shape[-1])
    parts = []
    for i in range(0, len(crops), CHUNK):
        x = _as_batch(crops[i:i + CHUNK], size)
        if not flip:
            parts.append(session.run(None, {inp.name: x}))
            continue
        out = session.run(None, {inp.name: np.concatenate([x, x[..., ::-1]])})
        m = len(x)
        parts.append([(out[0][:m] + out[0][m:]) / 2] + [o[:m] for o in out[1:]])
    return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]


def edit_signature(cls: type) -> str:
    """What an edited graph's cached optimised copy is also keyed by: the source of the module that edits it (and
    aulib's version). Keyed by the model's checksum and a fixed tag alone, a copy made by another aulib version's
    edit was loaded after an upgrade: AU12_r off by 1.4 with success=1."""
    import hashlib
    import inspect
    import sys

    from aulib import __version__

    try:
        source = Path(inspect.getfile(sys.modules[cls.__module__])).read_bytes()
    except (OSError, TypeError, KeyError):
        source = b""
    return hashlib.sha256(source + __version__.encode()).hexdigest()[:10]


def crops_of(faces: Sequence[Face]) -> np.ndarray:
    """(N, H, W, 3) the faces' aligned crops, one network batch."""
    return np.stack([f.aligned for f in faces])


def network_outputs(faces: list[Face], keyframes: Keyframes | None,
                    compute: Callable[[list[Face]], Sequence[np.ndarray]]) -> list[tuple[np.ndarray, ...]]:
    """A network stage's outputs for each of ``faces``: ``compute`` on all of them, or with ``keyframes``
    (smoothed video) on those it plans to run, the faces between taking their neighbours'
    (:meth:`aulib.video.keyframes.Keyframes.spread`)."""
    if not faces:
        return []
    return keyframes.spread(faces, compute) if keyframes else list(zip(*compute(faces)))


class _OnnxModel:
    """One onnxruntime session (1 intra-op thread: inference is ~2 ms/face and more threads do
    not help; the session is created once per object)."""

    name: str
    aus: list[int] = []  # AU heads, in output order (the multitask model's, from its manifest entry)
    graph_tag = ""  # names a graph edit made by _model() (its optimised copy is cached apart)

    def __init__(self, path: str | Path | None = None, name: str | None = None) -> None:
        if name is not None:  # another shipped file of the same kind (its manifest entry is read)
            self.name = name
        self.path = model_path(self.name, path)
        self.info = model_entry(self.name)
        self.classes = emotion_classes(self.info, self.name)
        tag = f"{self.graph_tag}-{edit_signature(type(self))}" if self.graph_tag else ""
        self.session = onnx_session(self._model, self.path, cache_key=session_cache_key(self.name, tag))
        self.session.check({"image": (None, 3, None, None)}, {"emotion_probs": (None, len(self.classes))})
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.size = int(inp.shape[-1])
        self.outputs = [o.name for o in self.session.get_outputs()]

    def _model(self) -> str | bytes:
        """What the session is built from: the verified file (subclasses may edit the graph)."""
        return str(self.path)

    def _run(self, crops: np.ndarray | list[np.ndarray], flip: bool = False) -> list[np.ndarray]:
        """Outputs for all crops, run in chunks of :data:`CHUNK` to bound activation memory.

        ``flip``: each chunk also runs mirrored (one call, twice the batch) and the first output,
        the emotion probabilities, is the mean of both views; the other outputs (embedding, AU
        heads) stay those of the crops as given, which is what the AU models were trained on.
        """
        if _is_single(crops):
            crops = [crops]  # type: ignore[list-item]
        n = len(crops)
        if n == 0:
            widths = [len(self.classes), len(self.aus)][: len(self.outputs)]
            return [np.zeros((0, w), np.float32) for w in widths]
        return run_chunked(self.session, crops, flip)


class EmotionCNN(_OnnxModel):
    """FER+ emotion classifier (EfficientNet-Lite0). ``predict(crops)`` → (N, 8) probabilities."""

    name = "emotion_cnn.onnx"

    def predict(self, crops: np.ndarray | list[np.ndarray], flip: bool = False) -> np.ndarray:
        """Probabilities (N, 8) in :data:`EMOTIONS` order, rows summing to 1.

        ``crops``: aligned face crops (N, 112, 112, 3) uint8 RGB, or one crop of any size/channels.
        ``flip``: average each face with its mirror image (test-time augmentation, twice the cost).
        """
        return self._run(crops, flip)[0].astype(np.float32)

    def run(self, faces: Sequence[Face], flip: bool = False, keyframes: Keyframes | None = None) -> Sequence[Face]:
        """Model stage: ``emotion_probs`` of every successful face, one batched run (``keyframes``, video: the
        faces it names take the time-weighted mean of their neighbours')."""
        ok = [f for f in faces if f.success]
        for f, (p,) in zip(ok, network_outputs(ok, keyframes, lambda run: (self.predict(crops_of(run), flip),))):
            f.emotion_probs = p
        return faces


class MultitaskCNN(_OnnxModel):
    """Emotion + AU heads (17, one per AU of the SVM banks; the AU list is the manifest's ``aus``).
    ``predict(crops)`` → (emotion (N, 8), AU probabilities (N, K))."""

    name = "multitask_cnn.onnx"

    def __init__(self, path: str | Path | None = None) -> None:
        super().__init__(path)
        self.aus, self.thresholds, self.platt = au_heads(self.info, self.name)
        self.session.check({}, {"au_probs": (None, len(self.aus))})  # one head per AU of the manifest's list

    def predict(self, crops: np.ndarray | list[np.ndarray], flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(emotion probabilities (N, 8), AU occurrence probabilities (N, K) in ``aus`` order, Platt-scaled
        when the manifest records it); ``flip`` averages the emotion probabilities with the mirror
        image's (the AU heads: as given)."""
        emo, au = self._run(crops, flip)
        return emo.astype(np.float32), calibrate(au.astype(np.float32), self.platt)

    def predict_aus(self, crops: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """0/1 AU occurrences (N, K) using the manifest thresholds."""
        return (self.predict(crops)[1] >= self.thresholds).astype(np.int8)

    def run(self, faces: Sequence[Face], flip: bool = False, keyframes: Keyframes | None = None) -> Sequence[Face]:
        """Model stage: ``emotion_probs`` and the AU heads (``mt_aus``, ``mt_au_probs``,
        ``mt_au_occurrence`` at the manifest thresholds) of every successful face, one batched run.
        ``keyframes`` (smoothed video): the faces it names take the time-weighted mean of their neighbours'
        outputs, as the embedding CNN's and the AU heads' of ``--emotion-model cnn`` do (it ran on every
        frame, so the two models' AU columns differed by up to 0.067 on smoothed video)."""
        ok = [f for f in faces if f.success]
        aus = tuple(self.aus)
        for f, (e, a) in zip(ok, network_outputs(ok, keyframes, lambda run: self.predict(crops_of(run), flip))):
            f.emotion_probs, f.mt_aus, f.mt_au_probs = e, aus, a
            f.mt_au_occurrence = (a >= self.thresholds).astype(np.int8)
        return faces


class _LazyNetwork:
    """A network loaded on first use, or ahead of it in a background thread (:meth:`prefetch`):
    the image-mode extras, which a video-only run never loads."""

    def __init__(self, path: str | Path | None = None) -> None:
        self._path = path
        self._model: _OnnxModel | None = None
        self._error: BaseException | None = None
        self._loader: threading.Thread | None = None
        self._lock = threading.Lock()

    def _build(self) -> _OnnxModel:
        raise NotImplementedError

    def prefetch(self) -> None:
        """Start loading the network in a background thread, once (onnxruntime builds the session
        without holding the GIL, so the image's face pipeline overlaps the ≈25 ms load). Called by
        :meth:`aulib.analyzer.Analyzer.get` when an image arrives, so a video-only run never loads it."""
        with self._lock:
            if self._model is None and self._error is None and self._loader is None:
                # joined at exit (aulib.background): one still inside onnxruntime when Python finalises
                # would abort the process after a photo that finished first (no face in it)
                self._loader = background.start(self._load, f"aulib-load-{type(self).__name__}")

    def _load(self) -> None:
        try:
            self._model = self._build()
        except BaseException as e:  # re-raised (a ModelFileError naming the file) where the model is used
            self._error = e

    @property
    def model(self) -> _OnnxModel:
        loader = self._loader
        if loader is not None:
            loader.join()
        if self._model is None:
            if self._error is not None:
                raise self._error
            self._model = self._build()
        return self._model


class SecondOpinion(_LazyNetwork):
    """Model stage for images: a second emotion network whose (flip-averaged) probabilities are
    averaged with the first's — an ensemble of two independently trained EfficientNets.

    Why: two networks trained with different seeds (the second keeps an EMA of its weights) make
    partly different mistakes. On FER2013Valid, tie-aware / first-max accuracy: ``emotion_cnn.onnx``
    with flip 0.867 / 0.853; both networks with flip 0.870 / 0.857 (``aulib evaluate cnn``, reports/cnn.md). It costs
    a second network (≈2.5 ms per face and view, ≈30 ms to load, on first use), so it runs only where
    :meth:`aulib.analyzer.Analyzer.run` is called with ``flip=True`` — images and crops; video frames
    and the live page keep one network (their rate matters and their traces are averaged over time).
    The file is checked against the manifest like every model; the AU models never read it. (The
    multitask network as the second member instead: 0.869, no better than one network with flip.)
    """

    name = "emotion_cnn_ema.onnx"

    def _build(self) -> EmotionCNN:
        return EmotionCNN(self._path, name=self.name)

    def run(self, faces: Sequence[Face], flip: bool = False) -> Sequence[Face]:
        """With ``flip`` (images): ``emotion_probs`` of successful faces become the mean of the first
        network's and this one's (flip-averaged); without it, nothing (one network)."""
        ok = [f for f in faces if f.success and f.emotion_probs is not None]
        if flip and ok:
            second = self.model.predict(np.stack([f.aligned for f in ok]), flip=True)
            for f, p in zip(ok, second):
                f.emotion_probs = ((np.asarray(f.emotion_probs, np.float32) + p) / 2).astype(np.float32)
        return faces


class AUHeads(_LazyNetwork):
    """Model stage for images: the multitask network's AU heads as a second opinion on the AUs
    (:class:`aulib.au.fusion.AUFusion` then averages them with the SVMs' probabilities).

    Why: in a 5-fold subject-grouped CV on CK+ (both models refitted per fold, ``aulib train
    multitask``), mean F1 over the 17 AUs goes from 0.781 (SVMs) to 0.801 fused. Like
    :class:`SecondOpinion` it costs a network run (≈2.5 ms per face, on the face as given: with the
    first network the mirror image added nothing, 0.814 vs 0.813 on its held-out subjects) and a
    ≈30 ms load, so it runs only with ``flip=True`` (images and crops). Its emotion head is not used
    (no gain in the ensemble with the first network).
    ``aus``/``thresholds`` come from the manifest without loading the network.
    """

    name = MultitaskCNN.name

    def __init__(self, path: str | Path | None = None) -> None:
        super().__init__(path)
        self.aus, self.thresholds, _ = au_heads(model_entry(self.name), self.name)

    def _build(self) -> MultitaskCNN:
        return MultitaskCNN(self._path)

    def run(self, faces: Sequence[Face], flip: bool = False, keyframes: Keyframes | None = None) -> Sequence[Face]:
        """With ``flip`` (images and video frames, :meth:`aulib.analyzer.Analyzer.run`'s ``fuse``):
        ``mt_aus``/``mt_au_probs`` of successful faces (for the fusion; ``mt_au_occurrence`` and the
        ``mt_AUxx_c`` columns stay those of ``--emotion-model multitask``); without it, nothing.
        ``keyframes`` (video): the faces it names take the time-weighted mean of their neighbours' heads."""
        ok = [f for f in faces if f.success and f.aligned is not None]
        if not flip:
            return faces
        aus = tuple(self.aus)
        heads = network_outputs(ok, keyframes, lambda run: self.model.predict(crops_of(run))[1:])  # type: ignore[attr-defined]
        for f, (a,) in zip(ok, heads):
            f.mt_aus, f.mt_au_probs = aus, a
        return faces
