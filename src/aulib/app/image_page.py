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
    annotate,
    emotion_label,
    face_table,
    get_analyzer,
)
from aulib.io import ImageReadError, read_image
from aulib.output import report
from aulib.results import EMOTIONS, to_frame


@st.cache_data(max_entries=64, show_spinner=False)
def analyze_bytes(name: str, data: bytes):
    """``(rows DataFrame, annotated RGB image or None, error message)`` for one uploaded file."""
    analyzer, _ = get_analyzer()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / (Path(name).name or "upload")
        path.write_bytes(data)
        try:
            rgb = read_image(path)
        except ImageReadError as e:
            msg = str(e).replace(str(path), name)
            return to_frame([{"input": name, "success": 0, "error": msg}], analyzer.columns), None, msg
    with ANALYZE_LOCK:
        faces = analyzer.faces(rgb)
        rows = analyzer.face_rows(faces, name)
    labels = [f"face {r['face']}: {emotion_label(r)}" if r.get("success") else f"face {r['face']}: no fit"
              for r in rows] if faces else None
    return to_frame(rows, analyzer.columns), annotate(rgb, faces, labels) if faces else rgb, ""


def emotion_table(r: dict) -> pd.DataFrame:
    """Emotions of one face: % of prototype AUs (rules) and, when the CNN ran, its probabilities."""
    cnn = isinstance(r.get("emotion"), str)
    order = sorted(EMOTIONS, key=lambda e: -(r[f"p_{e}"] if cnn else r.get(f"rule_{e}", -1)))
    out = pd.DataFrame(index=pd.Index(order, name="emotion"))
    if cnn:
        out["CNN probability"] = [f"{r[f'p_{e}']:.2f}" for e in order]
    out["% of prototype AUs"] = [f"{r[f'rule_{e}']:.0f}%" if f"rule_{e}" in r else "–" for e in order]
    return out


def page() -> None:
    st.title("Image")
    analyzer = analyzer_with_note()
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
            df, annotated, error = analyze_bytes(name, data)
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
            for r in ok.to_dict("records"):
                st.markdown(f"**Face {r['face']}** — {emotion_label(r)}")
                t_au, t_emo = st.tabs(["Action Units", "Emotions"])
                t_au.table(face_table(r, analyzer.aus))
                t_emo.table(emotion_table(r))
        with st.expander("Text report (as printed by `aulib analyze`)"):
            st.code(report(df), language=None)

    all_rows = to_frame([row for t in tables for row in t.to_dict("records")], analyzer.columns)
    st.download_button("Download the table (CSV)", all_rows.to_csv(index=False).encode(), "aulib_images.csv",
                       "text/csv", on_click="ignore", icon=":material/download:")
