"""The AU sets aulib trains, defined once.

Shipped models record the AUs they predict (the ``aus`` array in each ``.npz``, ``aus`` in the
manifest entry of the multitask ONNX); inference reads them from there. These constants say what
*training* fits, and were chosen from positive counts in the deduplicated CK+48 labels
(``aulib.training.datasets.au_counts``; see reports/au.md):

- :data:`AUS`: the 17 most frequent AUs (at least 45 positive images each: AU25 366, AU1 258,
  AU17 249, AU4 243, AU6 204, AU2 201, AU5 177, AU12 165, AU7 162, AU27 144, AU9 135, AU24 81,
  AU23 78, AU15 75, AU20 51, AU14 48, AU26 45; next is AU38 with 42), for the SVM/SVR banks and
  one sigmoid head each in the multitask CNN (the first multitask network had heads for the 14
  most frequent only; its successor, cross-validated with the SVMs, covers all 17). A test
  recomputes this ranking from the labels.
"""

from __future__ import annotations

AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 12, 14, 15, 17, 20, 23, 24, 25, 26, 27)
