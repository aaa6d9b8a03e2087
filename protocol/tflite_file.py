"""Read the fedge manifest and initial weights out of a `.tflite` file without TensorFlow.

A `.tflite` file is a FlatBuffer (schema ``tflite/schema.fbs``, file identifier
``TFL3``). The manifest is a ``Model.metadata`` entry named ``fedge_manifest`` whose
buffer holds the manifest JSON. The initial weights are either the variables' own
initializer constants, in the buffers the manifest's ``initial_buffers`` names, or a
``fedge_initial_weights`` metadata entry (files exported before, or whose weights share a
constant). Only the few tables on those paths are read, with the ``flatbuffers``
runtime's generic table accessor.
"""

from __future__ import annotations

import flatbuffers
from flatbuffers.table import Table

import numpy as np

from protocol import codec
from protocol.errors import ProtocolError
from protocol.manifest import INITIAL_WEIGHTS_METADATA_NAME, MANIFEST_METADATA_NAME, Manifest

_FILE_IDENTIFIER = b"TFL3"
# Field slots in schema.fbs: Model.buffers = 4, Model.metadata = 6; Metadata.name = 0,
# Metadata.buffer = 1; Buffer.data = 0, Buffer.offset = 1, Buffer.size = 2.
_MODEL_BUFFERS, _MODEL_METADATA, _MODEL_SIGNATURE_DEFS = 4, 6, 7
_SIG_KEY = 2  # SignatureDef.signature_key
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
    root = _root(data)
    try:
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


def _root(data: bytes) -> Table:
    if len(data) < 8 or data[4:8] != _FILE_IDENTIFIER:
        raise ProtocolError("not a TFLite model file (missing TFL3 identifier)", "bad_model")
    return Table(data, flatbuffers.encode.Get(flatbuffers.packer.uoffset, data, 0))


def weight_spans(model_bytes: bytes, manifest: Manifest) -> list[tuple[int, int] | None]:
    """Per weight, the (start, end) bytes of its initializer constant (``initial_buffers``),
    checked to be exactly the weight's float32 size, or None where the metadata holds it."""
    data = bytes(model_bytes)
    try:
        buffers = _vector_tables(_root(data), _MODEL_BUFFERS)
        spans = [None if i < 0 else _buffer_span(buffers[i]) if 0 < i < len(buffers) else (0, -1)
                 for i in manifest.initial_buffers]
    except Exception as exc:  # a corrupt FlatBuffer can fail anywhere
        if isinstance(exc, ProtocolError):
            raise
        raise ProtocolError(f"corrupt TFLite model file: {exc}", "bad_model") from exc
    for span, w in zip(spans, manifest.weights):
        if span is not None and (span[1] - span[0] != 4 * w.size or not 0 <= span[0] <= span[1] <= len(data)):
            raise ProtocolError(f"the manifest's initial buffer for {w.key} is not {w.size} float32 values",
                                "bad_model")
    return spans


def _split(model_bytes: bytes) -> tuple[Manifest, list[tuple[int, int] | None], tuple[int, int] | None]:
    """The manifest, each weight's initializer span (None: in the metadata), the metadata's span."""
    manifest = read_manifest(model_bytes)
    meta = metadata_spans(model_bytes).get(INITIAL_WEIGHTS_METADATA_NAME)
    spans = weight_spans(model_bytes, manifest) if manifest.initial_buffers else [None] * len(manifest.weights)
    if meta is None and None in spans:
        raise ProtocolError("this .tflite has no fedge initial weights: re-export it with `fedge export`", "bad_model")
    return manifest, spans, meta


def read_initial_weights(model_bytes: bytes) -> bytes:
    """The float32 update payload of the weights the model was exported with (or, after
    `with_weights`, the global model's): each from its initializer constant or the metadata."""
    data = bytes(model_bytes)
    manifest, spans, meta = _split(data)
    if all(span is None for span in spans):
        return data[meta[0]:meta[1]]  # the metadata holds every weight (files exported before)
    rest = [w for w, span in zip(manifest.weights, spans) if span is None]
    kept = codec.decode(data[meta[0]:meta[1]], [w.size for w in rest]).values if rest else np.zeros(0, np.float32)
    arrays, position = [], 0
    for span, w in zip(spans, manifest.weights):
        if span is None:
            arrays.append(kept[position:position + w.size].reshape(w.shape))
            position += w.size
        else:
            arrays.append(np.frombuffer(data[span[0]:span[1]], "<f4").reshape(w.shape))
    return codec.encode(arrays, codec.CodecSpec("f32"), None)


def with_weights(model_bytes: bytes, weights_payload: bytes) -> bytes:
    """The same model file carrying ``weights_payload`` (float32, this model's weights) as its
    initial weights, overwritten in place (the same lengths, so the FlatBuffer stays valid):
    in the initializer constants the manifest names and in the ``fedge_initial_weights``
    metadata for the rest. `LocalModel` loads them when it opens a file, so the result is the
    trained global model, and any LiteRT program that runs the file starts from them."""
    manifest, spans, meta = _split(model_bytes)
    try:
        values = codec.decode(weights_payload, [w.size for w in manifest.weights]).values.astype("<f4")
    except ProtocolError as exc:
        raise ProtocolError(f"weights payload does not match the model: {exc}", "shape_mismatch") from exc
    out = bytearray(model_bytes)
    rest, position = [], 0
    for span, w in zip(spans, manifest.weights):
        value = values[position:position + w.size]
        position += w.size
        if span is None:
            rest.append(value)
        else:
            out[span[0]:span[1]] = value.tobytes()
    if rest:
        payload = codec.encode(rest, codec.CodecSpec("f32"), None)
        if meta[1] - meta[0] != len(payload):
            raise ProtocolError("weights payload does not match the model's size", "shape_mismatch")
        out[meta[0]:meta[1]] = payload
    return bytes(out)


def without_weights(model_bytes: bytes) -> bytes:
    """The same model file with its initial weights zeroed (`with_weights` of zeros): what the
    coordinator serves devices, which load every round's weights from the checkpoint they
    download anyway. Zeros compress to almost nothing, so the gzip-compressed download costs
    about the graph alone."""
    manifest = read_manifest(model_bytes)
    zeros = [np.zeros(w.shape, np.float32) for w in manifest.weights]
    return with_weights(model_bytes, codec.encode(zeros, codec.CodecSpec("f32"), None))


INFERENCE_SIGNATURES = ("infer", "evaluate")


def signature_keys(model_bytes: bytes) -> list[str]:
    data = bytes(model_bytes)
    return [sig.String(sig.Offset(_slot(_SIG_KEY)) + sig.Pos).decode("utf-8")
            for sig in _vector_tables(_root(data), _MODEL_SIGNATURE_DEFS)]


def inference_only(model_bytes: bytes, keep: tuple[str, ...] = INFERENCE_SIGNATURES) -> bytes:
    """The same model file exposing only the ``keep`` signatures (a model release: a phone
    infers and evaluates with it, never trains). The signature table's entries are reordered
    in place so that the kept ones come first and its length is cut to them; every other byte
    stays where it is, so the weights' buffers and the metadata keep their spans. Weights the
    file keeps only in its metadata (no initializer constant) need set_weights: kept too."""
    data = bytearray(model_bytes)
    try:
        root = _root(bytes(data))
        manifest, spans, _ = _split(bytes(data))
        wanted = keep + (("set_weights",) if None in spans else ())
        off = root.Offset(_slot(_MODEL_SIGNATURE_DEFS))
        if not off:
            raise ProtocolError("this .tflite has no signatures", "bad_model")
        first, count = root.Vector(off), root.VectorLen(off)
        tables = [root.Indirect(first + 4 * i) for i in range(count)]
        keys = signature_keys(bytes(data))
    except ProtocolError:
        raise
    except Exception as exc:  # a corrupt FlatBuffer can fail anywhere
        raise ProtocolError(f"corrupt TFLite model file: {exc}", "bad_model") from exc
    missing = [k for k in wanted if k not in keys]
    if missing:
        raise ProtocolError(f"this .tflite has no {', '.join(missing)} signature", "bad_model")
    kept = [t for t, k in zip(tables, keys) if k in wanted]
    for i, target in enumerate(kept):  # a uoffset counts from where it is stored
        position = first + 4 * i
        data[position:position + 4] = (target - position).to_bytes(4, "little")
    data[first - 4:first] = len(kept).to_bytes(4, "little")
    return bytes(data)
