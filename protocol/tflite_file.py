"""Read the fedge manifest out of a `.tflite` file without TensorFlow.

A `.tflite` file is a FlatBuffer (schema ``tflite/schema.fbs``, file identifier
``TFL3``). The manifest is a ``Model.metadata`` entry named ``fedge_manifest`` whose
buffer holds the manifest JSON. Only the few tables on that path are read, with the
``flatbuffers`` runtime's generic table accessor.
"""

from __future__ import annotations

import flatbuffers
from flatbuffers.table import Table

from protocol.errors import ProtocolError
from protocol.manifest import INITIAL_WEIGHTS_METADATA_NAME, MANIFEST_METADATA_NAME, Manifest

_FILE_IDENTIFIER = b"TFL3"
# Field slots in schema.fbs: Model.buffers = 4, Model.metadata = 6; Metadata.name = 0,
# Metadata.buffer = 1; Buffer.data = 0, Buffer.offset = 1, Buffer.size = 2.
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6
_META_NAME, _META_BUFFER = 0, 1
_BUF_DATA, _BUF_OFFSET, _BUF_SIZE = 0, 1, 2


def _slot(slot: int) -> int:
    return 4 + 2 * slot


def _vector_tables(table: Table, slot: int) -> list[Table]:
    off = table.Offset(_slot(slot))
    if not off:
        return []
    start, length = table.Vector(off), table.VectorLen(off)
    return [Table(table.Bytes, table.Indirect(start + 4 * i)) for i in range(length)]


def metadata_entries(model_bytes: bytes) -> dict[str, bytes]:
    """Map each metadata name of the model to its buffer's bytes."""
    data = bytes(model_bytes)
    return {name: data[start:end] for name, (start, end) in metadata_spans(data).items()}


def metadata_spans(model_bytes: bytes) -> dict[str, tuple[int, int]]:
    """Map each metadata name to the (start, end) byte range of its buffer in the file."""
    data = bytes(model_bytes)
    if len(data) < 8 or data[4:8] != _FILE_IDENTIFIER:
        raise ProtocolError("not a TFLite model file (missing TFL3 identifier)", "bad_model")
    try:
        root = Table(data, flatbuffers.encode.Get(flatbuffers.packer.uoffset, data, 0))
        buffers = _vector_tables(root, _MODEL_BUFFERS)
        entries: dict[str, tuple[int, int]] = {}
        for meta in _vector_tables(root, _MODEL_METADATA):
            name_off = meta.Offset(_slot(_META_NAME))
            buf_off = meta.Offset(_slot(_META_BUFFER))
            if not name_off or not buf_off:
                continue
            name = meta.String(name_off + meta.Pos).decode("utf-8")
            index = meta.Get(flatbuffers.number_types.Uint32Flags, buf_off + meta.Pos)
            entries[name] = _buffer_span(buffers[index])
        return entries
    except Exception as exc:  # a corrupt FlatBuffer can fail anywhere (struct, index, unicode errors)
        if isinstance(exc, ProtocolError):
            raise
        raise ProtocolError(f"corrupt TFLite model file: {exc}", "bad_model") from exc


def _buffer_span(buf: Table) -> tuple[int, int]:
    data_off = buf.Offset(_slot(_BUF_DATA))
    if data_off:
        start, length = buf.Vector(data_off), buf.VectorLen(data_off)
        return start, start + length
    # Large models keep buffers after the FlatBuffer, addressed by offset/size.
    off = buf.Offset(_slot(_BUF_OFFSET))
    size = buf.Offset(_slot(_BUF_SIZE))
    if off and size:
        o = buf.Get(flatbuffers.number_types.Uint64Flags, off + buf.Pos)
        n = buf.Get(flatbuffers.number_types.Uint64Flags, size + buf.Pos)
        return o, o + n
    return 0, 0


def read_manifest(model_bytes: bytes) -> Manifest:
    """The manifest embedded in a fedge-exported `.tflite` file."""
    entries = metadata_entries(model_bytes)
    if MANIFEST_METADATA_NAME not in entries:
        raise ProtocolError(
            "this .tflite has no fedge manifest: export it with `fedge export`", "bad_model"
        )
    return Manifest.from_json(entries[MANIFEST_METADATA_NAME])


def read_initial_weights(model_bytes: bytes) -> bytes:
    """The float32 update payload of the weights the model was exported with."""
    entries = metadata_entries(model_bytes)
    if INITIAL_WEIGHTS_METADATA_NAME not in entries:
        raise ProtocolError("this .tflite has no fedge initial weights: re-export it with `fedge export`", "bad_model")
    return entries[INITIAL_WEIGHTS_METADATA_NAME]


def with_weights(model_bytes: bytes, weights_payload: bytes) -> bytes:
    """The same model file with its ``fedge_initial_weights`` replaced by ``weights_payload``.

    A float32 payload of the same model has exactly the same length, so the bytes are
    overwritten in place and the FlatBuffer stays valid. `LocalModel` loads these
    weights when it opens a file, so the result is the trained global model.
    """
    spans = metadata_spans(model_bytes)
    if INITIAL_WEIGHTS_METADATA_NAME not in spans:
        raise ProtocolError("this .tflite has no fedge initial weights: re-export it with `fedge export`", "bad_model")
    start, end = spans[INITIAL_WEIGHTS_METADATA_NAME]
    if end - start != len(weights_payload):
        raise ProtocolError("weights payload does not match the model's size", "shape_mismatch")
    out = bytearray(model_bytes)
    out[start:end] = weights_payload
    return bytes(out)
