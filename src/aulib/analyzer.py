"""``Analyzer``: the one public object that composes every stage.

image → :class:`~aulib.face.FacePipeline` (faces, landmarks, aligned crops, HOG) → model stages,
each with one batched interface ``run(faces)`` that fills fields of the :class:`~aulib.face.Face`
records (AU features + CNN embedding, AU occurrence SVMs, AU intensity SVRs, emotion rules, CNN
emotion / multitask heads) → :mod:`aulib.table` → pandas DataFrame, one row per face per frame.
Models are loaded once per ``Analyzer``; all the faces of a call (one image, or a batch of video
frames) are scored in one matrix product / one ONNX run.

Public methods, one return type each:

========================== ===============================================================
``get(image)``             ``list[Face]``: every face of one image, predictions included
``run(faces)``             the same faces, model stages run on a batch (from any frames)
``rescore(faces)``         the same faces, AU stages re-run from ``Face.features`` (calibration)
``analyze_frame(image)``   ``DataFrame`` of one image array
``analyze(paths)``         ``DataFrame`` of files, folders and videos
``iter_tables(path)``      ``Iterator[DataFrame]``: one file's table in chunks (videos stream)
========================== ===============================================================
"""

from __future__ import annotations

import numbers
import os
import reprlib
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

from aulib import table
from aulib.au.embedding import EmotionEmbeddingCNN, embedding_cnn_for
from aulib.au.emotion_rules import EmotionRules
from aulib.au.features import AUFeatures, feature_version
from aulib.au.fusion import AUFusion
from aulib.au.linear import LinearBank
from aulib.au.models import AUIntensity, AUOccurrence
from aulib.cnn.inference import AUHeads, EmotionCNN, MultitaskCNN, SecondOpinion
from aulib.face import Face, FacePipeline
from aulib.face.blink import Blink
from aulib.face.gaze import IRIS_FILE, Gaze
from aulib.face.pose import HeadPose, Intrinsics
from aulib.face.quality import FitConfidence
from aulib.io import ImageReadError, expand_inputs, frame_count, is_video, read_image, to_rgb
from aulib.models import model_path
from aulib.storage import is_url

if TYPE_CHECKING:
    import pandas as pd

    from aulib.video.keyframes import Keyframes

EmotionModel = Literal["cnn", "multitask", "none"]


class ModelStage(Protocol):
    """A model stage: fills fields of the successful faces of a batch, in one batched call."""

    def run(self, faces: Sequence[Face]) -> Sequence[Face]: ...


class Analyzer:
    """Faces, AUs and emotions of images, folders and videos.

    Parameters
    ----------
    detector: ``"retinaface"`` (default) or ``"dlib"``.
    emotion_model: ``"cnn"`` (8-class FER+ EfficientNet, fills ``emotion`` and ``p_*``),
        ``"multitask"`` (same columns from the emotion + AU heads network, plus ``mt_AUxx_c``) or ``"none"``
        (no emotion columns; the emotion CNN still runs, its embedding is part of the AU features).
    cropped: treat every image as one already-cropped face (dataset crops such as CK+/FER 48×48).
    intrinsics: ``(fx, fy, cx, cy)`` of the camera in pixels, for head pose in mm/radians; ``None`` uses
        OpenFace's defaults (``fx = fy = 500 · width / 640``, image centre).
    smooth: videos only: steady each face's AU intensity and head-pose traces along time
        (``True``/``"offline"`` zero-phase Gaussian, ``"causal"`` One Euro for live use, ``False`` raw
        per-frame values; see :mod:`aulib.video.smooth`). Images are never smoothed. A video call's
        ``smooth=`` option overrides it.
    gaze: run the gaze stage (``gaze_*`` columns); ``False`` leaves them empty and saves its iris
        network, ≈ 3.5 ms per face, the largest single stage.
    tta: images and crops (``emotion_model="cnn"``): the emotion probabilities are the mean over the
        face and its mirror image of two networks (``emotion_cnn.onnx`` and the independently trained
        ``emotion_cnn_ema.onnx``, :class:`~aulib.cnn.inference.SecondOpinion`): FER2013Valid tie-aware
        accuracy 0.862 → 0.870, for ≈ 7 ms more per face. With ``multitask``: its head over the face and
        its mirror image. And (``cnn`` or ``none``) the multitask network's AU heads vote with the
        SVMs (:class:`~aulib.cnn.inference.AUHeads`, :class:`~aulib.au.fusion.AUFusion`: CK+
        subject-grouped CV, 17 AUs, F1 0.781 → 0.801; ≈ 2.5 ms more per face). Whatever ``tta`` says,
        video frames use one network, never flipped (their traces are averaged over time and they
        must keep up with the frame rate), with the AU heads voting as on images; the live page uses
        one network and the SVMs' AUs. The AU features are the face's own either way.

    Besides the AU models, four stages fill OpenFace-style channels:
    :class:`~aulib.face.quality.FitConfidence` (``confidence``), :class:`~aulib.face.pose.HeadPose`
    (``pose_*``), :class:`~aulib.face.gaze.Gaze` (``gaze_*``: iris network + eyeball model) and
    :class:`~aulib.face.blink.Blink` (``AU45_c``/``AU45_r``).
    """

    def __init__(self, detector: str = "retinaface", emotion_model: EmotionModel = "cnn",
                 cropped: bool = False, intrinsics: Intrinsics | None = None,
                 smooth: bool | str = True, gaze: bool = True, tta: bool = True) -> None:
        if emotion_model not in ("cnn", "multitask", "none"):
            raise ValueError(f"emotion_model must be 'cnn', 'multitask' or 'none', not {emotion_model!r}")
        for name, value in (("cropped", cropped), ("gaze", gaze), ("tta", tta)):
            _check_flag(name, value)  # gaze="no" was read as True
        # the one import that registers an exit hook (pandas' readers import it), made where the analyzer is built:
        # a user's thread that began analysing just as the main thread returned — on a busy machine still inside
        # ``import pandas`` — lost its whole table to "can't register atexit after shutdown" (_import_pandas)
        import concurrent.futures.thread  # noqa: F401
        # with the attributes below, what rebuilds this analyzer in another process (pickle: multiprocessing,
        # Dask); its onnxruntime sessions cannot be pickled and are cheap to load again
        self._settings = dict(detector=detector, emotion_model=emotion_model, intrinsics=intrinsics)
        self.pipeline = FacePipeline(detector=detector)
        au_version = LinearBank.peek_version(model_path(AUOccurrence.file))
        embedder = EmotionEmbeddingCNN(name=embedding_cnn_for(au_version))
        version = feature_version(embedder.sha256)
        self.occurrence = AUOccurrence.shipped(features=version)
        self.intensity = AUIntensity.shipped(features=version)
        if self.occurrence.aus != self.intensity.aus:
            raise ValueError("occurrence and intensity models cover different AU sets")
        self.aus: list[int] = self.occurrence.aus
        self.rules = EmotionRules(self.aus)
        self.emotion_model = emotion_model
        # One CNN run gives the AU embedding and, when it is the emotion model wanted, the emotion too.
        own_emotion = emotion_model == "cnn" and embedder.name == EmotionCNN.name
        self.features = AUFeatures(embedder, emotion=own_emotion)
        self.au_stages: list[ModelStage] = [self.occurrence, self.intensity, self.rules]
        self.cnn: EmotionCNN | MultitaskCNN | None = None
        if emotion_model == "cnn" and not own_emotion:
            self.cnn = EmotionCNN()  # AU models pinned to an older CNN: emotion from the current one
        elif emotion_model == "multitask":
            self.cnn = MultitaskCNN()
        self.mt_aus: list[int] = list(self.cnn.aus) if isinstance(self.cnn, MultitaskCNN) else []
        check_smoothing(smooth)
        self.smooth = bool(smooth) if isinstance(smooth, np.bool_) else smooth
        self.pose = HeadPose(intrinsics)
        self.gaze = Gaze(self.pose)
        self.with_gaze = bool(gaze)
        self.geometry_stages: list[ModelStage] = [FitConfidence(), self.pose, self.gaze]
        # With the multitask network, its AU heads and the SVMs vote together (aulib.au.fusion).
        self.fusion = (AUFusion(self.occurrence, self.cnn.aus, self.cnn.thresholds, self.rules)
                       if isinstance(self.cnn, MultitaskCNN) and self.occurrence.calibrated else None)
        self.stages: list[ModelStage] = [*self.geometry_stages, self.features, *self.au_stages,
                                         *([self.cnn] if self.cnn else []), *([self.fusion] if self.fusion else [])]
        self.tta = bool(tta)
        self._second: SecondOpinion | None = None
        if own_emotion:  # the image ensemble's second network, loaded when the first image comes
            self._second = SecondOpinion()
            self.stages.insert(self.stages.index(self.features) + 1, self._second)
        # Images (flip=True) without the multitask model: its AU heads vote with the SVMs all the same
        # (CK+ subject-grouped CV, 17 AUs: F1 0.781 → 0.801); loaded when the first image comes.
        self._au_heads: AUHeads | None = None
        self._image_fusion: AUFusion | None = None
        if self.fusion is None and self.occurrence.calibrated:
            self._au_heads = AUHeads()
            self._image_fusion = AUFusion(self.occurrence, self._au_heads.aus, self._au_heads.thresholds, self.rules)
            self.stages += [self._au_heads, self._image_fusion]
        # Blink last: AU06/AU07 (the final decision, after any fusion) narrow the eyes without closing them
        self._blink = Blink()
        self.stages.append(self._blink)
        # the stages that take the image-mode option (flip): the emotion networks and the AU heads
        self._flip_stages = tuple(s for s in (self.features if own_emotion else None, self.cnn, self._second)
                                  if s is not None)
        self.cropped = cropped
        self.columns = table.columns(self.aus, self.mt_aus, emotion=emotion_model != "none")
        # The networks loaded when first needed (the iris network; the images' second emotion network
        # and AU heads) are checked against the manifest now (a stat once verified): a missing or damaged
        # file is one error when the analyzer is made, not an error row for every input of a batch.
        lazy = ([IRIS_FILE] if self.with_gaze else []) + [s.name for s in (self._second, self._au_heads)
                                                          if s is not None and self.tta]
        for name in lazy:
            model_path(name)

    @property
    def occurrence_thresholds(self) -> np.ndarray | None:
        """(K,) the calibrated probability above which each AU is present in a video frame (None if not
        calibrated): the multitask heads vote with the SVMs on video frames, so the AUs they cover have the
        fused threshold (the live page, ``run(fuse=False)``, decides on the SVMs' :attr:`svm_thresholds`)."""
        if self.fusion is not None:
            return self.fusion.thresholds
        if self._image_fusion is not None:
            return self._image_fusion.thresholds
        return self.svm_thresholds

    @property
    def svm_thresholds(self) -> np.ndarray | None:
        """(K,) the SVMs' own p-thresholds (None if not calibrated)."""
        return self.occurrence.probability_threshold() if self.occurrence.calibrated else None

    @property
    def image_occurrence_thresholds(self) -> np.ndarray | None:
        """(K,) the thresholds images use: with ``tta`` the multitask heads vote on their AUs there (as on
        video frames), so those AUs have the fused threshold; without it the SVMs' own."""
        if self.fusion is not None or self.tta:
            return self.occurrence_thresholds
        return self.svm_thresholds

    @property
    def au_feature_mean(self) -> np.ndarray:
        """(D,) population mean of the AU features the models were trained around (calibration)."""
        return self.occurrence.mean_

    # ------------------------------------------------------------------ faces
    def get(self, image: np.ndarray | str | os.PathLike, order: Literal["rgb", "bgr"] = "rgb",
            cropped: bool | None = None) -> list[Face]:
        """Every face of one image array, left to right, with all predictions filled in.

        ``order="bgr"`` for OpenCV frames; ``cropped`` (default: the analyzer's setting) treats the
        whole image as one face. An image file's path is read with :func:`~aulib.io.read_image`
        (``order`` does not apply). Raises :class:`~aulib.io.ImageReadError` for an array that is
        not an image, or a file that cannot be read as one (naming it).
        """
        if cropped is not None:
            _check_flag("cropped", cropped)  # cropped="no" was read as True
        image = _as_path(image)
        if isinstance(image, (list, tuple)) and image and all(isinstance(x, (str, bytes, os.PathLike)) for x in image):
            # it read as "array of shape (1,): expected (H, W) …"
            raise TypeError(f"get takes one image (a path or an array), not a {type(image).__name__} of "
                            f"{len(image)} path(s): use analyze({reprlib.repr(image)}) for several")
        rgb = read_image(image) if isinstance(image, (str, os.PathLike)) else to_rgb(image, order)
        if self.tta:  # the image-mode networks load while this image's faces are found
            for extra in (self._second, self._au_heads):
                if extra is not None:
                    extra.prefetch()
        cropped = self.cropped if cropped is None else cropped
        faces = [self.pipeline.cropped(rgb)] if cropped else self.pipeline(rgb)
        return list(self.run(faces, still=True))

    def __reduce__(self) -> tuple:
        """Pickled as its settings and rebuilt where it is unpickled (``Pool().map(analyzer.analyze, files)``
        failed with "cannot pickle 'onnxruntime…InferenceSession' object")."""
        settings = dict(self._settings, cropped=self.cropped, smooth=self.smooth, gaze=self.with_gaze, tta=self.tta)
        return _rebuild, (type(self), settings)

    def run(self, faces: Sequence[Face], gaze: bool | None = None, flip: bool | None = None,
            keyframes: Keyframes | None = None, still: bool = False, fuse: bool | None = None) -> Sequence[Face]:
        """Run every model stage on a batch of described faces (from one or many frames).

        ``gaze=False`` skips the gaze stage (default: the analyzer's ``gaze`` setting); the live page,
        which must keep up with a camera, leaves it out. ``flip``: image mode — the emotion averaged
        over each face and its mirror image and two networks, and the AUs fused with the multitask
        network's heads (default: the analyzer's ``tta``; video and live pass ``False``). ``keyframes``
        (smoothed video, :mod:`aulib.video.keyframes`): the faces whose embedding CNN and iris network
        outputs come from their neighbours in the batch. ``still``: the faces are of still images, not video
        frames (:meth:`get` passes it): eyes narrowed by AU06/AU07 read closed only when nearly shut
        (:data:`aulib.face.blink.EAR_CLOSED_NARROWED`). ``fuse``: the multitask network's AU heads vote with
        the SVMs (:class:`aulib.au.fusion.AUFusion`; default: as ``flip``): images and video frames do (a video
        passes ``fuse=True``: on the Pexels clip AU12 was present on 76 % of the frames the emotion read as
        happiness, with the heads 100 %), the live page, which must keep up with a camera, does not."""
        gaze = self.with_gaze if gaze is None else _check_flag("gaze", gaze)
        flip = self.tta if flip is None else _check_flag("flip", flip)
        fuse = flip if fuse is None else _check_flag("fuse", fuse)
        faces = _face_list(faces)
        for stage in self.stages:
            if stage is self.gaze:
                if gaze:
                    self.gaze.run(faces, keyframes)
                continue
            if stage is self.features:
                self.features.run(faces, flip=flip, keyframes=keyframes)  # it flips only as the emotion model
                continue
            if stage is self._blink:
                self._blink.run(faces, still=_check_flag("still", still))
                continue
            if stage is self._au_heads:
                if fuse:
                    self._au_heads.run(faces, flip=True, keyframes=keyframes)
                continue
            if stage is self._image_fusion:
                if fuse:
                    stage.run(faces)
                continue
            if stage is self.cnn:  # the emotion network reads the frames the embedding CNN reads
                self.cnn.run(faces, flip=flip, keyframes=keyframes)
            elif any(stage is e for e in self._flip_stages):
                stage.run(faces, flip=flip)  # type: ignore[call-arg]
            else:
                stage.run(faces)
        return faces

    def rescore(self, faces: Sequence[Face]) -> Sequence[Face]:
        """Re-run the AU stages from each face's ``features`` (after per-person calibration)."""
        faces = _face_list(faces)
        for stage in [*self.au_stages, *([self.fusion] if self.fusion else []),
                      *([self._image_fusion] if self._image_fusion is not None else [])]:
            stage.run(faces)  # the image fusion only where the heads ran (a face without their output: skipped)
        return faces

    # ------------------------------------------------------------------ tables
    def analyze_frame(self, image: np.ndarray | str | os.PathLike, order: Literal["rgb", "bgr"] = "rgb",
                      input_name: str = "", frame: int = 0, timestamp: float = 0.0,
                      cropped: bool | None = None) -> pd.DataFrame:
        """Table of one image array (RGB by default; ``order="bgr"`` for OpenCV frames) or image file
        (its path is the ``input`` unless ``input_name`` is given)."""
        if isinstance(frame, bool) or not isinstance(frame, numbers.Integral) or frame < 0:
            raise TypeError(f"frame must be a whole number ≥ 0, not {frame!r}")
        if isinstance(timestamp, bool) or not isinstance(timestamp, numbers.Real) or not np.isfinite(timestamp):
            raise TypeError(f"timestamp must be a finite number of seconds, not {timestamp!r}")
        if not isinstance(input_name, str):
            raise TypeError(f"input_name must be a string, not {type(input_name).__name__}")
        image = _as_path(image)
        if isinstance(image, (str, os.PathLike)) and not input_name:
            input_name = str(image)
        _import_pandas()
        rows = table.face_rows(self.get(image, order, cropped), input_name, int(frame), float(timestamp))
        return table.to_frame(rows, self.columns)

    def iter_tables(self, path: str | Path, cropped: bool | None = None, overlay: Path | None = None,
                    **video_options: object) -> Iterator[pd.DataFrame]:
        """Table of one image or video file, in chunks (a video's rows stream out as they are scored).

        An unreadable image gives one ``success=0`` row naming the problem; videos: every (or every
        N-th) frame, see :func:`aulib.video.iter_video_rows` for ``video_options``. ``overlay``: also
        write an annotated copy there (an ``.mp4`` for a video, an image file for an image).
        """
        _import_pandas()
        for rows in self.iter_rows(path, cropped, overlay, **video_options):
            yield rows.frame()

    def iter_rows(self, path: str | Path, cropped: bool | None = None, overlay: Path | None = None,
                  **video_options: object) -> Iterator[table.Rows]:
        """:meth:`iter_tables` before the DataFrame: chunks of :class:`~aulib.table.Rows` (what the
        batch runner writes, without importing pandas for a CSV/JSON output)."""
        if not isinstance(path, (str, os.PathLike)) or not str(path):
            raise TypeError(f"path must be an image or video file's path, not {reprlib.repr(path)}"
                            + (" (analyze takes arrays)" if isinstance(path, np.ndarray) else ""))
        _check_video_options(video_options)
        if overlay is not None:
            check_overlay(path, overlay)
        if is_video(path):
            from aulib.video import iter_video_rows

            if self.cropped if cropped is None else cropped:  # it ran detection without a word
                warnings.warn(f"{path}: cropped applies to images; a video's faces are found in its frames",
                              CroppedVideoWarning, stacklevel=3)
            video_options.setdefault("smooth", self.smooth)
            warn_inert_smoothing(video_options, stacklevel=3)
            asked = video_options.get("stats")
            stats: dict = asked if isinstance(asked, dict) else {}
            video_options["stats"] = stats
            for rows in iter_video_rows(self, path, overlay=overlay, **video_options):  # type: ignore[arg-type]
                yield table.Rows(rows, self.columns)
            if not isinstance(asked, dict):  # a caller with stats reads these there
                if stats.get("overlay_error"):
                    warnings.warn(stats["overlay_error"], OverlayWarning, stacklevel=3)
                if stats.get("note"):
                    warnings.warn(stats["note"], VideoStreamsWarning, stacklevel=3)
            return
        try:
            rgb = read_image(path)
        except ImageReadError as e:
            # the message names the file (the batch tells a failed input by that); one that does not is named here
            msg = str(e) if str(e).startswith(f"{path}:") else f"{path}: {e}"
            yield table.Rows([table.empty_row(str(path), msg)], self.columns)
            return
        faces = self.get(rgb, cropped=cropped)
        if overlay is not None:
            import cv2

            from aulib.draw import draw_faces

            Path(overlay).parent.mkdir(parents=True, exist_ok=True)
            try:
                written = cv2.imwrite(str(overlay), draw_faces(rgb, faces)[:, :, ::-1])
            except cv2.error as e:  # OpenCV 5 raises where 4 returned False
                raise OSError(f"{overlay}: overlay not written ({' '.join(str(e).split()[-8:])})") from None
            if not written:
                raise OSError(f"{overlay}: overlay not written (OpenCV cannot write this file)")
        rows = table.face_rows(faces, str(path))
        # A multi-page TIFF or an animation: only the first frame is analysed, and the user is told — in the
        # row when it has no face, else as a warning (a GIF whose second frame held five faces gave one row and
        # no word). Not for JPEG: a camera's MPO photo carries a preview or depth image as its second frame.
        n = image_frames(path)
        rows = first_frame_rows(rows, n)
        if n > 1 and any(f.success for f in faces):
            warnings.warn(multi_frame_note(path, n), MultiFrameImageWarning, stacklevel=3)
        yield table.Rows(rows, self.columns)

    def analyze(self, paths: str | Path | Iterable[str | Path] | np.ndarray, cropped: bool | None = None,
                order: Literal["rgb", "bgr"] = "rgb", **video_options: object) -> pd.DataFrame:
        """Table of image/video files and folders (recursively, sorted), one row per face per frame.

        ``paths``: one path (str, bytes, os.PathLike) or an iterable of them; anything else is a
        TypeError saying so, an empty string a ValueError (it would mean the working folder). An image
        array (RGB, as :meth:`analyze_frame` takes it) or a PIL image is analysed as one image, alone or
        in the list (its rows: ``input`` empty, ``frame`` its position in the list): users of other
        tools pass arrays here, which used to be read as a list of paths. One that is no image (NaN throughout,
        a truncated PIL image) raises :class:`~aulib.io.ImageReadError` when given alone, and in a list gets a
        ``success=0`` row saying so, like a bad path, the others' rows kept. ``order="bgr"``: the arrays are
        OpenCV's BGR (``cv2.imread``, ``VideoCapture``) — read as RGB, a BGR frame's AU intensities moved by
        up to 1.6; files are read in their own colour order whatever ``order`` says."""
        if order not in ("rgb", "bgr"):
            raise ValueError(f"order must be 'rgb' or 'bgr', not {order!r}")
        _check_option_names(video_options)
        _refuse_contents(paths)
        if isinstance(paths, np.ndarray) and paths.ndim <= 1 and (paths.dtype.kind in "US" or (
                paths.dtype.kind == "O" and paths.size and _all_paths(paths.reshape(-1)))):
            # np.array([p1, p2]) of paths was read as an image; so was a column's .to_numpy() (object dtype
            # under pandas 3), and bytes paths (dtype S) became their repr, "b'/data/a.jpg': no such file"
            paths = [os.fsdecode(p) if isinstance(p, (bytes, np.bytes_)) else p for p in paths.reshape(-1).tolist()]
        elif isinstance(paths, np.ndarray) and paths.ndim > 1 and paths.dtype.kind in "USO" and \
                _all_paths(paths.reshape(-1)[:64]):
            raise TypeError(f"paths: an array of shape {paths.shape} of paths; give them as one list (or a 1-D "
                            "array): a.analyze(list(paths.ravel()))")
        lone = isinstance(paths, (str, bytes, os.PathLike, np.ndarray)) or _is_pil(paths) or _is_image_array(paths)
        if lone:
            paths = [paths]  # type: ignore[list-item]
        elif _is_frame(paths):  # iterating a DataFrame gives its column names: "p: no such file"
            raise TypeError("paths must be a path or a list of paths, not a DataFrame: give its column of paths, "
                            "df['path']")
        elif hasattr(paths, "read") or isinstance(paths, Mapping):
            # both are iterable: a file object would be read line by line as paths, a dict by its keys
            raise TypeError(f"paths must be a path or a list of paths, not {type(paths).__name__}"
                            + (": give the file's path (or, for an image, PIL.Image.open(it))"
                               if hasattr(paths, "read") else ""))
        elif not isinstance(paths, Iterable):
            raise TypeError(f"paths must be a path or a list of paths, not {type(paths).__name__}: "
                            f"{reprlib.repr(paths)}")
        items = list(paths)
        for x in items:
            _refuse_contents(x)
        is_image = [isinstance(x, np.ndarray) or _is_pil(x) or _is_image_array(x) for x in items]
        if any(is_image) and video_options:
            raise TypeError(f"video options ({', '.join(sorted(video_options))}) apply to video files, "
                            "not to an image array")
        _check_video_options(video_options)  # before any work: every=0 was found at the first video, photos later
        _import_pandas()
        # every path is checked (and folders listed) before any work, as for a list of paths alone
        files = [None if image else expand_inputs([x]) for x, image in zip(items, is_image)]
        parts: list[table.Rows] = []
        for i, (x, found) in enumerate(zip(items, files)):
            if found is None:  # an image: its position in the list is its frame
                try:
                    faces = self.get(x, order, cropped)
                except ImageReadError as e:
                    if lone:  # the one image given: said as the exception it is
                        raise
                    # one bad frame of a list (NaN, a truncated PIL image) threw away the rows of every other
                    # item, and the message did not say which; it gets its own success=0 row, as a bad path does
                    parts.append(table.Rows([table.empty_row("", f"image {i} of the list: {e}", i)], self.columns))
                    continue
                parts.append(table.Rows(table.face_rows(faces, "", i), self.columns))
            else:
                parts += [rows for p in found for rows in self.iter_rows(p, cropped, **video_options)]
        return table.Rows.concat(parts, self.columns).frame()




class MultiFrameImageWarning(UserWarning):
    """An image file with several frames or pages, of which only the first was analysed."""


def image_frames(path: str | Path) -> int:
    """Frames or pages of a local image file (:func:`aulib.io.frame_count`; 1 for a URL: not fetched twice)."""
    return 1 if is_url(path) else frame_count(path)


def multi_frame_note(path: str | Path, frames: int) -> str:
    """What a user is told of a file of several frames or pages whose first holds a face."""
    return (f"{path}: {frames} frames or pages; only the first was analysed (to analyse every frame, convert the "
            "file to a video)")


def first_frame_rows(rows: list[dict], frames: int) -> list[dict]:
    """The rows of a file's first frame or page, of ``frames``: when none holds a face, each says that only
    the first was analysed (the command line, the API and the web app's image page say it alike)."""
    if frames <= 1 or any(r.get("success") for r in rows):
        return rows
    return [dict(r, error=f"{r['error']} in the first of its {frames} frames or pages (only the first is "
                          "analysed; to analyse all, convert the file to a video)") for r in rows]


class VideoStreamsWarning(UserWarning):
    """A video file holds more than one video stream (several cameras, a stereo pair): one was analysed, and the
    message names it and how to extract another."""


class OverlayWarning(UserWarning):
    """A video's annotated copy could not be written (the rows are complete; the reason is the message)."""


def check_overlay(path: str | os.PathLike, overlay: str | os.PathLike) -> None:
    """ValueError before any work for an overlay target that cannot be written or is the input itself: an
    image overlay named ``x.txt`` or a folder failed only after the analysis, a video's ``x.png`` was
    skipped without a word, and ``overlay=`` the input photo replaced it by its annotated copy."""
    from aulib.batch import OVERLAY_IMAGE_SUFFIXES, OVERLAY_VIDEO_SUFFIXES, refuse_overwriting_inputs

    target = Path(overlay)
    video = is_video(path)
    names = OVERLAY_VIDEO_SUFFIXES if video else OVERLAY_IMAGE_SUFFIXES
    if target.is_dir():
        raise ValueError(f"{overlay}: overlay not written (a folder is in the way)")
    if target.suffix.lower() not in names:
        raise ValueError(f"{overlay}: overlay not written (the overlay of {'a video' if video else 'an image'} is a "
                         f"file named {', '.join(names[:4])}…)")
    refuse_overwriting_inputs([target], [Path(os.fsdecode(path))])


class IgnoredOptionWarning(UserWarning):
    """An option given that the other options given leave without effect (the analysis runs without it)."""


def warn_inert_smoothing(video_options: Mapping[str, object], stacklevel: int = 2) -> None:
    """:class:`IgnoredOptionWarning` for ``smooth_sigma`` or ``interpolate`` given with smoothing that reads
    neither: ``smooth=False`` (raw traces) or ``"causal"`` (a One Euro filter, with no sigma and a network on
    every frame). They were dropped without a word, so ``smooth_sigma=0.3`` looked applied; the command line
    says the same of ``--interpolate`` with ``--no-smooth``."""
    smooth = video_options.get("smooth", True)
    if smooth is True or smooth == "offline":
        return
    inert = [k for k in ("smooth_sigma", "interpolate") if k in video_options]
    if inert:
        mode = "smooth=False (raw traces)" if smooth is False or smooth is np.False_ else f"smooth={smooth!r}"
        warnings.warn(f"{' and '.join(inert)} act with offline smoothing only (smooth=True or 'offline'); "
                      f"ignored with {mode}", IgnoredOptionWarning, stacklevel=stacklevel + 1)


class CroppedVideoWarning(UserWarning):
    """``cropped`` given for a video: it applies to images (a video's faces are found in its frames)."""


def _check_option_names(video_options: Mapping[str, object]) -> None:
    """TypeError for a keyword that is no video option. One that is an :class:`Analyzer` setting (``gaze``,
    ``tta``…, given to ``aulib.analyze`` or ``analyze``) is named as such, with the call that takes it: it
    was called an unknown video option, or for an array "a video option that does not apply to images"."""
    unknown = set(video_options) - VIDEO_OPTIONS
    if not unknown:
        return
    import inspect

    settings = sorted(unknown & set(inspect.signature(Analyzer.__init__).parameters) - {"self"})
    if settings:
        given = ", ".join(f"{k}={video_options[k]!r}" for k in settings)
        what = "an Analyzer setting, not an option" if len(settings) == 1 else "Analyzer settings, not options"
        raise TypeError(f"{', '.join(settings)}: {what} of analyze: aulib.Analyzer({given}).analyze(...)")
    hint = ("; overlay is an option of iter_rows/iter_tables (one input: Analyzer().iter_tables(path, overlay=…)) and "
            "of aulib analyze --overlay") if "overlay" in unknown else ""
    raise TypeError(f"unknown video option(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(VIDEO_OPTIONS))}"
                    f"{hint}")


def _check_video_options(video_options: Mapping[str, object]) -> None:
    """TypeError for an unknown video option, ValueError/TypeError for a value no video can take (before any
    input is analysed; :func:`aulib.video.run.check_video_options`)."""
    if not video_options:
        return
    _check_option_names(video_options)  # an image ignored them, a video raised: the same TypeError for both now
    from aulib.video.run import check_video_options

    check_video_options(**video_options)


# Keyword options of a video analysis (aulib.video.iter_video_rows), besides the path and overlay.
VIDEO_OPTIONS = frozenset({"every", "fps", "calibrate", "detect_every", "progress", "max_frames", "stats", "threaded",
                           "chunk_rows", "smooth", "smooth_sigma", "interpolate"})


def _rebuild(cls: type[Analyzer], settings: dict) -> Analyzer:
    return cls(**settings)


def check_smoothing(smooth: object) -> None:
    """ValueError unless ``smooth`` is True, False (numpy's bools too), 'offline' or 'causal': ``smooth=1``
    passed the membership test (1 == True) and was kept as 1."""
    if not (isinstance(smooth, (bool, np.bool_)) or smooth in ("offline", "causal")):
        raise ValueError(f"smooth must be True, False, 'offline' or 'causal', not {smooth!r}")


def _check_flag(name: str, value: object) -> bool:
    """``value`` if it is a bool (numpy's too), else TypeError naming the option: a string like "no" or
    "false" is truthy and was silently read as True."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, not {value!r}")


def _as_path(image: object) -> object:
    """A bytes file name as text (``analyze`` took ``b"/photo.jpg"``; ``get`` and ``analyze_frame`` read it
    as an array, "array of shape ()"); a file's contents given as bytes are refused."""
    _refuse_contents(image)
    return os.fsdecode(image) if isinstance(image, bytes) else image


def _refuse_contents(x: object) -> None:
    """TypeError for a file's contents given where a path goes: bytes with a NUL or longer than any path,
    a bytearray or a memoryview. ``open(photo, "rb").read()`` was taken for a file name: one row whose
    error repeated the 180 kB escaped, a bytearray a TypeError about an int."""
    if isinstance(x, (bytearray, memoryview)) or (isinstance(x, bytes) and (b"\0" in x or len(x) > 4096)):
        n = len(x) if not isinstance(x, memoryview) else x.nbytes
        raise TypeError(f"got {n} bytes of a file's contents ({type(x).__name__}) where a path goes: give the "
                        "file's path, or for an image PIL.Image.open(io.BytesIO(data)); save a video to a file")


def _face_list(faces: object) -> list[Face]:
    """``faces`` as a list of :class:`Face` records, else a TypeError saying what was given (``rescore([1])``
    failed inside a model stage: "'int' object has no attribute 'success'")."""
    if isinstance(faces, (str, bytes)) or not isinstance(faces, Iterable):
        raise TypeError(f"faces must be a list of Face records, not {type(faces).__name__}")
    faces = list(faces)  # an iterator would be used up by the first stage and leave the others nothing
    bad = next((f for f in faces if not isinstance(f, Face)), None)
    if bad is not None:
        raise TypeError(f"faces must be Face records (from Analyzer.get or the face pipeline), "
                        f"not {type(bad).__name__}")
    return faces


def _all_paths(items: Iterable[object]) -> bool:
    """Whether every item of an array is a path (``str``, ``bytes`` or ``os.PathLike``): a column of paths."""
    return all(isinstance(p, (str, bytes, os.PathLike)) for p in items)


def _is_frame(x: object) -> bool:
    """A pandas (or look-alike) DataFrame, without importing pandas."""
    return type(x).__name__ == "DataFrame" and hasattr(x, "columns")


def _is_image_array(x: object) -> bool:
    """An image held by another array library (a torch tensor, a JAX or CuPy array, …): numpy can take it
    (``__array__``) and it has an image's two or three axes. ``analyze`` iterated such a tensor row by row and
    said "an input must be a path … not Tensor", while ``get`` analysed the same tensor."""
    return (not isinstance(x, (str, bytes, os.PathLike, np.ndarray, list, tuple)) and not _is_frame(x)
            and hasattr(x, "__array__") and getattr(x, "ndim", None) in (2, 3))


def _is_pil(x: object) -> bool:
    """A PIL image, without importing PIL for callers that never made one."""
    import sys

    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(x, pil.Image)


_DEFAULT: Analyzer | None = None


def default_analyzer() -> Analyzer:
    """The process-wide Analyzer with default settings, built on first use."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Analyzer()
    return _DEFAULT


def analyze(paths: str | Path | Iterable[str | Path], **kwargs: object) -> pd.DataFrame:
    """``aulib.analyze(paths)``: the table of files/folders/videos with the default Analyzer."""
    _import_pandas()
    return default_analyzer().analyze(paths, **kwargs)  # type: ignore[arg-type]


def _import_pandas() -> None:
    """Import pandas before the work whose table it makes, not after: importing it registers an exit
    hook (concurrent.futures), which Python refuses once the main thread has returned — a user's
    worker thread still analysing a video then lost the whole result to "can't register atexit after
    shutdown" at the very end. (The command line writes CSV without pandas and never calls this.)"""
    import pandas  # noqa: F401


def _single(path: str | Path, cols: list[str]) -> pd.DataFrame:
    """The seed wrappers' table: ``frame`` tells a video's rows apart (without it they were a list of
    faces with no time) and ``error`` says why a row has ``success`` 0 (no face, unreadable…)."""
    df = default_analyzer().analyze(path)
    return df[["input", "frame", "face", "success", "error", *cols]]


def get_img_aus_occurrences(path: str | Path) -> pd.DataFrame:
    """Seed-compatible wrapper: AU occurrences (``AUxx_c``) per face of one image."""
    return _single(path, [table.occurrence_column(a) for a in default_analyzer().aus])


def get_img_aus_intensities(path: str | Path) -> pd.DataFrame:
    """Seed-compatible wrapper: AU intensities (``AUxx_r``, 0–5) per face of one image."""
    return _single(path, [table.intensity_column(a) for a in default_analyzer().aus])


def get_img_emotions_occurrences(path: str | Path) -> pd.DataFrame:
    """Seed-compatible wrapper: % of each emotion's prototype AUs present (``rule_*``) per face."""
    return _single(path, [table.rule_column(e) for e in table.RULE_EMOTIONS])
