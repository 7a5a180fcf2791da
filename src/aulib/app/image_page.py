"""Image page: upload photos (or use the bundled sample) → annotated image, per-face report, CSV."""

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
    face_table,
    get_analyzer,
    labels,
    light,
)
from aulib.draw import draw_faces
from aulib.face.record import EMOTIONS, Face
from aulib.io import ImageReadError, read_image
from aulib.table import RULE_EMOTIONS, empty_row, face_rows, report, to_frame


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


def emotion_table(face: Face) -> pd.DataFrame:
    """Emotions of one face: % of prototype AUs (rules) and, when the CNN ran, its probabilities."""
    probs = dict(zip(EMOTIONS, face.emotion_probs)) if face.emotion_probs is not None else {}
    rules = dict(zip(RULE_EMOTIONS, face.rules)) if face.rules is not None else {}
    order = sorted(EMOTIONS, key=lambda e: -(probs[e] if probs else rules.get(e, -1)))
    out = pd.DataFrame(index=pd.Index(order, name="emotion"))
    if probs:
        out["CNN probability"] = [f"{probs[e]:.2f}" for e in order]
    out["% of prototype AUs"] = [f"{rules[e]:.0f}%" if e in rules else "–" for e in order]
    return out


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
        img_col, info_col = st.columns([1, 1], gap="medium")
        img_col.image(annotated, caption=f"{name}: {len(ok)} face(s)", width="stretch")
        with info_col:
            if ok.empty:
                why = df["error"].iloc[0] if len(df) else ""
                detail = f" ({why})." if why and "no face" not in why else "."
                st.warning(f"No face found in **{name}**{detail}", icon=":material/face_retouching_off:")
                continue
            for f in faces:
                if not f.success:
                    continue
                st.markdown(f"**Face {f.id}** — {emotion_label(f)}")
                t_au, t_emo = st.tabs(["Action Units", "Emotions"])
                t_au.table(face_table(f))
                t_emo.table(emotion_table(f))
        with st.expander("Text report (as printed by `aulib analyze`)"):
            st.code(report(df), language=None)

    all_rows = pd.concat(tables, ignore_index=True)
    st.download_button("Download the table (CSV)", all_rows.to_csv(index=False).encode(), "aulib_images.csv",
                       "text/csv", on_click="ignore", icon=":material/download:")
