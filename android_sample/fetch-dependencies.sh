#!/usr/bin/env bash
# Fetches what the Java side's builds and tests need from Maven Central into ~/.m2, once (the
# tests then run Maven offline): the core's dependencies and build plugins
# (fedge-core/pom.xml, with the API-level gate: Animal Sniffer and the Android 8.0 signature), the
# sample app's (app/pom.xml: the Android 14 framework, Robolectric),
# and the instrumented Android frameworks Robolectric 4.14.1 loads at run time.
set -euo pipefail
cd "$(dirname "$0")"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mvn -B -q -f fedge-core/pom.xml -Dfedge.build.dir="$scratch" test-compile dependency:build-classpath \
  -Dmdep.outputFile="$scratch/cp.txt"
mvn -B -q -f app/pom.xml dependency:resolve
# The API-level gate's plugin and Android 8.0 signature as the app's check uses them (the core's
# build above fetched them for the core): run once on an empty class folder.
mkdir -p "$scratch/no-classes"
mvn -B -q -f app/pom.xml -Dfedge.app.classes="$scratch/no-classes" animal-sniffer:check
# D8 (inside R8) for `make apk` (build-apk.sh).
mvn -B -q -f app/pom.xml dependency:get -Dartifact=com.android.tools:r8:8.5.35
for version in 14-robolectric-10818077-i7 15-robolectric-12650502-i7; do
  mvn -B -q -f app/pom.xml dependency:get -Dartifact="org.robolectric:android-all-instrumented:$version"
done
