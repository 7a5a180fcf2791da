"""Video page: upload a clip → progress bar → AU and emotion time series, CSV and Parquet download."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import IO

import av
import pandas as pd
import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from aulib import table
from aulib.app.common import (
    MAX_VIDEO_MB,
    analyzer_with_note,
    get_jobs,
    md,
    refused,
    server_load,
    upload_refusals,
)
from aulib.app.engine import JobHandle, QueueFull, clean_message
from aulib.au.facs import au_label
from aulib.io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from aulib.video.reader import main_video_stream

# GIFs up to this size are decoded by Pillow before they are queued (FFmpeg reads a cut one silently); one that
# ends with its trailer byte (not cut) only up to GIF_CHECK_PIXELS of frames: the check's cost grows with
# frames × pixels, not bytes (1.2 MB of 1500 frames of 2000×2000 px took 10 s, with no spinner and the
# previous clip's result still on screen).
GIF_CHECK_BYTES = 64 << 20
GIF_CHECK_PIXELS = 100_000_000
# What the command line reads as video, plus animated GIFs (an image to the command line).
VIDEO_TYPES = sorted(e.lstrip(".") for e in VIDEO_EXTENSIONS) + ["gif"]


def probe(source: str | Path | IO[bytes], name: str = "") -> None:
    """Check that FFmpeg opens the container and finds a video stream in it (the one the reader will
    analyse, :func:`aulib.video.reader.main_video_stream`); raises ValueError (a reason without the file's
    name, path or FFmpeg error number) otherwise. Timing is the reader's business (it also handles clips
    that declare no rate)."""
    name = name or str(source)
    try:
        with av.open(source) as c:
            s = main_video_stream(c)
            if isinstance(s, str):
                raise ValueError(f"the file has {s}")
    except av.FFmpegError as e:
        reason = e.strerror or clean_message(str(e), name, (str(source),))
        raise ValueError(f"not a readable video ({reason})") from None
    finally:
        if hasattr(source, "seek"):
            source.seek(0)


def check_video(name: str, data: IO[bytes], size: int) -> str:
    """Why an upload cannot be queued (size, type, an unreadable container), or ``""``. Checked in the
    server within a second, so a bad file is refused at once instead of after a place in the queue."""
    size_mb = size / (1 << 20)
    if size_mb > MAX_VIDEO_MB:
        return f"the file is {size_mb:.0f} MB; videos may be at most {MAX_VIDEO_MB} MB"
    if size == 0:
        return "empty file (0 bytes)"
    suffix = Path(name).suffix.lower()
    if suffix == ".webp":  # FFmpeg decodes no animated WebP
        return "a WebP animation cannot be read as a video here: convert it to MP4 or GIF (stills: Image page)"
    if suffix in IMAGE_EXTENSIONS and suffix != ".gif":
        return "this is an image file: use the Image page for photos"
    if suffix.lstrip(".") not in VIDEO_TYPES:
        return (f"{suffix or 'a file without an extension'} is not a video type this page takes "
                f"({', '.join(VIDEO_TYPES)})")
    try:
        probe(data, name)
    except ValueError as e:
        return str(e)
    if suffix == ".gif" and size <= GIF_CHECK_BYTES and _is_gif(data):  # larger: left to FFmpeg (too long)
        return gif_damage(data)  # (a video named .gif, which FFmpeg has just opened, is read as what it is)
    return ""


def _is_gif(data: IO[bytes]) -> bool:
    """True when the upload's first bytes are a GIF's."""
    try:
        return data.read(6) in (b"GIF87a", b"GIF89a")
    finally:
        data.seek(0)


def gif_damage(data: IO[bytes]) -> str:
    """Why a GIF is damaged, or ``""``. FFmpeg's GIF decoder returns a cut GIF's partial frame without an
    error (it was analysed as a clean one-frame video), so Pillow reads every frame first, as the Image page
    and the command line would."""
    from PIL import Image, ImageSequence

    try:
        data.seek(-1, 2)
        ends = data.read(1) == b"\x3b"  # a complete GIF ends with its trailer byte; a cut one does not
        data.seek(0)
        with Image.open(data) as img:
            pixels = 0
            for frame in ImageSequence.Iterator(img):
                frame.load()
                pixels += frame.width * frame.height
                if ends and pixels > GIF_CHECK_PIXELS:  # the rest is left to FFmpeg: the page must not hang
                    break
    except Image.DecompressionBombError:
        return "too many pixels in this GIF's frames"
    except Exception as e:  # Pillow raises OSError, SyntaxError, EOFError … for damaged data
        # Pillow names the file object it was given (Streamlit's UploadedFile with its upload URL): left out
        said = re.sub(r"\s*<[^>]*>|\s*UploadedFile\(.*\)", "", str(e)).strip() or type(e).__name__
        return f"truncated or corrupt GIF ({clean_message(said, '')})"
    finally:
        data.seek(0)
    return ""


def page() -> None:
    st.title("Video")
    analyzer_with_note()  # the fallback note when the CNN is missing (the workers load the same models)
    up = st.file_uploader(f"Upload a video ({', '.join(VIDEO_TYPES)}; at most {MAX_VIDEO_MB} MB)",
                          key="video_upload", max_upload_size=MAX_VIDEO_MB)
    upload_refusals(f"{MAX_VIDEO_MB} MB per video")
    state = st.session_state
    # Streamlit drops a widget's value while its page is not shown: after a visit to another page the box
    # showed 1 beside a result made with 4. The value is kept outside the widget and given back.
    if "video_every" not in state:
        state.video_every = state.get("video_every_kept", 1)
    every = st.number_input("Analyse every n-th frame", min_value=1, max_value=300, step=1, key="video_every",
                            help="1 = every frame; larger values are faster on long clips. Applies to the next "
                                 "upload (or the one in the box).")
    state.video_every_kept = int(every)
    _adopt(up)
    if up is None and state.get("video_error") and not state.get("video_job") and not state.get("video_result"):
        for k in ("video_name", "video_error", "video_key", "video_retryable"):  # a refused file was removed:
            state.pop(k, None)  # nothing was analysed, so there is no "last video" (it named a text file)
    if up is not None:
        key = (up.file_id, int(every))
        if state.get("video_key") != key:  # a new upload: the previous job and result are dropped
            _submit(up, int(every), key)
        name = up.name
    elif state.get("video_name") is None:
        st.info("Upload a video (mp4, mov, avi, mkv, webm…) to get AU and emotion time series.")
        return
    else:
        # The uploader is empty after the file was removed, and also after a visit to another page
        # (Streamlit forgets a widget's value while its page is not shown): the last upload's job goes
        # on and its result stays; a new upload replaces them, Cancel stops the job.
        name = state.video_name
    with st.container(key="upload_result"):  # hidden by the page script while a refused upload is listed
        if up is None:
            st.caption(f"Last video: **{md(name)}**. Upload another to replace it.")
        if state.get("video_error"):
            refused(name, state.video_error)
        elif state.get("video_stopped"):  # cancelled, or the analysis failed: not a refusal of the file
            st.warning(state.video_stopped, icon=":material/stop_circle:")
        elif state.get("video_job") is not None:
            job_status()
        elif state.get("video_result") is not None:
            show_results(state.video_result, name)
        if up is not None and (state.get("video_retryable") or state.get("video_stopped")) and \
                st.button("Try again", key="video_retry", icon=":material/refresh:"):
            state.video_key = None  # the next run submits the same upload again
            st.rerun()


def _adopt(up: UploadedFile | None) -> None:
    """A page reloaded (or its address opened again) while its video was analysed: the job named in the address
    (``?video=…``, set when it was submitted) is this session's again — its progress, Cancel and result shown.
    Before, the reloaded page showed nothing of it and the job ran on, unseen, holding a worker for 2 minutes."""
    state = st.session_state
    token = st.query_params.get("video")
    if not token or up is not None or state.get("video_token") == token:
        return
    state.video_token = token  # asked once: a job no longer found is not looked for at every rerun
    jobs = get_jobs()
    job = jobs.find(token)
    if job is None or state.get("video_job") is not None or state.get("video_result") is not None:
        return
    state.video_job = JobHandle(jobs, job, None)
    state.video_name = job.name


def _submit(up: UploadedFile, every: int, key: tuple) -> None:
    """Check an upload and queue its analysis, replacing this session's previous job and result."""
    state = st.session_state
    old: JobHandle | None = state.pop("video_job", None)
    if old is not None:
        old.cancel()
    for k in ("video_result", "video_error", "video_stopped", "video_retryable"):
        state.pop(k, None)
    state.video_key, state.video_name = key, up.name
    with st.spinner(f"Checking {up.name}…"):  # a long GIF is decoded here first (gif_damage)
        reason = check_video(up.name, up, up.size)
    if not reason:
        jobs = get_jobs()
        try:
            state.video_job = JobHandle(jobs, jobs.submit(up, up.name, every), key)
            state.video_token = st.query_params["video"] = state.video_job.job.token  # a reload finds it again
        except QueueFull as e:
            reason = f"the server is busy ({e}); try again in a few minutes"
            state.video_retryable = True  # the one refusal that can change by itself
    state.video_error = reason


@st.fragment(run_every=0.5)
def job_status() -> None:
    """Queue position or progress of this session's video job; a full rerun shows the result when it ends."""
    handle: JobHandle | None = st.session_state.get("video_job")
    if handle is None:
        return
    job, jobs = handle.job, get_jobs()
    if job.finished_state:
        st.session_state.pop("video_job", None)
        if job.state == "done":
            st.session_state.video_result = job.result
        elif job.state == "failed":  # the file was accepted: its analysis stopped (a worker died, a decode error)
            st.session_state.video_stopped = f"The analysis of **{md(job.name)}** failed: {job.error}"
        st.rerun()
    if job.state == "queued":
        running, _ = jobs.load()
        st.info(f"**{md(job.name)}** is waiting for a free video worker: position {jobs.position(job)} in the "
                f"queue ({running} video(s) being analysed). Live streams are always served first.",
                icon=":material/hourglass_top:")
        st.progress(0.0, text="Queued")
    else:
        of = f" of {job.total}" if job.total else ""
        frac = min(job.done / job.total, 1.0) if job.total else 0.0
        st.progress(frac, text=f"Analysing {md(job.name)}: frame {job.done}{of}")
    st.caption(server_load())
    if st.button("Cancel", key="video_cancel", icon=":material/cancel:"):
        handle.cancel()
        st.session_state.pop("video_job", None)
        st.session_state.video_stopped = f"The analysis of **{md(job.name)}** was cancelled."
        st.rerun()


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


def emotion_counts(ok: pd.DataFrame) -> str:
    """The CNN labels of the face rows ``ok``, most frequent first, each with how many frames (one face) or face-frames
    (several: a frame counts once per face in it) carry it. Every face's rows were counted and called "frames": two
    people smiling through 100 frames read "happiness (200 frames)"."""
    counts = ok["emotion"].value_counts()
    if ok["face"].nunique() <= 1:
        return ", ".join(f"{e} ({n} frame{'' if n == 1 else 's'})" for e, n in counts.items())
    return (", ".join(f"{e} ({n} face-frame{'' if n == 1 else 's'})" for e, n in counts.items())
            + f" — {ok['face'].nunique()} faces: each frame counts once per face in it")


def show_results(df: pd.DataFrame, name: str) -> None:
    problem = (df["success"] == 0) & ~df["error"].str.contains("no face", case=False)
    ok = df[df["success"] == 1]
    frames = df.loc[~problem, "frame"].nunique()
    if frames == 0:  # nothing could be decoded: the file is refused as unreadable
        refused(name, "; ".join(df.loc[problem, "error"].unique()) or "no frame could be read")
        return
    for msg in df.loc[problem, "error"].unique():
        st.warning(f"Problem reading **{md(name)}**: {msg}", icon=":material/error:")
    if df.attrs.get("note"):  # e.g. which of the file's video streams was analysed, and how to extract another
        st.warning(f"**{md(name)}**: {md(df.attrs['note'])}", icon=":material/warning:")
    if ok.empty:
        st.warning(f"No face found in {'the analysed frame' if frames == 1 else f'any of the {frames} analysed frames'}"
                   f" of **{md(name)}**.",
                   icon=":material/face_retouching_off:")
    else:
        plural = "s" if frames != 1 else ""
        st.success(f"Analysed {frames} frame{plural} of **{md(name)}**: a face in {ok['frame'].nunique()} of them "
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
            st.markdown(f"**Most frequent CNN emotion:** {emotion_counts(ok)}")
    shown = pd.concat([df[["frame", "timestamp", "face", "success", "error"]],
                       table.au_intensity(df).rename(columns=au_label),
                       df[["emotion"]] if table.has_emotion(df) else None], axis=1)
    st.dataframe(shown, height=260, hide_index=True)
    pq = io.BytesIO()
    df.to_parquet(pq, index=False)
    stem = Path(name).stem
    d1, d2 = st.columns(2)
    d1.download_button("Download CSV", table.frame_csv(df), f"{stem}_aulib.csv", "text/csv",
                       on_click="ignore", icon=":material/download:")
    d2.download_button("Download Parquet", pq.getvalue(), f"{stem}_aulib.parquet", "application/octet-stream",
                       on_click="ignore", icon=":material/download:")
