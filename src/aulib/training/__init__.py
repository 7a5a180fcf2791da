"""Everything that trains or evaluates aulib's models, in one tree (the ``train`` extra for torch).

Layout, by what each module needs:

- ``datasets``: the CK+48 and FER+ readers and the subject-wise split (numpy/pandas).
- ``crops``: dataset images through the inference face pipeline, cached once (aligned crops for
  the CNNs, AU features for the banks).
- ``au``: ``aulib train svm|svr`` — subject-grouped CV of the AU banks' ``fit``, the shipped
  ``.npz`` and ``reports/au.md``.
- ``metrics``: numpy metrics shared by CNN training and evaluation.
- ``evaluate``: ``aulib evaluate cnn`` on the shipped ONNX models (onnxruntime, no torch).
- ``torch_model`` (torch): EfficientNet-Lite0, ImageNet weights, ONNX export.
- ``cnn`` (torch): ``aulib train cnn`` and the training machinery both networks share.
- ``multitask`` (torch): ``aulib train multitask`` — the emotion + 17 AU heads network, after a
  subject-grouped CV of its AU heads voting with the SVMs (``reports/au.md``).

Runtime inference never imports this package. Importing it (or ``datasets``, ``crops``, ``au``,
``metrics``, ``evaluate``) does not import torch; only ``torch_model``, ``cnn`` and ``multitask`` do, when a
CNN training job runs. Generated reports go to :data:`REPORTS`, caches to :data:`CACHE` and
training runs to :data:`RUNS` unless a command's option says otherwise; they are folders of the
source checkout (where training installs into ``src/aulib/models``), or of the working folder when aulib
is installed from a wheel.
"""

from __future__ import annotations

from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[3]
# In a source checkout: its folders. An installed wheel has no checkout (parents[3] is .../lib/python3.x, where
# reports and caches were written): the working folder then, as for any command's outputs.
REPO = _CHECKOUT if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "src" / "aulib").is_dir() else Path.cwd()
REPORTS = REPO / "reports"
CACHE = REPO / "cache"
RUNS = REPO / "runs"
# The line every report ends with: the figures come from datasets licensed for non-commercial research.
LICENCE = ("Licence: FER2013/FER+ and CK+ are non-commercial research datasets; the weights and these figures "
           "inherit that.")
