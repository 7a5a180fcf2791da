"""EfficientNet-Lite0 emotion and multitask (emotion + 17 AU) CNNs, run on onnxruntime.

Only inference lives here (no torch); the network definition, training and export are in
:mod:`aulib.training` (``torch_model``, ``cnn``).
"""

from aulib.cnn.inference import EMOTIONS, EmotionCNN, MultitaskCNN

__all__ = ["EMOTIONS", "EmotionCNN", "MultitaskCNN"]
