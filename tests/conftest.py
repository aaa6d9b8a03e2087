import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def digits_tflite(tmp_path_factory) -> bytes:
    """The zoo digits MLP, exported once per test session (needs the [export] extra)."""
    from model_export.exporter import export_model
    from model_export.zoo import digits_mlp

    result = export_model(digits_mlp(), name="digits_mlp", parity_steps=0)
    return result.tflite
