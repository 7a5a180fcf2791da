"""FACS names and prototype matches, and the text report people read (``aulib analyze photo.jpg``)."""

from __future__ import annotations

import numpy as np

from aulib.au.codes import AUS
from aulib.au.emotion_rules import PROTOTYPES
from aulib.au.facs import FACS_NAMES, au_label, facs_name, prototype_matches, summarize_matches
from aulib.face.record import EMOTIONS, Face
from aulib.table import columns, face_rows, report, to_frame

from .conftest import sample


def test_every_au_aulib_outputs_or_uses_has_a_facs_name():
    used = set(AUS) | {a for p in PROTOTYPES.values() for a in p}
    assert used <= set(FACS_NAMES)
    assert au_label(12) == au_label("AU12") == "AU12 lip corner puller"
    assert facs_name(1) == "inner brow raiser" and facs_name("AU45") == "blink"
    assert au_label(99) == "AU99" and facs_name("not an AU") == ""


def test_partial_prototype_overlap_is_not_an_emotion():
    smile = prototype_matches(AUS, [6, 12, 25])
    by = {m.emotion: m for m in smile}
    assert by["happiness"].level == "full" and by["happiness"].count == "2 of 2 prototype AUs"
    assert by["contempt"].level == "weak"  # AU12 alone: shared with happiness, says nothing
    text = summarize_matches(smile)
    assert text.startswith("happiness (2 of 2 prototype AUs: AU06+AU12)") and "contempt" not in text
    fear = {m.emotion: m for m in prototype_matches(AUS, [1, 2, 4, 5])}["fear"]
    assert fear.level == "partial" and fear.count == "4 of 7 prototype AUs"
    assert "partly: " in summarize_matches(prototype_matches(AUS, [1, 2, 4, 5]))
    assert summarize_matches(prototype_matches(AUS, [])) == "no emotion prototype matched"
    # AU16 has no model: disgust counts over 9 and 15 only, as the rule_* percentage does
    assert {m.emotion: m for m in prototype_matches(AUS, [9, 15])}["disgust"].level == "full"


def _face(aus_on: list[int], fid: int = 0) -> Face:
    aus = tuple(AUS)
    probs = np.zeros(len(EMOTIONS))
    probs[EMOTIONS.index("happiness")] = 1.0
    return Face(box=np.array([10.0, 20.0, 100.0, 120.0]), score=0.99, id=fid, matrix=np.eye(2, 3), aus=aus,
                au_occurrence=np.array([int(a in aus_on) for a in aus], np.int8),
                au_intensity=np.array([2.5 if a in aus_on else 0.1 for a in aus]),
                rules=np.zeros(len(PROTOTYPES)), emotion_probs=probs)


def test_text_report_names_aus_and_frames():
    cols = columns(AUS)
    photo = to_frame(face_rows([_face([6, 12, 25])], "photo.jpg"), cols)
    text = report(photo)
    assert text.splitlines()[0].startswith("photo.jpg  face 0")  # no frame for a photo
    assert "AUs present:   AU06 cheek raiser, AU12 lip corner puller, AU25 lips part" in text
    assert "AU12 lip corner puller" in text and "happiness (2 of 2 prototype AUs" in text
    assert "contempt" not in text.split("Emotion prototypes")[1].split("\n")[0]
    rows = face_rows([_face([6, 12])], "clip.mp4", frame=0) + face_rows([], "clip.mp4", frame=1, timestamp=1 / 30)
    video = report(to_frame(rows, cols)).splitlines()
    assert video[0].startswith("clip.mp4  frame 0 (0.00 s)  face 0")  # frame 0 of a video has its number
    assert video[-1].startswith("clip.mp4  frame 1 (0.03 s)  face 0: no result")


def test_text_report_of_a_real_smile(analyzer):
    text = report(analyzer.analyze(sample("single_face.jpg")))
    assert "AU12 lip corner puller" in text and "Emotion prototypes (FACS/EMFACS): happiness" in text
