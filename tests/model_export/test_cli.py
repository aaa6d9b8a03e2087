"""`fedge export` turns bad input into one clear line and a non-zero exit."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def _export(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fedge", "export", *args], capture_output=True, text=True, cwd=cwd)


def test_zoo_export_writes_a_model_and_prints_parity(tmp_path):
    out = tmp_path / "m.tflite"
    res = _export("--zoo", "digits_mlp", "-o", str(out), "--manifest-json", str(tmp_path / "m.json"))
    assert res.returncode == 0, res.stderr
    assert "PASS" in res.stdout and out.stat().st_size > 10_000
    # Long work says what it is doing, stage by stage.
    stages = [line for line in res.stdout.splitlines() if line.startswith("[")]
    assert [s.split("] ")[1].split(" ")[0] for s in stages] == ["tracing", "converting", "parity:", "FedProx"], stages
    assert '"model_name": "digits_mlp"' in (tmp_path / "m.json").read_text()
    # TensorFlow's and LiteRT's native log lines are not the user's business (--debug shows them).
    assert not any(noise in res.stderr for noise in ("oneDNN", "cuda", "XNNPACK", "absl")), res.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.keras", "-o", "OUT/m.tflite"], "does not exist"),
        (["--zoo", "digits_mlp", "-o", "/nonexistent-dir/m.tflite"], "does not exist"),
        (["NOTKERAS", "-o", "OUT/m.tflite"], "is not a .keras file"),
        (["os:getcwd", "-o", "OUT/m.tflite"], "did not give a keras.Model"),
        (["-o", "OUT/m.tflite"], "exactly one of MODEL or --zoo"),
    ],
)
def test_bad_input_is_one_line(tmp_path, args, message):
    notkeras = tmp_path / "model.h5"
    notkeras.write_text("x")
    args = [a.replace("OUT", str(tmp_path)).replace("NOTKERAS", str(notkeras)) for a in args]
    res = _export(*args, cwd=tmp_path)
    assert res.returncode != 0
    errors = [line for line in res.stderr.splitlines() if line.startswith("fedge export: error:")]
    assert len(errors) == 1 and message in errors[0], res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "m.tflite").exists()


def test_keras_file_round_trip(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    path = tmp_path / "small.keras"
    model.save(path)
    res = _export(str(path), "-o", str(tmp_path / "small.tflite"), "--batch-size", "8")
    assert res.returncode == 0, res.stderr
    assert "PASS" in res.stdout


def test_the_cli_offers_every_zoo_model():
    from model_export.cli import ZOO_NAMES
    from model_export.zoo import ZOO

    assert sorted(ZOO_NAMES) == sorted(ZOO)


def test_a_model_outside_the_corpus_using_covered_ops_just_exports(tmp_path):
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "resnet.tflite"
    env = {**os.environ, "PYTHONPATH": str(root)}
    res = subprocess.run([sys.executable, "-m", "fedge", "export", "tests.model_export.unseen_models:tiny_resnet",
                          "-o", str(out)], capture_output=True, text=True, cwd=root, env=env)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "PASS" in res.stdout and "WARNING" not in res.stdout
    from protocol.tflite_file import read_manifest

    manifest = read_manifest(out.read_bytes())
    assert manifest.model_name == "tiny_resnet" and not manifest.requires_flex
    assert manifest.optimizer["name"] == "adamw" and manifest.optimizer["weight_decay"] == pytest.approx(0.02)
