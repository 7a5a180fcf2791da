"""Robust image reading and input discovery.

Everything downstream works on one representation: an ``(H, W, 3)`` ``uint8`` array in **RGB**
order. This module turns whatever a user has (jpg/png/bmp/tiff/webp files, EXIF-rotated phone
photos, gray, RGBA, palette and 16-bit images, or numpy arrays in RGB *or* BGR order) into that,
and turns every unreadable input into an :class:`ImageReadError` whose message names the file.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pgm", ".ppm"}
VIDEO_EXTENSIONS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}

# 12000x9000 photos (108 MP) are legitimate; decompression bombs far beyond that are refused.
MAX_PIXELS = 250_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class ImageReadError(ValueError):
    """An input could not be read as an image; the message starts with the file name."""


def to_rgb(array: np.ndarray, order: Literal["rgb", "bgr"] = "rgb") -> np.ndarray:
    """Convert any image array to ``(H, W, 3)`` uint8 RGB.

    Accepts gray ``(H, W)`` / ``(H, W, 1)``, 3-channel and 4-channel (alpha dropped) arrays of
    dtype uint8, uint16 (scaled by 1/257) or float (0–1 if max ≤ 1, else 0–255). ``order`` says
    how a 3/4-channel array is laid out: ``"bgr"`` for OpenCV frames, ``"rgb"`` for PIL/imageio.
    """
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or min(a.shape[:2]) < 1:
        raise ImageReadError(f"array of shape {a.shape}: expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)")
    if a.dtype == np.uint8:
        pass
    elif a.dtype == np.uint16:
        a = (a.astype(np.uint32) // 257).astype(np.uint8)
    elif a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer):
        f = np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        if np.issubdtype(a.dtype, np.floating) and f.max(initial=0.0) <= 1.0:
            f = f * 255.0
        a = np.clip(f + 0.5, 0, 255).astype(np.uint8)
    else:
        raise ImageReadError(f"array of dtype {a.dtype}: not an image")
    if a.ndim == 2:
        return np.ascontiguousarray(np.repeat(a[:, :, None], 3, axis=2))
    a = a[:, :, :3]
    if order == "bgr":
        a = a[:, :, ::-1]
    return np.ascontiguousarray(a)


def _pil_to_rgb(img: Image.Image) -> np.ndarray:
    """PIL image of any mode → RGB uint8 array; transparent pixels are composited on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img)
        if img.mode == "F" or a.max(initial=0) > 255:
            a = a.astype(np.float64)
            hi = a.max(initial=0.0)
            a = a / (65535.0 if hi > 255 and img.mode != "F" else max(hi, 1e-9)) * 255.0
        return to_rgb(np.clip(a, 0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB, applying its EXIF orientation.

    Raises :class:`ImageReadError` (message starting with the path) for a missing, empty,
    truncated, non-image or absurdly large file — never a PIL/OpenCV traceback.
    """
    p = Path(path)
    if p.is_dir():
        raise ImageReadError(f"{p}: is a directory, not an image")
    if not p.exists():
        raise ImageReadError(f"{p}: no such file")
    if p.stat().st_size == 0:
        raise ImageReadError(f"{p}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as img:
                img = ImageOps.exif_transpose(img)
                img.load()
                rgb = _pil_to_rgb(img)
    except UnidentifiedImageError:
        raise ImageReadError(f"{p}: not an image file (format not recognised)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageReadError(f"{p}: image too large ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        msg = str(e) or type(e).__name__
        if "truncated" in msg.lower() or "broken" in msg.lower():
            msg = f"truncated or corrupt image data ({msg})"
        raise ImageReadError(f"{p}: {msg}") from None
    if rgb.ndim != 3 or min(rgb.shape[:2]) < 1:
        raise ImageReadError(f"{p}: image has no pixels")
    return rgb


def is_video(path: str | Path) -> bool:
    """True when the file name has a video extension."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def expand_inputs(paths: Iterable[str | Path]) -> list[Path]:
    """Expand folders recursively (sorted) into image and video files; files are kept as given.

    Files given explicitly are kept whatever their extension, so a mistyped or non-image file
    yields a clear per-file error row instead of vanishing silently; inside folders only files
    with image or video extensions are taken.
    """
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(
                f
                for f in sorted(p.rglob("*"))
                if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
            )
        else:
            out.append(p)
    return out
