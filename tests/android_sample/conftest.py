"""Builds the Android sample's plain-Java core (and its JVM tests) with Maven, once per session.

Needs a JDK (11+) and Maven with the core's dependencies (Gson, Bouncy Castle, JUnit 4, from
Maven Central) in ~/.m2: `bash android_sample/fetch-dependencies.sh` fetches them (.ci/run
does). Without them the Java tests are skipped, unless FEDGE_REQUIRE_JAVA=1 (set by .ci/run)
makes that a failure.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.missing_tool import skip_or_fail

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "android_sample" / "fedge-core"
FETCH = "bash android_sample/fetch-dependencies.sh"


def write_examples_csv(path: Path, x, y, rows) -> Path:
    """The Java core's examples file (dev.fedge.core.Examples): features, then the integer label, a row a line."""
    path.write_text("".join(",".join(f"{v:.6g}" for v in x[j]) + f",{y[j]}\n" for j in rows))
    return path


@pytest.fixture(scope="session")
def java_classpath(tmp_path_factory) -> str:
    """The core's classes, its test classes (the JVM device and trainer) and its dependencies."""
    missing = [t for t in ("javac", "java", "mvn") if shutil.which(t) is None]
    if missing:
        skip_or_fail(f"Java toolchain missing: {missing} (apt-get install openjdk-17-jdk-headless maven)",
                     "FEDGE_REQUIRE_JAVA")
    out = tmp_path_factory.mktemp("java-core")
    cp_file = out / "classpath.txt"
    # --release 11 and -Werror (the pom): the core must not use JDK APIs newer than Android's desugaring offers.
    res = subprocess.run(["mvn", "-B", "-q", "-o", "-f", str(CORE / "pom.xml"), f"-Dfedge.build.dir={out}",
                          "test-compile", "dependency:build-classpath", f"-Dmdep.outputFile={cp_file}"],
                         capture_output=True, text=True, timeout=600)
    if res.returncode != 0 and ("offline" in res.stdout or "resolve" in res.stdout) and "ERROR" in res.stdout \
            and "COMPILATION ERROR" not in res.stdout:
        skip_or_fail(f"the core's Maven dependencies are not in ~/.m2; fetch them: {FETCH}\n{res.stdout[-1500:]}",
                     "FEDGE_REQUIRE_JAVA")
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]
    deps = cp_file.read_text().strip()
    return os.pathsep.join([str(out / "classes"), str(out / "test-classes"), deps])


@pytest.fixture(scope="session")
def softmax_tflite() -> bytes:
    """Softmax regression on the 64 digit features: the model the Java trainer knows."""
    import keras

    from model_export.exporter import export_model

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5), loss="sparse_categorical_crossentropy")
    return export_model(model, name="digits_softmax", parity_steps=0).tflite


@pytest.fixture(scope="session")
def softmax_dp_tflite() -> bytes:
    """The same softmax regression with the example-level DP-SGD step (fedge export --dp-sgd)."""
    import keras

    from model_export.exporter import export_model

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5), loss="sparse_categorical_crossentropy")
    return export_model(model, name="digits_softmax_dp", parity_steps=0, dp_microbatches=32).tflite
