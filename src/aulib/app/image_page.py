"""Image page: upload photos (or use the bundled sample) → one annotated image, a faces × AUs heatmap and the
faces' emotions side by side, the text report, CSV."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from aulib.app.common import (
    ANALYZE_LOCK,
    MAX_IMAGE_MB,
    SAMPLE,
    analyzer_with_note,
    emotion_label,
    faces_au_table,
    faces_emotion_table,
    get_analyzer,
    labels,
    light,
)
from aulib.draw import draw_faces
from aulib.face.record import Face
from aulib.io import ImageReadError, read_image
from aulib.table import empty_row, face_rows, report, to_frame


@st.cache_data(max_entries=64, show_spinner=False)
def analyze_bytes(name: str, data: bytes):
    """``(rows DataFrame, face records without pixels, annotated RGB image or None, error message)``
    for one uploaded file."""
    analyzer, _ = get_analyzer()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / (Path(name).name or "upload")
        path.write_bytes(data)
        try:
            rgb = read_image(path)
        except ImageReadError as e:
            msg = str(e).replace(str(path), name)
            return to_frame([empty_row(name, msg)], analyzer.columns), [], None, msg
    with ANALYZE_LOCK:
        faces = analyzer.get(rgb)
    annotated = draw_faces(rgb, faces, labels(faces)) if faces else rgb
    return to_frame(face_rows(faces, name), analyzer.columns), light(faces), annotated, ""


def show_faces(name: str, annotated, faces: list[Face], n: int) -> None:
    """One annotated image (tags numbered like the table columns) beside one faces × AUs heatmap, then the
    emotions of every face side by side: compact for one face or twenty."""
    img_col, info_col = st.columns([1, 1], gap="medium")
    img_col.image(annotated, caption=f"{name}: {n} face(s)", width="stretch")
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
    uploads = st.file_uploader("Upload one or more photos (JPEG, PNG, WebP, TIFF, BMP…)",
                               accept_multiple_files=True, key="image_upload", max_upload_size=MAX_IMAGE_MB)
    inputs: list[tuple[str, bytes]] = [(u.name, u.getvalue()) for u in uploads or []]
    if not inputs:
        if not SAMPLE.exists():
            st.info("Upload a photo to see its faces, Action Units and emotions.")
            return
        st.info("Showing the bundled sample photo: upload your own photos above.", icon=":material/upload:")
        inputs = [(SAMPLE.name, SAMPLE.read_bytes())]

    tables = []
    for name, data in inputs:
        with st.spinner(f"Analysing {name}…"):
            df, faces, annotated, error = analyze_bytes(name, data)
        tables.append(df)
        st.subheader(name, divider="gray")
        if error:
            st.error(f"Cannot read **{name}**: {error}", icon=":material/error:")
            continue
        ok = df[df["success"] == 1]
        if ok.empty:
            img_col, info_col = st.columns([1, 1], gap="medium")
            img_col.image(annotated, caption=f"{name}: 0 face(s)", width="stretch")
            why = df["error"].iloc[0] if len(df) else ""
            detail = f" ({why})." if why and "no face" not in why else "."
            info_col.warning(f"No face found in **{name}**{detail}", icon=":material/face_retouching_off:")
        else:
            show_faces(name, annotated, [f for f in faces if f.success], len(ok))
        with st.expander("Text report (as printed by `aulib analyze`)"):
            st.code(report(df), language=None)

    all_rows = pd.concat(tables, ignore_index=True)
    st.download_button("Download the table (CSV)", all_rows.to_csv(index=False).encode(), "aulib_images.csv",
                       "text/csv", on_click="ignore", icon=":material/download:")
