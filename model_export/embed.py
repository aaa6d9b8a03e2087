"""Embed the manifest into the `.tflite` as a metadata entry (TFLite's own mechanism)."""

from __future__ import annotations

import flatbuffers
from tensorflow.lite.python import schema_py_generated as schema

from protocol.manifest import MANIFEST_METADATA_NAME, Manifest


def embed_manifest(model_bytes: bytes, manifest: Manifest) -> bytes:
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    buffer = schema.BufferT()
    buffer.data = list(manifest.to_json().encode("utf-8"))
    model.buffers.append(buffer)
    meta = schema.MetadataT()
    meta.name = MANIFEST_METADATA_NAME
    meta.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != MANIFEST_METADATA_NAME] + [meta]
    builder = flatbuffers.Builder(len(model_bytes) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
