"""Drop what the converted `.tflite` carries that no runtime reads, before anything indexes it.

The converter writes, per tensor, its name (``train_x:0``, MLIR location strings: up to a
fifth of a small model's file), an empty quantization table and a buffer of its own even
when the tensor holds no constant (one empty buffer per activation). LiteRT reads none of
it: signatures address tensors by their SignatureDef index, a nameless tensor reads as ""
in both the C++ and the Java API, and a tensor whose buffer has no data is not a constant,
whichever empty buffer it names. So every such tensor names buffer 0 (the schema's empty
sentinel), the buffers nobody names are dropped and the rest renumbered, and names and
empty quantization tables go. Constants, operators, signatures and metadata are untouched:
the compacted file computes bit for bit what the converted one did (tested).

Runs right after conversion, so buffer indices in the manifest (``initial_buffers``) are
taken from the compacted file.
"""

from __future__ import annotations

import flatbuffers
from tensorflow.lite.python import schema_py_generated as schema


def _holds_data(buffer) -> bool:
    return (buffer.data is not None and len(buffer.data) > 0) or bool(getattr(buffer, "offset", 0))


def _is_empty_quantization(q) -> bool:
    return q is None or (all(getattr(q, f) is None or len(getattr(q, f)) == 0
                             for f in ("min", "max", "scale", "zeroPoint"))
                         and q.details is None and q.quantizedDimension == 0)


def compact(model_bytes: bytes) -> bytes:
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    if not model.buffers or _holds_data(model.buffers[0]) or model.externalBuffers:
        return model_bytes  # not the layout the converter writes: leave it alone
    tensors = [t for sg in model.subgraphs or [] for t in sg.tensors or []]
    for tensor in tensors:
        tensor.name = None
        if _is_empty_quantization(tensor.quantization):
            tensor.quantization = None
        if not _holds_data(model.buffers[tensor.buffer]):
            tensor.buffer = 0
    metadata = model.metadata or []
    listed = [int(i) for i in model.metadataBuffer] if model.metadataBuffer is not None else []
    kept = sorted({0} | {t.buffer for t in tensors} | {m.buffer for m in metadata} | set(listed))
    renumber = {old: new for new, old in enumerate(kept)}
    model.buffers = [model.buffers[i] for i in kept]
    for holder in [*tensors, *metadata]:
        holder.buffer = renumber[holder.buffer]
    if model.metadataBuffer is not None:
        model.metadataBuffer = [renumber[i] for i in listed]
    builder = flatbuffers.Builder(len(model_bytes))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
