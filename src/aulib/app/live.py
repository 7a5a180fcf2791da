"""Live page: webcam frames → Analyzer in real time (streamlit-webrtc), with live bars.

The panel shows exactly the frame the callback last drew: its number (also drawn on the video), the
main face's record and the label drawn for it are stored together under one lock, and the main face's
values are smoothed over a quarter second so neither the label nor the bars flicker.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import av
import numpy as np
import streamlit as st

from aulib.app.common import (
    analyzer_with_note,
    app_page,
    au_intensities,
    emotion_label,
    emotion_scores,
    get_live_streams,
    ice_servers,
    labels,
    light,
    patch_webrtc,
    rule_matches,
    server_load,
)
from aulib.draw import draw_corner_tag, draw_faces
from aulib.face.blink import BlinkRuns
from aulib.face.detect import iou
from aulib.face.record import Face
from aulib.video.follow import FaceFollower
from aulib.video.reader import rgb

# The live stream follows faces like a video file does: the detector (the costliest stage) runs every
# LIVE_DETECT_EVERY frames, landmarks follow each face in between; a degraded fit, a scene cut or a
# face leaving the frame triggers detection at once (aulib.video.follow). Frames that arrive while one
# is being analysed are dropped by streamlit-webrtc (async processing keeps only the newest): a stream
# never queues frames, so when the machine is saturated (several streams, or a video being analysed in
# the background at lower priority) each stream simply analyses fewer frames per second.
LIVE_DETECT_EVERY = 5
# Webcam faces are large: the live detector looks at the frame shrunk to this longest side (a 640×480
# frame at 320 px, ~4× less detector work; faces down to ~40 px in the camera frame are still found).
LIVE_DETECT_SIDE = 320


def live_detector(pipeline):
    """The pipeline's detector, on a downscaled frame when it is RetinaFace (boxes in full-frame pixels)."""
    from aulib.face.detect import scanning

    return scanning(pipeline.detector, LIVE_DETECT_SIDE)

NO_CAMERA = ("No camera, or access to it was denied? (The browser's own words after START: “NotFoundError: "
             "Requested device not found” — no camera; “NotAllowedError” — access denied.) Allow the camera in "
             "the browser (browsers offer it only to pages opened as `http://localhost` or over https), or use "
             "the Image and Video pages.")


class Steady:
    """Exponential smoothing (time constant :data:`TAU` seconds) of the main face's emotion probabilities
    and AU intensities across frames, so the label on the video and the panel do not flicker with
    per-frame noise. Reset when the main face jumps (box overlap below 0.3: another person)."""

    TAU = 0.4

    def __init__(self) -> None:
        self.box: np.ndarray | None = None
        self.t = 0.0
        self.probs: np.ndarray | None = None
        self.aus: np.ndarray | None = None

    def _mix(self, old: np.ndarray | None, new: np.ndarray | None, alpha: float) -> np.ndarray | None:
        if new is None:
            return None
        new = np.asarray(new, np.float64)
        if old is None or old.shape != new.shape or not np.isfinite(old).all():
            return new
        return old + alpha * (new - old)

    def update(self, face: Face, now: float) -> Face:
        """Replace ``face``'s emotion probabilities and AU intensities by their smoothed values (in place)."""
        box = np.asarray(face.box, np.float64)
        if self.box is None or iou(self.box, box) < 0.3:
            self.probs = self.aus = None
        alpha = 1.0 - float(np.exp(-max(now - self.t, 0.0) / self.TAU))
        self.probs = self._mix(self.probs, face.emotion_probs, alpha)
        self.aus = self._mix(self.aus, face.au_intensity, alpha)
        self.box, self.t = box, now
        if self.probs is not None:
            face.emotion_probs = self.probs.copy()
        if self.aus is not None:
            face.au_intensity = self.aus.copy()
        return face


class LiveState:
    """What the WebRTC callback thread shares with the page: the last drawn frame's number, its main
    face record and the exact label drawn on it, and frame times."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.times: deque[float] = deque(maxlen=90)
        self.latencies: deque[tuple[float, float]] = deque(maxlen=90)  # (arrival, seconds to the drawn frame)
        self.frames = 0
        self.frame = -1  # number of the frame the panel describes (drawn on that frame, top left)
        self.face: Face | None = None
        self.label = ""  # the text drawn on that frame for that face
        self.faces = 0
        self.error = ""
        self.steady = Steady()
        self.follower: FaceFollower | None = None  # this stream's tracker (created with the analyzer)
        self.blinks = BlinkRuns()  # AU45_c along each face's track, as a video's (aulib.face.blink)

    def fps(self, window: float = 3.0) -> float | None:
        """Frames analysed per second over the last few seconds (None when the stream stalls)."""
        with self.lock:
            now = time.monotonic()
            t = [x for x in self.times if now - x <= window]
        if len(t) < 2 or now - t[-1] > 1.5:
            return None
        return (len(t) - 1) / (t[-1] - t[0])

    def latency_ms(self, window: float = 3.0) -> float | None:
        """Median over the last few seconds of each frame's time in the server, from its arrival in
        the callback to the annotated frame handed back (None when no recent frame)."""
        with self.lock:
            now = time.monotonic()
            lat = [x for t, x in self.latencies if now - t <= window]
        return 1000.0 * float(np.median(lat)) if lat else None


def make_callback(analyzer, state: LiveState, streams=None):
    """The per-frame function of one stream. No lock around the Analyzer: it keeps no per-call state, so
    several users' streams (and the image page) use it at the same time; the follower is this stream's."""

    def callback(frame: av.VideoFrame) -> av.VideoFrame:
        img = rgb(frame)
        now = time.monotonic()
        with state.lock:
            number = state.frames
        main, label = None, ""
        try:
            if state.follower is None or state.follower.pipeline is not analyzer.pipeline:
                state.follower = FaceFollower(analyzer.pipeline, LIVE_DETECT_EVERY, live_detector(analyzer.pipeline))
            faces = list(analyzer.run(state.follower(img, number), gaze=False, flip=False))  # camera rate first
            state.blinks.update(faces)
            ok = [f for f in faces if f.success]
            if ok:
                main = state.steady.update(max(ok, key=lambda f: float(f.box[2] * f.box[3])), now)
            texts = [emotion_label(f) if f.success else "no fit" for f in faces]
            label = next((t for f, t in zip(faces, texts) if f is main), "")
            out = draw_faces(img, faces, texts)
            error = ""
        except Exception as e:  # never kill the stream: show the problem on the page instead
            faces, out, error = [], img.copy(), f"{type(e).__name__}: {e}"
        draw_corner_tag(out, f"frame {number}")
        with state.lock:  # one update: the panel never mixes two frames
            state.frames = number + 1
            state.times.append(now)
            state.latencies.append((now, time.monotonic() - now))
            state.frame, state.faces, state.error = number, len(faces), error
            state.face, state.label = (light([main])[0], label) if main is not None else (None, "")
        if streams is not None:
            streams.touch(id(state), now)
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
            video_frame_callback=make_callback(analyzer, state, get_live_streams()),
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
    from aulib.app.engine import clean_message
    from aulib.io import ImageReadError, read_image

    shot = st.camera_input("Snapshot", label_visibility="collapsed")
    if shot is None:
        return
    try:
        rgb = read_image(shot)  # the same checks as an upload (pixel cap from the header, corrupt data)
    except ImageReadError as e:
        st.error(f"Cannot read the snapshot: {clean_message(str(e), str(getattr(shot, 'name', '')))}")
        return
    faces = analyzer.get(rgb)
    ok = [f for f in faces if f.success]
    if not ok:
        st.warning("No face in the snapshot.", icon=":material/face_retouching_off:")
        return
    st.image(draw_faces(rgb, faces, labels(faces)), caption=" · ".join(f"face {f.id}: {emotion_label(f)}" for f in ok))


@st.fragment(run_every=0.3)  # the panel trails the drawn frames by ≤ 0.3 s
def live_panel(ctx, state: LiveState) -> None:
    with st.container(key="live_stats"):
        playing = bool(ctx.state.playing)
        fps = state.fps() if playing else None
        with state.lock:
            face, label, number, n, faces, error = (state.face, state.label, state.frame, state.frames, state.faces,
                                                    state.error)
        if not playing:
            if n:  # it streamed in this session: the user pressed STOP (the camera hint read as if it were denied)
                st.markdown("**Stopped.** Press START on the left to go on.")
            else:
                st.markdown("**Not streaming.** Press START on the left.")
                st.info(NO_CAMERA, icon=":material/no_photography:")  # only while there is no stream
            return
        if fps is None:
            st.markdown("**Waiting for frames…**")
            return
        latency = state.latency_ms()
        st.markdown(f"### {fps:.1f} fps" + (f" · {latency:.0f} ms latency" if latency is not None else ""))
        st.caption("Latency: a frame's time in the server, from its arrival to the annotated frame sent back "
                   "(the network and the browser add theirs). Frames that arrive meanwhile are dropped, not queued.")
        st.caption(f"{n} frames analysed · {faces} face(s) in the last frame")
        st.caption(server_load() + ". Live streams analyse their newest frame only, before any video.")
        if error:
            st.error(error)
        if face is None:
            st.warning("No face in view.")
            return
        st.markdown(f"**Emotion:** {label}")
        st.caption(f"Frame {number} (its number is drawn on the video, top left); values smoothed over "
                   f"≈{Steady.TAU:g} s. AU rules: {rule_matches(face)}")
        kind, scores = emotion_scores(face)
        e_col, a_col = st.columns(2)
        with e_col:
            st.caption(f"Emotions ({kind})")
            _bars(scores, 1.0, ".2f")
        with a_col:
            st.caption("AU intensity (0–5), FACS names")
            _bars(au_intensities(face), 5.0, ".2f")
