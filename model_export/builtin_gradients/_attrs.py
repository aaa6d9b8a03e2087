"""Reading a forward op's attributes inside a gradient function."""

from __future__ import annotations


def text(op, name: str) -> str:
    value = op.get_attr(name)
    return value.decode() if isinstance(value, bytes) else str(value)


def ints(op, name: str) -> list[int]:
    try:
        return [int(v) for v in op.get_attr(name)]
    except (ValueError, KeyError):
        return []


def static_shape(tensor, what: str) -> list[int]:
    shape = tensor.shape.as_list()
    if any(d is None for d in shape):
        raise NotImplementedError(f"{what}: a builtin gradient needs a static shape, got {shape}")
    return shape
