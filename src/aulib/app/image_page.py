"""Image page: upload photos (or use the bundled sample) → one annotated image, a faces × AUs heatmap and the
faces' emotions side by side, the text report, CSV."""

from __future__ import annotations

import copy
import hashlib
import io
from dataclasses import dataclass, field

import cv2
import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from aulib.analyzer import first_frame_rows
from aulib.app.common import (
    MAX_IMAGE_MB,
    PREVIEW_SIDE,
    SAMPLE,
    analyzer_with_note,
    emotion_label,
    faces_au_table,
    faces_emotion_table,
    get_analyzer,
    get_pixel_budget,
    labels,
    light,
    md,
    refused,
    upload_refusals,
)
from aulib.app.engine import ByteLRU, clean_message, env_int, trim_memory
from aulib.draw import draw_faces
from aulib.face.record import Face
from aulib.io import VIDEO_EXTENSIONS, ImageReadError, frame_count, read_image
from aulib.table import empty_row, face_rows, frame_csv, report, to_frame


@dataclass
class ImageResult:
    """What the page shows for one upload; everything but the preview is small (≈1 kB per face)."""

    rows: pd.DataFrame
    faces: list[Face] = field(default_factory=list)
    preview: bytes = b""  # annotated JPEG, at most PREVIEW_SIDE pixels on its longest side
    width: int = 0
    height: int = 0
    error: str = ""  # why the file was refused, without its name (the page names it)
    frames: int = 1  # frames or pages the file holds (an animation, a multi-page TIFF): the first is analysed

    def nbytes(self) -> int:
        return int(self.rows.memory_usage(deep=True).sum()) + len(self.preview) + 2048 * len(self.faces) + 512


@st.cache_resource(show_spinner=False)
def result_cache() -> ByteLRU:
    """Results of recent uploads, bounded in bytes for the whole server (``AULIB_APP_CACHE_MB``, default 64)."""
    return ByteLRU(env_int("AULIB_APP_CACHE_MB", 64) << 20, ImageResult.nbytes)


def header_pixels(data: bytes) -> int:
    """Pixels the image declares in its header (0 when Pillow cannot tell): nothing is decoded."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return int(img.size[0]) * int(img.size[1])
    except Exception:
        return 0


MIN_PREVIEW_SIDE = 16  # px: a preview's shorter side, after padding


def preview(rgb: np.ndarray, faces: list[Face]) -> tuple[bytes, float]:
    """The annotated image as a JPEG no larger than PREVIEW_SIDE, drawn at that size (tags stay legible on
    a 100 MP photo), and the scale factor used. Any image array :func:`aulib.io.to_rgb` takes (gray, float,
    RGBA): a gray or float one raised inside OpenCV's drawing; ImageReadError for one that is no image."""
    if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.size):
        from aulib.io import to_rgb

        rgb = to_rgb(np.asarray(rgb))
    h, w = rgb.shape[:2]
    scale = min(1.0, PREVIEW_SIDE / max(h, w))
    small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA) \
        if scale < 1 else rgb
    drawn = []
    for f in faces:
        g = copy.copy(f)
        g.box = None if f.box is None else np.asarray(f.box, np.float64) * scale
        g.landmarks = None if f.landmarks is None else np.asarray(f.landmarks, np.float64) * scale
        drawn.append(g)
    out = draw_faces(small, drawn, labels(faces)) if faces else small
    # A sliver (1600×1 after scaling, from a 20000×3 image) was shown stretched to the column and 0 px high,
    # and Streamlit raised a traceback on the page: padded with white below/right (coordinates unchanged).
    ph, pw = out.shape[:2]
    if min(ph, pw) < MIN_PREVIEW_SIDE:
        out = cv2.copyMakeBorder(out, 0, max(0, MIN_PREVIEW_SIDE - ph), 0, max(0, MIN_PREVIEW_SIDE - pw),
                                 cv2.BORDER_CONSTANT, value=(255, 255, 255))
    ok, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(out[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 88])
    return (jpeg.tobytes() if ok else b""), scale


def check_upload(name: str, data: bytes) -> str:
    """Why an upload is refused before it is read (size, empty, a video on the image page), or ``""``."""
    size_mb = len(data) / (1 << 20)
    if size_mb > MAX_IMAGE_MB:
        return f"the file is {size_mb:.0f} MB; images may be at most {MAX_IMAGE_MB} MB"
    if not data:
        return "empty file (0 bytes)"
    suffix = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if f".{suffix}" in VIDEO_EXTENSIONS:
        return "this is a video file: use the Video page for videos"
    return ""


def analyze_upload(name: str, data: bytes) -> ImageResult:
    """One uploaded file's faces, table and annotated preview (cached by content and name).

    Refused without decoding when it is too large in bytes or, from its header, in pixels (the CLI's
    :data:`aulib.io.MAX_PIXELS`); decoded while holding the server's pixel budget, so several users'
    large photos are read one after the other.
    """
    analyzer, _ = get_analyzer()
    key = (hashlib.sha256(data).hexdigest(), name, analyzer.emotion_model)
    cache = result_cache()
    hit = cache.get(key)
    if hit is not None:
        return hit
    why = check_upload(name, data)
    if why:
        return ImageResult(to_frame([], analyzer.columns), error=why)  # not cached: cheap to redo
    pixels = header_pixels(data)
    waiting = st.empty()
    with get_pixel_budget().take(pixels, on_wait=lambda: waiting.info(
            f"Waiting for another large image to finish before reading **{md(name)}**…",
            icon=":material/hourglass_top:")):
        waiting.empty()
        f = io.BytesIO(data)
        f.name = name
        try:
            rgb = read_image(f)
        except ImageReadError as e:
            error = clean_message(str(e), name)
            if "a video file, not an image" in error:  # the command line's advice does not fit a web page
                error = "a video file with an image's name: rename it (e.g. to .mp4), then use the Video page"
            result = ImageResult(to_frame([], analyzer.columns), error=error)
        else:
            faces = analyzer.get(rgb)
            jpeg, _ = preview(rgb, faces)
            frames = frame_count(io.BytesIO(data))
            # the command line's table: an animation without a face in its first frame says only that one was read
            rows = first_frame_rows(face_rows(faces, name), frames)
            result = ImageResult(to_frame(rows, analyzer.columns), light(faces), jpeg,
                                 rgb.shape[1], rgb.shape[0], frames=frames)
            del rgb
        del f
    if pixels > 4_000_000:
        trim_memory()  # a large decode's freed pages go back to the OS, not into glibc's arenas
    cache.put(key, result)
    return result


def show_faces(name: str, annotated: bytes, faces: list[Face], n: int, size: str = "") -> None:
    """One annotated image (tags numbered like the table columns) beside one faces × AUs heatmap, then the
    emotions of every face side by side: compact for one face or twenty."""
    img_col, info_col = st.columns([1, 1], gap="medium")
    img_col.image(annotated, caption=f"{name}: {n} face(s)" + (f" ({size})" if size else ""), width="stretch")
    with info_col:
        st.markdown(" · ".join(f"**Face {f.id}** — {emotion_label(f)}" for f in faces))
        st.caption("AU intensity (0–5), darker = stronger; ● = present (occurrence model).")
        st.table(faces_au_table(faces))
    st.caption("Emotions: CNN probability per face; the last row reads the AUs against the FACS/EMFACS "
               "emotion prototypes, naming only full matches (a single AU such as AU12 is shared by several "
               "prototypes, so a partial overlap is not an emotion).")
    st.table(faces_emotion_table(faces))


def page() -> None:
    st.title("Image")
    analyzer_with_note()  # loads the models, shows the fallback note when the CNN is missing
    uploads = st.file_uploader(f"Upload one or more photos (JPEG, PNG, WebP, TIFF, BMP…; at most {MAX_IMAGE_MB} MB "
                               "each)", accept_multiple_files=True, key="image_upload", max_upload_size=MAX_IMAGE_MB)
    upload_refusals(f"{MAX_IMAGE_MB} MB per image")
    inputs = [(u.name, u.getvalue()) for u in uploads or []]
    if not inputs:
        if not SAMPLE.exists():
            st.info("Upload a photo to see its faces, Action Units and emotions.")
            return
        with st.container(key="upload_result"):  # hidden by the page script while a refused upload is listed
            st.info("Showing the bundled sample photo: upload your own photos above.", icon=":material/upload:")
            show_results([(SAMPLE.name, SAMPLE.read_bytes())])
        return
    show_results(inputs)


def show_results(inputs: list[tuple[str, bytes]]) -> None:
    """Each upload's result under its name; one table of all of them to download, as ``aulib analyze``
    writes it: a refused file has its ``success=0`` row, and files of the same name are told apart."""
    analyzer, _ = get_analyzer()
    tables = []
    seen: dict[str, int] = {}
    for upload, data in inputs:
        seen[upload] = seen.get(upload, 0) + 1
        name = upload if seen[upload] == 1 else f"{upload} ({seen[upload]})"
        with st.spinner(f"Analysing {md(name)}…"):
            result = analyze_upload(upload, data)
        if result.error:
            refused(name, result.error)
            tables.append(to_frame([empty_row(name, result.error)], analyzer.columns))
            continue
        st.subheader(md(name), divider="gray", anchor=False)
        df = result.rows.assign(input=name)
        tables.append(df)
        ok = df[df["success"] == 1]
        size = f"{result.width}×{result.height}"
        if result.frames > 1:
            st.caption(f"The file holds {result.frames} frames or pages; the first was analysed"
                       + (" (for an animation, use the Video page)." if upload.lower().endswith(".gif") else "."))
        if ok.empty:
            img_col, info_col = st.columns([1, 1], gap="medium")
            img_col.image(result.preview, caption=f"{name}: 0 face(s) ({size})", width="stretch")
            why = df["error"].iloc[0] if len(df) else ""
            detail = f" ({why})." if why and "no face" not in why else "."
            info_col.warning(f"No face found in **{md(name)}**{detail}", icon=":material/face_retouching_off:")
        else:
            show_faces(name, result.preview, [f for f in result.faces if f.success], len(ok), size)
        with st.expander("Text report (as printed by `aulib analyze`)"):
            st.code(report(df), language=None)
    if tables:
        all_rows = pd.concat(tables, ignore_index=True)
        st.download_button("Download the table (CSV)", frame_csv(all_rows), "aulib_images.csv",
                           "text/csv", on_click="ignore", icon=":material/download:")
