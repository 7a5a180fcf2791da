"""Live page: webcam frames → Analyzer in real time (streamlit-webrtc), with live bars."""

from __future__ import annotations

import threading
import time
from collections import deque

import av
import streamlit as st

from aulib.app.common import (
    ANALYZE_LOCK,
    analyzer_with_note,
    app_page,
    au_intensities,
    emotion_label,
    emotion_scores,
    ice_servers,
    labels,
    light,
    patch_webrtc,
)
from aulib.draw import draw_faces
from aulib.face.record import Face

NO_CAMERA = ("No camera, or access to it was denied? Allow the camera in the browser (browsers offer it "
             "only to pages opened as `http://localhost` or over https), or use the Image and Video pages.")


class LiveState:
    """What the WebRTC callback thread shares with the page: latest face record and frame times."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.times: deque[float] = deque(maxlen=90)
        self.frames = 0
        self.face: Face | None = None
        self.faces = 0
        self.error = ""

    def fps(self, window: float = 3.0) -> float | None:
        """Frames analysed per second over the last few seconds (None when the stream stalls)."""
        with self.lock:
            now = time.monotonic()
            t = [x for x in self.times if now - x <= window]
        if len(t) < 2 or now - t[-1] > 1.5:
            return None
        return (len(t) - 1) / (t[-1] - t[0])


def make_callback(analyzer, state: LiveState):
    def callback(frame: av.VideoFrame) -> av.VideoFrame:
        img = frame.to_ndarray(format="rgb24")
        try:
            with ANALYZE_LOCK:
                faces = analyzer.get(img)
            ok = [f for f in faces if f.success]
            out = draw_faces(img, faces, [emotion_label(f) if f.success else "no fit" for f in faces])
            error = ""
        except Exception as e:  # never kill the stream: show the problem on the page instead
            ok, faces, out, error = [], [], img, f"{type(e).__name__}: {e}"
        with state.lock:
            state.frames += 1
            state.times.append(time.monotonic())
            state.faces = len(faces)
            state.face = light([max(ok, key=lambda f: float(f.box[2] * f.box[3]))])[0] if ok else None
            state.error = error
        return av.VideoFrame.from_ndarray(out, format="rgb24")

    return callback


def _bars(values: dict[str, float], scale: float, fmt: str) -> None:
    for name, v in values.items():
        st.progress(min(max(v / scale, 0.0), 1.0), text=f"{name} {v:{fmt}}")


def page() -> None:
    from streamlit_webrtc import WebRtcMode, webrtc_streamer

    patch_webrtc()
    st.title("Live webcam")
    analyzer = analyzer_with_note()
    if "live_state" not in st.session_state:
        st.session_state.live_state = LiveState()
    state: LiveState = st.session_state.live_state

    left, right = st.columns([3, 2], gap="medium")
    with left:
        ctx = webrtc_streamer(
            key="aulib-live",
            mode=WebRtcMode.SENDRECV,
            rtc_configuration={"iceServers": ice_servers()},
            media_stream_constraints={"video": {"width": {"ideal": 640}, "height": {"ideal": 480}},
                                      "audio": False},
            video_frame_callback=make_callback(analyzer, state),
            async_processing=True,
            video_html_attrs={"autoPlay": True, "controls": False, "muted": True, "style": {"width": "100%"}},
            translations={
                "media_api_not_available": "Camera API not available here. " + NO_CAMERA,
                "device_not_available": "No camera found. " + NO_CAMERA,
                "device_access_denied": "Camera access denied. " + NO_CAMERA,
            },
        )
        st.caption("Press START to stream your webcam through the models; frames are drawn with the face "
                   "box, 68 landmarks and the emotion label. Nothing leaves this server.")
        st.info(NO_CAMERA, icon=":material/no_photography:")
        c1, c2 = st.columns(2)
        c1.page_link(app_page("image"), label="Analyse an image instead", icon=":material/image:")
        c2.page_link(app_page("video"), label="Analyse a video instead", icon=":material/movie:")
        if st.toggle("Live stream not connecting? Take a snapshot instead", key="live_snapshot",
                     help="Uses the browser's camera widget and no WebRTC: works behind any network."):
            snapshot(analyzer)
    with right:
        live_panel(ctx, state)


def snapshot(analyzer) -> None:
    """Fallback without WebRTC: one photo from ``st.camera_input``, analysed like an upload."""
    import io

    import numpy as np
    from PIL import Image

    shot = st.camera_input("Snapshot", label_visibility="collapsed")
    if shot is None:
        return
    rgb = np.asarray(Image.open(io.BytesIO(shot.getvalue())).convert("RGB"))
    with ANALYZE_LOCK:
        faces = analyzer.get(rgb)
    ok = [f for f in faces if f.success]
    if not ok:
        st.warning("No face in the snapshot.", icon=":material/face_retouching_off:")
        return
    st.image(draw_faces(rgb, faces, labels(faces)), caption=" · ".join(f"face {f.id}: {emotion_label(f)}" for f in ok))


@st.fragment(run_every=0.5)
def live_panel(ctx, state: LiveState) -> None:
    with st.container(key="live_stats"):
        playing = bool(ctx.state.playing)
        fps = state.fps() if playing else None
        with state.lock:
            face, n, faces, error = state.face, state.frames, state.faces, state.error
        if not playing:
            st.markdown("**Not streaming.** Press START on the left.")
            return
        if fps is None:
            st.markdown("**Waiting for frames…**")
            return
        st.markdown(f"### {fps:.1f} fps")
        st.caption(f"{n} frames analysed · {faces} face(s) in the last frame")
        if error:
            st.error(error)
        if face is None:
            st.warning("No face in view.")
            return
        st.markdown(f"**Emotion:** {emotion_label(face)}")
        kind, scores = emotion_scores(face)
        e_col, a_col = st.columns(2)
        with e_col:
            st.caption(f"Emotions ({kind})")
            _bars(scores, 1.0, ".2f")
        with a_col:
            st.caption("AU intensity (0–5)")
            _bars(au_intensities(face), 5.0, ".2f")
