"""Face-pipeline figures: detector comparison on the samples, stage timings, cropped-mode face check.

``aulib evaluate faces --data ../shared/data`` prints them and writes ``reports/faces.md``.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from aulib.face import FacePipeline, make_detector
from aulib.io import read_image

# Faces counted by eye in each sample photo.
SAMPLE_FACES = {"single_face.jpg": 1, "multi_face.jpg": 5, "BWPictureHuman.jpg": 1,
                "Image_with_alpha.png": 1, "free-mountain-vector-01.jpg": 0}


def first_video_frame(path: Path) -> np.ndarray:
    """First decoded frame of a video as RGB (the 640×360 benchmark frame)."""
    import av

    from aulib.video.reader import rgb

    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            return rgb(frame)
    raise ValueError(f"{path}: no frame decoded")


def _ms(fn, repeat: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat * 1000


def detector_table(samples: Path, frame: np.ndarray, repeat: int = 20) -> list[dict]:
    rows = []
    for name in ("retinaface", "dlib"):
        det = make_detector(name)
        found = missed = false = 0
        for f, n in SAMPLE_FACES.items():
            k = len(det(read_image(samples / f)))
            found += min(k, n)
            missed += max(0, n - k)
            false += max(0, k - n)
        rows.append({"detector": name, "faces_found": found, "faces_total": sum(SAMPLE_FACES.values()),
                     "missed": missed, "false_faces": false, "ms_per_640x360": _ms(lambda d=det: d(frame), repeat)})
    return rows


def stage_times(frame: np.ndarray, repeat: int = 30) -> dict[str, float]:
    """ms per stage on one frame (single face)."""
    import cv2

    fp = FacePipeline()
    det = fp.detect(frame)[0]
    box = det.landmark_box()
    pts = fp.landmarker(frame, box)
    al = fp.aligner(frame, pts)
    gray = cv2.cvtColor(al.crop, cv2.COLOR_RGB2GRAY)
    masked, _ = fp.masker(gray, al.landmarks)
    return {
        "detect": _ms(lambda: fp.detect(frame), repeat),
        "landmarks": _ms(lambda: fp.landmarker(frame, box), repeat),
        "align+mask": _ms(lambda: fp.masker(cv2.cvtColor(fp.aligner(frame, pts).crop, cv2.COLOR_RGB2GRAY),
                                            al.landmarks), repeat),
        "hog": _ms(lambda: fp.hog(masked), repeat),
    }


def _unique_images(paths: list[Path]) -> list[Path]:
    """Paths whose decoded pixels differ (CK+48 lists 219 peak frames under two folders)."""
    seen: set[bytes] = set()
    out = []
    for p in paths:
        key = hashlib.sha1(read_image(p).tobytes()).digest()
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def video_frames(path: Path, every: int = 15, count: int = 20) -> list[np.ndarray]:
    """Every ``every``-th RGB frame of a video, at most ``count``."""
    import av

    from aulib.video.reader import rgb

    frames = []
    with av.open(str(path)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i % every == 0:
                frames.append(rgb(frame))
            if len(frames) >= count:
                break
    return frames


def random_patches(images: list[np.ndarray], n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``n`` random square patches (24 px to half the image side); half of them resized to 48×48 like a
    dataset crop."""
    import cv2

    out = []
    for _ in range(n):
        im = images[int(rng.integers(len(images)))]
        h, w = im.shape[:2]
        side = int(rng.integers(24, min(h, w) // 2))
        y, x = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
        patch = im[y:y + side, x:x + side]
        out.append(cv2.resize(patch, (48, 48), interpolation=cv2.INTER_AREA) if rng.random() < 0.5 else patch)
    return out


def synthetic_non_faces(rng: np.random.Generator) -> list[np.ndarray]:
    """Blank, noise, gradient, checkerboard and degenerate images (48 px and 200 px, plus 1×1 and 8×8)."""
    import cv2

    out: list[np.ndarray] = []
    for side in (48, 200):
        out += [np.full((side, side, 3), v, np.uint8) for v in (0, 128, 255)]
        noise = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        out += [noise, cv2.GaussianBlur(noise, (9, 9), 3)]
        ramp = np.linspace(0, 255, side, dtype=np.uint8)
        out.append(np.repeat(np.tile(ramp, (side, 1))[:, :, None], 3, axis=2))
        out.append(np.repeat((np.indices((side, side)).sum(0) // 6 % 2 * 255).astype(np.uint8)[:, :, None], 3, 2))
    out += [np.zeros((1, 1, 3), np.uint8), np.full((8, 8, 3), 200, np.uint8)]
    return out


def cropped_rejection(data_dir: Path, fer_train: int = 300, patches: int = 200, seed: int = 0) -> list[dict]:
    """Share of images ``--cropped`` refuses (``success=0``), per set: real face crops (CK+48, FER+)
    should almost never be refused, non-faces always."""
    import random
    from collections import Counter

    from aulib.face.pipeline import CROP_FACE_THRESHOLD, MAX_FIT_ERROR

    rng = np.random.default_rng(seed)
    ck = _unique_images(sorted((data_dir / "ckplus48" / "images").rglob("*.png")))
    fer_valid = sorted((data_dir / "ferplus" / "FER2013Valid").glob("*.png"))
    fer_tr = sorted((data_dir / "ferplus" / "FER2013Train").glob("*.png"))
    fer_tr = sorted(random.Random(seed).sample(fer_tr, min(fer_train, len(fer_tr))))
    samples = data_dir / "samples"
    landscape = read_image(samples / "free-mountain-vector-01.jpg")
    background = video_frames(samples / "no_face.mp4")
    sets: list[tuple[str, bool, list]] = [
        ("CK+48, all unique crops", True, ck),
        ("FER2013Valid, all crops", True, fer_valid),
        (f"FER2013Train, {len(fer_tr)} random crops (seed {seed})", True, fer_tr),
        ("blank / noise / gradient / checkerboard / 1×1 / 8×8", False, synthetic_non_faces(rng)),
        ("free-mountain-vector-01.jpg, whole image", False, [landscape]),
        (f"free-mountain-vector-01.jpg, {patches} random patches", False, random_patches([landscape], patches, rng)),
        (f"no_face.mp4 frames, {patches} random patches", False, random_patches(background, patches, rng)),
    ]
    fp = FacePipeline(features=False)
    rows = []
    for name, faces, items in sets:
        reasons: Counter[str] = Counter()
        scores = []
        for item in items:
            f = fp.cropped(read_image(item) if isinstance(item, Path) else item)
            scores.append(f.score)
            if not f.success:
                reasons[f.error.split(" (")[0]] += 1
        rejected = sum(reasons.values())
        rows.append({"set": name, "faces": faces, "images": len(items), "rejected": rejected,
                     "rate": rejected / max(1, len(items)), "reasons": dict(reasons),
                     "min_score": float(min(scores)), "max_score": float(max(scores))})
    rows.append({"threshold": CROP_FACE_THRESHOLD, "max_fit_error": MAX_FIT_ERROR})
    return rows


# Sample files the figures read besides the photos of SAMPLE_FACES: the benchmark frame's video and
# the background video the non-face patches come from.
SAMPLE_VIDEOS = ("WolfgangLanger_Pexels.mp4", "no_face.mp4")
# Folders of dataset crops the --cropped check reads (each must hold PNGs).
CROP_FOLDERS = ("ckplus48/images", "ferplus/FER2013Valid", "ferplus/FER2013Train")


def check_inputs(data_dir: Path) -> None:
    """Every file and crop folder the figures read, checked before any work: a missing video was
    found only after the detector timings, minutes in. FileNotFoundError naming what is missing."""
    samples = data_dir / "samples"
    missing = [str(samples / f) for f in (*SAMPLE_FACES, *SAMPLE_VIDEOS) if not (samples / f).is_file()]
    if missing:
        raise FileNotFoundError(f"missing sample file(s) {', '.join(missing)} (aulib evaluate faces reads them)")
    for folder in CROP_FOLDERS:
        d = data_dir / folder
        if not d.is_dir() or next(d.rglob("*.png"), None) is None:
            raise FileNotFoundError(f"{d}: no .png crops found (aulib evaluate faces scores them)")


def evaluate_faces(data_dir: Path, reports: Path = Path("reports"), log=print) -> dict:
    check_inputs(data_dir)
    samples = data_dir / "samples"
    frame = first_video_frame(samples / "WolfgangLanger_Pexels.mp4")
    dets = detector_table(samples, frame)
    stages = stage_times(frame)
    crop = cropped_rejection(data_dir)
    lines = ["# Face pipeline figures", "",
             "Generated by `aulib evaluate faces --data ../shared/data` (do not edit).", "",
             f"## Detectors on the sample photos ({', '.join(f'{k}: {v}' for k, v in SAMPLE_FACES.items())})", "",
             "| detector | faces found | missed | false faces | ms per 640×360 frame |", "|---|---|---|---|---|"]
    lines += [f"| {r['detector']} | {r['faces_found']}/{r['faces_total']} | {r['missed']} | {r['false_faces']} "
              f"| {r['ms_per_640x360']:.1f} |" for r in dets]
    size = f"{frame.shape[1]}×{frame.shape[0]}"
    lines += ["", f"## ms per stage on a {size} frame (WolfgangLanger_Pexels.mp4, one face)",
              "", "| stage | ms |", "|---|---|"] + [f"| {k} | {v:.2f} |" for k, v in stages.items()]
    params = crop[-1]
    lines += ["", "## Cropped-face mode (`--cropped`): which images are refused", "",
              f"RetinaFace face score on the framed crop ≥ {params['threshold']}, then the 68-point fit "
              f"(rigid-point error ≤ {params['max_fit_error']}). Real crops should be kept, non-faces refused.", "",
              "| set | kind | images | refused | rate | face score min–max | reasons |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['set']} | {'faces' if r['faces'] else 'non-faces'} | {r['images']} | {r['rejected']} "
              f"| {r['rate']:.2%} | {r['min_score']:.2f}–{r['max_score']:.2f} "
              f"| {'; '.join(f'{k}: {v}' for k, v in r['reasons'].items()) or '—'} |" for r in crop[:-1]]
    from aulib.training import LICENCE

    lines += ["", LICENCE, ""]
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "faces.md").write_text("\n".join(lines))
    log("\n".join(lines))
    return {"detectors": dets, "stages_ms": stages, "cropped": crop}
