"""FER+ training crops in one small file that rebuilds them exactly: CNN training on another machine.

Why: fine-tuning an emotion network takes about 70 minutes of this kind of CPU per network, and a
few minutes on an accelerator. But a lent accelerator machine has neither the dataset nor the face
pipeline's 70 MB of models, and takes at most 64 MiB of files per call. The 112×112 aligned crops
the networks train on are 400 MB for FER+; yet each crop is its 48×48 source warped by one
similarity matrix (:class:`aulib.face.align.Aligner`: bilinear, replicated border), or, where the
landmark fit failed, the source resized. So the file holds each source (lossless WebP, ≈ 1.6 kB)
and its matrix (6 numbers), and :func:`unpack` rebuilds the crops with the same OpenCV calls.

:func:`pack` runs the face pipeline once per image, and writes the crops into the same cache
(:func:`aulib.training.crops.aligned_crops`) that training and evaluation here read, so the crops
in the file and in the cache are the same pixels (it checks each rebuilt crop against the
pipeline's). ``python -m aulib.training.portable pack --data ../shared/data --out ferplus.npz``
makes it; :func:`aulib.training.cnn.train_emotion` takes it as ``pack=``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

CROP_SIZE = 112  # aulib.training.crops.CROP_SIZE (not imported: the unpacking side needs OpenCV and numpy only)
SPLITS = ("train", "valid")


def _encode(gray: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".webp", gray, [cv2.IMWRITE_WEBP_QUALITY, 101])  # quality > 100: lossless
    if not ok:
        raise ValueError("WebP encoding failed")
    return buf.tobytes()


def _counts(votes: np.ndarray) -> np.ndarray:
    """FER+ vote counts (whole numbers 0–10 per class) as uint8: a quarter of float32's bytes."""
    if not (np.array_equal(votes, np.round(votes)) and votes.min() >= 0 and votes.max() <= 255):
        raise ValueError("FER+ votes must be whole numbers from 0 to 255")
    return votes.astype(np.uint8)


def rebuild(source: np.ndarray, matrix: np.ndarray, fallback: bool) -> np.ndarray:
    """The 112×112 gray training crop from its source and matrix, as the face pipeline makes it.

    Aligned: ``warpAffine`` with the aligner's flags on the gray source (the pipeline warps RGB and
    converts to gray; for a gray image the two give the same pixels), then brought to the training faces'
    detail where the face held more (:func:`aulib.face.align.matched_detail`: no 48 px dataset face does).
    Fallback: the source resized (bicubic), as :func:`aulib.training.crops._gray_crop` does when no
    landmarks fit.
    """
    from aulib.face.align import matched_detail

    if fallback:
        return cv2.resize(source, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_CUBIC)
    return matched_detail(cv2.warpAffine(source, matrix, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR,
                                         borderMode=cv2.BORDER_REPLICATE), matrix)


_PIPELINE: Any = None


def _record(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """(crop, source, matrix, fallback) of one dataset image, in a worker process."""
    global _PIPELINE
    from aulib.face import FacePipeline
    from aulib.io import read_image
    from aulib.training.crops import _gray_crop

    if _PIPELINE is None:
        _PIPELINE = FacePipeline(features=False)
        seen: dict[str, Any] = {}
        align = _PIPELINE.aligner

        class Recording:  # the aligner, remembering what it warped last (the returned face's warp)
            size, template = align.size, align.template

            def __call__(self, image: np.ndarray, landmarks: np.ndarray) -> Any:
                from aulib.face.align import RIGID_POINTS, umeyama

                seen["image"] = image
                seen["matrix"] = umeyama(landmarks[RIGID_POINTS], align.template[RIGID_POINTS])
                return align(image, landmarks)

        _PIPELINE.aligner = Recording()
        _PIPELINE.seen = seen
    rgb = read_image(path)
    _PIPELINE.seen.clear()
    crop, fallback = _gray_crop(_PIPELINE, rgb)
    if fallback:
        source, matrix = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), np.zeros((2, 3))
    else:
        source, matrix = cv2.cvtColor(_PIPELINE.seen["image"], cv2.COLOR_RGB2GRAY), _PIPELINE.seen["matrix"]
    return crop, source, matrix, fallback


def pack(data_dir: str | Path, out: str | Path, cache_dir: str | Path | None = None, workers: int = 2,
         subset: int | None = None) -> dict[str, Any]:
    """Write the FER+ train and valid crops as sources + matrices to ``out`` (.npz); return a summary.

    Also stores the crops in ``cache_dir`` (default :data:`aulib.training.CACHE`) under the key
    :func:`aulib.training.crops.aligned_crops` uses, so nothing is computed twice. Every rebuilt crop
    is compared with the pipeline's; a mismatch raises (the file would train on other pixels).
    ``subset``: only the first N images of each split (tests).
    """
    from rich.progress import track

    from aulib.training import CACHE
    from aulib.training.crops import cached, file_keys
    from aulib.training.datasets import read_ferplus

    cache_dir = CACHE if cache_dir is None else cache_dir
    arrays: dict[str, np.ndarray] = {}
    summary: dict[str, Any] = {}
    for split in SPLITS:
        ds = read_ferplus(data_dir, split).subset(subset)
        paths = [str(p) for p in ds.paths]
        n = len(paths)
        crops = np.zeros((n, CROP_SIZE, CROP_SIZE), np.uint8)
        fallback = np.zeros(n, bool)
        matrices = np.zeros((n, 2, 3))
        blobs: list[bytes] = []
        with ProcessPoolExecutor(workers) as ex:
            results = ex.map(_record, paths, chunksize=64)
            for i, (crop, source, m, fb) in enumerate(track(results, total=n, description=f"pack {split}")):
                crops[i], matrices[i], fallback[i] = crop, m, fb
                if not np.array_equal(rebuild(source, m, fb), crop):
                    raise ValueError(f"{paths[i]}: the rebuilt crop differs from the face pipeline's")
                blobs.append(_encode(source))
        key = ["align=True", f"size={CROP_SIZE}", *file_keys(ds.paths)]
        cached(cache_dir, "crops", key, lambda c=crops, f=fallback: {"crops": c, "fallback": f})
        sizes = np.array([len(b) for b in blobs], np.int64)
        arrays.update({
            f"{split}_webp": np.frombuffer(b"".join(blobs), np.uint8),
            f"{split}_offsets": np.concatenate([[0], np.cumsum(sizes)]),
            f"{split}_matrix": matrices, f"{split}_fallback": fallback,
            f"{split}_votes": _counts(ds.votes),
            f"{split}_sha256": np.frombuffer(hashlib.sha256(crops.tobytes()).digest(), np.uint8),
        })
        summary[split] = {"images": n, "fallbacks": int(fallback.sum()), "bytes": int(sizes.sum())}
    np.savez(out, **arrays)
    return summary


def unpack(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Per split: ``crops`` (N, 112, 112) uint8, ``soft`` (N, 8) vote shares, ``votes`` (N, 8) counts,
    ``fallback`` (N,), and ``exact`` — whether the rebuilt crops hash to the packed ones (False only
    where this machine's OpenCV interpolates differently; the crops are then within a gray level)."""
    z = np.load(path, allow_pickle=False)
    out: dict[str, dict[str, np.ndarray]] = {}
    for split in SPLITS:
        data, offsets = z[f"{split}_webp"], z[f"{split}_offsets"]
        matrix, fallback = z[f"{split}_matrix"], z[f"{split}_fallback"]
        crops = np.zeros((len(fallback), CROP_SIZE, CROP_SIZE), np.uint8)
        for i in range(len(fallback)):
            source = cv2.imdecode(data[offsets[i]:offsets[i + 1]], cv2.IMREAD_GRAYSCALE)
            crops[i] = rebuild(source, matrix[i], bool(fallback[i]))
        exact = hashlib.sha256(crops.tobytes()).digest() == z[f"{split}_sha256"].tobytes()
        votes = z[f"{split}_votes"].astype(np.float32)
        soft = (votes / votes.sum(axis=1, keepdims=True)).astype(np.float32)  # as read_ferplus makes it
        out[split] = {"crops": crops, "soft": soft, "votes": votes,
                      "fallback": fallback, "exact": np.array(exact)}
    return out


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m aulib.training.portable", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("pack", help="write the FER+ crops as sources + matrices")
    a.add_argument("--data", required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--workers", type=int, default=2)
    b = sub.add_parser("check", help="rebuild a packed file's crops and say whether they are exact")
    b.add_argument("file")
    args = p.parse_args(argv)
    if args.cmd == "pack":
        print(json.dumps(pack(args.data, args.out, workers=args.workers)))
    else:
        z = unpack(args.file)
        print(json.dumps({s: {"images": len(v["crops"]), "exact": bool(v["exact"])} for s, v in z.items()}))


if __name__ == "__main__":
    main()
