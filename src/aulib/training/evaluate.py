"""Evaluate the shipped CNNs (onnxruntime, no torch) and write ``reports/cnn.{md,json}`` + confusion PNG.

Figures:
- FER2013Valid majority-vote accuracy. Vote ties: ``tie_aware`` (headline) counts a prediction
  correct if it is among the tied top classes; ``first_max`` breaks ties by FER+ order.
  Per-class recall and the confusion matrix use the same tie rule: an image's true class is the
  prediction when that is among the tied maxima, else the first maximum.
- Multitask model: the same FER+ accuracy. It is trained on every CK+ subject (``aulib train
  multitask``), so it has no CK+ figures here: the subject-grouped CV of its recipe is in
  ``reports/au.md``.
- CK+ held-out-subject emotion accuracy of the emotion model (seeded 20 % subject split,
  :func:`aulib.training.datasets.subject_split`; the emotion model never saw CK+).
- Speed: ms per face, onnxruntime, one thread, batch 1 and batch 16.

Crops come from the same cache as training (aligned by :class:`aulib.face.FacePipeline`).
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from aulib.cnn.inference import EmotionCNN, MultitaskCNN, SecondOpinion
from aulib.face.record import EMOTIONS
from aulib.models import MODELS_DIR
from aulib.training import CACHE, LICENCE, REPORTS, RUNS
from aulib.training.crops import aligned_crops
from aulib.training.datasets import CKPlus, read_ferplus, subject_split
from aulib.training.metrics import confusion, majority_accuracy, per_class_recall


def _effective_true(probs: np.ndarray, votes: np.ndarray) -> np.ndarray:
    """True class per image under the tie rule (the prediction if it is a tied maximum)."""
    pred = probs.argmax(1)
    top = votes == votes.max(1, keepdims=True)
    return np.where(top[np.arange(len(pred)), pred], pred, votes.argmax(1))


def emotion_figures(probs: np.ndarray, votes: np.ndarray) -> dict[str, Any]:
    """Accuracy (both tie rules), per-class recall and confusion matrix for FER+ predictions."""
    true = _effective_true(probs, votes)
    cm = confusion(true, probs.argmax(1), len(EMOTIONS))
    recall = per_class_recall(cm)
    acc = majority_accuracy(probs, votes)
    return {
        "accuracy_tie_aware": acc["tie_aware"], "accuracy_first_max": acc["first_max"],
        "accuracy_ties_excluded": acc["ties_excluded"], "n_ties_excluded": acc["n_ties_excluded"],
        "per_class_recall": {e: round(float(r), 4) for e, r in zip(EMOTIONS, recall, strict=True)},
        "mean_class_recall": float(np.nanmean(recall)),
        "support": {e: int(n) for e, n in zip(EMOTIONS, cm.sum(1), strict=True)},
        "confusion": cm.tolist(), "n": int(len(probs)),
    }


def plot_confusion(cms: dict[str, np.ndarray], path: Path) -> Path:
    """Row-normalised confusion matrices side by side (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(cms), figsize=(6.2 * len(cms), 5.6), squeeze=False)
    for ax, (title, cm) in zip(axes[0], cms.items(), strict=True):
        cm = np.asarray(cm, float)
        norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(cm)):
            for j in range(len(cm)):
                ax.text(j, i, f"{norm[i, j]:.2f}\n{int(cm[i, j])}", ha="center", va="center", fontsize=6.5,
                        color="white" if norm[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(EMOTIONS)), EMOTIONS, rotation=45, ha="right")
        ax.set_yticks(range(len(EMOTIONS)), EMOTIONS)
        ax.set_xlabel("predicted")
        ax.set_ylabel("FER+ majority label")
        ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def benchmark(model: EmotionCNN | MultitaskCNN, crops: np.ndarray, repeats: int = 200) -> dict[str, float]:
    """Median ms per face for batch 1 and batch 16 (one onnxruntime thread, warm session)."""
    out = {}
    for bs in (1, 16):
        batch = np.ascontiguousarray(crops[:bs])
        for _ in range(5):
            model.predict(batch)
        times = []
        for _ in range(max(10, repeats // bs)):
            t = time.perf_counter()
            model.predict(batch)
            times.append((time.perf_counter() - t) * 1000 / bs)
        out[f"ms_per_face_batch{bs}"] = round(float(np.median(times)), 3)
    return out


def record_in_manifest(name: str, figures: dict[str, Any]) -> None:
    """Merge ``figures`` into the ``evaluation`` field of shipped model ``name``'s manifest entry."""
    from aulib.models import model_entry, register

    entry = {k: v for k, v in model_entry(name).items() if k not in ("sha256", "bytes")}
    entry["evaluation"] = {**entry.get("evaluation", {}), **figures}
    register(MODELS_DIR / name, entry)


def evaluate_emotion(
    data_dir: str | Path, model_path: str | Path | None = None, *, multitask_path: str | Path | None = None,
    multitask: bool = True, cache_dir: str | Path | None = CACHE, report_dir: str | Path = REPORTS,
    bench: bool = True, update_manifest: bool = False, runs_dir: str | Path | None = RUNS,
) -> dict[str, Any]:
    """Evaluate the emotion CNN (and the multitask CNN if shipped); write cnn.md/.json/_confusion.png.

    ``model_path``/``multitask_path`` evaluate a user file instead of the shipped one (it must still
    match the manifest checksum). Returns the dict written to ``cnn.json``.
    """
    data_dir, report_dir = Path(data_dir), Path(report_dir)
    fer = read_ferplus(data_dir, "valid")
    fer_crops = aligned_crops(fer.paths, cache_dir)
    ck = CKPlus.load(data_dir)
    ck_crops = aligned_crops(ck.image_paths(), cache_dir)
    assert fer_crops is not None and ck_crops is not None  # computed when not cached
    xfer, xck = np.asarray(fer_crops["crops"]), np.asarray(ck_crops["crops"])
    _, va = subject_split(ck.subjects, 0.2, seed=0)
    fallbacks = {"ferplus_valid": int(np.sum(fer_crops["fallback"])), "ckplus": int(np.sum(ck_crops["fallback"]))}
    train_crops = aligned_crops(read_ferplus(data_dir, "train").paths, cache_dir, only_cached=True)
    if train_crops is not None:  # the training crops are not worth computing just for this count
        fallbacks["ferplus_train"] = int(np.sum(train_crops["fallback"]))

    result: dict[str, Any] = {
        "data": {"dir": str(data_dir), "ferplus_valid_images": len(fer.paths), "ckplus_images": len(ck),
                 "ckplus_heldout_subjects": sorted(set(ck.subjects[va].tolist())),
                 "ckplus_heldout_images": int(len(va)), "crop_fallbacks": fallbacks,
                 "crop_fallback_note": "images whose landmark fit failed were plain-resized to 112 px"},
        "platform": {"machine": platform.machine(), "processor": platform.processor() or platform.machine()},
    }
    cms = {}
    emo = EmotionCNN(model_path)
    p = emo.predict(xfer)
    p_flip = emo.predict(xfer, flip=True)
    ck_pred = emo.predict(xck[va]).argmax(1)
    result["emotion_cnn"] = {"file": emo.path.name, "sha256": emo.info["sha256"],
                             "ferplus_valid": emotion_figures(p, fer.votes),
                             "ferplus_valid_flip": emotion_figures(p_flip, fer.votes),
                             "ckplus_heldout_emotion_acc": float((ck_pred == ck.emotion[va]).mean()),
                             "training": {k: emo.info.get(k) for k in ("command", "dataset")}}
    if (MODELS_DIR / SecondOpinion.name).is_file() and model_path is None:  # the image-mode ensemble
        second = SecondOpinion().model
        both = (p_flip + second.predict(xfer, flip=True)) / 2
        result["emotion_cnn"]["ferplus_valid_ensemble_flip"] = emotion_figures(both, fer.votes)
        result["emotion_cnn"]["ensemble_member"] = {"file": second.path.name, "sha256": second.info["sha256"],
                                                    "ferplus_valid": emotion_figures(second.predict(xfer), fer.votes),
                                                    "training": {k: second.info.get(k) for k in
                                                                 ("command", "dataset", "trained_on")}}
    cms["emotion_cnn (FER2013Valid)"] = np.array(result["emotion_cnn"]["ferplus_valid"]["confusion"])
    if bench:
        result["emotion_cnn"]["speed"] = benchmark(emo, xfer)

    if multitask and (multitask_path is not None or (MODELS_DIR / MultitaskCNN.name).is_file()):
        mt = MultitaskCNN(multitask_path)
        pe, _ = mt.predict(xfer)
        result["multitask_cnn"] = {
            "file": mt.path.name, "sha256": mt.info["sha256"], "aus": mt.aus,
            "ferplus_valid": emotion_figures(pe, fer.votes),
            "ferplus_valid_flip": emotion_figures(mt.predict(xfer, flip=True)[0], fer.votes),
            "ckplus_heldout_emotion_acc": None,  # trained on every CK+ subject: see reports/au.md
            "training": {k: mt.info.get(k) for k in ("command", "dataset")},
        }
        cms["multitask_cnn (FER2013Valid)"] = np.array(result["multitask_cnn"]["ferplus_valid"]["confusion"])
        if bench:
            result["multitask_cnn"]["speed"] = benchmark(mt, xfer)

    hist = Path(runs_dir) / "emotion" / "history.json" if runs_dir is not None else None
    if hist is not None and hist.is_file():  # per-epoch validation of the training run, when it is at hand
        result["emotion_cnn"]["training_history"] = json.loads(hist.read_text())

    if update_manifest:
        for key, path in (("emotion_cnn", model_path), ("multitask_cnn", multitask_path)):
            if key in result and path is None:  # only the shipped files, never a user's copy
                r, fv = result[key], result[key]["ferplus_valid"]
                figures = {"ferplus_valid_majority_acc_tie_aware": fv["accuracy_tie_aware"],
                           "ferplus_valid_majority_acc_first_max": fv["accuracy_first_max"],
                           "ferplus_valid_per_class_recall": fv["per_class_recall"],
                           **r.get("speed", {})}
                if r["ckplus_heldout_emotion_acc"] is not None:
                    figures["ckplus_heldout_emotion_acc"] = r["ckplus_heldout_emotion_acc"]
                record_in_manifest(r["file"], figures)

    report_dir.mkdir(parents=True, exist_ok=True)
    plot_confusion(cms, report_dir / "cnn_confusion.png")
    (report_dir / "cnn.json").write_text(json.dumps(result, indent=1) + "\n")
    (report_dir / "cnn.md").write_text(render_markdown(result))
    return result


def render_markdown(r: dict[str, Any]) -> str:
    """``reports/cnn.md`` from the evaluation dict (generated, never hand-edited)."""
    lines = [
        "# CNN models: evaluation",
        "",
        f"Generated by `aulib evaluate cnn --data {r['data'].get('dir', '../shared/data')}` "
        "(`aulib.training.evaluate`); do not edit.",
        "",
        "Crops: the aligned 112×112 face from `aulib.face.FacePipeline.cropped`, converted to gray. "
        f"Landmark-fit failures fell back to a plain resize: {r['data']['crop_fallbacks']}.",
        "",
        "FER+ accuracy is majority-vote accuracy on FER2013Valid "
        f"({r['data']['ferplus_valid_images']} images after dropping unknown/not-a-face majorities). "
        "**Tie rule:** *tie-aware* counts a prediction correct when it is among the classes sharing the "
        "top vote count (headline figure); *first-max* breaks ties by FER+ class order; *ties excluded* "
        "is plurality accuracy over the images with one top class. Per-class recall "
        "and the confusion matrix use the tie-aware rule. *+flip*: the probabilities averaged over the "
        "face and its mirror image; *+ema +flip*: also averaged with the second, independently trained "
        "network `emotion_cnn_ema.onnx` — what `aulib analyze` does for images and crops with the default "
        "`--emotion-model cnn` (`--no-tta` turns both off; video frames and the live page use "
        "`emotion_cnn.onnx` alone, unflipped). ms/face counts every network run.",
        "",
        "CK+ figures are on held-out subjects only (seeded 20 % subject split, "
        f"{len(r['data']['ckplus_heldout_subjects'])} subjects, {r['data']['ckplus_heldout_images']} images, "
        "duplicates removed).",
        "",
        "| model | FER+ valid acc (tie-aware) | (first-max) | (ties excluded) | mean class recall | "
        "CK+ held-out emotion acc | ms/face b1 | ms/face b16 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    views = [(k, v) for k in ("emotion_cnn", "multitask_cnn") if k in r
             for v in ("ferplus_valid", "ferplus_valid_flip", "ferplus_valid_ensemble_flip") if v in r[k]]
    label = {"ferplus_valid": "", "ferplus_valid_flip": " +flip", "ferplus_valid_ensemble_flip": " +ema +flip"}
    cost = {"ferplus_valid": 1, "ferplus_valid_flip": 2, "ferplus_valid_ensemble_flip": 4}
    for key, view in views:
        m, f = r[key], r[key][view]
        s = m.get("speed", {})
        b1, b16 = s.get("ms_per_face_batch1", float("nan")), s.get("ms_per_face_batch16", float("nan"))
        b1, b16 = cost[view] * b1, cost[view] * b16
        excl = f.get("accuracy_ties_excluded", float("nan"))
        held = m["ckplus_heldout_emotion_acc"]  # measured unflipped; None: trained on every CK+ subject
        ck = f"{held:.4f}" if view == "ferplus_valid" and held is not None else "—"
        ms = [f"{v:.2f}" if np.isfinite(v) else "—" for v in (b1, b16)]  # --no-bench: not measured
        lines.append(
            f"| {key}{label[view]} | {f['accuracy_tie_aware']:.4f} | "
            f"{f['accuracy_first_max']:.4f} | {excl:.4f} | {f['mean_class_recall']:.4f} | "
            f"{ck} | {ms[0]} | {ms[1]} |"
        )
    names = [k + label[v] for k, v in views]
    lines += ["", "## Per-class recall on FER2013Valid", "",
              "| class | support | " + " | ".join(names) + " |",
              "|---|---|" + "---|" * len(views)]
    for e in EMOTIONS:
        row = [e, str(r["emotion_cnn"]["ferplus_valid"]["support"][e])]
        row += [f"{r[k][v]['per_class_recall'][e]:.3f}" for k, v in views]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "![confusion matrices](cnn_confusion.png)", ""]
    if "multitask_cnn" in r:
        lines += ["## Multitask AU heads", "",
                  "The multitask network is trained on every CK+ subject, so no CK+ subject is held out from it "
                  "here (its CK+ emotion accuracy is left out too). Its AU heads are judged by the subject-grouped "
                  "cross-validation of its training recipe, alone and voting with the SVMs as images use them: "
                  "[au.md](au.md) (`aulib train multitask`).", ""]
    lines += _history_lines(r)
    lines += ["## Training", ""]
    member = r.get("emotion_cnn", {}).get("ensemble_member", {})
    trained = (("emotion_cnn", r.get("emotion_cnn", {}).get("training")), ("emotion_cnn_ema", member.get("training")),
               ("multitask_cnn", r.get("multitask_cnn", {}).get("training")))
    for key, t in trained:
        if t:
            lines += [f"- **{key}**: {t.get('dataset')}", f"  `{t.get('command')}`"]
            if t.get("trained_on"):
                lines.append(f"  Trained on {t['trained_on']}.")
    lines += ["", LICENCE, ""]
    return "\n".join(lines)


def _history_lines(r: dict[str, Any]) -> list[str]:
    """The emotion run's per-epoch validation table (the multitask recipe selects no epoch)."""
    lines: list[str] = []
    hist = r.get("emotion_cnn", {}).get("training_history")
    if hist:
        lines += ["## Per-epoch validation (training runs)", "",
                  "Emotion model (best epoch shipped, selected on FER2013Valid accuracy):", "",
                  "| epoch | train loss | FER+ valid acc (tie-aware) | (first-max) |", "|---|---|---|---|"]
        lines += [f"| {h['epoch']} | {h['train_loss']:.3f} | {h['valid_acc']:.4f} | {h['valid_acc_first_max']:.4f} |"
                  for h in hist]
        lines.append("")
    return lines

