"""The sample app (android_sample/app) compiled against the Android 14 framework (API 34) and its
Android parts tested with Robolectric on the JVM (no APK is built here: the Android Gradle
plugin and d8 live in Google's Maven repository, which these machines cannot reach).

Steps: Maven resolves android_sample/app/pom.xml's dependencies from Maven Central (offline
once .ci/run has fetched them); Debian's aapt checks the manifest and resources and writes
R.java and the resource table; javac compiles every source of the app with -Werror against
the framework jar, the Java core and the TensorFlow Lite 2.16.1 Java API (the org.tensorflow.lite
classes LiteRT 1.x continues; Maven Central serves no LiteRT artifact); the tests under
android_sample/app/src/test run under Robolectric (binary resources from aapt), where LiteRT's
native library does not load.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.missing_tool import skip_or_fail

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "android_sample" / "app"
SDK = REPO / "android_sample" / "fedge-android"  # the library an app adds: compiled and tested with the app
MODULES = (APP, SDK)


def _java(kind: str):
    """Every .java of the app and the SDK under src/KIND/java."""
    return [p for m in MODULES for p in (m / "src" / kind / "java").rglob("*.java")]


def _class_name(path: Path) -> str:
    root = next(m / "src" / "test" / "java" for m in MODULES if (m / "src" / "test" / "java") in path.parents)
    return ".".join(path.relative_to(root).with_suffix("").parts)
PACKAGE = "dev.fedge.sample"
# Robolectric 4.14.1 runs the tests on API 34's instrumented framework and reads resources with
# its newest (API 35) one: both come from Maven Central.
INSTRUMENTED = [("org.robolectric", "android-all-instrumented", v)
                for v in ("14-robolectric-10818077-i7", "15-robolectric-12650502-i7")]
FETCH = "bash android_sample/fetch-dependencies.sh"


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        skip_or_fail(f"{tool} is missing (apt-get install maven aapt openjdk-17-jdk-headless)", "FEDGE_REQUIRE_JAVA")


def _jar_of(path: Path, out: Path) -> str:
    """A classpath entry: an Android library (.aar, e.g. androidx.test's monitor, which
    Robolectric loads) is a zip whose classes.jar is what the JVM needs."""
    if path.suffix != ".aar":
        return str(path)
    import zipfile

    jar = out / "aar" / f"{path.stem}.jar"
    jar.parent.mkdir(exist_ok=True)
    with zipfile.ZipFile(path) as aar:
        jar.write_bytes(aar.read("classes.jar"))
    return str(jar)


@pytest.fixture(scope="module")
def app_build(java_classpath, tmp_path_factory):
    for tool in ("mvn", "aapt", "javac", "java"):
        _need(tool)
    out = tmp_path_factory.mktemp("android-app")
    cp_file = out / "classpath.txt"
    res = subprocess.run(["mvn", "-B", "-q", "-o", "-f", str(APP / "pom.xml"), "dependency:build-classpath",
                          f"-Dmdep.outputFile={cp_file}"], capture_output=True, text=True, timeout=300)
    repo = Path.home() / ".m2" / "repository"
    jars = [next(iter(repo.joinpath(*g.split("."), a, v).glob("*.jar")), None) for g, a, v in INSTRUMENTED]
    if res.returncode != 0 or None in jars:
        skip_or_fail(f"the app's Maven dependencies are not in ~/.m2 ({res.stdout[-400:]}); fetch them: {FETCH}",
                     "FEDGE_REQUIRE_JAVA")
    # Robolectric's offline mode reads its framework jars from one folder.
    instrumented = out / "robolectric-jars"
    instrumented.mkdir()
    for jar in jars:
        (instrumented / jar.name).symlink_to(jar)
    deps = [_jar_of(Path(p), out) for p in cp_file.read_text().strip().split(os.pathsep)]
    framework = next(p for p in deps if Path(p).name.startswith("android-all-"))

    # aapt: AGP takes the package from build.gradle's namespace; aapt wants it in the manifest.
    manifest = out / "AndroidManifest.xml"
    text = (APP / "src/main/AndroidManifest.xml").read_text()
    manifest.write_text(text.replace("<manifest ", f'<manifest package="{PACKAGE}" ', 1))
    gen, apk = out / "gen", out / "resources.ap_"
    gen.mkdir()
    res = subprocess.run(["aapt", "package", "-f", "-m", "-J", str(gen), "-M", str(manifest),
                          "-S", str(APP / "src/main/res"), "-A", str(APP / "src/main/assets"), "-I", framework,
                          "-F", str(apk)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr

    classes = out / "classes"
    sources = [*map(str, _java("main")), *map(str, gen.rglob("*.java"))]
    litert = [d for d in deps if Path(d).name.startswith("tensorflow-lite")]
    assert len(litert) == 2, deps  # the Interpreter API and its runtime's classes
    compile_cp = os.pathsep.join([framework, java_classpath, *litert])
    res = subprocess.run(["javac", "--release", "11", "-Xlint:all,-path,-classfile,-options", "-Werror",
                          "-d", str(classes), "-cp", compile_cp, *sources], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr

    test_classes = out / "test-classes"
    tests = sorted(map(str, _java("test")))
    run_cp = os.pathsep.join([str(test_classes), str(classes), java_classpath, *deps])
    res = subprocess.run(["javac", "--release", "11", "-Xlint:all,-path,-classfile,-options,-processing,-deprecation", "-Werror",
                          "-d", str(test_classes), "-cp", run_cp, *tests], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    # Robolectric's binary-resources mode reads the app's manifest and resource table from here.
    config = test_classes / "com" / "android" / "tools" / "test_config.properties"
    config.parent.mkdir(parents=True)
    config.write_text(f"android_merged_manifest={manifest}\nandroid_resource_apk={apk}\n"
                      f"android_custom_package={PACKAGE}\n")
    names = [_class_name(Path(t)) for t in tests if Path(t).stem.endswith("Test")]
    return {"classes": classes, "run_cp": run_cp, "tests": names,
            "instrumented": instrumented, "out": out}


def test_every_source_of_the_app_compiles_against_the_android_framework(app_build):
    compiled = {p.stem.split("$")[0] for p in app_build["classes"].rglob("*.class")}
    sources = {p.stem for p in _java("main")}
    assert sources and sources <= compiled, sources - compiled
    assert "R" in compiled  # aapt accepted the manifest and resources and named them


def test_every_app_class_calls_only_what_android_8_has(app_build):
    """The API-level gate on the app's classes (app/pom.xml's Animal Sniffer configuration,
    minSdk 26): android.* and java.* calls alike. ByteBuffer.rewind() returning ByteBuffer, 22
    calls of the LiteRT trainer, is Java 9's and not on Android 8; the core is gated by its build."""
    res = subprocess.run(["mvn", "-B", "-o", "-f", str(APP / "pom.xml"), f"-Dfedge.app.classes={app_build['classes']}",
                          "animal-sniffer:check"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, "\n".join(line for line in res.stdout.splitlines() if "ERROR" in line)[-4000:]
    assert "Checking unresolved references to net.sf.androidscents.signature:android-api-level-26" in res.stdout


LIVE = "FedgeJobServiceTest"  # needs the coordinator the last test starts


def _robolectric(app_build, classes: list[str], *props: str) -> str:
    res = subprocess.run(["java", "-Drobolectric.offline=true", f"-Drobolectric.dependency.dir={app_build['instrumented']}",
                          "-Drobolectric.logging.enabled=false", "-Drobolectric.enabledSdks=34",
                          f"-Djava.io.tmpdir={app_build['out']}", *props,
                          "-cp", app_build["run_cp"], "org.junit.runner.JUnitCore", *classes],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-3000:]
    declared = sum(p.read_text().count("@Test") for p in _java("test") if p.stem.endswith("Test")
                   if p.stem in {c.rsplit(".", 1)[1] for c in classes})
    assert declared >= 2 and f"OK ({declared} tests)" in res.stdout, res.stdout[-2000:]
    return res.stdout


def test_the_apps_android_parts_pass_their_robolectric_tests(app_build):
    _robolectric(app_build, [t for t in app_build["tests"] if not t.endswith(LIVE)])


@pytest.mark.slow
def test_the_scheduled_job_runs_a_round_against_a_live_coordinator(app_build, softmax_tflite, tmp_path):
    """FedgeJobService under Robolectric, over real loopback HTTP to `fedge serve`: one round
    trained (a pure-Java trainer stands in for LiteRT), uploaded and committed; with no task,
    the job comes back at the coordinator's retry time."""
    from device_runtime.fleet.datasets import load_digits_pool
    from tests.android_sample.conftest import write_examples_csv
    from tests.serve_process import ADMIN, Server

    x, _, y, _ = load_digits_pool(0)
    csv = write_examples_csv(tmp_path / "examples.csv", x, y, range(300))
    server = Server(str(tmp_path / "c.db"))
    server.start()
    try:
        config = {"rounds": 1, "goal_count": 1, "over_selection": 1.0, "selection_window_s": 60,
                  "report_deadline_s": 60, "codec": "q8", "learning_rate": 0.5, "epochs": 1,
                  "eligibility": "charging"}
        server.setup_task("phones", softmax_tflite, config)
        server.setup_task("stores", softmax_tflite, config, task_id="ts")  # trained from the app's example store
        assert server.call("POST", "/v1/admin/populations", {"name": "quiet"}, ADMIN)[0] == 201
        _robolectric(app_build, [t for t in app_build["tests"] if t.endswith(LIVE)],
                     f"-Dfedge.coordinator={server.url}", "-Dfedge.population=phones",
                     "-Dfedge.store_population=stores", "-Dfedge.idle_population=quiet", f"-Dfedge.examples={csv}")
        rounds = server.call("GET", "/v1/admin/tasks/t", headers=ADMIN)[1]["rounds"]
        assert rounds[0]["state"] == "committed" and rounds[0]["reported"] == 1, rounds
        stored = server.call("GET", "/v1/admin/tasks/ts", headers=ADMIN)[1]["rounds"]
        assert stored[0]["state"] == "committed" and stored[0]["examples"] == 240, stored  # 300 less the holdout
    finally:
        server.kill9()
