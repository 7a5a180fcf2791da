"""``aulib train multitask``: the 25-head network (8-way emotion + all 17 AUs), and a subject-grouped
cross-validation of its AU heads voting with the SVMs — the figure images are judged by.

Why this recipe:

* **Judged the way it is used.** Images decide each AU on the mean of the SVMs' calibrated
  probability and the network's head (:mod:`aulib.au.fusion`). Both models are refitted in every
  fold of the same ``GroupKFold`` subject folds as ``aulib train svm`` (no subject in both train
  and test; the SVMs choose C and thresholds inside the fold as always) and the fused decision is
  scored on the fold's held-out subjects. The shipped network is one more fit on every subject, with
  the same fixed schedule: no epoch is chosen on a validation set, so nothing in the figure saw its
  test subjects. (The first multitask network held out one seeded 18-subject split and picked its
  epoch there: one split, and an optimistic one.)
* **A schedule counted in CK+ passes** (default 15 epochs of the ≈ 850 training faces, 32 per step),
  the unit that matters for the AU heads, instead of passes over FER+. Every step also carries 32
  random FER+ faces with their soft vote labels: the emotion loss keeps the backbone a face-expression
  network (without it the heads overfit the few CK+ people) and keeps the emotion head usable for
  ``--emotion-model multitask``. CK+ faces add their mapped emotion label to that loss.
* **Starts from the FER+ emotion network** (its backbone and emotion head; the AU rows small), so
  the AU heads start from expression features.
* **All 17 AUs** (the first network had 14: AU14/20/26 had no head), BCE with per-AU ``pos_weight``
  = negatives/positives clipped to [1, 10]; decision threshold 0.5 (thresholds tuned on training
  subjects lowered held-out F1 before: the heads fit their training faces too well).
* **Calibrated heads.** The pos-weighted heads overstate presence (expected calibration error 0.040
  out of fold), and the images' ``AUxx_p`` is their mean with the SVMs' calibrated probability; so
  each head's logit is Platt-scaled on the CV's out-of-fold outputs (manifest ``au_platt``; its 0.5
  threshold moves with it, so a head's own decisions do not change). Fused ECE 0.021 → 0.009 for
  mean F1 0.803 → 0.801 (reports/au.md).

Measured (5 folds, 88 subjects, 2 CPU threads): about 5 minutes per fold for the network, 10 s for
the SVMs. Fold predictions are kept in ``out_dir/cv/`` so a stopped run resumes at the next fold;
the final fit checkpoints every epoch (``last.pt``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from aulib.au.codes import AUS
from aulib.cnn.inference import calibrate, logit
from aulib.face.record import EMOTIONS
from aulib.training import CACHE, RUNS
from aulib.training.cnn import (
    LICENCE_MULTITASK,
    Log,
    _command,
    _crops,
    _log,
    _lr_lambda,
    _save,
    augment,
    check_finite,
    install_model,
    predict_torch,
    setup_torch,
    soft_cross_entropy,
)
from aulib.training.crops import files_digest
from aulib.training.datasets import CKPlus, read_ferplus
from aulib.training.torch_model import EfficientNetLite0, export_onnx, load_imagenet_backbone, normalise

N_EMO = len(EMOTIONS)


def init_checkpoint(init_from: str | Path | None) -> Path | None:
    """The emotion run's ``best.pt`` that ``init_from`` (a run folder or the file) names, checked
    before any work (None: start from ImageNet). FileNotFoundError names what is missing.

    The file is loaded and checked here, not only found: ``_init`` loads it in every CV fold, so a
    wrong file (an ONNX model, a multitask ``last.pt``, a damaged download) found only there would
    cost the whole cross-validation first. ValueError (one line, naming the file) when it is not a
    torch checkpoint holding an EfficientNet-Lite0 emotion network (``model``: backbone + ≥ 8 head rows).
    """
    if init_from is None:
        return None
    path = Path(init_from)
    path = path / "best.pt" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such emotion run to start from (train one with `aulib train cnn`, "
                                "or name its folder or best.pt with --init-from)")
    _emotion_state(path)
    return path


def _emotion_state(path: Path) -> dict[str, torch.Tensor]:
    """The ``model`` state dict of an emotion run's checkpoint, refused unless it fits the network."""
    hint = "--init-from wants an emotion run folder or its best.pt from `aulib train cnn`"
    if not zipfile.is_zipfile(path):  # an ONNX model, an image, a truncated copy …
        raise ValueError(f"{path}: not a torch checkpoint (torch.save writes a zip archive); {hint}")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors alike: all mean "not such a checkpoint"
        why = " ".join(str(e).split()).split(". ")[0][:160]
        raise ValueError(f"{path}: not a loadable torch checkpoint ({type(e).__name__}: {why}); {hint}") from None
    sd = ck.get("model") if isinstance(ck, dict) else None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path}: a torch file without a 'model' state dict; {hint}")
    own = EfficientNetLite0(N_EMO).state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    if missing or unexpected:
        first = (missing or unexpected)[0]
        raise ValueError(f"{path}: not an EfficientNet-Lite0 checkpoint ({len(missing)} missing, {len(unexpected)} "
                         f"unexpected weights, e.g. {first}); {hint}")
    for k, v in own.items():
        if k.startswith("_fc."):  # the head: at least the 8 emotion rows (a multitask run's has more)
            ok = v.shape[1:] == sd[k].shape[1:] and sd[k].shape[0] >= N_EMO
        else:
            ok = v.shape == sd[k].shape
        if not ok:
            raise ValueError(f"{path}: weight {k} has shape {tuple(sd[k].shape)}, expected {tuple(v.shape)}; {hint}")
    return sd


def _init(net: EfficientNetLite0, init_from: Path | None, log: Log) -> str:
    """Backbone and emotion rows of ``_fc`` from an emotion run's ``best.pt``, else ImageNet; small AU rows."""
    path = init_checkpoint(init_from)
    if path is None:
        load_imagenet_backbone(net)
        return "ImageNet"
    sd = _emotion_state(path)
    own = net.state_dict()
    w, b = own["_fc.weight"].clone(), own["_fc.bias"].clone()
    w[:N_EMO], b[:N_EMO] = sd["_fc.weight"][:N_EMO], sd["_fc.bias"][:N_EMO]
    w[N_EMO:] *= 0.1  # small AU logits at the start so BCE gradients do not wreck the backbone
    b[N_EMO:] = 0.0
    sd["_fc.weight"], sd["_fc.bias"] = w, b
    net.load_state_dict(sd, strict=True)
    log(f"multitask: initialised from {path}")
    return str(path)


def fit_network(xck: np.ndarray, yck: np.ndarray, eck: np.ndarray, xfer: np.ndarray, yfer: np.ndarray, *,
                epochs: int, init_from: Path | None, seed: int = 0, lr: float = 3e-4, weight_decay: float = 0.05,
                batch_size: int = 32, image_size: int = 112, max_batches: int | None = None,
                checkpoint: Path | None = None, log: Log = _log) -> EfficientNetLite0:
    """Train the multitask network on CK+ crops ``xck`` (AU labels ``yck`` (N, K) 0/1, emotion index
    ``eck``) mixed with FER+ crops ``xfer`` (soft labels ``yfer``); see the module docstring.

    ``checkpoint``: a ``last.pt`` written after every epoch and resumed from when it exists.
    """
    n_au = yck.shape[1]
    net = EfficientNetLite0(N_EMO + n_au, image_size)
    _init(net, init_from, log)
    net = net.to(memory_format=torch.channels_last)
    y_au = torch.from_numpy(np.asarray(yck, np.float32))
    pos = y_au.sum(0)
    pos_weight = ((len(y_au) - pos) / pos.clamp(min=1)).clamp(1.0, 10.0)
    y_emo = F.one_hot(torch.from_numpy(np.asarray(eck, np.int64)), N_EMO).float()
    y_fer = torch.from_numpy(np.asarray(yfer, np.float32))
    steps = math.ceil(len(xck) / batch_size)
    if max_batches is not None:
        steps = min(steps, max_batches)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(epochs * steps, steps))
    start = 0
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start = state["epoch"] + 1
        log(f"resumed from {checkpoint} at epoch {start + 1}")
    for epoch in range(start, epochs):
        gen = torch.Generator().manual_seed(seed * 1000 + epoch)
        order = torch.randperm(len(xck), generator=gen)
        net.train()
        t0, sums = time.time(), np.zeros(2)
        for step in range(steps):
            ci = np.sort(order[step * batch_size:(step + 1) * batch_size].numpy())
            fi = np.sort(torch.randint(0, len(xfer), (batch_size,), generator=gen).numpy())
            gray = torch.cat([torch.from_numpy(np.asarray(xck[ci])), torch.from_numpy(np.asarray(xfer[fi]))])
            logits = net(normalise(augment(gray, image_size, gen)))
            loss_au = F.binary_cross_entropy_with_logits(logits[:len(ci), N_EMO:], y_au[ci], pos_weight=pos_weight)
            loss_emo = soft_cross_entropy(logits[:, :N_EMO], torch.cat([y_emo[ci], y_fer[fi]]))
            loss = loss_au + loss_emo
            check_finite(loss, epoch, step, "multitask")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            sums += (loss_au.item(), loss_emo.item())
        log(f"epoch {epoch + 1}/{epochs}: AU loss {sums[0] / steps:.3f}, emotion loss {sums[1] / steps:.3f} "
            f"({time.time() - t0:.0f} s)")
        if checkpoint is not None:
            _save(checkpoint, {"model": net.state_dict(), "optimizer": opt.state_dict(),
                               "scheduler": sched.state_dict(), "epoch": epoch})
    return net.eval()


def au_probabilities(net: EfficientNetLite0, crops: np.ndarray) -> np.ndarray:
    """(N, K) AU head probabilities of ``net`` for gray crops (eval mode, no augmentation)."""
    z = predict_torch(net, crops)[:, N_EMO:]
    return 1.0 / (1.0 + np.exp(-z))


def _init_name(init_from: Path | None) -> str:
    """What the CV's networks started from, for the report: the emotion checkpoint's path below the runs folder
    (and, for one rebuilt from a shipped ONNX by ``scripts/emotion_run_from_onnx.py``, that ONNX), or ImageNet."""
    if init_from is None:
        return "ImageNet"
    path = Path(init_from)
    with contextlib.suppress(ValueError):
        path = path.resolve().relative_to(RUNS.resolve().parent)
    try:
        source = torch.load(init_from, map_location="cpu", weights_only=True).get("source")
    except Exception:
        source = None
    return f"{path} (rebuilt from {Path(source).name})" if isinstance(source, str) else str(path)


def _f1(y: np.ndarray, pred: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y, pred, zero_division=0))


def cross_validate(data_dir: str | Path, out_dir: str | Path, *, folds: int = 5, epochs: int = 15,
                   init_from: Path | None, seed: int = 0, cache_dir: str | Path | None = CACHE,
                   subjects: Sequence[str] | None = None, max_batches: int | None = None,
                   fer_subset: int | None = None, aus: Sequence[int] = AUS, log: Log = _log) -> dict[str, Any]:
    """Subject-grouped CV of the SVMs, the network's AU heads and their fusion (the module docstring).

    Returns the report written into ``reports/au.{json,md}`` under ``fusion``. ``subjects`` (only
    those CK+ subjects), ``max_batches`` and ``fer_subset`` (the first N FER+ faces): smoke tests.
    """
    from sklearn.model_selection import GroupKFold

    from aulib.au.models import fit_platt
    from aulib.training.au import calibration_error, load_features, occurrence_estimator

    t0 = time.time()
    ck, X, copies, version = load_features(data_dir, cache_dir, subjects)
    aus = list(aus)
    Y, groups = ck.occurrence(aus), ck.subjects
    crops = _crops(cache_dir, "ckplus", ck.image_paths(), True, log)  # aligned, as the SVM features were made
    fer = read_ferplus(data_dir, "train").subset(fer_subset)
    xfer = _crops(cache_dir, "ferplus_train", fer.paths, True, log)
    folds = min(folds, len(np.unique(groups)))
    cv_dir = Path(out_dir) / "cv"
    cv_dir.mkdir(parents=True, exist_ok=True)
    p_svm, t_svm, p_net = np.zeros(Y.shape), np.zeros(Y.shape), np.zeros(Y.shape)
    splits = list(GroupKFold(folds).split(X, groups=groups))
    # Saved fold predictions are reused only for the same images, labels, AUs and starting weights.
    data_key = hashlib.sha256("\n".join([
        files_digest([*ck.image_paths(), *fer.paths, *([Path(init_from)] if init_from is not None else [])]),
        ",".join(map(str, aus)), Y.tobytes().hex(), str(fer_subset), str(max_batches),
    ]).encode()).hexdigest()[:12]
    for f, (tr, te) in enumerate(splits):
        key = f"{f}-of-{folds}-e{epochs}-s{seed}-{len(X)}-{len(aus)}aus-{data_key}"
        saved = cv_dir / f"fold{key}.npz"
        if saved.is_file():
            z = np.load(saved)
        else:
            try:
                bank = occurrence_estimator(version, cv=max(2, folds - 1), aus=aus).fit(
                    X[tr], Y[tr], groups[tr], [c[tr] for c in copies])
            except ValueError as e:  # e.g. an AU without a positive example among this fold's subjects
                raise ValueError(f"subject CV fold {f + 1}/{folds}: {e}") from None
            net = fit_network(crops[tr], Y[tr], ck.emotion[tr], xfer, fer.soft, epochs=epochs, init_from=init_from,
                              seed=seed + f, max_batches=max_batches, log=log)
            z = {"svm": bank.predict_proba(X[te]), "threshold": bank.probability_threshold(),
                 "net": au_probabilities(net, crops[te])}
            tmp = cv_dir / f"fold{key}.tmp.npz"
            np.savez(tmp, **z)
            tmp.replace(saved)
        p_svm[te], t_svm[te], p_net[te] = z["svm"], z["threshold"], z["net"]
        log(f"fold {f + 1}/{folds}: {len(np.unique(groups[te]))} held-out subjects, {len(te)} images")
    # The heads' probabilities are Platt-scaled like the SVMs' margins, so the mean of the two is a
    # probability too: each fold's scaling is fitted on the other folds' out-of-fold head outputs (the
    # shipped one on all of them). Decisions of a head alone do not change (its 0.5 maps to sigmoid(b)).
    z = logit(p_net)
    p_cal, t_cal = np.zeros(Y.shape), np.zeros(Y.shape)
    for tr, te in splits:  # the scaling inference applies (cnn.inference.calibrate), fitted without the test folds
        fold = np.array([fit_platt(z[tr, k], Y[tr, k]) for k in range(len(aus))])
        p_cal[te], t_cal[te] = calibrate(p_net[te], fold), calibrate(np.full(len(aus), 0.5), fold)
    platt = [list(map(float, fit_platt(z[:, k], Y[:, k]))) for k in range(len(aus))]
    fused, raw = (p_svm + p_cal) / 2, (p_svm + p_net) / 2
    per_au = []
    for k, au in enumerate(aus):
        y = Y[:, k]
        row = {"au": au, "positives": int(y.sum()), "f1_svm": _f1(y, p_svm[:, k] > t_svm[:, k]),
               "f1_heads": _f1(y, p_net[:, k] >= 0.5),
               "f1_fused": _f1(y, fused[:, k] > (t_svm[:, k] + t_cal[:, k]) / 2),
               "ece_fused": calibration_error(y, fused[:, k]),
               "f1_fused_uncalibrated": _f1(y, raw[:, k] > (t_svm[:, k] + 0.5) / 2)}
        per_au.append(row)
        log(f"AU{au:02d} F1 SVM {row['f1_svm']:.3f} heads {row['f1_heads']:.3f} fused {row['f1_fused']:.3f}")
    mean = {k: float(np.mean([r[k] for r in per_au]))
            for k in ("f1_svm", "f1_heads", "f1_fused", "ece_fused", "f1_fused_uncalibrated")}
    report = {"per_au": per_au, **{f"mean_{k}": v for k, v in mean.items()},
              "ece_fused_all": calibration_error(Y.ravel(), fused.ravel()),
              "ece_fused_uncalibrated_all": calibration_error(Y.ravel(), raw.ravel()),
              "ece_heads_all": calibration_error(Y.ravel(), p_cal.ravel()),
              "ece_heads_uncalibrated_all": calibration_error(Y.ravel(), p_net.ravel()), "au_platt": platt,
              "n_images": int(len(X)), "subjects": int(len(np.unique(groups))), "folds": folds, "epochs": epochs,
              "init_from": _init_name(init_from), "feature_version": version, "seconds": round(time.time() - t0, 1)}
    log(f"mean F1 over {len(aus)} AUs: SVMs {mean['f1_svm']:.3f}, heads {mean['f1_heads']:.3f}, "
        f"fused {mean['f1_fused']:.3f}")
    return report


def train_multitask(
    data_dir: str | Path, out_dir: str | Path, epochs: int = 15, init_from: str | Path | None = RUNS / "emotion",
    *, folds: int = 5, seed: int = 0, cache_dir: str | Path | None = CACHE, install: bool = False,
    threads: int = 2, subset: int | None = None, max_batches: int | None = None, align: bool = True,
    log: Log = _log,
) -> tuple[Path, dict[str, Any] | None]:
    """Cross-validate (``folds`` ≥ 2; 0 skips it), then fit on every CK+ subject and export
    ``out_dir/multitask_cnn.onnx`` (+ its manifest entry, installed with ``install``).

    Returns (ONNX path, CV report or None). ``subset``/``max_batches``/``align=False``: smoke tests.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    init = init_checkpoint(init_from)  # before any work: a typo must not cost the CV's half hour
    out_dir.mkdir(parents=True, exist_ok=True)
    command = _command("multitask", "aulib.training.multitask", data_dir=str(data_dir), out_dir=str(out_dir),
                       epochs=epochs, init_from=str(init_from), folds=folds, seed=seed)
    setup_torch(seed, threads)
    report = None
    if folds >= 2:
        report = cross_validate(data_dir, out_dir, folds=folds, epochs=epochs, init_from=init, seed=seed,
                                cache_dir=cache_dir, max_batches=max_batches, log=log)
    ck = CKPlus.load(data_dir).with_facs()
    if subset is not None:
        ck = ck.take(np.arange(min(subset, len(ck))))
    fer = read_ferplus(data_dir, "train").subset(subset)
    xck = _crops(cache_dir, "ckplus", ck.image_paths(), align, log)
    xfer = _crops(cache_dir, "ferplus_train", fer.paths, align, log)
    net = fit_network(xck, ck.occurrence(AUS), ck.emotion, xfer, fer.soft, epochs=epochs, init_from=init,
                      seed=seed, max_batches=max_batches, checkpoint=out_dir / "last.pt", log=log)
    onnx_path = export_onnx(net, out_dir / "multitask_cnn.onnx", n_aus=len(AUS))
    evaluation: dict[str, Any] = {"epochs": epochs}
    if report is not None:
        evaluation.update({
            "ckplus_subject_cv_folds": report["folds"],
            "ckplus_subject_cv_au_mean_f1_heads": round(report["mean_f1_heads"], 4),
            "ckplus_subject_cv_au_mean_f1_fused_with_svms": round(report["mean_f1_fused"], 4),
            "ckplus_subject_cv_au_f1_fused_with_svms": {f"AU{r['au']:02d}": round(r["f1_fused"], 4)
                                                        for r in report["per_au"]},
        })
    info = {
        "kind": "multitask_cnn",
        "architecture": f"EfficientNet-Lite0, emotion head (8-way softmax) + {len(AUS)} binary AU heads (sigmoid)",
        "dataset": f"CK+48, every subject ({len(set(ck.subjects.tolist()))} subjects, {len(ck)} images with FACS "
                   f"codes; AU BCE + emotion), each step mixed with as many FER2013Train/FER+ faces (soft "
                   f"labels, emotion loss only; {len(fer.paths)} images)",
        "ckplus_training_subjects": "all",
        "licence": LICENCE_MULTITASK, "command": command, "init_from": str(init_from),
        "input": {"name": "image", "shape": ["N", 3, net.image_size, net.image_size],
                  "pixels": "float 0-255 RGB; aligned FacePipeline crop converted to gray and "
                            "replicated to 3 channels; normalisation inside the graph"},
        "outputs": {"emotion_probs": EMOTIONS, "au_probs": [f"AU{a:02d}" for a in AUS]},
        "classes": EMOTIONS, "aus": list(AUS), "au_thresholds": [0.5] * len(AUS), "au_thresholds_source": "0.5",
        "evaluation": evaluation,
    }
    if report is not None:  # inference maps each head's probability through it (aulib.cnn.inference.au_heads)
        info["au_platt"] = [[round(a, 6), round(b, 6)] for a, b in report["au_platt"]]
        info["au_platt_source"] = ("Platt scaling of each head's logit, fitted on the subject-grouped CV's "
                                   "out-of-fold head outputs")
    (out_dir / "multitask_cnn.json").write_text(json.dumps(info, indent=1))
    if report is not None:
        (out_dir / "cv_report.json").write_text(json.dumps(report, indent=1))
    if install:
        log(f"installed {install_model(onnx_path, info, log=log)}")
    return onnx_path, report
