"""Robust image reading and input discovery.

Everything downstream works on one representation: an ``(H, W, 3)`` ``uint8`` array in **RGB**
order. This module turns whatever a user has (jpg/png/bmp/tiff/webp files, EXIF-rotated phone
photos, gray, RGBA, palette, CMYK, 10/12/16-bit and float images, or numpy arrays in RGB *or* BGR
order) into that, and turns every unreadable input into an :class:`ImageReadError` whose message
names the file.

**Value range rule** (how more-than-8-bit data becomes 8 bit): data are divided by the largest
value their *real* bit depth can hold, never blindly by 65535 — a 12-bit camera image stored in a
16-bit PNG (max 4095) would otherwise come out nearly black and "have no face".

1. Where the file says its depth, that wins: PNG ``sBIT`` (significant bits), TIFF
   ``MaxSampleValue`` / ``BitsPerSample``, PGM/PPM ``maxval``. A 16-bit PNG marked ``sBIT=16`` that is
   genuinely dark stays dark. A deep gray TIFF that stores white as 0 (MinIsWhite) is turned back.
2. Otherwise (undeclared 16-bit containers, ``uint16``/integer arrays): the smallest of 8, 10, 12,
   14 or 16 bits that holds the maximum value (here and in rule 3 "maximum" sets aside the brightest
   0.01 % of values, which are clipped: one hot pixel or one stray 1e38 blacked the image out) —
   a ``uint16`` array holding 0–255 is used as is, one
   with max 4095 is scaled by 255/4095. Integers beyond 16 bits are scaled by their maximum.
   Trade-off: an undeclared 16-bit image whose brightest pixel is below 4096 is read as 12-bit
   data (brightened 16×) — far more often right than a nearly black result. Signed 16-bit data
   (``int16``, int16 TIFFs) above 14 bits are 15-bit: their largest value is 32767.
3. Floats: 0–1 if 99 % of the finite values are ≤ 4, else 0–255 if 99 % are ≤ 320, else rule 2 on the
   maximum; what is above the range is clipped. Judged by the bulk of the values, not the maximum: the
   top values are overshoot — a 0–1 image resized bicubic (max 1.02), brightened ×1.6 for augmentation
   and not clipped, a 0–255 image sharpened (max 368) — and read by its maximum such an image was taken
   for 0–255 (black, "no face") or 10-bit data (4× too dark). Only a black picture has 99 % of its 0–255
   values ≤ 4. NaN becomes 0, +inf the maximum, negative values 0.

**No global state**: the pixel cap (:data:`MAX_PIXELS`) is checked per call from the file header
*before* decoding, and for arrays before converting; Pillow's process-wide
``Image.MAX_IMAGE_PIXELS`` is left as the user set it (a lower one refuses images, and says so). One
exception: ``ImageFile.LOAD_TRUNCATED_IMAGES``, which data-loading code often sets to True, is held False
while aulib decodes (:func:`strict_decoding`): with it, half a file decoded "successfully" to a picture
whose lower half is gray, and was analysed at full confidence, AUs off by up to 3.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
import re
import reprlib
import stat
import struct
import threading
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Literal

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from aulib.storage import Source, is_url, list_prefix, open_input, redact, suffix

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pgm",
                    ".ppm", ".pbm", ".pnm", ".avif", ".jp2", ".j2k", ".tga", ".heic", ".heif", ".pcx", ".sgi",
                    # stereo cameras' MPO photos, Photoshop files (read when named, left out of folders before)
                    ".mpo", ".psd",
                    ".jxl"}  # JPEG XL: not decodable here, but a folder's .jxl photos get a row saying so
# Containers FFmpeg reads; .ts/.mts/.m2ts are MPEG transport streams (camcorders' AVCHD clips, broadcast
# recordings), .3gp phone clips, .ogv Theora, .mxf broadcast cameras, .vob DVDs.
VIDEO_EXTENSIONS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv",
                    ".ts", ".mts", ".m2ts", ".3gp", ".3g2", ".ogv", ".mxf", ".vob", ".asf", ".dv",
                    # QuickTime's own extension (.mov's container), Flash MP4, camcorders' MPEG-PS (JVC .mod/.tod)
                    ".qt", ".f4v", ".mod", ".tod", ".m2v", ".nut",
                    # raw streams as cameras, encoders and research pipelines write them
                    ".y4m", ".h264", ".264", ".h265", ".265", ".hevc", ".ivf"}

# Largest image accepted, in pixels: 120 MP covers 108 MP (12000x9000) phone photos. Decoding costs
# about 3 bytes per pixel plus one working copy (~0.7 GB at the limit); a 20000x20000 PNG of zeros
# (a few hundred kB on disk, 1.2 GB decoded) is refused from its header before any decoding.
MAX_PIXELS = 120_000_000
# Float images (rule 3): a 0–1 image when 99 % of its values are at most FLOAT_UNIT_BULK, else a 0–255 one when
# they are at most FLOAT_BYTE_BULK; what lies above is overshoot, clipped
FLOAT_UNIT_BULK, FLOAT_BYTE_BULK = 4.0, 320.0
_DEPTHS = (8, 10, 12, 14, 16)


class ImageReadError(ValueError):
    """An input could not be read as an image; the message starts with the file name."""


_strict_lock = threading.Lock()
_strict_users = 0
_strict_saved = False


@contextlib.contextmanager
def strict_decoding() -> Iterator[None]:
    """Pillow refuses truncated files while this block runs, whatever ``ImageFile.LOAD_TRUNCATED_IMAGES``
    says (PyTorch and Keras data code set it True; a half file then decoded to a picture with a gray lower
    half, analysed as a face at confidence 1.00). The flag is process-wide, so it is set False by the first
    of any concurrent blocks and put back as it was by the last; untouched when already False."""
    global _strict_users, _strict_saved
    with _strict_lock:
        if _strict_users == 0:
            _strict_saved = ImageFile.LOAD_TRUNCATED_IMAGES
            ImageFile.LOAD_TRUNCATED_IMAGES = False
        _strict_users += 1
    try:
        yield
    finally:
        with _strict_lock:
            _strict_users -= 1
            if _strict_users == 0:
                ImageFile.LOAD_TRUNCATED_IMAGES = _strict_saved


def bit_depth_for(max_value: float) -> int:
    """Smallest of 8/10/12/14/16 bits whose range holds ``max_value`` (0 when it exceeds 16 bits)."""
    for bits in _DEPTHS:
        if max_value <= (1 << bits) - 1:
            return bits
    return 0


def _megapixels(pixels: int) -> str:
    """``pixels`` as megapixels, exact where rounding would make it look like the limit (12000×10001 said "120 MP;
    aulib reads at most 120 MP")."""
    if abs(pixels - MAX_PIXELS) < 0.01 * MAX_PIXELS:
        return f"{pixels:,} pixels"
    return f"{pixels / 1e6:.2f} MP" if pixels < 10_000_000 else f"{pixels / 1e6:.0f} MP"


def _check_pixels(width: int, height: int, what: str) -> None:
    if width * height > MAX_PIXELS:
        raise ImageReadError(f"{what}: image too large ({width}×{height} = {_megapixels(width * height)}; "
                             f"aulib reads at most {_megapixels(MAX_PIXELS)} — downscale it first)")


def _robust_max(values: np.ndarray) -> float:
    """The largest value once the brightest 0.01 % are set aside (the maximum of fewer than 10,000
    values): one hot pixel, or one stray 1e38 in a float image, set the scale of the whole image and
    blacked it out ("no face detected"). Those few values are clipped to white instead."""
    flat = values.ravel()
    if not flat.size:
        return 0.0
    k = flat.size - max(1, flat.size // 10_000)
    return float(max(np.partition(flat, k)[k], 0.0))


def _bulk(values: np.ndarray) -> float:
    """The value 99 % of ``values`` do not exceed (0 for none)."""
    flat = values.ravel()
    if not flat.size:
        return 0.0
    k = int(0.99 * (flat.size - 1))
    return float(np.partition(flat, k)[k])


def to_8bit(a: np.ndarray, full_scale: float | None = None) -> np.ndarray:
    """Any numeric array → uint8 by the module's value range rule.

    ``full_scale``: the value that maps to 255 when the source declares it (PNG sBIT, TIFF
    MaxSampleValue); otherwise it is inferred from the data (rules 2 and 3 of the module docstring).
    """
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ImageReadError(f"array of dtype {a.dtype}: not an image")
    if a.dtype == np.int8 and a.size and int(a.min()) < 0:
        # 8-bit pixels cast to int8 wrap 128–255 to negative; read as brightness, that half went black (59 % of
        # a photo's pixels). Which was meant — wrapped bytes or signed data — cannot be told: said, not guessed.
        raise ImageReadError(f"array of dtype int8 with negative values (min {int(a.min())}): brightness cannot be "
                             "negative; 8-bit pixels cast to int8 are read back with a.view(np.uint8), signed data "
                             "must be shifted to ≥ 0 first")
    f = a.astype(np.float32) if a.dtype.itemsize <= 2 else a.astype(np.float64)
    if a.dtype.kind in "if" and f.size:
        _refuse_signed_values(f, a.dtype)
    if np.issubdtype(a.dtype, np.floating):
        finite = np.isfinite(f)
        if f.size and not finite.any():  # read as black, it gave "no face detected" as if it were a photo
            raise ImageReadError(f"array of dtype {a.dtype} with no finite value (every pixel NaN or infinite): "
                                 "not an image")
        hi = _robust_max(f[finite]) if finite.any() else 0.0
        f = np.where(np.isnan(f), 0.0, np.where(np.isposinf(f), hi, f))
    else:
        hi = _robust_max(f)
    if full_scale is None:
        bulk = _bulk(f) if np.issubdtype(a.dtype, np.floating) else math.inf
        if bulk <= FLOAT_UNIT_BULK:
            full_scale = 1.0
        elif bulk <= FLOAT_BYTE_BULK:
            full_scale = 255.0
        else:
            bits = bit_depth_for(hi)
            if a.dtype == np.int16 and bits == 16:  # signed 16-bit data reach 32767, not 65535 (half as bright)
                bits = 15
            full_scale = float((1 << bits) - 1) if bits else hi
    f = f * (255.0 / max(full_scale, 1e-12))
    return np.clip(f + 0.5, 0, 255).astype(np.uint8)


# Share of pixels that may be negative and be clipped to black (a resampling filter's undershoot, noise around a
# black level); more means the values are not brightness at all.
MAX_NEGATIVE_SHARE = 0.01


def _refuse_signed_values(f: np.ndarray, dtype: np.dtype) -> None:
    """ImageReadError for pixel values that are mostly not brightness: an array normalised for a network
    (−1…1, ImageNet mean/std) or signed data centred on 0. Clipped to 0, such an array was read as a dark
    photo — the same face with other AUs, or "no face detected" — without a word."""
    below = np.isfinite(f) & (f < 0)  # −inf, like NaN, is a missing value (read as 0), not a scale
    negative = float(np.count_nonzero(below)) / f.size
    if negative <= MAX_NEGATIVE_SHARE:
        return
    raise ImageReadError(f"array of dtype {dtype} with negative values ({negative:.0%} of the pixels, min "
                         f"{float(f[below].min()):.4g}): brightness cannot be negative. An image normalised for a "
                         "network (to −1…1, or by a mean and standard deviation) must be turned back into pixels "
                         "(0–255 or 0–1) first, signed data shifted to ≥ 0")


def to_rgb(array: np.ndarray, order: Literal["rgb", "bgr"] = "rgb") -> np.ndarray:
    """Convert any image array to ``(H, W, 3)`` uint8 RGB.

    Accepts gray ``(H, W)`` / ``(H, W, 1)``, gray+alpha ``(H, W, 2)``, 3-channel and 4-channel
    arrays of dtype bool, any integer or float, scaled to 8 bit by the module's value range rule
    (colour and alpha each by their own range). An alpha channel is composited on white (one that is 0
    everywhere is no alpha: see :func:`composite_on_white`), as
    :func:`read_image` does for the file the array came from (``np.asarray(Image.open(png))`` and the
    PNG's path give the same result; dropping it showed whatever colour transparent pixels happen
    to hold, often black). ``order`` says how a 3/4-channel array is laid out: ``"bgr"`` for OpenCV
    frames (BGRA from ``cv2.imread(..., IMREAD_UNCHANGED)``), ``"rgb"`` for PIL/imageio. A PIL image is
    converted as a file of its mode would be
    (palette, 16-bit, transparency: :func:`_pil_to_rgb`; ``np.asarray`` would give a palette image's
    indices). Anything else raises :class:`ImageReadError`.
    """
    if order not in ("rgb", "bgr"):
        raise ValueError(f"order must be 'rgb' or 'bgr', not {order!r}")
    if isinstance(array, Image.Image):
        # named by its file where it has one (Image.open's images): "PIL image of mode RGB, 572×562 px: …
        # truncated" did not say which of a user's files
        source = getattr(array, "filename", "") or ""
        what = (f"{os.fsdecode(source)}: " if isinstance(source, (str, bytes, os.PathLike)) and source else "") + \
            f"PIL image of mode {array.mode}, {array.width}×{array.height} px"
        _check_pixels(array.width, array.height, what)
        try:  # turned by its EXIF orientation, as its file is (Image.open does not turn it)
            with strict_decoding():
                scale = _pil_declared_scale(array)
                return np.ascontiguousarray(_pil_to_rgb(ImageOps.exif_transpose(array), scale, _white_is_zero(array)))
        except (ValueError, OSError, TypeError) as e:  # a closed image, a mode Pillow cannot convert ("La")
            raise ImageReadError(f"{what}: cannot convert it to RGB ({e})") from None
        except AssertionError:  # Pillow's bare assert when the file was closed before the pixels were read
            raise ImageReadError(f"{what}: its file was closed before its pixels were read (call im.load() inside "
                                 "the `with Image.open(...)` block, or give the path)") from None
    try:
        a = np.asarray(array)
    except Exception as e:  # a list of images of different shapes, [array, None], a torch tensor that requires grad
        hint = " (call .detach() first)" if "requires grad" in str(e) else ""
        raise ImageReadError(f"{type(array).__name__} is not an image ({' '.join(str(e).split()[:12])}…){hint}: "
                             "give one array of shape (H, W) or (H, W, C), a PIL image or a path") from None
    if a.dtype == object and a.ndim == 0:  # a file object, a dict, None…: np.asarray wraps it as a 0-d array
        raise ImageReadError(f"{type(array).__name__} is not an image: expected an array of shape (H, W) or "
                             "(H, W, C), a PIL image or (to read a file) its path")
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 2, 3, 4)) or min(a.shape[:2]) < 1:
        hint = ""
        if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[2] > 4:  # a network's channels-first tensor
            hint = f"; channels first? give a.transpose(1, 2, 0) (shape {(*a.shape[1:], a.shape[0])})"
        elif a.ndim == 4 and a.shape[0] == 1:  # a batch of one
            hint = f"; a batch of one? give a[0] (shape {a.shape[1:]})"
        raise ImageReadError(f"array of shape {a.shape}: expected (H, W) or (H, W, C) with C in 1–4 and H, W ≥ 1"
                             + hint)
    _check_pixels(a.shape[1], a.shape[0], f"array of shape {a.shape}")
    shape = a.shape
    alpha = to_8bit(a[:, :, -1]) if a.ndim == 3 and a.shape[2] in (2, 4) else None
    if a.ndim == 3:
        a = a[:, :, 0] if a.shape[2] < 3 else a[:, :, :3]
    if a.ndim == 3 and order == "bgr":
        a = a[:, :, ::-1]
    a = to_8bit(a)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if alpha is not None and alpha.min(initial=255) < 255:
        # An alpha mask is mostly opaque or clear, partly transparent along edges (or one level throughout: a
        # translucent layer). np.asarray of a CMYK image is (H, W, 4) too: its black channel taken for alpha (and
        # C, M, Y for R, G, B) gave AUs up to 1.7 off without a word. A fourth channel mostly in between and
        # varying like picture content is refused (the PIL image or the file reads right).
        partial = float(np.count_nonzero((alpha > 8) & (alpha < 247))) / alpha.size if shape[2] == 4 else 0.0
        if partial > MAX_PARTIAL_ALPHA and float(alpha.std()) > 16:
            raise ImageReadError(
                f"array of shape {shape}: its last channel is not an alpha mask ({partial:.0%} of its values partly "
                "transparent, as a CMYK image's black channel is): give the PIL image or the file itself, or "
                "convert it to RGB first (np.asarray(im.convert('RGB')))")
        a = composite_on_white(a, alpha)
    return np.ascontiguousarray(a)


# An array's alpha channel with more than this share of values strictly between 8 and 247 is no alpha mask (to_rgb).
MAX_PARTIAL_ALPHA = 0.5


def composite_on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Blend uint8 RGB over white with a uint8 alpha (transparent pixels become white).

    An alpha that is 0 everywhere is no alpha at all (``rgb`` comes back as it is): 32-bit BMPs (Windows
    screenshots, exports) and ICOs often carry such an unused channel, browsers show them opaque, and
    blended on white the whole picture vanished ("no face detected")."""
    if not alpha.any():
        return np.ascontiguousarray(rgb)
    a = alpha.astype(np.float32)[:, :, None] / 255.0
    return np.clip(rgb.astype(np.float32) * a + 255.0 * (1.0 - a) + 0.5, 0, 255).astype(np.uint8)


def _png_significant_bits(f: IO[bytes]) -> tuple[int, int | None]:
    """(IHDR bit depth, largest sBIT value or None) of a PNG, reading only the chunks before IDAT
    (the file position is restored: Pillow reads the same file object)."""
    pos = f.tell()
    try:
        return _png_chunks(f)
    finally:
        f.seek(pos)


def _png_chunks(f: IO[bytes]) -> tuple[int, int | None]:
    f.seek(0)
    if f.read(8) != b"\x89PNG\r\n\x1a\n":
        return 0, None
    depth, sbit = 0, None
    for _ in range(64):
        head = f.read(8)
        if len(head) < 8:
            break
        length, kind = struct.unpack(">I4s", head)
        if kind in (b"IDAT", b"IEND"):
            break
        if kind in (b"IHDR", b"sBIT"):
            data = f.read(length)
            f.seek(4, os.SEEK_CUR)  # CRC
        else:
            data = b""
            f.seek(length + 4, os.SEEK_CUR)
        if kind == b"IHDR" and len(data) >= 9:
            depth = data[8]
        elif kind == b"sBIT" and data:
            sbit = max(data)
    return depth, sbit


def _declared_full_scale(img: Image.Image, f: IO[bytes]) -> tuple[int, float | None]:
    """(container bits per sample, value that means full brightness if the file declares it)."""
    if img.format == "PNG":
        depth, sbit = _png_significant_bits(f)
        return depth, float((1 << sbit) - 1) if sbit and sbit <= depth else None
    if img.format == "TIFF":
        tags = getattr(img, "tag_v2", {})
        bits = tags.get(258)
        bits = max(bits) if isinstance(bits, tuple) and bits else (bits if isinstance(bits, int) else 8)
        for tag in (341, 281):  # SMaxSampleValue, MaxSampleValue
            v = tags.get(tag)
            v = max(v) if isinstance(v, tuple) and v else v
            if isinstance(v, (int, float)) and 0 < v < (1 << bits) - 1:
                return bits, float(v)
        return bits, None
    if img.format == "PPM" and img.mode in ("I", "I;16", "I;16B", "I;16L"):
        # Pillow scales samples to 0–65535 from the header's declared maximum (a maxval of 4095 reads up to
        # 65535), and leaves them as stored when it declares 65535: either way the declaration is full scale.
        # Without it a 16-bit PGM whose values stayed below 4096 was brightened 16×, as if it were 12-bit.
        return 16, 65535.0
    return 8, None


def _upright(img: Image.Image) -> Image.Image:
    """The image turned by its EXIF orientation; as it is when the EXIF block is damaged (a photo with a few bytes
    of its APP1 changed was refused: "not a TIFF file (header b'MM\\x00\\x9e…' not valid)", its pixels intact)."""
    try:
        return ImageOps.exif_transpose(img)
    except (SyntaxError, ValueError, TypeError, KeyError, OSError, struct.error):
        return img


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1–8) to an array decoded without it."""
    ops = {2: lambda x: x[:, ::-1], 3: lambda x: x[::-1, ::-1], 4: lambda x: x[::-1],
           5: lambda x: np.swapaxes(x, 0, 1), 6: lambda x: np.rot90(x, -1), 7: lambda x: np.rot90(x, -1)[::-1],
           8: lambda x: np.rot90(x, 1)}  # 7 is the transverse: it was the transpose (5), i.e. 180° off
    return np.ascontiguousarray(ops[orientation](a)) if orientation in ops else a


def _decode_deep_color(f: IO[bytes], name: str, img: Image.Image, full_scale: float | None) -> np.ndarray:
    """16-bit RGB(A) PNG/TIFF: Pillow keeps only the high byte, so decode with OpenCV at full depth."""
    import cv2

    f.seek(0)
    a = cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_UNCHANGED)
    if a is None:
        raise ImageReadError(f"{name}: truncated or corrupt image data (OpenCV could not decode it)")
    alpha = None
    if a.ndim == 3 and a.shape[2] == 4:
        if img.mode == "RGBA":  # Pillow read the 4th channel as transparency (PNG; TIFF ExtraSamples 1 or 2)
            alpha = to_8bit(a[:, :, 3], float(np.iinfo(a.dtype).max) if a.dtype.kind in "ui" else 1.0)
        # else a TIFF's "unspecified" extra sample (a scanner's infrared dust channel): Pillow shows RGB, and
        # blended as transparency it washed the picture out to white (a smile read as neutral, AU12_r 3.6 → 0.3)
        a = a[:, :, :3]
    if a.ndim == 3:
        a = a[:, :, ::-1]  # OpenCV decodes to BGR
    rgb = to_8bit(a, full_scale)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    if alpha is not None:
        rgb = composite_on_white(rgb, alpha)
    orientation = img.getexif().get(0x0112, 1)
    if orientation not in range(2, 9):
        return rgb
    return _as_pillow_shows(rgb, _orient(rgb, orientation), img)


def _as_pillow_shows(plain: np.ndarray, oriented: np.ndarray, img: Image.Image) -> np.ndarray:
    """Of OpenCV's full-depth decode as it came (``plain``) and with the orientation tag applied, the one
    that shows what Pillow shows (its 8-bit decode, EXIF-transposed): OpenCV and Pillow each apply a TIFF's
    Orientation tag themselves in some versions and not in others (a 16-bit TIFF was turned twice), and
    neither applies a PNG's."""
    import cv2

    shown = np.asarray(ImageOps.exif_transpose(img).convert("RGB"), np.float32)

    def diff(a: np.ndarray) -> float:
        if a.shape[:2] != shown.shape[:2]:
            return float("inf")
        small = [cv2.resize(np.ascontiguousarray(x, dtype=np.float32), (32, 32), interpolation=cv2.INTER_AREA)
                 for x in (a, shown)]
        return float(np.abs(small[0] - small[1]).mean())

    return plain if diff(plain) < diff(oriented) else oriented


def _tiff_tags(f: IO[bytes]) -> dict[int, int]:
    """The first value of the SHORT/LONG tags of a TIFF's first directory (width 256, height 257, bits per
    sample 258, sample format 339 …), read without decoding; empty when the header cannot be followed (the
    file position is left anywhere). A value that does not fit in its entry (bits per sample of RGB) is
    read where the entry points."""
    f.seek(0)
    head = f.read(8)
    if len(head) < 8:
        return {}
    e = "<" if head[:2] == b"II" else ">"
    f.seek(struct.unpack(e + "I", head[4:8])[0])
    raw = f.read(2)
    if len(raw) < 2:
        return {}
    entries = []
    for _ in range(min(struct.unpack(e + "H", raw)[0], 4096)):
        entry = f.read(12)
        if len(entry) < 12:
            break
        entries.append(entry)
    tags: dict[int, int] = {}
    for entry in entries:
        tag, kind, count = struct.unpack(e + "HHI", entry[:8])
        if kind not in (3, 4) or count < 1:  # SHORT or LONG
            continue
        code, width = ("H", 2) if kind == 3 else ("I", 4)
        value = entry[8:8 + width]
        if count * width > 4:
            f.seek(struct.unpack(e + "I", entry[8:12])[0])
            value = f.read(width)
            if len(value) < width:
                continue
        tags[tag] = struct.unpack(e + code, value)[0]
    return tags


def _png_pixels_only(f: IO[bytes], name: str) -> np.ndarray:
    """A PNG's pixels decoded by OpenCV, which skips its metadata: Pillow refuses a PNG whose text or ICC
    chunk decompresses past its limit (a 16 MB ICC profile, a 50 MB comment) or fails its checksum, and a
    viewable photo was refused with its internal message. The size is checked from IHDR first."""
    import cv2

    f.seek(16)
    dims = f.read(8)
    if len(dims) == 8:
        _check_pixels(*struct.unpack(">II", dims), name)
    data = _read_whole(f, name)
    a = None
    if len(data) <= MAX_FALLBACK_BYTES:
        a = _quiet_imdecode(data, cv2.IMREAD_UNCHANGED)
    if a is None or a.ndim not in (2, 3) or min(a.shape[:2]) < 1:
        raise ImageReadError(f"{name}: truncated or corrupt PNG image data (with metadata too large to read)")
    # turned by its EXIF orientation as Pillow's path turns it: a phone photo with one damaged comment was
    # analysed on its side (head roll ±1.6 rad, upside down 3.1 rad) with nothing to say so
    return _orient(to_rgb(a, "bgr"), _png_orientation(f))


def _png_orientation(f: IO[bytes]) -> int:
    """The EXIF orientation (1–8; 1 when none) of a PNG's ``eXIf`` chunk, read past chunks whose checksum
    fails or that are too large for Pillow (the file position is not kept)."""
    f.seek(8)
    for _ in range(100_000):  # a PNG's chunks up to IEND (a bound for a file that never ends)
        head = f.read(8)
        if len(head) < 8:
            break
        length, kind = struct.unpack(">I4s", head)
        if kind == b"IEND":
            break
        if kind != b"eXIf" or length > 1 << 20:
            f.seek(length + 4, os.SEEK_CUR)
            continue
        exif = Image.Exif()
        try:
            exif.load(f.read(length))
            value = int(exif.get(0x0112, 1))
        except Exception:  # damaged EXIF: read as no orientation, as Pillow does
            return 1
        return value if value in range(1, 9) else 1
    return 1


def _opencv_fallback(f: IO[bytes], name: str) -> np.ndarray | None:
    """An image Pillow does not know, decoded by OpenCV (scientific TIFFs: float or signed RGB samples),
    as RGB uint8 by the value range rule; None when it is no TIFF. A TIFF too large is refused from its
    header, before decoding (a 2.7 MB float TIFF declaring 15000×15000 took 14 s and 5.3 GB to be refused
    after it, in a message that did not name the file); one OpenCV cannot decode either is truncated or
    corrupt (it was called "not an image file", with OpenCV's own error lines on stderr)."""
    import cv2

    f.seek(0)
    if not f.read(4).startswith((b"II*\x00", b"MM\x00*")):
        return None  # TIFFs only: what else OpenCV reads (EXR, HDR…) is not a face photo
    tags = _tiff_tags(f)
    if 256 in tags and 257 in tags:  # width, height
        _check_pixels(tags[256], tags[257], name)
    if tags.get(259, 1) not in _TIFF_COMPRESSIONS:  # OpenCV's libtiff "decoded" it as all black
        raise ImageReadError(f"{name}: truncated or corrupt TIFF image data (unknown compression {tags[259]})")
    data = _read_whole(f, name)
    if len(data) > MAX_FALLBACK_BYTES:
        raise ImageReadError(f"{name}: a TIFF of over {MAX_FALLBACK_BYTES >> 30} GB in a format Pillow cannot read")
    a = _quiet_imdecode(data, cv2.IMREAD_UNCHANGED)
    if a is None or a.ndim not in (2, 3) or min(a.shape[:2]) < 1:
        if tags.get(277, 0) > 4:  # SamplesPerPixel: complete files were called "truncated or corrupt"
            raise ImageReadError(f"{name}: a TIFF with {tags[277]} samples (channels) per pixel, which neither Pillow "
                                 "nor OpenCV decodes; save it as gray, RGB or RGBA")
        if tags.get(339) == 3 and tags.get(258) == 16:  # half floats: a valid TIFF (tifffile reads it) was "corrupt"
            raise ImageReadError(f"{name}: a 16-bit floating-point (half precision) TIFF, which neither Pillow nor "
                                 "OpenCV decodes; save it with 8- or 16-bit integer or 32-bit float samples")
        raise ImageReadError(f"{name}: truncated or corrupt TIFF image data (neither Pillow nor OpenCV could "
                             "decode it)")
    _check_pixels(a.shape[1], a.shape[0], name)
    return to_rgb(a, "bgr")


# Start-of-frame markers of arithmetic-coded JPEGs (ITU T.81 SOF9–SOF11, SOF13–SOF15): legal JPEG that
# Pillow's libjpeg build cannot decode; OpenCV's can.
_ARITHMETIC_SOF = frozenset({0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _jpeg_frame(f: IO[bytes]) -> tuple[int, int, int, int] | None:
    """(SOF marker, width, height, bits per sample) of a JPEG, read from its marker segments up to the first
    scan; None when the file is not a JPEG or has no readable frame header."""
    f.seek(0)
    if f.read(2) != b"\xff\xd8":
        return None
    for _ in range(256):  # APPn, COM, DQT, DHT… each tells its length; the frame header comes before a scan
        head = f.read(4)
        if len(head) < 4 or head[0] != 0xFF:
            return None
        marker, length = head[1], struct.unpack(">H", head[2:])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn (not DHT, JPG, DAC)
            body = f.read(5)
            if len(body) < 5:
                return None
            height, width = struct.unpack(">HH", body[1:5])
            return marker, width, height, body[0]
        if marker == 0xDA or length < 2:
            return None
        f.seek(length - 2, io.SEEK_CUR)
    return None


def _check_jpeg_data(f: IO[bytes], name: str, width: int, height: int) -> None:
    """ImageReadError when a Huffman-coded JPEG is too short for the picture its header declares: each 8×8 block
    of the luminance costs at least one bit (its DC difference), so fewer bytes than blocks / 8 cannot hold it. A
    562×572 photo whose header was patched to 10000×10000 (81 kB) was decoded anyway — 25 s, 1.9 GB, 99.7 % of it
    libjpeg's gray fill — and reported "no face detected". (Arithmetic coding can go below a bit: not checked.)"""
    blocks = -(-width // 8) * -(-height // 8)
    if blocks < 1 << 16:  # small pictures: nothing worth checking
        return
    pos = f.tell()
    try:
        f.seek(0, io.SEEK_END)
        size = f.tell()
        frame = _jpeg_frame(f)
    finally:
        f.seek(pos)
    arithmetic = frame is not None and frame[0] in (0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)
    if not arithmetic and size < blocks // 8:
        raise ImageReadError(f"{name}: truncated or corrupt JPEG image data ({size} bytes cannot hold the "
                             f"{width}×{height} picture its header declares)")


def _arithmetic_jpeg(f: IO[bytes], name: str) -> np.ndarray | None:
    """An arithmetic-coded JPEG decoded by OpenCV (EXIF orientation applied, as Pillow's path does); None
    when the file is not one. Pillow reported such photos over its 64 kB read block as "broken data stream"
    (libjpeg's arithmetic decoder cannot resume when its input comes in pieces), so a camera or
    ``jpegtran -arithmetic`` file was called corrupt. A file without its end-of-image marker is refused as
    truncated: libjpeg would fill the missing rows with gray rather than fail."""
    import cv2

    frame = _jpeg_frame(f)
    if frame is None or frame[0] not in _ARITHMETIC_SOF:
        return None
    _check_pixels(frame[1], frame[2], name)
    data = _read_whole(f, name)
    if len(data) > MAX_FALLBACK_BYTES or not data.rstrip(b"\0").endswith(b"\xff\xd9"):
        raise ImageReadError(f"{name}: truncated or corrupt JPEG image data (arithmetic-coded; no end-of-image marker)")
    a = _quiet_imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if a is None or a.ndim != 3 or min(a.shape[:2]) < 1:
        raise ImageReadError(f"{name}: truncated or corrupt JPEG image data (arithmetic-coded)")
    f.seek(0)
    with Image.open(f) as header:  # the EXIF orientation, applied as on Pillow's path
        orientation = header.getexif().get(0x0112, 1)
    return _orient(to_rgb(a, "bgr"), orientation)


def _quiet_imdecode(data: bytes, flags: int) -> np.ndarray | None:
    """``cv2.imdecode`` with OpenCV's own log lines silenced (None where it fails): the caller's message,
    naming the file, says what went wrong instead."""
    import cv2

    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:
        return None
    finally:
        cv2.utils.logging.setLogLevel(level)


MAX_FALLBACK_BYTES = 2 << 30
# TIFF Compression tag values libtiff decodes (none, CCITT, LZW, JPEG, Adobe/deflate, PackBits, ThunderScan, NeXT,
# LogLuv, JBIG, LZMA, Zstd, WebP, JPEG-XL, Pixar); a file naming another (0, a damaged tag) was decoded as black
_TIFF_COMPRESSIONS = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 32766, 32771, 32773, 32809, 32895, 32896, 32897,
                                32908, 32909, 32946, 34661, 34676, 34677, 34712, 34887, 34925, 34926, 34927,
                                50000, 50001, 50002})


def _read_whole(f: IO[bytes], name: object) -> bytes:
    """The whole file from its start, at most ``MAX_FALLBACK_BYTES + 1`` bytes (more says it is too large).

    ``f.read(cap)`` reserves ``cap`` bytes before reading: under an address-space limit (``ulimit -v``, a batch
    system's memory cap) every fallback decode of a damaged 100 kB file raised a bare MemoryError, which stopped
    the whole run instead of giving the file's row."""
    f.seek(0, io.SEEK_END)
    size = f.tell()
    f.seek(0)
    try:
        return f.read(min(size, MAX_FALLBACK_BYTES) + 1)
    except MemoryError:
        raise ImageReadError(f"{name}: not enough memory to read this file ({size / 1e6:.0f} MB)") from None
MAX_STREAM_BYTES = 1 << 30  # a non-seekable stream is held in memory: 120 MP × 4 channels × 16 bits fits


def _white_is_zero(img: Image.Image) -> bool:
    """A deep gray TIFF that stores white as 0 (PhotometricInterpretation 0, "MinIsWhite"): Pillow inverts
    such 1- and 8-bit images itself but hands 16-bit ones over as stored — they were read as negatives,
    and a face still found in the negative got landmarks 24 px off at score 0.999."""
    return img.format == "TIFF" and img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I") and \
        getattr(img, "tag_v2", {}).get(262) == 0


_DEEP_GRAY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _pil_declared_scale(img: Image.Image) -> float | None:
    """The full scale a deep gray PIL image's file declares (PNG sBIT, TIFF MaxSampleValue, PGM maxval), read as
    :func:`read_image` reads it for the path, so that ``Image.open(f)`` and ``f`` give the same picture (a PGM
    with maxval 65535 holding 3000 read 12 by path and 187 as a PIL image); None for an image made in memory."""
    if img.mode not in _DEEP_GRAY_MODES or img.format is None:
        return None
    try:
        if img.format != "PNG":
            return _declared_full_scale(img, io.BytesIO())[1]
        name = getattr(img, "filename", "")
        if not isinstance(name, (str, bytes, os.PathLike)) or not name:
            return None
        with open(name, "rb") as fh:
            return _declared_full_scale(img, fh)[1]
    except (OSError, ValueError, struct.error):
        return None


def _pil_to_rgb(img: Image.Image, full_scale: float | None = None, white_is_zero: bool = False) -> np.ndarray:
    """PIL image of any mode → RGB uint8 array; transparent pixels are composited on white.
    ``white_is_zero``: a deep gray image stored inverted (:func:`_white_is_zero`), turned back."""
    if img.mode in _DEEP_GRAY_MODES:
        a = np.asarray(img)
        key = img.info.get("transparency")  # a 16-bit PNG's colour key (tRNS), as for 8-bit ones below
        if white_is_zero and a.dtype.kind in "ui":
            a = (full_scale or float(np.iinfo(np.uint16).max)) - a.astype(np.float64)
        gray = to_rgb(to_8bit(a, full_scale or (65535.0 if white_is_zero else None)))
        if isinstance(key, int) and not isinstance(key, bool):
            gray = composite_on_white(gray, np.where(np.asarray(img) == key, 0, 255).astype(np.uint8))
        return gray
    # a colour key (tRNS) makes pixels of one value transparent in RGB and gray PNGs as in palette ones: they were
    # composited on white in a palette image and kept as they are (black) in the same picture stored as RGB
    if img.mode == "La":  # premultiplied gray + alpha: Pillow converts it only to LA ("La to RGBA not supported")
        img = img.convert("LA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa") or (img.mode in ("P", "RGB", "L") and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"))
        return composite_on_white(rgba[:, :, :3], rgba[:, :, 3])
    if img.mode in ("LAB", "HSV"):  # Pillow has no direct conversion to RGB for these
        from PIL import ImageCms

        if img.mode == "LAB":
            img = ImageCms.applyTransform(img, ImageCms.buildTransform(
                ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"))
    return np.asarray(img.convert("RGB"))


# HEIF/AVIF still images are ISO media files like MP4 (an "ftyp" box first): told apart by its brand.
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")
_STILL_BRANDS = (*_HEIF_BRANDS, b"avif", b"avis")


def _ftyp_brand(head: bytes) -> bytes | None:
    """The major brand of an ISO media file's leading ``ftyp`` box (None for anything else)."""
    return head[8:12] if head[4:8] == b"ftyp" else None


def _looks_like_video(f: IO[bytes]) -> bool:
    """True for the signatures of MP4/MOV, Matroska/WebM, AVI, MPEG program and transport streams,
    Ogg, FLV, ASF/WMV and NUT files."""
    try:
        f.seek(0)
        head = f.read(380)
    except (OSError, ValueError):
        return False
    transport = len(head) >= 377 and head[0] == head[188] == head[376] == 0x47  # 188-byte packets
    iso_video = head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free") and _ftyp_brand(head) not in _STILL_BRANDS
    return (iso_video or head.startswith(b"\x1a\x45\xdf\xa3")
            or (head.startswith(b"RIFF") and head[8:12] == b"AVI ") or head.startswith(b"\x00\x00\x01\xba")
            or transport or head.startswith((b"OggS", b"FLV\x01", b"\x30\x26\xb2\x75\x8e\x66\xcf\x11",
                                             b"nut/multimedia container\x00")))


def check_regular_file(path: str | Path, kind: type[ValueError] = ImageReadError) -> Path:
    """Raise ``kind`` (message naming the file) unless ``path`` is a non-empty regular file.

    Refusing FIFOs, sockets and devices up front means a named pipe is never opened (which
    would block until a writer appears) and ``/dev/zero`` is never read forever.
    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        if p.is_symlink():  # listed by ls, yet "no such file"
            raise kind(f"{p}: a broken symbolic link (it points to {os.readlink(p)}, which does not exist)") from None
        pattern = " (no file matches this pattern)" if _GLOB_MAGIC.search(str(p)) else ""
        raise kind(f"{p}: no such file{pattern}") from None
    except OSError as e:
        raise kind(f"{p}: cannot access ({e.strerror or e})") from None
    except ValueError:  # "embedded null byte": no file can have this name
        raise kind(f"{str(p)!r}: not a valid file name (it contains a NUL character)") from None
    if stat.S_ISDIR(st.st_mode):
        raise kind(f"{p}: {_folder_problem(p)}")
    if not stat.S_ISREG(st.st_mode):
        what = "FIFO" if stat.S_ISFIFO(st.st_mode) else "socket" if stat.S_ISSOCK(st.st_mode) else "device"
        raise kind(f"{p}: not a regular file ({what})")
    if st.st_size == 0 and not _has_content(p):  # (/proc and /sys files say 0 bytes and have content)
        raise kind(f"{p}: empty file (0 bytes)")
    if not os.access(p, os.R_OK):
        raise kind(f"{p}: permission denied")
    return p


def _has_content(p: Path) -> bool:
    """Whether a regular file that reports 0 bytes has any to read (a kernel file: ``/proc/cpuinfo``)."""
    try:
        with open(p, "rb") as f:
            return bool(f.read(1))
    except OSError:
        return False


def read_image(source: Source | IO[bytes]) -> np.ndarray:
    """Read an image as ``(H, W, 3)`` uint8 RGB, applying its EXIF orientation.

    ``source``: a local path, a URL fsspec understands (``s3://…``, ``https://…``; a ``str``) or
    an open binary file object. Raises :class:`ImageReadError` (message starting with the path,
    or the URL with any credentials replaced by ``***``) for a missing, empty, non-regular
    (directory, FIFO, device), unreadable, truncated, non-image or too large
    (> :data:`MAX_PIXELS`, checked from the header before decoding: a remote file is read in
    ranges, so a pixel bomb is refused before its data is fetched) file — never a PIL/OpenCV
    traceback. Animated images give their first frame.
    """
    if isinstance(source, bytes) and b"\0" not in source and len(source) <= 4096:
        source = os.fsdecode(source)  # a bytes path, as analyze and Analyzer.get take it
    if not isinstance(source, (str, os.PathLike)) and not hasattr(source, "read"):
        what = type(source).__name__
        raise TypeError(f"read_image reads a file: give its path or an open binary file, not {what}"
                        + (" (an image already in memory goes to aulib.io.to_rgb)" if what in ("ndarray", "Image") or
                           isinstance(source, Image.Image) else ""))
    if is_url(source):
        name = redact(str(source))
        try:
            with open_input(str(source), ImageReadError) as f:
                return _read_image_file(f, name)
        except ImageReadError:
            raise
        except Exception as e:  # the store failed while reading (connection reset, throttling, …)
            raise ImageReadError(f"{name}: read failed ({type(e).__name__}: {redact(str(e), str(source))})") from None
    if hasattr(source, "read"):
        f = source  # type: ignore[assignment]
        given = getattr(f, "name", None)  # a pipe's is its descriptor number
        name = redact(os.fsdecode(given)) if isinstance(given, (str, bytes, os.PathLike)) and given else "<file object>"
        # "UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff", "ValueError: read of closed file"
        if getattr(f, "closed", False) is True:
            raise ImageReadError(f"{name}: the file object is closed: read it inside its `with open(...)` block, or "
                                 "give the path")
        if isinstance(f, io.TextIOBase):
            raise ImageReadError(f"{name}: opened in text mode; an image is read from a binary file: open(path, 'rb')")
        try:
            seekable = f.seekable()  # type: ignore[union-attr]
        except Exception:
            seekable = False
        try:
            mode = os.fstat(f.fileno()).st_mode  # type: ignore[union-attr]
        except Exception:  # no file descriptor (BytesIO, a socket file, a wrapper)
            mode = stat.S_IFREG
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):  # /dev/zero would be read forever: refused like its path
            raise ImageReadError(f"{name}: not a regular file (device)")
        if not seekable:  # Pillow needs random access; images are small enough to hold, up to a bound
            data = f.read(MAX_STREAM_BYTES + 1)  # type: ignore[union-attr]
            if len(data) > MAX_STREAM_BYTES:
                raise ImageReadError(f"{name}: more than {MAX_STREAM_BYTES >> 20} MB from a stream: not an image "
                                     "aulib reads (the largest it takes, 120 MP at 16 bits, is smaller)")
            f = io.BytesIO(data)
        return _read_image_file(f, name)  # type: ignore[arg-type]
    p = check_regular_file(source)  # type: ignore[arg-type]
    try:
        f = open(p, "rb")
    except OSError as e:
        raise ImageReadError(f"{p}: cannot open ({e.strerror or e})") from None
    with f:
        return _read_image_file(f, str(p))


def _heif_brand(f: IO[bytes]) -> bool:
    """True for a HEIC/HEIF still image (iPhones' default photo format)."""
    try:
        f.seek(0)
        head = f.read(12)
        f.seek(0)
    except (OSError, ValueError):
        return False
    return _ftyp_brand(head) in _HEIF_BRANDS


@functools.lru_cache(maxsize=1)
def _heif_opener() -> bool:
    """Register pillow-heif's Pillow plug-in (the optional ``heif`` extra) once; False when absent."""
    try:
        import pillow_heif  # type: ignore[import-not-found]
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def _read_image_file(f: IO[bytes], p: str) -> np.ndarray:
    """:func:`read_image` on an open, seekable binary file; ``p`` names it in every message (the conversion of
    decoded pixels said "array of dtype float32 …" without naming the file)."""
    try:
        with strict_decoding():
            return _decode_image_file(f, p)
    except ImageReadError as e:
        if str(e).startswith(p):
            raise
        raise ImageReadError(f"{p}: {e}") from None


def _decode_image_file(f: IO[bytes], p: str) -> np.ndarray:
    """The decoding of :func:`_read_image_file`."""
    if _heif_brand(f) and not _heif_opener():
        raise ImageReadError(f"{p}: a HEIC/HEIF photo; reading it needs the optional decoder "
                             "(pip install 'aulib[heif]'), or convert it to JPEG")
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb check uses a process-wide limit; ours below is per call.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # damaged metadata ("Truncated File Read", "Corrupt EXIF data"): Pillow reads on and says so on
            # stderr from its own source lines; the image is what counts
            warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
            with Image.open(f) as img:
                _check_pixels(img.size[0], img.size[1], str(p))
                if img.format == "JPEG":
                    _check_jpeg_data(f, p, *img.size)
                depth, full_scale = _declared_full_scale(img, f)
                if img.mode in ("RGB", "RGBA") and depth > 8:
                    return _decode_deep_color(f, p, img, full_scale)
                img.load()
                white_is_zero = _white_is_zero(img)
                img = _upright(img)
                rgb = _pil_to_rgb(img, full_scale, white_is_zero)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        decoded = _opencv_fallback(f, p)  # e.g. 32-bit float or int16 RGB TIFF, which Pillow cannot read
        if decoded is not None:
            return decoded
        f.seek(0)
        if f.read(8) == b"\x89PNG\r\n\x1a\n":
            # Pillow gives up on a bad checksum in any chunk, even a text comment's; libpng (OpenCV) only
            # warns for those and decodes the pixels: a viewable PNG was "not an image file"
            try:
                return _png_pixels_only(f, p)
            except ImageReadError:
                raise ImageReadError(f"{p}: truncated or corrupt PNG image data") from None
        f.seek(0)
        head = f.read(12)
        if head.startswith(_JXL_SIGNATURES):
            raise ImageReadError(f"{p}: a JPEG XL image, which aulib cannot decode (no decoder here); convert it to "
                                 "JPEG, PNG or AVIF") from None
        frame = _jpeg_frame(f)
        if frame is not None and frame[3] > 8:  # it was "not an image file (format not recognised)"
            kind = "lossless" if frame[0] in (0xC3, 0xC7, 0xCB, 0xCF) else "extended-precision"
            raise ImageReadError(f"{p}: a {frame[3]}-bit {kind} JPEG (medical/scientific), which neither Pillow nor "
                                 "OpenCV decodes; convert it to a 16-bit PNG or TIFF, or an 8-bit JPEG") from None
        if _looks_like_video(f):
            hint = ("analyse it with aulib analyze or Analyzer.analyze" if is_video(str(p))
                    else "give it a video extension such as .mp4")
            raise ImageReadError(f"{p}: a video file, not an image ({hint})") from None
        brand = _ftyp_brand(head)
        if brand in _STILL_BRANDS:  # a cut HEIC or AVIF: Pillow cannot even identify it ("format not recognised")
            raise ImageReadError(f"{p}: truncated or corrupt {'HEIC/HEIF' if brand in _HEIF_BRANDS else 'AVIF'} "
                                 "image") from None
        raise ImageReadError(f"{p}: not an image file (format not recognised)") from None
    except Image.DecompressionBombError as e:  # Pillow's process-wide limit, checked inside Image.open
        m = re.search(r"\((\d+) pixels\)", str(e))
        if m and int(m.group(1)) <= MAX_PIXELS:  # a limit this process set lower than aulib's: said as such
            raise ImageReadError(f"{p}: refused by Pillow's Image.MAX_IMAGE_PIXELS, which this process set to "
                                 f"{Image.MAX_IMAGE_PIXELS} pixels ({_megapixels(int(m.group(1)))} here; aulib itself "
                                 f"reads up to {_megapixels(MAX_PIXELS)}: raise that limit or set it to None)"
                                 ) from None
        size = _megapixels(int(m.group(1))) if m else str(e)
        raise ImageReadError(f"{p}: image too large ({size}; aulib reads at most {_megapixels(MAX_PIXELS)} — "
                             "downscale it first)") from None
    except MemoryError:
        raise ImageReadError(f"{p}: not enough memory to decode this image") from None
    except (OSError, SyntaxError, ValueError, TypeError, struct.error, EOFError, RuntimeError) as e:
        # RuntimeError: Pillow's AVIF/HEIF plug-in on a damaged file ("Failed to decode frame 0: Decoding of color
        # planes failed"), which escaped as a traceback and stopped the run
        msg = str(e) or type(e).__name__
        if "MAX_TEXT_CHUNK" in msg:  # Pillow refuses a PNG whose text/ICC metadata decompresses past its limit
            return _png_pixels_only(f, p)
        arithmetic = _arithmetic_jpeg(f, p)
        if arithmetic is not None:
            return arithmetic
        if "ghostscript" in msg.lower():  # Pillow's words for a missing program the user never heard of
            msg = "a PostScript/EPS image; reading it needs Ghostscript, which is not installed (convert it to PNG)"
        elif not (isinstance(e, OSError) and e.errno):  # not the system's I/O error: the decoder's, on bad data
            # ("decoder error -2", "unrecognized data stream contents", "could not create decoder object",
            # "invalid literal for int()": said in the decoder's words alone)
            msg = msg if msg.startswith("truncated or corrupt") else f"truncated or corrupt image data ({msg})"
        raise ImageReadError(f"{p}: {msg}") from None
    if rgb.ndim != 3 or min(rgb.shape[:2]) < 1:
        raise ImageReadError(f"{p}: image has no pixels")
    return rgb


# Formats whose further frames are not more pictures of the scene: a camera's MPO photo (Pillow opens some
# .jpg files as MPO) carries a preview or the other eye's view of a stereo pair.
_SINGLE_PICTURE_FORMATS = frozenset({"JPEG", "MPO"})


def frame_count(path: str | os.PathLike | IO[bytes]) -> int:
    """Frames (an animated GIF/PNG/WebP/AVIF) or pages (a TIFF) of an image file (a path or an open binary
    file), from Pillow, told by its content, not its name (a GIF saved as .jpg, a TIFF without extension, an
    animated AVIF were taken for single pictures); 1 when it cannot tell, and for JPEG/MPO."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                if img.format in _SINGLE_PICTURE_FORMATS:
                    return 1
                return max(1, int(getattr(img, "n_frames", 1)))
    except Exception:
        return 1


def is_video(path: Source) -> bool:
    """True when the file name (a URL's path, without its query) has a video extension — unless it is a
    local file whose first bytes are a still image's (a JPEG saved as .mp4 went through the video path
    without a word, and read differently from the same bytes as .jpg; a video named .jpg was already
    recognised by its content). A local file whose name has no extension aulib knows — none (a download
    saved without one), one it does not list (``clip.qt``, ``clip.MOD``), or a name whose last dot is not an
    extension (``Dr. Smith``, ``photo.jpg_large``) — is a video when its first bytes are a video's: such
    files were refused as "a video file, not an image"."""
    ext = suffix(path)
    if is_url(path):
        return ext in VIDEO_EXTENSIONS
    if ext in IMAGE_EXTENSIONS:
        return False
    head = _head(path)
    if ext in VIDEO_EXTENSIONS:
        return head is None or not _looks_like_still_image(head)  # missing or unreadable: the video path says why
    return head is not None and _looks_like_video(io.BytesIO(head))


def _head(path: Source) -> bytes | None:
    """The first bytes of a local regular file (None when it cannot be read, or is not a regular file: a FIFO
    is never opened — opening one waits for a writer, and a pipe named .mp4 hung every run)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # type: ignore[arg-type]
            return None
        with open(path, "rb") as f:  # type: ignore[arg-type]
            return f.read(380)
    except (OSError, TypeError, ValueError):
        return None


def _looks_like_still_image(head: bytes) -> bool:
    """True for the signatures of JPEG, PNG, GIF, BMP, WebP, TIFF and HEIC/AVIF still images."""
    return (head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*"))
            or (head.startswith(b"RIFF") and head[8:12] == b"WEBP")
            or (head.startswith(b"BM") and len(head) >= 14)
            or (head[4:8] == b"ftyp" and _ftyp_brand(head) in _STILL_BRANDS)
            or head.startswith(_JXL_SIGNATURES))


# JPEG XL: a bare codestream, or the ISO-BMFF-style container (ISO/IEC 18181-2)
_JXL_SIGNATURES = (b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")


def expand_inputs(paths: Iterable[Source], skipped: list[Source] | None = None) -> list[Source]:
    """Expand folders recursively (sorted) into image and video files; files are kept as given.

    Files given explicitly are kept whatever their extension, so a mistyped or non-image file
    yields a clear per-file error row instead of vanishing silently; inside folders only regular
    files (and broken links, which get an error row) with image or video extensions — or with any other name
    (none, one aulib does not list, ``Dr. Smith``, ``photo.jpg_large``) and an image's or a video's first
    bytes — are taken (a FIFO named x.jpg is skipped, not opened); the other files of scanned folders are
    appended to ``skipped`` when it is given (the command line names them: a folder's files left out
    without a word looked like lost rows). Links to folders are followed (each folder is scanned once,
    so a link loop ends). Nothing is dropped without a row: a folder that cannot be listed (no
    permission, a path too long) and a folder given by name that holds no image or video are kept
    as inputs themselves, and their rows say why (:func:`check_regular_file`).
    URLs (``str`` with a scheme: ``s3://bucket/prefix/``) are listed the same way through fsspec
    (:func:`aulib.storage.list_prefix`) and stay ``str``; local inputs are :class:`~pathlib.Path`.
    """
    out: list[Source] = []
    for raw in paths:
        if isinstance(raw, bytes):
            raw = os.fsdecode(raw)
        if not isinstance(raw, (str, os.PathLike)):
            # reprlib: an image given as nested lists was printed whole (a 9,000-character message)
            raise TypeError(f"an input must be a path (str or os.PathLike), not {type(raw).__name__}: "
                            f"{reprlib.repr(raw)}")
        if not str(raw):  # Path("") is ".": it would analyse the whole working folder
            raise ValueError("an empty path ('') is not an input; give '.' for the current folder")
        if is_url(raw):
            out.extend(list_prefix(str(raw), IMAGE_EXTENSIONS | VIDEO_EXTENSIONS, skipped))
            continue
        p = Path(raw)
        matches = _glob(str(raw))
        for q in matches if matches is not None else [p]:
            if os.path.isdir(q):  # False, not PermissionError, for a path below a folder that cannot be searched
                out.extend(_scan_folder(q, skipped) or [q])
            else:
                out.append(q)
    return out


_GLOB_MAGIC = re.compile(r"[*?[]")


def _glob(pattern: str) -> list[Path] | None:
    """The files a wildcard pattern names (``*.jpg``, ``clips/**/*.mp4``; sorted; hidden names left out, as a
    shell leaves them), or None when ``pattern`` is no pattern or names a file itself. Windows' shells (cmd,
    PowerShell) hand ``*.jpg`` over as it is typed, and a quoted pattern reaches a program unexpanded anywhere:
    it was one row, "*.jpg: no such file". A pattern that matches nothing stays the input: its row says so."""
    if not _GLOB_MAGIC.search(pattern) or os.path.lexists(pattern):
        return None
    import glob

    found = sorted(glob.glob(pattern, recursive=True))
    return [Path(f) for f in found] if found else None


def _scan_folder(top: Path, skipped: list[Path] | None = None) -> list[Path]:
    """The image and video files below ``top`` in sorted path order (depth first, names sorted), and
    every folder that cannot be listed, in its place. A broken link is kept (its row says so: a
    folder whose link lost its target must not quietly analyse one input fewer); FIFOs and
    sockets, and links to them, are skipped, never opened (appended to ``skipped`` when named as media: a
    ``fifo.mp4`` vanished from the run without a word). Regular files that are neither are appended
    to ``skipped``. Hidden entries (a name starting with ``.``) are left out, as ``ls`` and shell globs leave
    them: a ``.thumbnails`` folder gave every face again, a ``.git`` or ``.Trash`` folder old versions, and macOS's
    ``._IMG_1.jpg`` resource forks a failed row each; a hidden file with a media name is counted in ``skipped``
    (a hidden folder is not entered). A hidden folder named as the input itself is scanned."""
    wanted = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            st = folder.stat()
            if (st.st_dev, st.st_ino) in seen:
                continue  # reached again through a link: scanned once (a loop ends here)
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            found.append(folder)  # its row: "cannot be listed (…)"
            continue
        below: list[Path] = []
        for e in entries:
            path = Path(e.path)
            if e.name.startswith("."):
                if skipped is not None and path.suffix.lower() in wanted:
                    skipped.append(path)
                continue
            try:
                if e.is_dir():  # follows links
                    below.append(path)
                    continue
                keep = e.is_file() or (e.is_symlink() and not os.path.exists(e.path))
            except OSError:
                keep = True  # cannot tell what it is: its row says why
            if keep and (path.suffix.lower() in wanted or _is_media(path)):
                found.append(path)
            elif skipped is not None and (keep or path.suffix.lower() in wanted):
                skipped.append(path)  # a FIFO or socket with a media name too: never opened, but said
        stack.extend(reversed(below))  # popped in name order: of two ways to one folder, the first in path order
    return sorted(found, key=lambda f: f.parts)  # files and folders interleaved by name, as sorted(rglob) was


def _is_media(path: Path) -> bool:
    """True for a file whose first bytes are an image's or a video's (folders are scanned by extension
    first; a file without one it lists was skipped without a word)."""
    head = _head(path)
    return head is not None and (_looks_like_still_image(head) or _looks_like_video(io.BytesIO(head)))


def _folder_problem(p: Path) -> str:
    """Why a folder is an input row: it cannot be listed, holds no image or video, or is one."""
    try:
        with os.scandir(p):
            pass
    except OSError as e:
        return f"is a directory that cannot be listed ({e.strerror or e})"
    if not _scan_folder(p):
        return "is a directory with no image or video file in it"
    return "is a directory, not a file"
