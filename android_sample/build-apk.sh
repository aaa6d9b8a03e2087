#!/usr/bin/env bash
# Builds the sample app's signed, installable APK without Gradle or Google's Maven repository,
# from Debian's packages (aapt, zipalign, apksigner, the JDK) and Maven Central (D8 inside
# com.android.tools:r8, the Android 14 framework jar as Robolectric ships it, TensorFlow Lite's
# AARs, Gson, Bouncy Castle), all fetched once by fetch-dependencies.sh; run offline here.
#
#   bash android_sample/build-apk.sh [OUT_DIR]      # default android_sample/build
#
# Writes OUT_DIR/fedge-sample-debug.apk and the SDK as a local Maven repository (OUT_DIR/maven, step 6):
# the APK has minSdk 26, targetSdk 34, the app, the Java core and its
# libraries in one dex, TensorFlow Lite's native libraries for arm64-v8a, armeabi-v7a, x86 and
# x86_64, zipaligned and signed (v2/v3) with a debug key made here (OUT_DIR/debug.keystore,
# never committed). Install with `adb install -r OUT_DIR/fedge-sample-debug.apk`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(mkdir -p "${1:-$here/build}" && cd "${1:-$here/build}" && pwd)"
m2="${MAVEN_REPO:-$HOME/.m2/repository}"
MIN_SDK=26
TARGET_SDK=34  # Debian's aapt reads API 34's resource table, not 35's: build.gradle says the same
PACKAGE=dev.fedge.sample
VERSION_CODE=1
VERSION_NAME=0.1

need() {
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "build-apk: $tool is missing (apt-get install aapt zipalign apksigner openjdk-17-jdk-headless)" >&2; exit 1; }
  done
}
jar_of() {  # group artifact version [ext]
  local path="$m2/${1//.//}/$2/$3/$2-$3.${4:-jar}"
  [[ -f "$path" ]] || { echo "build-apk: $path is missing; run: bash android_sample/fetch-dependencies.sh" >&2; exit 1; }
  echo "$path"
}
need aapt zipalign apksigner javac java keytool unzip zip

framework=$(jar_of org.robolectric android-all 14-robolectric-10818077)
r8=$(jar_of com.android.tools r8 8.5.35)
gson=$(jar_of com.google.code.gson gson 2.10.1)
bcprov=$(jar_of org.bouncycastle bcprov-jdk18on 1.78.1)
tflite_aar=$(jar_of org.tensorflow tensorflow-lite 2.16.1 aar)
tflite_api_aar=$(jar_of org.tensorflow tensorflow-lite-api 2.16.1 aar)

work="$out/work"
rm -rf "$work" && mkdir -p "$work"/{gen,classes,dex,aar,apk}
for aar in "$tflite_aar" "$tflite_api_aar"; do
  name=$(basename "$aar" .aar)
  mkdir -p "$work/aar/$name" && unzip -q -o "$aar" -d "$work/aar/$name"
done
litert_jars=("$work/aar/tensorflow-lite-2.16.1/classes.jar" "$work/aar/tensorflow-lite-api-2.16.1/classes.jar")

# 1. Resources: R.java and the resource table (Gradle takes the package from `namespace`; aapt
#    wants it in the manifest).
sed "s|<manifest |<manifest package=\"$PACKAGE\" |" "$here/app/src/main/AndroidManifest.xml" > "$work/AndroidManifest.xml"
aapt package -f -m -J "$work/gen" -M "$work/AndroidManifest.xml" -S "$here/app/src/main/res" \
  -A "$here/app/src/main/assets" -I "$framework" \
  --min-sdk-version "$MIN_SDK" --target-sdk-version "$TARGET_SDK" --version-code "$VERSION_CODE" \
  --version-name "$VERSION_NAME" -0 tflite -F "$work/apk/resources.ap_"

# 2. The app, the SDK (fedge-android) and the Java core, compiled together against the Android framework.
find "$here/app/src/main/java" "$here/fedge-android/src/main/java" "$here/fedge-core/src/main/java" "$work/gen" \
  -name '*.java' > "$work/sources.txt"
javac --release 11 -nowarn -encoding UTF-8 -d "$work/classes" \
  -cp "$framework:$gson:$bcprov:$(IFS=:; echo "${litert_jars[*]}")" @"$work/sources.txt"
(cd "$work/classes" && jar cf "$work/app-classes.jar" .)
# The core's Java resource: the plan's bounds, declared once in protocol/ (PlanBounds reads it).
mkdir -p "$work/java-res/dev/fedge/core"
cp "$here/../protocol/golden/plan_bounds.json" "$work/java-res/dev/fedge/core/"

# 3. One dex for API 26 (D8 desugars Java 11 and lambdas), the libraries included.
java -cp "$r8" com.android.tools.r8.D8 --release --min-api "$MIN_SDK" --lib "$framework" \
  --output "$work/dex" "$work/app-classes.jar" "$gson" "$bcprov" "${litert_jars[@]}"

# 4. The APK: resources, the dex, the native libraries per ABI (uncompressed, page-aligned).
cp "$work/apk/resources.ap_" "$work/apk/unsigned.apk"
(cd "$work/dex" && zip -q "$work/apk/unsigned.apk" classes*.dex)
(cd "$work/java-res" && zip -q "$work/apk/unsigned.apk" dev/fedge/core/plan_bounds.json)  # D8 keeps no resources
mkdir -p "$work/native/lib"
for abi in arm64-v8a armeabi-v7a x86 x86_64; do
  cp -r "$work/aar/tensorflow-lite-2.16.1/jni/$abi" "$work/native/lib/"
done
(cd "$work/native" && zip -q -0 -r "$work/apk/unsigned.apk" lib)
zipalign -f -p 4 "$work/apk/unsigned.apk" "$work/apk/aligned.apk"

# 5. Signed with a debug key made here (never committed; kept in OUT_DIR for reinstalls).
keystore="$out/debug.keystore"
if [[ ! -f "$keystore" ]]; then
  keytool -genkeypair -keystore "$keystore" -storepass android -keypass android -alias androiddebugkey \
    -keyalg RSA -keysize 2048 -validity 10000 -dname "CN=fedge debug,O=fedge,C=US" >/dev/null 2>&1
fi
apk="$out/fedge-sample-debug.apk"
apksigner sign --ks "$keystore" --ks-pass pass:android --key-pass pass:android --ks-key-alias androiddebugkey \
  --out "$apk" "$work/apk/aligned.apk"
apksigner verify "$apk"
echo "wrote $apk ($(stat -c %s "$apk") bytes); install: adb install -r $apk"

# 6. The SDK an app team adds, as a local Maven repository (OUT_DIR/maven): dev.fedge:fedge-core
#    (a jar) and dev.fedge:fedge-android (an AAR: classes.jar, AndroidManifest.xml, R.txt, res/),
#    each with its pom. Gradle: repositories { maven { url "file://OUT_DIR/maven" } } and
#    implementation "dev.fedge:fedge-android:0.1".
SDK_VERSION=$VERSION_NAME
mkdir -p "$work/core-classes" "$work/sdk-classes" "$work/aar-out/res"
find "$here/fedge-core/src/main/java" -name '*.java' > "$work/core-sources.txt"
javac --release 11 -nowarn -encoding UTF-8 -d "$work/core-classes" -cp "$gson:$bcprov" @"$work/core-sources.txt"
find "$here/fedge-android/src/main/java" -name '*.java' > "$work/sdk-sources.txt"
javac --release 11 -nowarn -encoding UTF-8 -d "$work/sdk-classes" \
  -cp "$framework:$work/core-classes:$gson:$bcprov:$(IFS=:; echo "${litert_jars[*]}")" @"$work/sdk-sources.txt"
repo="$out/maven/dev/fedge"
mkdir -p "$repo/fedge-core/$SDK_VERSION" "$repo/fedge-android/$SDK_VERSION"
cp -r "$work/java-res/dev" "$work/core-classes/"
(cd "$work/core-classes" && jar cf "$repo/fedge-core/$SDK_VERSION/fedge-core-$SDK_VERSION.jar" .)
(cd "$work/sdk-classes" && jar cf "$work/aar-out/classes.jar" .)
sed "s|<manifest |<manifest package=\"dev.fedge.android\" |" "$here/fedge-android/src/main/AndroidManifest.xml" \
  | sed "s|<application>|<uses-sdk android:minSdkVersion=\"$MIN_SDK\" android:targetSdkVersion=\"$TARGET_SDK\" />\n    <application>|" \
  > "$work/aar-out/AndroidManifest.xml"
: > "$work/aar-out/R.txt"  # the library has no resources of its own
rm -f "$repo/fedge-android/$SDK_VERSION/fedge-android-$SDK_VERSION.aar"
(cd "$work/aar-out" && zip -q -r "$repo/fedge-android/$SDK_VERSION/fedge-android-$SDK_VERSION.aar" \
  AndroidManifest.xml classes.jar R.txt res)
pom() {  # artifact packaging dependencies-xml
  printf '<?xml version="1.0" encoding="UTF-8"?>\n<project xmlns="http://maven.apache.org/POM/4.0.0">\n'
  printf '  <modelVersion>4.0.0</modelVersion>\n  <groupId>dev.fedge</groupId>\n  <artifactId>%s</artifactId>\n' "$1"
  printf '  <version>%s</version>\n  <packaging>%s</packaging>\n  <dependencies>\n%s\n  </dependencies>\n</project>\n' \
    "$SDK_VERSION" "$2" "$3"
}
dep() { printf '    <dependency><groupId>%s</groupId><artifactId>%s</artifactId><version>%s</version>%s</dependency>\n' "$@"; }
pom fedge-core jar "$(dep com.google.code.gson gson 2.10.1 ''; dep org.bouncycastle bcprov-jdk18on 1.78.1 '')" \
  > "$repo/fedge-core/$SDK_VERSION/fedge-core-$SDK_VERSION.pom"
pom fedge-android aar "$(dep dev.fedge fedge-core "$SDK_VERSION" ''; dep org.tensorflow tensorflow-lite 2.16.1 '<type>aar</type>')" \
  > "$repo/fedge-android/$SDK_VERSION/fedge-android-$SDK_VERSION.pom"
echo "wrote the SDK: $out/maven (dev.fedge:fedge-android:$SDK_VERSION, an AAR, and dev.fedge:fedge-core:$SDK_VERSION)"
