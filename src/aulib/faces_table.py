"""The ``aulib faces`` table and overlay: boxes and 68 landmarks per face, no AU models needed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import pandas as pd

from aulib.analyzer import first_frame_rows, image_frames, multi_frame_note
from aulib.batch import output_paths, overlay_file, overlay_misfit, refuse_overwriting_inputs
from aulib.draw import draw_faces
from aulib.face import FacePipeline
from aulib.io import ImageReadError, read_image
from aulib.table import FACE_COLUMNS, empty_row, face_rows, table_text, to_frame


def faces_table(files: list[Path], cropped: bool = False, detector: str = "retinaface",
                overlay: Path | None = None, on_done: Callable[[Path], None] | None = None,
                warn: Callable[[str], None] | None = None) -> pd.DataFrame:
    """One row per face of each file; unreadable files get a ``success=0`` row naming the problem.

    ``overlay``: a folder for annotated copies (boxes, numbered landmarks), one distinct file per
    input; one that cannot be written is reported through ``warn`` and its rows are kept.
    """
    fp = FacePipeline(detector=detector, features=False)
    rows: list[dict] = []
    # overlay/<input's folder below the inputs' common parent>/<stem>_faces.png, distinct per input
    kind, fits = overlay_file(overlay, list(files)) if overlay is not None else (None, False)
    if kind == "image":  # a file, for one image
        if not fits and warn is not None:
            warn(overlay_misfit(overlay, kind))  # type: ignore[arg-type]
        targets: list[Path | None] = [overlay] if fits else [None] * len(files)
    else:
        targets = output_paths(files, overlay, lambda n: f"{Path(n).stem}_faces.png", text_names=True) \
            if overlay is not None else [None] * len(files)
    refuse_overwriting_inputs(targets, list(files))
    for p, target in zip(files, targets):
        try:
            img = read_image(p)
        except ImageReadError as e:
            rows.append(empty_row(str(p), str(e)))
        else:
            found = [fp.cropped(img)] if cropped else fp(img)
            # an animation or a multi-page TIFF: its first frame only, said as analyze says it (faces said nothing)
            n = image_frames(p)
            rows.extend(first_frame_rows(face_rows(found, str(p)), n))
            if n > 1 and any(f.success for f in found) and warn is not None:
                warn(multi_frame_note(table_text(str(p)), n))
            if target is not None:
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    written = cv2.imwrite(str(target), draw_faces(img, found, numbers=True)[:, :, ::-1])
                except (OSError, cv2.error) as e:
                    written, why = False, f"{type(e).__name__}: {e}"
                else:
                    why = "OpenCV could not write it"
                if not written and warn is not None:
                    warn(f"{table_text(str(target))}: overlay not written ({why})")
        if on_done:
            on_done(p)
    return to_frame(rows, FACE_COLUMNS)
