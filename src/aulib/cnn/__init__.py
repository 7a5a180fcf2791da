"""EfficientNet-Lite0 emotion and multitask (emotion + 14 AU) CNNs.

Inference (:mod:`aulib.cnn.inference`) needs only onnxruntime; ``model``, ``train`` and ``export``
need torch (the ``train`` extra) and are imported only when training.
"""

from aulib.cnn.inference import EMOTIONS, EmotionCNN, MultitaskCNN

__all__ = ["EMOTIONS", "EmotionCNN", "MultitaskCNN"]
