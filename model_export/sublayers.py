"""Every layer inside a Keras model, nested models and wrapped layers included."""

from __future__ import annotations


def sublayers(model) -> list:
    return list(model._flatten_layers(include_self=False, recursive=True))  # noqa: SLF001 - Keras has no public walk
