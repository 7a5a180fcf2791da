"""Reading every kind of image a user has, and a clear error for everything else."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from aulib.io import ImageReadError, expand_inputs, read_image, to_rgb

from .conftest import sample


def test_jpeg_reads_as_rgb_uint8():
    img = read_image(sample("single_face.jpg"))
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3


def test_rgba_png_is_composited_to_rgb():
    img = read_image(sample("Image_with_alpha.png"))
    assert img.shape[2] == 3


def test_gray_16bit_palette_and_tiny_images(tmp_path):
    gray = np.tile(np.arange(64, dtype=np.uint8), (32, 1))
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    Image.fromarray(gray.astype(np.uint16) * 1000).save(tmp_path / "g16.png")
    Image.fromarray(gray, "L").convert("P").save(tmp_path / "p.png")
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(tmp_path / "tiny.bmp")
    for name in ("g.png", "g16.png", "p.png", "tiny.bmp"):
        img = read_image(tmp_path / name)
        assert img.dtype == np.uint8 and img.shape[2] == 3
    g16 = read_image(tmp_path / "g16.png")
    assert g16[:, :, 0].max() > 200  # scaled to 8 bit, not clipped to a white/black image


def test_exif_orientation_is_applied(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    img.save(tmp_path / "rot.jpg", exif=exif)
    assert read_image(tmp_path / "rot.jpg").shape[:2] == (40, 20)


@pytest.mark.parametrize("content,match", [
    (b"", "empty file"),
    (b"this is not an image", "not an image"),
])
def test_bad_files_raise_clear_errors_naming_the_file(tmp_path, content, match):
    p = tmp_path / "bad.jpg"
    p.write_bytes(content)
    with pytest.raises(ImageReadError, match=match) as e:
        read_image(p)
    assert str(p) in str(e.value)


def test_truncated_jpeg(tmp_path):
    data = sample("single_face.jpg").read_bytes()
    p = tmp_path / "cut.jpg"
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageReadError) as e:
        read_image(p)
    assert str(p) in str(e.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="directory"):
        read_image(tmp_path)


def test_array_orders_are_explicit():
    bgr = np.zeros((4, 4, 3), np.uint8)
    bgr[..., 0] = 255  # blue in OpenCV order
    assert to_rgb(bgr, "bgr")[0, 0].tolist() == [0, 0, 255]
    assert to_rgb(bgr, "rgb")[0, 0].tolist() == [255, 0, 0]
    assert to_rgb(np.ones((4, 4), np.float32))[0, 0].tolist() == [255, 255, 255]
    assert to_rgb(np.full((4, 4, 4), 65535, np.uint16))[0, 0].tolist() == [255, 255, 255]
    with pytest.raises(ImageReadError):
        to_rgb(np.zeros((4, 4, 5), np.uint8))


def test_expand_inputs_recurses_sorted_and_keeps_explicit_files(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.png").write_bytes(b"x")
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    found = expand_inputs([tmp_path, tmp_path / "notes.txt"])
    assert [p.name for p in found] == ["a.jpg", "z.png", "notes.txt"]


def test_16bit_rgb_cmyk_and_animated_images(tmp_path):
    import cv2

    bgr16 = np.zeros((20, 20, 3), np.uint16)
    bgr16[..., 2], bgr16[..., 1] = 60000, 1000  # red high, green low (OpenCV writes BGR)
    for name in ("rgb16.png", "rgb16.tif"):
        cv2.imwrite(str(tmp_path / name), bgr16)
        assert read_image(tmp_path / name)[0, 0].tolist() == [233, 4, 0]  # 16-bit data: x·255/65535, rounded
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).convert("CMYK").save(tmp_path / "cmyk.jpg")
    assert read_image(tmp_path / "cmyk.jpg").shape == (8, 8, 3)
    frames = [Image.new("L", (8, 8), 50), Image.new("L", (8, 8), 200)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert read_image(tmp_path / "anim.gif")[0, 0, 0] == 50  # first frame


# ----------------------------------------------------------------------------------------- bit depths
def test_12bit_data_in_16bit_containers_is_scaled_by_its_real_range(tmp_path):
    import cv2

    ramp = np.tile(np.linspace(0, 4095, 64).astype(np.uint16), (16, 1))  # 12-bit camera data
    Image.fromarray(ramp).save(tmp_path / "g12.png")
    cv2.imwrite(str(tmp_path / "g12.tif"), ramp)
    rgb12 = np.zeros((16, 16, 3), np.uint16)
    rgb12[..., 2], rgb12[..., 1] = 4095, 1000  # BGR for OpenCV: red full, green a quarter
    cv2.imwrite(str(tmp_path / "rgb12.png"), rgb12)
    cv2.imwrite(str(tmp_path / "rgb12.tif"), rgb12)
    for name in ("g12.png", "g12.tif"):
        img = read_image(tmp_path / name)
        assert img[0, -1].tolist() == [255, 255, 255] and img[0, 0].tolist() == [0, 0, 0]
    for name in ("rgb12.png", "rgb12.tif"):
        assert read_image(tmp_path / name)[0, 0].tolist() == [255, 62, 0]  # not /257 (which gives 16, 4, 0)


def test_declared_bit_depth_wins_so_a_dark_16bit_image_stays_dark(tmp_path):
    from PIL import PngImagePlugin

    dark = np.full((8, 8), 3000, np.uint16)
    info = PngImagePlugin.PngInfo()
    info.add(b"sBIT", b"\x10")  # the file says: 16 significant bits
    Image.fromarray(dark).save(tmp_path / "dark16.png", pnginfo=info)
    assert read_image(tmp_path / "dark16.png")[0, 0, 0] == 12  # 3000/65535·255
    info = PngImagePlugin.PngInfo()
    info.add(b"sBIT", b"\x0c")  # 12 significant bits
    Image.fromarray(np.full((8, 8), 2000, np.uint16)).save(tmp_path / "s12.png", pnginfo=info)
    assert read_image(tmp_path / "s12.png")[0, 0, 0] == 125  # 2000/4095·255
    Image.fromarray(np.full((8, 8), 2000, np.uint16)).save(tmp_path / "m.tif", tiffinfo={281: 4095})
    assert read_image(tmp_path / "m.tif")[0, 0, 0] == 125  # TIFF MaxSampleValue
    Image.fromarray(dark).save(tmp_path / "undeclared.png")
    assert read_image(tmp_path / "undeclared.png")[0, 0, 0] == 187  # smallest depth holding 3000: 12 bits


def test_arrays_follow_the_same_value_range_rule():
    assert to_rgb(np.full((4, 4), 200, np.uint16))[0, 0, 0] == 200  # 0–255 values in uint16: as is
    assert to_rgb(np.full((4, 4), 1023, np.uint16))[0, 0, 0] == 255  # 10-bit
    assert to_rgb(np.full((4, 4), 4095, np.int32))[0, 0, 0] == 255  # 12-bit in int32
    assert to_rgb(np.full((4, 4), 0.5, np.float32))[0, 0, 0] == 128  # 0–1 floats
    assert to_rgb(np.full((4, 4), 200.0, np.float64))[0, 0, 0] == 200  # 0–255 floats
    assert to_rgb(np.full((4, 4), 4095.0, np.float32))[0, 0, 0] == 255  # 12-bit floats
    f = np.array([[np.nan, np.inf], [-np.inf, 0.5]], np.float32)
    assert to_rgb(f)[..., 0].tolist() == [[0, 128], [0, 128]]  # NaN → 0, +inf → max, −inf → 0
    assert to_rgb(np.array([[True, False]]))[0, :, 0].tolist() == [255, 0]
    assert to_rgb(np.full((2, 2, 2), 77, np.uint8))[0, 0].tolist() == [201, 201, 201]  # gray + alpha 77
    assert to_rgb(np.dstack([np.full((2, 2), 77, np.uint8), np.full((2, 2), 255, np.uint8)]))[0, 0].tolist() == [77] * 3


def test_an_array_with_alpha_gives_what_its_file_gives(tmp_path):
    """An RGBA array is composited on white like the file it came from (its alpha was dropped: the
    transparent pixels' stored colour showed, here black), whichever reader made it and whatever its
    dtype; an opaque alpha changes nothing."""
    import cv2

    photo = read_image(sample("single_face.jpg"))
    rgba = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    rgba[: photo.shape[0] // 3] = 0  # a transparent band whose stored colour is black
    rgba[photo.shape[0] // 3: photo.shape[0] // 2, :, 3] = 128  # and a half-transparent one
    path = tmp_path / "cut_out.png"
    Image.fromarray(rgba).save(path)
    from_file = read_image(path)
    assert (from_file[0] == 255).all()
    bgra = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    views = {"PIL": to_rgb(np.asarray(Image.open(path))), "OpenCV BGRA": to_rgb(bgra, "bgr"),
             "uint16": to_rgb(rgba.astype(np.uint16) * 257), "float 0-1": to_rgb(rgba.astype(np.float32) / 255),
             "int64 0-255": to_rgb(rgba.astype(np.int64))}
    for name, rgb in views.items():
        assert np.abs(rgb.astype(int) - from_file).max() <= 1, name
    gray_alpha = np.dstack([rgba[..., 0], rgba[..., 3]])
    assert (to_rgb(gray_alpha)[0] == 255).all()
    opaque = rgba.copy()
    opaque[..., 3] = 255
    np.testing.assert_array_equal(to_rgb(opaque), rgba[..., :3])


def test_16bit_rgba_png_is_composited_on_white(tmp_path):
    import cv2

    bgra = np.zeros((8, 8, 4), np.uint16)
    bgra[..., 2] = 65535  # red
    bgra[:4, :, 3] = 65535  # top half opaque, bottom half transparent
    cv2.imwrite(str(tmp_path / "rgba16.png"), bgra)
    img = read_image(tmp_path / "rgba16.png")
    assert img[0, 0].tolist() == [255, 0, 0] and img[-1, 0].tolist() == [255, 255, 255]


def test_other_pil_modes(tmp_path):
    Image.fromarray(np.eye(8, dtype=bool)).save(tmp_path / "bilevel.png")  # mode "1"
    Image.fromarray(np.full((8, 8), 0.25, np.float32)).save(tmp_path / "f.tif")  # mode "F"
    Image.fromarray(np.full((8, 8), 1000, np.int32)).save(tmp_path / "i32.tif")  # mode "I", 10-bit values
    Image.new("LA", (8, 8), (90, 255)).save(tmp_path / "la.png")
    Image.new("RGB", (1, 1), (10, 20, 30)).save(tmp_path / "one.png")
    assert read_image(tmp_path / "bilevel.png")[0, 0, 0] == 255
    assert read_image(tmp_path / "f.tif")[0, 0, 0] == 64
    assert read_image(tmp_path / "i32.tif")[0, 0, 0] == 249  # 1000/1023·255
    assert read_image(tmp_path / "la.png")[0, 0].tolist() == [90, 90, 90]
    assert read_image(tmp_path / "one.png").tolist() == [[[10, 20, 30]]]


# ----------------------------------------------------------------------------------------- bad files
def test_truncated_png_and_wrong_extension(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.png: truncated or corrupt"):
        read_image(tmp_path / "cut.png")
    (tmp_path / "png_named.jpg").write_bytes(data)  # a PNG with a .jpg name is read by its content
    assert read_image(tmp_path / "png_named.jpg").shape == (64, 64, 3)


def test_video_given_as_an_image_says_so(tmp_path):
    p = tmp_path / "clip.jpg"
    p.write_bytes(sample("no_face.mp4").read_bytes())
    with pytest.raises(ImageReadError, match=r"clip\.jpg: a video file, not an image"):
        read_image(p)
    with pytest.raises(ImageReadError, match="a video file"):
        read_image(sample("no_face.mp4"))


def test_fifo_is_refused_without_blocking(tmp_path):
    import os

    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ImageReadError, match=r"pipe\.jpg: not a regular file \(FIFO\)"):
        read_image(fifo)  # opening a FIFO for reading would block until a writer appears
    assert expand_inputs([tmp_path]) == [tmp_path]  # inside a folder it is not an input: the folder's row says so
    with pytest.raises(ImageReadError, match="not a regular file"):
        read_image("/dev/null")


def test_unreadable_file(tmp_path):
    import os

    p = tmp_path / "secret.png"
    Image.new("RGB", (8, 8)).save(p)
    p.chmod(0)
    try:
        if os.geteuid() == 0:  # root reads it anyway: it must still decode correctly
            assert read_image(p).shape == (8, 8, 3)
        else:
            with pytest.raises(ImageReadError, match=r"secret\.png: permission denied"):
                read_image(p)
    finally:
        p.chmod(0o644)


# ----------------------------------------------------------------------------------------- size limits
def _png_of_zeros(path, width: int, height: int) -> None:
    """A gray PNG of zeros streamed row by row (never holding the decoded image in memory)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_decompression_bomb_is_refused_before_decoding_with_bounded_memory(tmp_path):
    import subprocess
    import sys

    bomb = tmp_path / "bomb.png"
    _png_of_zeros(bomb, 20000, 20000)
    assert bomb.stat().st_size < 2_000_000
    # A JPEG whose header claims 60000×60000 (its data is a tiny 8×8 image).
    Image.new("RGB", (8, 8)).save(tmp_path / "small.jpg")
    data = bytearray((tmp_path / "small.jpg").read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = (60000).to_bytes(2, "big") * 2
    (tmp_path / "bomb.jpg").write_bytes(bytes(data))
    code = (
        "import resource, sys\n"
        "from PIL import Image\n"
        "before = Image.MAX_IMAGE_PIXELS\n"
        "from aulib.io import ImageReadError, read_image\n"
        "assert Image.MAX_IMAGE_PIXELS == before, 'importing aulib.io changed a global'\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n"
        "        read_image(p)\n"
        "    except ImageReadError as e:\n"
        "        print(e)\n"
        # Peak RSS of this process image: VmHWM (ru_maxrss survives exec, so it may be the parent pytest's peak).
        "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')]\n"
        "print('rss_mb', int(hwm[0].split()[1]) // 1024 if hwm else\n"
        "      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\n"
    )
    res = subprocess.run([sys.executable, "-c", code, str(bomb), str(tmp_path / "bomb.jpg")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith(f"{bomb}: image too large (") and "400 MP" in lines[0]
    assert lines[1].startswith(f"{tmp_path / 'bomb.jpg'}: image too large (") and "3600 MP" in lines[1]
    assert int(lines[2].split()[1]) < 400  # MB: the 400 MP image (1.2 GB as RGB) was never decoded


def test_huge_arrays_are_refused_cheaply():
    big = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (20000, 20000, 3))  # no memory behind it
    with pytest.raises(ImageReadError, match="image too large"):
        to_rgb(big)


def test_phone_photos_heic_and_avif(tmp_path, monkeypatch):
    """An iPhone's HEIC photo is read (with the ``heif`` extra) like its JPEG; without the decoder it
    is one clear error naming the file — it used to be called "a video file" (HEIC is an ISO media
    file like MP4). AVIF/HEIC files are picked up when a folder is scanned."""
    import aulib.io

    pillow_heif = pytest.importorskip("pillow_heif")  # in the dev extra: CI always runs this
    pillow_heif.register_heif_opener()
    src = Image.open(sample("single_face.jpg")).convert("RGB")
    src.save(tmp_path / "phone.heic", quality=95)
    src.save(tmp_path / "photo.avif", quality=95)
    ref = np.asarray(src, np.float32)
    for name in ("phone.heic", "photo.avif"):
        rgb = read_image(tmp_path / name)
        assert rgb.shape == ref.shape and np.abs(rgb - ref).mean() < 6, name
    assert {p.name for p in expand_inputs([tmp_path])} == {"phone.heic", "photo.avif"}
    for name, kind in (("phone.heic", "HEIC/HEIF"), ("photo.avif", "AVIF")):  # cut in half: said so, as for a
        data = (tmp_path / name).read_bytes()  # JPEG or WebP (it was "not an image file (format not recognised)")
        (tmp_path / f"cut {name}").write_bytes(data[:len(data) // 2])
        with pytest.raises(ImageReadError, match=rf"cut {re.escape(name)}: truncated or corrupt {kind} image"):
            read_image(tmp_path / f"cut {name}")
    monkeypatch.setattr(aulib.io, "_heif_opener", lambda: False)  # a plain install: no decoder
    with pytest.raises(ImageReadError, match=r"phone\.heic: a HEIC/HEIF photo; .*aulib\[heif\]"):
        read_image(tmp_path / "phone.heic")


def test_a_kernel_file_that_reports_0_bytes_is_not_called_empty():
    """procfs reports every file's size as 0: /proc/cpuinfo was refused as "empty file (0 bytes)", a file
    ``cat`` shows pages of. Its content is read and it is refused for what it is."""
    path = Path("/proc/self/status")
    if not path.exists():
        pytest.skip("no procfs here")
    with pytest.raises(ImageReadError, match=r"/proc/self/status: not an image file"):
        read_image(path)


def test_eps_without_ghostscript_says_what_is_missing(tmp_path):
    """Pillow reads EPS through Ghostscript; without it the user got "Unable to locate Ghostscript on
    paths", naming a program they never heard of and no way out."""
    import shutil

    from aulib.io import ImageReadError, read_image

    eps = tmp_path / "logo.eps"
    eps.write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\n"
                   "showpage\n")
    if shutil.which("gs"):
        assert read_image(eps).shape[:2] == (10, 10)
        return
    with pytest.raises(ImageReadError, match=r"logo\.eps: a PostScript/EPS image; reading it needs Ghostscript, "
                                             r"which is not installed \(convert it to PNG\)"):
        read_image(eps)


@pytest.mark.parametrize("orientation", [2, 3, 5, 6, 7, 8])
def test_16_bit_images_with_an_orientation_tag_read_as_a_viewer_shows_them(tmp_path, orientation):
    """16-bit RGB is decoded by OpenCV at full depth. A TIFF's Orientation tag was applied by the decoder and
    then again by aulib (turned twice), and aulib's orientation 7 was a transpose (180° off)."""
    import tifffile

    shown = Image.open(sample("single_face.jpg")).convert("RGB")
    T = Image.Transpose
    # what a camera stores beside the tag: the inverse of the turn a viewer applies (ImageOps.exif_transpose)
    stored = shown.transpose({2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 5: T.TRANSPOSE, 6: T.ROTATE_90,
                              7: T.TRANSVERSE, 8: T.ROTATE_270}[orientation])
    deep = np.asarray(stored).astype(np.uint16) * 257
    tifffile.imwrite(tmp_path / "deep.tif", deep, photometric="rgb", extratags=[(274, "H", 1, orientation, True)])
    for path in (tmp_path / "deep.tif",):
        got = read_image(path)
        assert got.shape == np.asarray(shown).shape and np.abs(got.astype(int) - np.asarray(shown)).mean() < 1, path


def test_float_images_with_resampling_overshoot_keep_their_range():
    """A 0–1 float image resized bicubic overshoots (max 1.02): it was read as 0–255 and came out black
    ("no face"); a 0–255 one overshooting to 260 came out 4× too dark."""
    import cv2

    rgb = np.asarray(Image.open(sample("single_face.jpg")).convert("RGB"))
    unit = cv2.resize(rgb.astype(np.float32) / 255, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    assert 1.0 < unit.max() < 1.5
    assert abs(to_rgb(unit).mean() - rgb.mean()) < 2
    byte = rgb.astype(np.float32) * 1.02
    assert abs(to_rgb(byte).mean() - rgb.mean() * 1.02) < 2


def test_a_pil_image_is_turned_by_its_exif_orientation_like_its_file(tmp_path):
    """The API read a PIL image's stored pixels, the same file given by path was turned: boxes differed."""
    shown = Image.open(sample("single_face.jpg")).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    shown.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "turned.jpg", exif=exif, quality=95)
    with Image.open(tmp_path / "turned.jpg") as pil:
        from_pil = to_rgb(pil)
    assert from_pil.shape == read_image(tmp_path / "turned.jpg").shape == np.asarray(shown).shape


def test_float_and_signed_rgb_tiffs_pillow_cannot_read_are_read(tmp_path):
    """32-bit float or int16 RGB TIFFs (scientific pipelines write them) were "not an image file"; signed
    16-bit data filling 0–32767 came out half as bright."""
    import tifffile

    rgb = np.asarray(Image.open(sample("single_face.jpg")).convert("RGB"))
    for name, data in (("f01.tif", rgb.astype(np.float32) / 255), ("i16.tif", rgb.astype(np.int16) * 128)):
        tifffile.imwrite(tmp_path / name, data, photometric="rgb")
        got = read_image(tmp_path / name)
        assert got.shape == rgb.shape and np.abs(got.astype(int) - rgb).mean() < 3, name


def test_a_multi_page_image_without_a_face_on_page_one_says_so(tmp_path, analyzer):
    """Only the first page of a TIFF (frame of an animation) is analysed, as documented, but the row said
    just "no face detected" for a file whose second page is a face."""
    scenery = Image.open(sample("free-mountain-vector-01.jpg")).convert("RGB")
    face = Image.open(sample("single_face.jpg")).convert("RGB").resize(scenery.size)
    scenery.save(tmp_path / "pages.tif", save_all=True, append_images=[face])
    df = analyzer.analyze(tmp_path / "pages.tif")
    assert df["success"].tolist() == [0]
    assert df["error"].iloc[0] == ("no face detected in the first of its 2 frames or pages (only the first is "
                                   "analysed; to analyse all, convert the file to a video)")
    assert analyzer.analyze(sample("free-mountain-vector-01.jpg"))["error"].iloc[0] == "no face detected"


def test_a_multi_frame_image_with_a_face_says_the_rest_was_not_analysed(tmp_path, analyzer):
    """A GIF whose second frame held five faces gave one row and no word about the other frame (nor did a
    two-page TIFF): the first frame is analysed and a warning says so — a MultiFrameImageWarning from the
    API, a warning line from the command line. A one-frame PNG and a JPEG say nothing."""
    import warnings

    from typer.testing import CliRunner

    from aulib.analyzer import MultiFrameImageWarning
    from aulib.cli import app

    face = Image.open(sample("single_face.jpg")).convert("RGB")
    group = Image.open(sample("multi_face.jpg")).convert("RGB").resize(face.size)
    face.save(tmp_path / "anim.gif", save_all=True, append_images=[group], duration=100)
    face.save(tmp_path / "pages.tif", save_all=True, append_images=[group])
    face.save(tmp_path / "one.png")
    for name in ("anim.gif", "pages.tif"):
        with pytest.warns(MultiFrameImageWarning, match="2 frames or pages; only the first was analysed"):
            df = analyzer.analyze(tmp_path / name)
        assert df["success"].tolist() == [1]
    with warnings.catch_warnings():
        warnings.simplefilter("error", MultiFrameImageWarning)
        analyzer.analyze([tmp_path / "one.png", sample("single_face.jpg")])
    res = CliRunner().invoke(app, ["analyze", str(tmp_path / "anim.gif"), str(tmp_path / "one.png"),
                                   "-o", str(tmp_path / "t.csv")])
    assert res.exit_code == 0, res.output
    assert res.output.count("warning:") == 1 and "anim.gif: 2 frames or pages; only the first" in res.output


def test_streams_are_bounded_and_devices_refused(monkeypatch):
    """A file object is read into memory when it cannot seek: a pipe of /dev/zero was read until memory
    ran out (a bare MemoryError), and open('/dev/zero') was buffered 2 GB before being called not an image."""
    import subprocess
    import time

    from aulib import io as aulib_io

    t = time.perf_counter()
    with open("/dev/zero", "rb") as f, pytest.raises(ImageReadError, match=r"^/dev/zero: not a regular file"):
        read_image(f)
    assert time.perf_counter() - t < 5
    monkeypatch.setattr(aulib_io, "MAX_STREAM_BYTES", 1 << 20)
    with subprocess.Popen(["cat", "/dev/zero"], stdout=subprocess.PIPE) as p:
        with pytest.raises(ImageReadError, match=r"^<file object>: more than 1 MB from a stream"):
            read_image(p.stdout)
        p.kill()
    with subprocess.Popen(["cat", str(sample("single_face.jpg"))], stdout=subprocess.PIPE) as p:
        np.testing.assert_array_equal(read_image(p.stdout), read_image(sample("single_face.jpg")))


def test_one_extreme_value_does_not_set_the_scale_of_the_whole_image():
    """A float photo with one value of 1e38 (or an int64 one with one 70000) was scaled by that maximum:
    black, "no face detected". The brightest 0.01 % no longer set the scale; they are clipped."""
    photo = read_image(sample("single_face.jpg"))
    for dtype, spike in ((np.float32, 1e38), (np.int64, 70000), (np.uint16, 65535)):
        a = photo.astype(dtype)
        a[5, 5, 0] = spike
        np.testing.assert_array_equal(np.delete(to_rgb(a).reshape(-1, 3), 5 * photo.shape[1] + 5, axis=0),
                                      np.delete(photo.reshape(-1, 3), 5 * photo.shape[1] + 5, axis=0))
    assert to_rgb(np.full((4, 4), 4095, np.uint16))[0, 0, 0] == 255  # tiny images: the maximum itself


def test_odd_api_objects_are_image_read_errors_naming_them():
    """Pillow's, numpy's and os's own words ("inhomogeneous shape", "embedded null byte") named no input and were
    not ImageReadError. (A premultiplied gray + alpha ``La`` image, refused here before, is now read.)"""
    from aulib.io import check_regular_file

    closed = Image.open(sample("single_face.jpg"))
    closed.close()
    for obj, says in ((closed, "PIL image of mode RGB"),
                      ([np.zeros((4, 4, 3), np.uint8), None], "list is not an image")):
        with pytest.raises(ImageReadError, match=says):
            to_rgb(obj)
    with pytest.raises(ImageReadError, match=r"'\\x00bad.jpg': not a valid file name \(it contains a NUL"):
        check_regular_file("\x00bad.jpg")



def test_a_pil_image_that_cannot_be_converted_is_named_by_its_file(tmp_path):
    """An opened, truncated JPEG given as a PIL image said "PIL image of mode RGB, 572×562 px: cannot convert it
    to RGB (image file is truncated …)" without naming the file the image knows."""
    data = sample("single_face.jpg").read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=rf"^{re.escape(str(cut))}: PIL image of mode RGB, .*truncated"):
        to_rgb(Image.open(cut))


def test_a_still_image_with_a_video_name_is_read_as_the_image_it_is(tmp_path, analyzer):
    """A JPEG saved as .mp4 went through the video path without a word (no image ensemble: AU06_p 0.971 instead
    of 0.926); a video named .jpg was already recognised by its content."""
    import shutil

    from aulib.io import is_video

    shutil.copy(sample("single_face.jpg"), tmp_path / "photo.mp4")
    shutil.copy(sample("single_face.mp4"), tmp_path / "clip.mp4")
    assert not is_video(tmp_path / "photo.mp4") and is_video(tmp_path / "clip.mp4")
    assert is_video(tmp_path / "missing.mp4") and not is_video(tmp_path / "photo.jpg")
    as_mp4 = analyzer.analyze(tmp_path / "photo.mp4").drop(columns="input")
    as_jpg = analyzer.analyze(sample("single_face.jpg")).drop(columns="input")
    assert as_mp4.equals(as_jpg)


def test_a_folder_scan_takes_files_without_an_extension_by_their_content(tmp_path, analyzer):
    """A photo or clip saved without an extension (a download) inside a scanned folder was skipped without a
    word; now its first bytes decide. Other files (notes, sidecars) are still left out."""
    import shutil

    from aulib.io import expand_inputs, is_video

    shutil.copy(sample("single_face.jpg"), tmp_path / "photo")
    shutil.copy(sample("single_face.mp4"), tmp_path / "clip")
    (tmp_path / "notes").write_text("not media")
    (tmp_path / "meta.xmp").write_text("<x/>")
    assert expand_inputs([tmp_path]) == [tmp_path / "clip", tmp_path / "photo"]
    assert is_video(tmp_path / "clip") and not is_video(tmp_path / "photo") and not is_video(tmp_path / "notes")
    df = analyzer.analyze(tmp_path, max_frames=3)
    assert df.groupby("input")["success"].min().to_dict() == {str(tmp_path / "clip"): 1, str(tmp_path / "photo"): 1}
    assert len(df) == 4  # three frames of the clip, the photo


def test_a_folder_scan_reads_the_content_of_names_it_does_not_know_and_says_what_it_left_out(tmp_path, analyzer):
    """A folder's photo named ``Dr. Smith`` (its "extension" is ``. Smith``), ``photo.jpg_large`` (a browser's
    save of a large image) and a clip named ``.qt`` (QuickTime's own extension) or ``.MOD`` (a camcorder's) were
    skipped without a word (``0 skipped``); given by name, the clips were refused as "a video file, not an image".
    Now the first bytes of every file the extension does not settle decide, and the command line names the
    files it left out."""
    import shutil

    from typer.testing import CliRunner

    from aulib.cli import app
    from aulib.io import expand_inputs, is_video

    shutil.copy(sample("single_face.jpg"), tmp_path / "Dr. Smith")
    shutil.copy(sample("single_face.jpg"), tmp_path / "photo.jpg_large")
    shutil.copy(sample("single_face.mp4"), tmp_path / "clip.qt")
    shutil.copy(sample("single_face.mp4"), tmp_path / "clip.dat")
    (tmp_path / "notes.txt").write_text("not media")
    skipped: list = []
    found = expand_inputs([tmp_path], skipped)
    assert found == [tmp_path / n for n in ("Dr. Smith", "clip.dat", "clip.qt", "photo.jpg_large")]
    assert skipped == [tmp_path / "notes.txt"]
    assert is_video(tmp_path / "clip.qt") and is_video(tmp_path / "clip.dat") and not is_video(tmp_path / "Dr. Smith")
    df = analyzer.analyze(tmp_path / "clip.dat", max_frames=2)
    assert list(df.success) == [1, 1] and list(df.frame) == [0, 1]
    res = CliRunner().invoke(app, ["analyze", str(tmp_path), "-o", str(tmp_path / "out.csv"), "--max-frames", "1"])
    assert res.exit_code == 0, res.output
    assert "note: 1 file in the folders given is hidden (a name starting with '.'), not a regular file (a FIFO, " \
        "socket or device) or neither an image nor a video" in " ".join(res.output.split())
    assert "notes.txt" in res.output
    out = pd.read_csv(tmp_path / "out.csv")
    assert sorted(set(out.input)) == sorted(str(f) for f in found) and out.success.all()


def test_an_int8_array_with_negative_values_is_refused_not_half_black():
    """uint8 pixels cast to int8 wrap 128–255 to negative; read as brightness that half went black (59 % of the
    sample's pixels) and the face read wrongly, without a word."""
    from aulib.io import ImageReadError, to_rgb

    rgb = read_image(sample("single_face.jpg"))
    with pytest.raises(ImageReadError, match=r"int8 with negative values.*a\.view\(np\.uint8\)"):
        to_rgb(rgb.astype(np.int8))
    assert np.array_equal(to_rgb(rgb.astype(np.int8).view(np.uint8)), rgb)
    assert to_rgb(np.full((8, 8), 100, np.int8)).shape == (8, 8, 3)  # non-negative int8 data is read


def test_a_named_pipe_with_a_video_or_no_extension_is_never_opened(tmp_path):
    """Content sniffing (is_video, folder scans) opened a FIFO named pipe.mp4 to read its first bytes: opening a
    FIFO waits for a writer, and every run given it hung (serial, --dask, --partitioned)."""
    import os
    import subprocess
    import sys

    for name in ("pipe.mp4", "pipe"):
        os.mkfifo(tmp_path / name)
    code = ("import sys, pathlib, aulib; from aulib.io import expand_inputs, is_video; d = sys.argv[1]; "
            "print(is_video(d + '/pipe'), expand_inputs([d]) == [pathlib.Path(d)]); "  # no file taken: the folder's row
            "print(aulib.analyze(d + '/pipe.mp4')['error'].iloc[0])")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "False True" and lines[1].endswith("pipe.mp4: not a regular file (FIFO)"), out.stdout


def _face_gray() -> np.ndarray:
    return np.asarray(Image.open(sample("single_face.jpg")).convert("L"))


def test_a_16_bit_tiff_storing_white_as_zero_is_not_read_as_a_negative(tmp_path):
    """PhotometricInterpretation 0 ("MinIsWhite"): Pillow turns 8-bit ones back, not 16-bit ones."""
    import tifffile

    g = _face_gray()
    tifffile.imwrite(tmp_path / "w16.tif", (65535 - g.astype(np.uint32) * 257).astype(np.uint16),
                     photometric="miniswhite")
    tifffile.imwrite(tmp_path / "w8.tif", (255 - g).astype(np.uint8), photometric="miniswhite")
    for name in ("w16.tif", "w8.tif"):
        assert np.abs(read_image(tmp_path / name)[:, :, 0].astype(int) - g).max() <= 1, name


def test_an_alpha_channel_of_zeros_everywhere_is_no_alpha(tmp_path):
    """32-bit BMPs (screenshots, exports) often carry an unused alpha of 0: browsers show them opaque; blended
    on white the picture vanished ("no face detected")."""
    rgb = np.asarray(Image.open(sample("single_face.jpg")).convert("RGB"))
    Image.fromarray(np.dstack([rgb, np.zeros(rgb.shape[:2], np.uint8)])).save(tmp_path / "a0.png")
    Image.fromarray(np.dstack([rgb, np.zeros(rgb.shape[:2], np.uint8)])).save(tmp_path / "a0.bmp")
    for name in ("a0.png", "a0.bmp"):
        np.testing.assert_array_equal(read_image(tmp_path / name), rgb)
    np.testing.assert_array_equal(to_rgb(np.dstack([rgb, np.zeros(rgb.shape[:2], np.uint8)])), rgb)  # as its file
    half = np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])  # a real alpha still blends on white
    Image.fromarray(half).save(tmp_path / "a128.png")
    assert read_image(tmp_path / "a128.png").mean() > rgb.mean() + 30


def test_a_16_bit_pgm_takes_its_declared_maximum_as_full_scale(tmp_path):
    """maxval 65535 with values below 4096 stays dark (it was brightened 16×, as if 12-bit); maxval 4095 is full."""
    g = _face_gray().astype(np.uint32)
    for maxval, values, expected in ((65535, g * 16, g * 16 * 255 / 65535), (4095, g * 16, g * 16 * 255 / 4095)):
        path = tmp_path / f"g{maxval}.pgm"
        path.write_bytes(b"P5\n%d %d\n%d\n" % (g.shape[1], g.shape[0], maxval) + values.astype(">u2").tobytes())
        got = read_image(path)[:, :, 0].astype(float)
        assert np.abs(got - expected).max() <= 1.01, maxval


def test_a_tiff_pillow_cannot_read_is_refused_from_its_header_and_named(tmp_path):
    """A float RGB TIFF declaring 15000×15000 (2.7 MB on disk) was decoded (14 s, 5.3 GB) before being refused
    in a message that did not name it; a cut one was "not an image file", with OpenCV's errors on stderr."""
    import subprocess
    import sys

    import tifffile

    n = 15000

    def tiles():
        t = np.zeros((1024, 1024, 3), np.float32)
        for _ in range(((n + 1023) // 1024) ** 2):
            yield t

    big = tmp_path / "big_float.tif"
    tifffile.imwrite(big, tiles(), shape=(n, n, 3), dtype=np.float32, tile=(1024, 1024), photometric="rgb",
                     compression="zlib")
    small = tmp_path / "small_float.tif"
    tifffile.imwrite(small, np.full((64, 64, 3), 0.5, np.float32), photometric="rgb")
    cut = tmp_path / "cut_float.tif"
    cut.write_bytes(small.read_bytes()[: small.stat().st_size // 2])
    code = ("import sys\nfrom aulib.io import ImageReadError, read_image\n"
            "print(read_image(sys.argv[1])[0, 0, 0])\n"
            "for p in sys.argv[2:]:\n"
            "    try:\n        read_image(p)\n    except ImageReadError as e:\n        print(e)\n"
            "print('rss_mb', int([ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0].split()[1])"
            " // 1024)\n")
    res = subprocess.run([sys.executable, "-c", code, str(small), str(big), str(cut)], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "128"  # a readable float TIFF still reads
    assert lines[1].startswith(f"{big}: image too large (15000×15000")
    assert lines[2] == f"{cut}: truncated or corrupt TIFF image data (neither Pillow nor OpenCV could decode it)"
    assert int(lines[3].split()[1]) < 600  # MB: the 225 MP image was never decoded


def test_a_half_float_tiff_is_named_for_what_it_is_not_called_corrupt(tmp_path):
    """A valid float16 RGB or gray TIFF (tifffile reads it back) was "truncated or corrupt TIFF image data":
    neither decoder reads half floats. The message now names them, and what to save instead."""
    import tifffile

    rgb = read_image(sample("single_face.jpg"))
    for name, pixels, photometric in (("rgb.tif", rgb, "rgb"), ("gray.tif", rgb[..., 1], "minisblack")):
        path = tmp_path / name
        tifffile.imwrite(path, (pixels / 255).astype(np.float16), photometric=photometric)
        with pytest.raises(ImageReadError, match=rf"^{path}: a 16-bit floating-point \(half precision\) TIFF.*32-bit"):
            read_image(path)
    tifffile.imwrite(tmp_path / "f32.tif", (rgb / 255).astype(np.float32), photometric="rgb")
    assert read_image(tmp_path / "f32.tif").shape == rgb.shape  # 32-bit floats still read


def test_a_png_with_metadata_too_large_for_pillow_still_reads(tmp_path):
    """A 16 MB ICC profile or a 50 MB comment: Pillow refuses the file (MAX_TEXT_CHUNK); its pixels are read."""
    from PIL import PngImagePlugin

    face = Image.open(sample("single_face.jpg")).convert("RGB")
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "A" * 50_000_000, zip=True)
    face.save(tmp_path / "text.png", pnginfo=info)
    face.save(tmp_path / "icc.png", icc_profile=b"\0" * 16_000_000)
    for name in ("text.png", "icc.png"):
        np.testing.assert_array_equal(read_image(tmp_path / name), np.asarray(face))


# jpegtran -arithmetic of samples/single_face.jpg: over 64 kB, so Pillow's decoder, fed in chunks, fails on it
ARITHMETIC = Path(__file__).with_name("arithmetic_coded.jpg")


def test_arithmetic_coded_jpeg_reads_as_its_baseline_twin(tmp_path):
    """An arithmetic-coded JPEG (SOF9; legal JPEG that jpegtran and some cameras write) was refused as "truncated
    or corrupt": libjpeg's arithmetic decoder cannot resume when its input comes in pieces, as Pillow feeds it, so
    every such file over Pillow's 64 kB block failed. It now reads with the same pixels as the baseline file
    holding the same coefficients, EXIF orientation applied; cut short it is still refused, naming the file."""
    import io
    import struct

    baseline = read_image(sample("single_face.jpg"))
    np.testing.assert_array_equal(read_image(ARITHMETIC), baseline)
    data = ARITHMETIC.read_bytes()

    def oriented(jpeg: bytes, orientation: int) -> np.ndarray:
        exif = Image.Exif()
        exif[0x0112] = orientation
        payload = b"Exif\x00\x00" + exif.tobytes()
        return read_image(io.BytesIO(jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]))

    np.testing.assert_array_equal(oriented(data, 6), np.rot90(baseline, -1))  # 6: turn 90° clockwise to display
    for orientation in (2, 3, 4, 5, 7, 8):  # as Pillow's path turns the baseline file
        np.testing.assert_array_equal(oriented(data, orientation),
                                      oriented(sample("single_face.jpg").read_bytes(), orientation))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.jpg: truncated or corrupt JPEG"):
        read_image(cut)


def test_arithmetic_coded_jpeg_is_analysed(analyzer):
    df = analyzer.analyze(ARITHMETIC)
    assert df.success.tolist() == [1] and df.AU12_c.iloc[0] == 1  # the smiling face smiles


@pytest.mark.parametrize(("marker", "bits", "kind"),
                         [(0xC1, 12, "12-bit extended-precision"), (0xC3, 16, "16-bit lossless")])
def test_deep_jpeg_is_named_for_what_it_is(tmp_path, marker, bits, kind):
    """12-bit and 16-bit lossless JPEGs (medical, scientific cameras) decode in neither Pillow nor OpenCV: they were
    called "not an image file (format not recognised)"; the message now says what the file is and what to do."""
    import struct

    sof = bytes([bits]) + struct.pack(">HH", 16, 16) + bytes([1, 1, 0x11, 0])
    path = tmp_path / "deep.jpg"
    path.write_bytes(b"\xff\xd8\xff" + bytes([marker]) + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xd9")
    with pytest.raises(ImageReadError, match=rf"deep\.jpg: a {kind} JPEG .*convert it"):
        read_image(path)


def test_jpeg_xl_is_named_and_listed_in_folders(tmp_path):
    """JPEG XL photos (codestream or container, with or without the .jxl extension): "not an image file (format not
    recognised)" before, and a folder scan skipped .jxl files without a row; now each is listed and refused by name."""
    (tmp_path / "photo.jxl").write_bytes(b"\xff\x0a" + bytes(64))
    (tmp_path / "download").write_bytes(b"\x00\x00\x00\x0cJXL \r\n\x87\n" + bytes(64))
    assert {p.name for p in expand_inputs([tmp_path])} == {"photo.jxl", "download"}
    for name in ("photo.jxl", "download"):
        with pytest.raises(ImageReadError, match=rf"{name}: a JPEG XL image.*convert it"):
            read_image(tmp_path / name)


def test_a_folder_scan_leaves_hidden_entries_out_and_says_so(tmp_path):
    """A ``.thumbnails`` folder gave every face again, and macOS's ``._IMG_1.jpg`` resource forks a failed row each;
    they are left out as ``ls`` leaves them (a hidden file with a media name counted as left out). A hidden folder
    named as the input itself is scanned."""
    photo = sample("single_face.jpg").read_bytes()
    (tmp_path / "in" / ".thumbnails").mkdir(parents=True)
    (tmp_path / "in" / "IMG_1.jpg").write_bytes(photo)
    (tmp_path / "in" / ".thumbnails" / "IMG_1.jpg").write_bytes(photo)
    (tmp_path / "in" / "._IMG_1.jpg").write_bytes(b"\0\5\26\7 AppleDouble")
    skipped: list = []
    assert expand_inputs([tmp_path / "in"], skipped) == [tmp_path / "in" / "IMG_1.jpg"]
    assert skipped == [tmp_path / "in" / "._IMG_1.jpg"]
    assert expand_inputs([tmp_path / "in" / ".thumbnails"]) == [tmp_path / "in" / ".thumbnails" / "IMG_1.jpg"]


def test_a_jpeg_too_short_for_the_picture_its_header_declares_is_refused(tmp_path):
    """single_face.jpg (562×572, 81 kB) with its frame header patched to 10000×10000 was decoded anyway: 25 s,
    1.9 GB, 99.7 % gray fill, "no face detected". A flat 8000×8000 JPEG (optimised Huffman, progressive) still reads."""
    data = bytearray(sample("single_face.jpg").read_bytes())
    sof = next(i for i in range(2, len(data) - 9) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC1, 0xC2))
    data[sof + 5:sof + 9] = (10000).to_bytes(2, "big") * 2
    (tmp_path / "patched.jpg").write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match=r"patched.jpg: truncated or corrupt JPEG image data \(\d+ bytes cannot "
                                             r"hold the 10000×10000 picture"):
        read_image(tmp_path / "patched.jpg")
    Image.new("L", (8000, 8000), 128).save(tmp_path / "flat.jpg", quality=50, optimize=True)
    Image.new("RGB", (8000, 8000), (120, 130, 140)).save(tmp_path / "flatp.jpg", quality=10, optimize=True,
                                                        progressive=True)
    assert read_image(tmp_path / "flat.jpg").shape == read_image(tmp_path / "flatp.jpg").shape == (8000, 8000, 3)


def test_files_a_decoder_chokes_on_are_named_corrupt_not_raised_or_read_black(tmp_path):
    """Found by fuzzing: a damaged AVIF raised Pillow's RuntimeError (a traceback, the run stopped); a TIFF naming
    an unknown compression was "decoded" by OpenCV's libtiff as an all-black photo ("no face detected"); decoder
    messages came alone ("decoder error -2", "invalid literal for int() with base 10")."""
    import io

    face = Image.open(sample("single_face.jpg"))
    buf = io.BytesIO()
    face.save(buf, "AVIF")
    (tmp_path / "bad.avif").write_bytes(buf.getvalue().replace(b"iinf", b"xinf", 1))
    buf = io.BytesIO()
    face.save(buf, "TIFF")  # uncompressed: Compression (259) = 1
    tiff = buf.getvalue()
    entry = b"\x03\x01\x03\x00\x01\x00\x00\x00\x01\x00"
    assert tiff.count(entry) == 1
    (tmp_path / "bad.tif").write_bytes(tiff.replace(entry, entry[:8] + b"\x00\x00"))
    (tmp_path / "bad.ppm").write_bytes(b"P6\n35; 20\n255\n" + bytes(2100))
    for name, why in (("bad.avif", "truncated or corrupt image data ("),
                      ("bad.tif", "truncated or corrupt TIFF image data (unknown compression 0)"),
                      ("bad.ppm", "truncated or corrupt image data (")):
        with pytest.raises(ImageReadError) as info:
            read_image(tmp_path / name)
        assert str(info.value).startswith(f"{tmp_path / name}: {why}"), str(info.value)


def test_a_photo_whose_exif_block_pillow_cannot_parse_is_read_unturned(tmp_path, monkeypatch):
    """A JPEG with a few bytes of its EXIF block damaged was refused ("not a TIFF file (header b'MM\\x00\\x9e…'
    not valid)", raised by the EXIF orientation step) although its pixels decode: it is read as it is stored."""
    from PIL import ImageOps

    def damaged(img):
        raise SyntaxError("not a TIFF file (header b'MM\\x00\\x9e\\x00\\x00\\x00\\x08' not valid)")

    monkeypatch.setattr(ImageOps, "exif_transpose", damaged)
    img = read_image(sample("single_face.jpg"))
    assert img.shape == (np.asarray(Image.open(sample("single_face.jpg"))).shape)


def test_fallback_decoders_read_only_the_file_under_a_memory_limit(tmp_path):
    """The fallback decoders (OpenCV for what Pillow cannot read) asked for 2 GiB + 1 bytes to read a file of 1 MB:
    under an address-space limit (``ulimit -v``, a batch system's memory cap) a bare MemoryError escaped and
    stopped the run."""
    import subprocess
    import sys

    import cv2

    rgb = np.asarray(Image.open(sample("single_face.jpg")), np.float32) / 255.0
    path = tmp_path / "float_rgb.tif"  # float RGB: Pillow cannot read it, OpenCV can
    assert cv2.imwrite(str(path), rgb[:, :, ::-1].copy())
    code = (
        "import resource, sys\n"
        "import aulib.io as io\n"
        "vm = int(next(l for l in open('/proc/self/status') if l.startswith('VmSize')).split()[1]) * 1024\n"
        "resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), vm + (1 << 30)))\n"
        "a = io.read_image(sys.argv[1])\n"
        "print(a.shape)\n"
    )
    res = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == str(rgb.shape), res.stderr[-2000:]


def test_an_array_whose_fourth_channel_is_no_alpha_mask_is_refused(tmp_path):
    """``np.asarray`` of a CMYK image is (H, W, 4): its black channel was taken for alpha and C, M, Y for R, G, B
    (AUs up to 1.7 off the file's, no word). Real alpha (the sample PNG, a feathered edge) is kept."""
    rgb = np.asarray(Image.open(sample("single_face.jpg")).convert("RGB")).astype(np.int16)
    cmy = 255 - rgb
    k = cmy.min(axis=2, keepdims=True)  # under-colour removal, as a print workflow's CMYK holds black
    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(np.concatenate([cmy - k, k], axis=2).astype(np.uint8), "CMYK").save(cmyk)
    with pytest.raises(ImageReadError, match=r"not an alpha mask \(\d+% of its values partly transparent"):
        to_rgb(np.asarray(Image.open(cmyk)))
    assert to_rgb(Image.open(cmyk)).shape[2] == 3 and read_image(cmyk).shape[2] == 3  # the image and its file
    rgba = np.asarray(Image.open(sample("Image_with_alpha.png")).convert("RGBA"))
    assert (to_rgb(rgba) == read_image(sample("Image_with_alpha.png"))).all()
    soft = np.dstack([rgb.astype(np.uint8), np.full(rgb.shape[:2], 255, np.uint8)])
    soft[:, :40, 3] = np.linspace(0, 255, 40).astype(np.uint8)  # a feathered edge
    assert to_rgb(soft).shape[2] == 3


def test_a_wildcard_pattern_names_its_files(tmp_path, monkeypatch):
    """Windows' shells hand ``*.jpg`` over unexpanded (so does any quoted pattern): it was one input, "*.jpg: no
    such file". Patterns are expanded like a shell's (sorted, ``**`` recursive, hidden names left out); a file
    whose name holds a ``*`` is itself; a pattern that matches nothing stays one input whose row says so."""
    for rel in ("a.jpg", "b.jpg", "sub/c.jpg", ".hidden.jpg", "notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(sample("single_face.jpg").read_bytes())
    monkeypatch.chdir(tmp_path)
    assert expand_inputs(["*.jpg"]) == [Path("a.jpg"), Path("b.jpg")]
    assert expand_inputs(["**/*.jpg"]) == [Path("a.jpg"), Path("b.jpg"), Path("sub/c.jpg")]
    assert expand_inputs([str(tmp_path / "s*")]) == [tmp_path / "sub" / "c.jpg"]  # a folder matched is scanned
    (tmp_path / "odd*.jpg").write_bytes(b"x")
    assert expand_inputs(["odd*.jpg"]) == [Path("odd*.jpg")]
    assert expand_inputs(["none*.png"]) == [Path("none*.png")]
    with pytest.raises(ImageReadError, match=r"none\*\.png: no such file \(no file matches this pattern\)"):
        read_image("none*.png")
