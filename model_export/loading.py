"""Load the model to export: a `.keras` file, a `module:factory`, or a zoo name."""

from __future__ import annotations

import importlib
from pathlib import Path

from model_export.errors import ExportError


def load_model(spec: str | None, zoo: str | None):
    if spec and ":" not in spec:
        path = Path(spec)
        if not path.exists():
            raise ExportError(f"model file {path} does not exist")
        if path.suffix != ".keras":
            raise ExportError(f"{path} is not a .keras file (save with model.save('model.keras'))")
    import keras

    if zoo:
        from model_export.zoo import ZOO

        if zoo not in ZOO:
            raise ExportError(f"unknown zoo model '{zoo}'; choose from {', '.join(ZOO)}")
        model = ZOO[zoo]()
    elif spec and ":" in spec and not Path(spec).exists():
        module_name, _, attr = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ExportError(f"cannot import {spec}: {exc}") from exc
        model = factory()
    else:
        path = Path(spec)
        try:
            model = keras.models.load_model(path)
        except Exception as exc:  # Keras raises many types for a corrupt file
            raise ExportError(f"{path} is not a loadable Keras model: {str(exc).splitlines()[0]}") from exc
    if not isinstance(model, keras.Model):
        raise ExportError(f"{spec or zoo} did not give a keras.Model (got {type(model).__name__})")
    return model
