"""`make apk` (android_sample/build-apk.sh): an installable, signed APK built here from
Debian's packages and Maven Central only, checked as a store or `adb install` would: the
signature, the badging (package, SDK levels, launchable activity, ABIs), zip alignment, and a
dex that holds every class of the app and the Java core. No emulator or phone runs it here."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.android_sample.conftest import REPO
from tests.missing_tool import skip_or_fail

pytestmark = pytest.mark.slow
SAMPLE = REPO / "android_sample"
ABIS = ["arm64-v8a", "armeabi-v7a", "x86", "x86_64"]


@pytest.fixture(scope="module")
def apk(tmp_path_factory) -> Path:
    missing = [t for t in ("aapt", "zipalign", "apksigner", "dexdump", "javac", "keytool", "zip", "unzip")
               if shutil.which(t) is None]
    if missing:
        skip_or_fail(f"APK tools missing: {missing} (apt-get install aapt zipalign apksigner dexdump zip unzip)",
                     "FEDGE_REQUIRE_JAVA")
    out = tmp_path_factory.mktemp("apk")
    res = subprocess.run(["bash", str(SAMPLE / "build-apk.sh"), str(out)], capture_output=True, text=True, timeout=900)
    if res.returncode != 0 and "fetch-dependencies.sh" in res.stderr:
        skip_or_fail(res.stderr[-500:], "FEDGE_REQUIRE_JAVA")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out


def _run(*cmd) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return res.stdout


def test_the_apk_is_signed_aligned_and_says_what_it_is(apk):
    path = apk / "fedge-sample-debug.apk"
    verify = _run("apksigner", "verify", "-v", str(path))
    assert "Verified using v2 scheme (APK Signature Scheme v2): true" in verify
    _run("zipalign", "-c", "-p", "4", str(path))
    badging = _run("aapt", "dump", "badging", str(path))
    assert "package: name='dev.fedge.sample' versionCode='1' versionName='0.1'" in badging
    assert "sdkVersion:'26'" in badging and "targetSdkVersion:'34'" in badging
    assert "launchable-activity: name='dev.fedge.sample.MainActivity'" in badging
    assert "native-code: " + " ".join(f"'{a}'" for a in ABIS) in badging
    assert (apk / "debug.keystore").exists()  # the debug key made by the build, in its output folder


def test_the_dex_holds_every_class_of_the_app_and_the_core(apk):
    dex = apk / "work" / "dex" / "classes.dex"
    names = set(re.findall(r"Class descriptor\s+:\s+'L([^;]+);'", _run("dexdump", str(dex))))
    expected = set()
    for source in [*(SAMPLE / "app" / "src" / "main" / "java").rglob("*.java"),
                   *(SAMPLE / "fedge-core" / "src" / "main" / "java").rglob("*.java")]:
        package = re.search(r"^package ([\w.]+);", source.read_text(), re.M).group(1)
        expected.add(f"{package.replace('.', '/')}/{source.stem}")
    assert expected and expected <= names, sorted(expected - names)[:10]
    header = _run("dexdump", "-f", str(dex))
    methods = int(re.search(r"method_ids_size\s+:\s+(\d+)", header).group(1))
    assert methods < 65536  # one dex, no multidex needed on API 26
    assert "org/tensorflow/lite/Interpreter" in names and "com/google/gson/Gson" in names


def test_gradle_declares_what_the_script_builds():
    script = (SAMPLE / "build-apk.sh").read_text()
    gradle = (SAMPLE / "app" / "build.gradle").read_text()
    for key, gradle_key in (("MIN_SDK", "minSdk"), ("TARGET_SDK", "targetSdk"), ("VERSION_CODE", "versionCode")):
        value = re.search(rf"^{key}=(\d+)", script, re.M).group(1)
        assert re.search(rf"\b{gradle_key} {value}\b", gradle), (key, value)
    name = re.search(r"^VERSION_NAME=([\w.]+)", script, re.M).group(1)
    assert f'versionName "{name}"' in gradle


def test_the_sdk_is_an_aar_in_a_local_maven_repository(apk):
    """What an app team adds: dev.fedge:fedge-android (an AAR) and dev.fedge:fedge-core (a jar),
    laid out as a Maven repository with their poms, the AAR's classes the SDK's alone."""
    import xml.etree.ElementTree as ET
    import zipfile

    repo = apk / "maven" / "dev" / "fedge"
    aar = repo / "fedge-android" / "0.1" / "fedge-android-0.1.aar"
    with zipfile.ZipFile(aar) as z:
        assert {"AndroidManifest.xml", "classes.jar", "R.txt"} <= set(z.namelist())
        manifest = z.read("AndroidManifest.xml").decode()
        (apk / "sdk-classes.jar").write_bytes(z.read("classes.jar"))
    assert 'package="dev.fedge.android"' in manifest and 'android:minSdkVersion="26"' in manifest
    assert "dev.fedge.android.FedgeJobService" in manifest
    with zipfile.ZipFile(apk / "sdk-classes.jar") as classes:
        names = set(classes.namelist())
    assert {"dev/fedge/android/Fedge.class", "dev/fedge/android/ExampleStore.class"} <= names
    assert not any(n.startswith("dev/fedge/core/") or n.startswith("dev/fedge/sample/") for n in names)
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    pom = ET.parse(repo / "fedge-android" / "0.1" / "fedge-android-0.1.pom").getroot()
    assert pom.findtext("m:packaging", namespaces=ns) == "aar"
    deps = {(d.findtext("m:groupId", namespaces=ns), d.findtext("m:artifactId", namespaces=ns))
            for d in pom.iterfind("m:dependencies/m:dependency", ns)}
    assert {("dev.fedge", "fedge-core"), ("org.tensorflow", "tensorflow-lite")} <= deps
    with zipfile.ZipFile(repo / "fedge-core" / "0.1" / "fedge-core-0.1.jar") as core:
        assert "dev/fedge/core/FedgeDevice.class" in core.namelist()
    ET.parse(repo / "fedge-core" / "0.1" / "fedge-core-0.1.pom")  # well-formed
