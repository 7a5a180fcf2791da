"""CK+48 (48×48 gray Cohn-Kanade+ crops) with FACS AU labels, for the AU models.

Label codes in ``labels/images_au.csv``: -1 absent, 0 present (intensity not coded), 1–5 =
intensity A–E. Roles: ``peak``, ``peak-1``, ``peak-2`` (reuse the peak's codes) and
``neutral_first_frame`` (no AU active). Rows with ``facs_source == "missing"`` have no AU codes
and are skipped; the 219 peak frames listed under two source folders are kept once. CK+ is
licensed for non-commercial research only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

# AUs with at least 40 positive peak images in the visible CK+ labels (counted by
# ``au_counts``; see reports/au.md).
DEFAULT_AUS = [1, 2, 4, 5, 6, 7, 9, 12, 14, 15, 17, 20, 23, 24, 25, 26, 27]
NEUTRAL_ROLE = "neutral_first_frame"
EXPRESSIVE_ROLES = ("peak", "peak-1", "peak-2")


@dataclass
class CKPlus:
    """The usable CK+ frames: ``table`` (one row per unique image), plus helpers for targets."""

    root: Path
    table: pd.DataFrame

    @classmethod
    def load(cls, data_dir: str | Path) -> CKPlus:
        """Read ``<data_dir>/ckplus48`` (``data_dir`` is the shared data folder)."""
        root = Path(data_dir) / "ckplus48"
        labels = root / "labels" / "images_au.csv"
        if not labels.exists():
            raise FileNotFoundError(f"{labels}: CK+48 labels not found")
        t = pd.read_csv(labels, dtype={"sequence": str})
        t = t[t.facs_source != "missing"]
        t = t[t.role.isin((NEUTRAL_ROLE, *EXPRESSIVE_ROLES))]
        t = t.drop_duplicates(["subject", "sequence", "frame"]).reset_index(drop=True)
        return cls(root, t)

    def au_columns(self) -> list[str]:
        return [c for c in self.table.columns if c.startswith("AU")]

    def image_paths(self) -> list[Path]:
        return [self.root / p for p in self.table.path]

    def codes(self, au: int) -> np.ndarray:
        """Raw codes of ``au`` per image; neutral frames are -1 (absent) whatever the sheet says."""
        c = self.table[f"AU{au}"].to_numpy().astype(int).copy()
        c[(self.table.role == NEUTRAL_ROLE).to_numpy()] = -1
        return c

    def occurrence(self, aus: list[int]) -> np.ndarray:
        """(N, K) 0/1 targets: present (code ≥ 0) or absent."""
        return np.stack([(self.codes(a) >= 0).astype(np.int8) for a in aus], axis=1)

    def intensity(self, aus: list[int]) -> np.ndarray:
        """(N, K) intensity 0–5 (absent = 0, A–E = 1–5) with NaN where present but not coded."""
        out = []
        for a in aus:
            codes = self.codes(a)
            c = codes.astype(float)
            c[codes == 0] = np.nan  # present, intensity not coded: excluded from the SVR fit
            c[codes == -1] = 0.0
            out.append(c)
        return np.stack(out, axis=1)

    def groups(self) -> np.ndarray:
        """Subject id per image, for GroupKFold (never split a subject across folds)."""
        return self.table.subject.to_numpy()


def au_counts(ck: CKPlus) -> pd.DataFrame:
    """Positive counts per AU: peak images, all expressive images, and coded intensities."""
    rows = []
    peak = (ck.table.role == "peak").to_numpy()
    for col in ck.au_columns():
        a = int(col[2:])
        c = ck.codes(a)
        rows.append({"au": a, "peak_pos": int(((c >= 0) & peak).sum()), "all_pos": int((c >= 0).sum()),
                     "intensity_coded": int((c >= 1).sum())})
    return pd.DataFrame(rows).sort_values("peak_pos", ascending=False).reset_index(drop=True)
