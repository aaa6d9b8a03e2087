"""Builds the Android sample's plain-Java core (and its JVM tests) with javac, once per session.

Needs a JDK (11+), JUnit 4, Gson and Bouncy Castle: on Debian `apt-get install
openjdk-17-jdk-headless junit4 libgoogle-gson-java libbcprov-java` (.ci/run installs them). Without them the Java tests are
skipped, unless FEDGE_REQUIRE_JAVA=1 (set by .ci/run) makes that a failure.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.missing_tool import skip_or_fail

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "android_sample" / "fedge-core"
JARS = [Path("/usr/share/java") / name for name in ("gson.jar", "bcprov.jar", "junit4.jar", "hamcrest-core.jar")]


@pytest.fixture(scope="session")
def java_classpath(tmp_path_factory) -> str:
    missing = [str(j) for j in JARS if not j.exists()] + [t for t in ("javac", "java") if shutil.which(t) is None]
    if missing:
        message = f"Java toolchain missing: {missing} (apt-get install openjdk-17-jdk-headless junit4 libgoogle-gson-java libbcprov-java)"
        skip_or_fail(message, "FEDGE_REQUIRE_JAVA")
    out = tmp_path_factory.mktemp("java-classes")
    sources = sorted(str(p) for p in CORE.joinpath("src").rglob("*.java"))
    classpath = os.pathsep.join(map(str, JARS))
    # --release 11: the core must not use JDK APIs newer than what Android's desugaring offers.
    # -path: Debian's bcprov.jar names absent optional jars in its manifest's Class-Path.
    res = subprocess.run(["javac", "--release", "11", "-Xlint:all,-path", "-Werror", "-d", str(out), "-cp", classpath,
                          *sources], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return os.pathsep.join([str(out), classpath])


@pytest.fixture(scope="session")
def softmax_tflite() -> bytes:
    """Softmax regression on the 64 digit features: the model the Java trainer knows."""
    import keras

    from model_export.exporter import export_model

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5), loss="sparse_categorical_crossentropy")
    return export_model(model, name="digits_softmax", parity_steps=0).tflite
