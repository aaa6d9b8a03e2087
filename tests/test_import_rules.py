"""DESIGN.md's import rules: devices and the coordinator never load TensorFlow."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("modules", [
    "device_runtime.fleet, device_runtime.cli, device_runtime.device, device_runtime.trainer",
    "coordinator.http.app, coordinator.cli, coordinator.service",
    "protocol.codec, protocol.tflite_file, protocol.eligibility, protocol.messages",
])
def test_no_tensorflow_import(modules):
    code = f"import sys, {modules}; import fedge.cli; fedge.cli.build_parser(); " \
           "bad = [m for m in ('tensorflow', 'keras', 'model_export.exporter') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
