"""Video page: upload a clip → progress bar → AU and emotion time series, CSV and Parquet download."""

from __future__ import annotations

import io
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import pandas as pd
import streamlit as st

from aulib import table
from aulib.analyzer import Analyzer
from aulib.app.common import ANALYZE_LOCK, MAX_VIDEO_MB, analyzer_with_note
from aulib.au.facs import au_label
from aulib.table import to_frame

VIDEO_TYPES = ["mp4", "mov", "avi", "mkv", "webm", "m4v", "mpg", "mpeg", "wmv", "flv", "gif"]


def probe(path: Path) -> tuple[int, float]:
    """``(frame count or 0 if unknown, frames per second)``; raises ValueError for unreadable files."""
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise ValueError("the file has no video stream")
            s = c.streams.video[0]
            fps = float(s.average_rate or s.guessed_rate or 0) or 25.0
            n = s.frames or (int(float(s.duration * s.time_base) * fps) if s.duration else 0)
            return n, fps
    except av.FFmpegError as e:
        raise ValueError(f"not a readable video ({e})") from None


def analyze_video(analyzer: Analyzer, path: Path, every: int, progress: Callable[[int, int], None]) -> pd.DataFrame:
    """Table of every ``every``-th frame of a video (the CLI's video path: tracking, batched models)."""
    from aulib.video import analyze_video_rows

    return to_frame(analyze_video_rows(analyzer, path, every=every, progress=progress), analyzer.columns)


def page() -> None:
    st.title("Video")
    analyzer = analyzer_with_note()
    up = st.file_uploader("Upload a video", type=VIDEO_TYPES, key="video_upload",
                          max_upload_size=MAX_VIDEO_MB)
    every = st.number_input("Analyse every n-th frame", min_value=1, max_value=300, value=1, step=1,
                            help="1 = every frame; larger values are faster on long clips.")
    if up is None:
        st.info("Upload a video (mp4, mov, avi, mkv, webm…) to get AU and emotion time series.")
        return

    key = (up.file_id, int(every))
    if st.session_state.get("video_key") != key:
        st.session_state.pop("video_result", None)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(up.name).name
            path.write_bytes(up.getvalue())
            try:
                probe(path)
            except ValueError as e:
                st.error(f"Cannot read **{up.name}**: {e}", icon=":material/error:")
                return
            bar = st.progress(0.0, text=f"Analysing {up.name}…")
            shown = [0.0]

            def progress(done: int, total: int = 0) -> None:
                now = time.monotonic()
                if now - shown[0] < 0.2 and done != total:
                    return
                shown[0] = now
                of = f" of {total}" if total else ""
                frac = min(done / total, 1.0) if total else 0.0
                bar.progress(frac, text=f"Analysing {up.name}: frame {done}{of}")

            try:
                with ANALYZE_LOCK:
                    df = analyze_video(analyzer, path, int(every), progress)
            except Exception as e:  # corrupt stream half-way, unsupported codec…
                bar.empty()
                st.error(f"Cannot analyse **{up.name}**: {type(e).__name__}: {e}", icon=":material/error:")
                return
            bar.empty()
            df["error"] = df["error"].str.replace(str(path), up.name, regex=False)
        df["input"] = up.name
        st.session_state.video_result = df
        st.session_state.video_key = key
    df: pd.DataFrame = st.session_state.video_result
    show_results(df, up.name)


def _plot(wide: pd.DataFrame, series: str, value: str, duration: float, columns: int = 4) -> None:
    """Line chart of the columns of ``wide`` (indexed by timestamp) over the whole clip, legend below."""
    import altair as alt

    long = wide.reset_index().melt("timestamp", var_name=series, value_name=value)
    chart = alt.Chart(long).mark_line().encode(
        x=alt.X("timestamp:Q", title="time (s)", scale=alt.Scale(domain=[0, max(duration, 1e-3)])),
        y=alt.Y(f"{value}:Q", title=value),
        color=alt.Color(f"{series}:N", legend=alt.Legend(orient="bottom", columns=columns, title=None, labelLimit=0)),
        tooltip=["timestamp", series, alt.Tooltip(f"{value}:Q", format=".2f")],
    ).properties(height=280)
    st.altair_chart(chart, width="stretch")


def show_results(df: pd.DataFrame, name: str) -> None:
    problem = (df["success"] == 0) & ~df["error"].str.contains("no face", case=False)
    ok = df[df["success"] == 1]
    frames = df.loc[~problem, "frame"].nunique()
    for msg in df.loc[problem, "error"].unique():
        (st.warning if frames else st.error)(f"Problem reading **{name}**: {msg}", icon=":material/error:")
    if frames == 0:
        return
    if ok.empty:
        st.warning(f"No face found in any of the {frames} analysed frames of **{name}**.",
                   icon=":material/face_retouching_off:")
    else:
        st.success(f"Analysed {frames} frames of **{name}**: a face in {ok['frame'].nunique()} of them "
                   f"({ok['face'].nunique()} face track(s)).")
        main = ok[ok["face"] == 0].set_index("timestamp")
        duration = float(df["timestamp"].max())
        st.caption("Plots show face 0; the table holds every face.")
        intensity = table.au_intensity(main).rename(columns=au_label)  # "AU12 lip corner puller"
        top = intensity.mean().sort_values(ascending=False).index[:6].tolist()
        chosen = st.multiselect("AUs to plot", list(intensity.columns), default=top)
        c1, c2 = st.columns(2)
        with c1:
            st.markdown("**AU intensity (0–5) over time**")
            if chosen:
                _plot(intensity[chosen], "AU", "intensity", duration, columns=2)  # FACS names are long
        with c2:
            if table.has_emotion(main) and main["emotion"].notna().any():
                st.markdown("**CNN emotion probabilities over time**")
                _plot(table.emotion_probs(main), "emotion", "probability", duration)
            else:
                st.markdown("**Emotions (% of prototype AUs) over time**")
                _plot(table.rule_scores(main), "emotion", "percent", duration)
        if "emotion" in ok and ok["emotion"].notna().any():
            counts = ok["emotion"].value_counts()
            common = ", ".join(f"{e} ({n} frames)" for e, n in counts.items())
            st.markdown(f"**Most frequent CNN emotion:** {common}")
    shown = pd.concat([df[["frame", "timestamp", "face", "success", "error"]],
                       table.au_intensity(df).rename(columns=au_label),
                       df[["emotion"]] if table.has_emotion(df) else None], axis=1)
    st.dataframe(shown, height=260, hide_index=True)
    pq = io.BytesIO()
    df.to_parquet(pq, index=False)
    stem = Path(name).stem
    d1, d2 = st.columns(2)
    d1.download_button("Download CSV", df.to_csv(index=False).encode(), f"{stem}_aulib.csv", "text/csv",
                       on_click="ignore", icon=":material/download:")
    d2.download_button("Download Parquet", pq.getvalue(), f"{stem}_aulib.parquet", "application/octet-stream",
                       on_click="ignore", icon=":material/download:")
