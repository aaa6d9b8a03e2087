"""Where each travelling weight's initial value already is in the converted `.tflite`.

The converter freezes every variable's value at export into a constant that the
initialization subgraph assigns (ASSIGN_VARIABLE(handle, constant)), and stores identical
constants once. When a weight's value is exactly one such constant that nothing else
reads, the manifest names that buffer (``initial_buffers``) and the file needs no second
copy of it: `protocol.tflite_file` reads it there and, for a global model's download,
overwrites it in place. The other weights (-1: e.g. a zero bias whose constant a
convolution's gradient also uses as its own zero bias, or two weights with the same bytes)
keep a copy in the ``fedge_initial_weights`` metadata, which then holds only them.
"""

from __future__ import annotations

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema


def _assigned_constants(model) -> dict[bytes, list[int]]:
    """The buffers that only ever initialize variables (every tensor on them is the value of
    an ASSIGN_VARIABLE in an initialization subgraph and nothing else reads it), by their
    bytes: overwriting one in place changes those variables' starting values and nothing else."""
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    # The initialization subgraphs: what CALL_ONCE runs. An ASSIGN_VARIABLE elsewhere (a
    # reset in set_weights) is a use like any other.
    init = {op.builtinOptions.initSubgraphIndex for sg in model.subgraphs for op in sg.operators or []
            if codes[op.opcodeIndex] == schema.BuiltinOperator.CALL_ONCE}
    assigned: set[int] = set()
    read_otherwise: set[int] = set()
    for number, sg in enumerate(model.subgraphs):
        for op in sg.operators or []:
            is_assign = number in init and codes[op.opcodeIndex] == schema.BuiltinOperator.ASSIGN_VARIABLE
            for position, tensor in enumerate(op.inputs if op.inputs is not None else []):
                if tensor < 0:
                    continue
                index = sg.tensors[tensor].buffer
                (assigned if is_assign and position == 1 else read_otherwise).add(index)
        for tensor in list(sg.inputs if sg.inputs is not None else []) + list(sg.outputs if sg.outputs is not None else []):
            read_otherwise.add(sg.tensors[tensor].buffer)
    found: dict[bytes, list[int]] = {}
    for index in sorted(assigned - read_otherwise):
        data = model.buffers[index].data if 0 < index < len(model.buffers) else None
        if data is not None:
            found.setdefault(bytes(data), []).append(index)
    return found


def initializer_buffers(raw: bytes, values: list[np.ndarray], others: list[np.ndarray]) -> tuple[int, ...]:
    """Per travelling weight (``values``, float32, manifest order): the index of the buffer
    that holds its initial value and only initializes variables, or -1 when there is none or
    it may be shared: with another weight, or with one of ``others`` (the model's other
    variables) of the same bytes."""
    model = schema.ModelT.InitFromPackedBuf(bytearray(raw), 0)
    constants = _assigned_constants(model)
    mine = [np.ascontiguousarray(v, "<f4").tobytes() for v in values]
    taken = {np.ascontiguousarray(o).tobytes() for o in others}
    chosen = []
    for value in mine:
        candidates = constants.get(value, [])
        alone = len(candidates) == 1 and mine.count(value) == 1 and value not in taken
        chosen.append(candidates[0] if alone else -1)
    return tuple(chosen)
