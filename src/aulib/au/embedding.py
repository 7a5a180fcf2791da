"""The emotion CNN's pooled 1280-d embedding, as appearance features for the AU models.

HOG + landmark geometry alone reach a mean subject-independent F1 of about 0.72 on CK+; adding
the embedding of the FER+-trained EfficientNet (which never saw CK+) lifts it to about 0.76 in
the same cross-validation, because the network has learned expression-specific texture (nasolabial
furrows, dimpling, lip press) from 28k faces that 88 CK+ subjects cannot teach a linear model.

No second network and no second file: the shipped, checksum-verified ``emotion_cnn.onnx`` is
loaded once, the input of its final fully-connected layer is exposed as an extra graph output in
memory, and one onnxruntime run yields both the emotion probabilities and the embedding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aulib.cnn.inference import EmotionCNN
from aulib.models import ModelFileError


class EmotionEmbeddingCNN(EmotionCNN):
    """:class:`~aulib.cnn.inference.EmotionCNN` that also returns its 1280-d embedding."""

    def __init__(self, path: str | Path | None = None, name: str = "emotion_cnn.onnx") -> None:
        self.name = name
        super().__init__(path)
        self.sha256 = str(self.info["sha256"])

    def _model(self) -> bytes:
        """The verified ONNX graph with the input of its final fully-connected layer as an extra output."""
        import onnx

        model = onnx.load(str(self.path))
        gemms = [n for n in model.graph.node if n.op_type in ("Gemm", "MatMul")]
        if not gemms:
            raise ModelFileError(f"{self.path}: no final fully-connected layer to take the embedding from")
        name = gemms[-1].input[0]
        if name not in [o.name for o in model.graph.output]:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
        return model.SerializeToString()

    def predict_with_embedding(self, crops: np.ndarray | list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (N, 8), embeddings (N, 1280)) for aligned face crops."""
        if len(crops) == 0:
            return np.zeros((0, 8), np.float32), np.zeros((0, 1280), np.float32)
        probs, emb = self._run(crops)
        return probs.astype(np.float32), emb.reshape(len(emb), -1).astype(np.float32)


def embedding_cnn_for(version: str) -> str:
    """Name of the shipped CNN file whose sha256 the AU feature ``version`` records.

    AU models are trained on one exact CNN's embedding. Normally that is ``emotion_cnn.onnx``
    itself (one network run serves emotion and AU features); if the emotion CNN is retrained
    without retraining the AU models, the manifest keeps the CNN they were trained with under
    another name, and this finds it.
    """
    from aulib.models import read_manifest

    prefix = version.rsplit(":", 1)[-1]
    entries = read_manifest().get("models", {})
    names = sorted((n for n, e in entries.items() if n.endswith(".onnx") and e["sha256"].startswith(prefix)),
                   key=lambda n: n != "emotion_cnn.onnx")
    if not names:
        raise ModelFileError(f"AU models need the CNN with sha256 {prefix}…, which is not in the manifest")
    return names[0]
