"""Embed fedge's metadata entries into the `.tflite` (TFLite's own Model.metadata mechanism).

Entries: ``fedge_manifest`` (manifest JSON) and ``fedge_initial_weights`` (the
get_weights() values at export, as a float32 update payload of `protocol.codec`), so
the coordinator can start a task from the file alone, without running it.
"""

from __future__ import annotations

import flatbuffers
import numpy as np
from tensorflow.lite.python import schema_py_generated as schema


def embed_metadata(model_bytes: bytes, entries: dict[str, bytes]) -> bytes:
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    model.metadata = [m for m in (model.metadata or []) if m.name not in entries]
    for name, data in entries.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(data, np.uint8)
        model.buffers.append(buffer)
        meta = schema.MetadataT()
        meta.name = name
        meta.buffer = len(model.buffers) - 1
        model.metadata.append(meta)
    builder = flatbuffers.Builder(len(model_bytes) + sum(len(d) for d in entries.values()) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
