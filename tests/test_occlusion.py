"""Synthetic occluders: where they go, that the plans cover every case, and the evaluation on real faces."""

from __future__ import annotations

import numpy as np
import pytest

from aulib.io import read_image
from aulib.training.occlusion import KINDS, REGIONS, emotion_on_occluded, occlude, plan, training_plan

from .conftest import DATA, sample


@pytest.fixture(scope="module")
def face(analyzer):
    img = read_image(sample("single_face.jpg"))
    return img, analyzer.get(img)[0]


@pytest.mark.parametrize("region", list(REGIONS))
@pytest.mark.parametrize("kind", KINDS)
def test_occluder_covers_its_region_and_nothing_far_away(face, region, kind):
    img, f = face
    out = occlude(img, f.landmarks, region, kind, seed=3)
    changed = np.any(out != img, axis=2)
    pts = f.landmarks[REGIONS[region]].astype(int)
    inside = changed[np.clip(pts[:, 1], 0, img.shape[0] - 1), np.clip(pts[:, 0], 0, img.shape[1] - 1)]
    assert inside.mean() > 0.8, (region, kind)  # the region's own landmarks are hidden
    others = [r for r in REGIONS if r != region and not (region == "brows" and r == "eyes")
              and not (region == "eyes" and r == "brows")]
    for r in others:  # brows and eyes are neighbours; the mouth is far from both
        q = f.landmarks[REGIONS[r]].astype(int)
        assert changed[q[:, 1], q[:, 0]].mean() < 0.2, (region, kind, r)
    np.testing.assert_array_equal(out, occlude(img, f.landmarks, region, kind, seed=3))  # deterministic
    assert np.all(img == read_image(sample("single_face.jpg")))  # the input is not modified


def test_plans_cover_every_region_and_kind_and_never_coincide():
    p, t = plan(90), training_plan(90)
    assert {(r, k) for r, k in p} == {(r, k) for r in REGIONS for k in KINDS}
    assert all(a[0] != b[0] and a[1] != b[1] for a, b in zip(p, t))


def test_emotion_drops_under_occlusion_on_real_faces(analyzer):
    from aulib.analyzer import Analyzer

    with pytest.raises(ValueError, match="emotion"):
        emotion_on_occluded(DATA, analyzer, lambda _: None, limit=3)  # the session analyzer has no emotion model
    res = emotion_on_occluded(DATA, Analyzer(), lambda _: None, limit=45)
    assert res["images"] == 45
    assert 0.6 < res["clean"] <= 1.0
    assert res["occluded"] < res["clean"]  # the occluders are real obstacles, not decoration
    assert set(res["per_region"]) == set(REGIONS) and set(res["per_kind"]) == set(KINDS)
