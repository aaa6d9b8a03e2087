"""The API-level gate: every class of the Java core is checked against Android 8.0's API
(minSdk 26) by Animal Sniffer with the android-api-level-26 signature, bound to the core's
Maven build (android_sample/fedge-core/pom.xml). The core itself passes it (the
`java_classpath` fixture builds it); here a probe that calls what exists on the JDK but not
on Android 8 (BigInteger.sqrt(), API 33; ByteBuffer.clear() returning ByteBuffer, API 34)
must fail the same build."""

import shutil
import subprocess

import pytest

from tests.android_sample.conftest import CORE
from tests.missing_tool import skip_or_fail

PROBE = """package dev.fedge.probe;

import java.math.BigInteger;
import java.nio.ByteBuffer;

public final class Probe {
    public static BigInteger root(BigInteger n) {
        return n.sqrt();
    }

    public static ByteBuffer reset(ByteBuffer b) {
        return b.clear();
    }
}
"""


def _build(project, tmp_path):
    return subprocess.run(["mvn", "-B", "-o", "-f", str(project / "pom.xml"), f"-Dfedge.build.dir={tmp_path / 'out'}",
                           "process-classes"], capture_output=True, text=True, timeout=600)


def test_a_call_above_the_minimum_sdk_fails_the_build(java_classpath, tmp_path):
    if shutil.which("mvn") is None:
        skip_or_fail("Maven missing", "FEDGE_REQUIRE_JAVA")
    project = tmp_path / "probe"
    source = project / "src" / "main" / "java" / "dev" / "fedge" / "probe"
    source.mkdir(parents=True)
    shutil.copy(CORE / "pom.xml", project / "pom.xml")  # the core's own gate, as configured there
    (source / "Probe.java").write_text(PROBE)
    res = _build(project, tmp_path)
    assert res.returncode != 0, "the gate let a call above API 26 through"
    assert "Undefined reference: java.math.BigInteger java.math.BigInteger.sqrt()" in res.stdout, res.stdout[-3000:]
    assert "java.nio.ByteBuffer java.nio.ByteBuffer.clear()" in res.stdout
    # The same probe written for API 26 passes.
    (source / "Probe.java").write_text(PROBE.replace("n.sqrt()", "n.shiftRight(n.bitLength() / 2)")
                                       .replace("return b.clear();", "((java.nio.Buffer) b).clear();\n        return b;"))
    res = _build(project, tmp_path)
    assert res.returncode == 0, res.stdout[-3000:]
