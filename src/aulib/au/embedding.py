"""The emotion CNN's pooled 1280-d embedding, as appearance features for the AU models.

HOG + landmark geometry alone reach a mean subject-independent F1 of about 0.72 on CK+; adding
the embedding of the FER+-trained EfficientNet (which never saw CK+) lifts it to about 0.76 in
the same cross-validation, because the network has learned expression-specific texture (nasolabial
furrows, dimpling, lip press) from 28k faces that 88 CK+ subjects cannot teach a linear model.

No second network and no second file: the shipped, checksum-verified ``emotion_cnn.onnx`` is
loaded once, the input of its final fully-connected layer is exposed as an extra graph output in
memory, and one onnxruntime run yields both the emotion probabilities and the embedding. The file's
bytes (and so the sha256 the AU models record as their feature version) are never changed.

The graph edit works on the protobuf wire format directly (:func:`add_embedding_output`) instead
of through the ``onnx`` package: importing ``onnx`` and parsing + re-serialising the 13 MB model
cost ~0.15 s of every start-up, for appending one ``ValueInfoProto`` to ``graph.output``. It reads
just enough of the wire format to find the nodes' ``op_type``/inputs and the graph outputs, and
copies everything else byte for byte; tests check the result runs identically to an ``onnx`` edit.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from aulib.cnn.inference import EmotionCNN
from aulib.models import ModelFileError


class EmotionEmbeddingCNN(EmotionCNN):
    """:class:`~aulib.cnn.inference.EmotionCNN` that also returns its 1280-d embedding."""

    graph_tag = "-embedding"

    def __init__(self, path: str | Path | None = None, name: str = "emotion_cnn.onnx") -> None:
        super().__init__(path, name)
        self.sha256 = str(self.info["sha256"])

    def _model(self) -> bytes:
        """The verified ONNX graph with the input of its final fully-connected layer as an extra output."""
        try:
            return add_embedding_output(self.path.read_bytes())
        except ValueError as e:
            raise ModelFileError(f"{self.path}: {e}") from None

    def predict_with_embedding(self, crops: np.ndarray | list[np.ndarray],
                               flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (N, 8), embeddings (N, 1280)) for aligned face crops; ``flip`` averages the
        probabilities with the mirror image's (the embedding is always the crop's own)."""
        if len(crops) == 0:
            return np.zeros((0, 8), np.float32), np.zeros((0, 1280), np.float32)
        probs, emb = self._run(crops, flip)
        return probs.astype(np.float32), emb.reshape(len(emb), -1).astype(np.float32)


# Protobuf wire types (https://protobuf.dev/programming-guides/encoding/).
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
# ONNX field numbers (onnx.proto3): ModelProto.graph; GraphProto.node/.output; NodeProto.input/.op_type;
# ValueInfoProto.name/.type; TypeProto.tensor_type; TypeProto.Tensor.elem_type; TensorProto.FLOAT.
_MODEL_GRAPH, _GRAPH_NODE, _GRAPH_OUTPUT = 7, 1, 12
_NODE_INPUT, _NODE_OP_TYPE = 1, 4
_VALUE_NAME, _VALUE_TYPE, _TYPE_TENSOR, _TENSOR_ELEM_TYPE, _FLOAT = 1, 2, 1, 1, 1


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    """Decode a varint at ``buf[i]``: (value, index after it)."""
    if i < len(buf) and buf[i] < 0x80:  # fast path: tags and short lengths are one byte
        return buf[i], i + 1
    value = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated or invalid protobuf (varint)")
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            return value, i
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _fields(buf: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int, int, int, int]]:
    """Top-level fields of one message: (field number, wire type, tag start, value start, value end)."""
    end = len(buf) if end is None else end
    i = start
    while i < end:
        tag_start = i
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == _VARINT:
            _, j = _varint(buf, i)
        elif wire == _LEN:
            n, i = _varint(buf, i)
            j = i + n
        elif wire == _I64:
            j = i + 8
        elif wire == _I32:
            j = i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if j > end or field == 0:
            raise ValueError("truncated or invalid protobuf")
        yield field, wire, tag_start, i, j
        i = j


def _len_field(field: int, payload: bytes) -> bytes:
    return _encode_varint(field << 3 | _LEN) + _encode_varint(len(payload)) + payload


def add_embedding_output(model: bytes) -> bytes:
    """ONNX model bytes with the input of the last ``Gemm``/``MatMul`` node added as a float graph output.

    Equivalent to ``model.graph.output.append(make_tensor_value_info(name, FLOAT, None))`` with
    the ``onnx`` package, without parsing the weights: the new ``ValueInfoProto`` is inserted right
    after the graph's last output (so it becomes the last output, and the bytes are what ``onnx``
    would write, which orders fields by number: a quantised graph has ``value_info`` after its
    outputs) and only the graph's length prefix changes. Raises ``ValueError`` for a file that is not an ONNX
    model with a final fully-connected layer.
    """
    graphs = [f for f in _fields(model) if f[0] == _MODEL_GRAPH and f[1] == _LEN]
    if len(graphs) != 1:
        raise ValueError("not an ONNX model (no single graph)")
    _, _, tag_start, g0, g1 = graphs[0]
    embedding, outputs, at = None, [], g1
    for field, wire, _, a, b in _fields(model, g0, g1):
        if wire != _LEN:
            continue
        if field == _GRAPH_NODE:
            inputs, op_type = [], ""
            for nf, nw, _, c, d in _fields(model, a, b):
                if nf == _NODE_INPUT and nw == _LEN:
                    inputs.append(model[c:d].decode())
                elif nf == _NODE_OP_TYPE and nw == _LEN:
                    op_type = model[c:d].decode()
            if op_type in ("Gemm", "MatMul") and inputs:
                embedding = inputs[0]
        elif field == _GRAPH_OUTPUT:
            outputs += [model[c:d].decode() for vf, vw, _, c, d in _fields(model, a, b)
                        if vf == _VALUE_NAME and vw == _LEN]
            at = b
    if embedding is None:
        raise ValueError("no final fully-connected layer to take the embedding from")
    if embedding in outputs:
        return model
    elem_type = _encode_varint(_TENSOR_ELEM_TYPE << 3 | _VARINT) + _encode_varint(_FLOAT)
    value_info = _len_field(_VALUE_NAME, embedding.encode()) + _len_field(
        _VALUE_TYPE, _len_field(_TYPE_TENSOR, elem_type))
    extra = _len_field(_GRAPH_OUTPUT, value_info)
    graph_key = _encode_varint(_MODEL_GRAPH << 3 | _LEN) + _encode_varint(g1 - g0 + len(extra))
    view = memoryview(model)  # one copy of the 13 MB in total, in join()
    return b"".join((view[:tag_start], graph_key, view[g0:at], extra, view[at:g1], view[g1:]))


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
