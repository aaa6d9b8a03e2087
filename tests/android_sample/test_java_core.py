"""The Java core's JUnit 4 suite (codec, messages, backoff, HTTP client) against protocol/golden/."""

import subprocess

from tests.android_sample.conftest import CORE, REPO


def test_junit_suite_passes(java_classpath):
    classes = sorted(
        ".".join(p.relative_to(CORE / "src" / "test" / "java").with_suffix("").parts)
        for p in (CORE / "src" / "test" / "java").rglob("*Test.java")
    )
    assert len(classes) >= 5
    res = subprocess.run(["java", f"-Dfedge.golden={REPO / 'protocol' / 'golden'}", "-cp", java_classpath,
                          "org.junit.runner.JUnitCore", *classes], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    ok_line = next(line for line in res.stdout.splitlines() if line.startswith("OK ("))
    assert int(ok_line.split("(")[1].split()[0]) >= 20, ok_line

