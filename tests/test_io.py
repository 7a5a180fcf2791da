"""Reading every kind of image a user has, and a clear error for everything else."""

from __future__ import annotations

import numpy as np
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
        to_rgb(np.zeros((4, 4, 2), np.uint8))


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
        assert read_image(tmp_path / name)[0, 0].tolist() == [234, 3, 0]  # scaled by 1/257, not truncated
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).convert("CMYK").save(tmp_path / "cmyk.jpg")
    assert read_image(tmp_path / "cmyk.jpg").shape == (8, 8, 3)
    frames = [Image.new("L", (8, 8), 50), Image.new("L", (8, 8), 200)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert read_image(tmp_path / "anim.gif")[0, 0, 0] == 50  # first frame
