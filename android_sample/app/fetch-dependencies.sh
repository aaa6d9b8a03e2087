#!/usr/bin/env bash
# Fetches what the sample app's JVM build and Robolectric tests need from Maven Central into
# ~/.m2 (tests/android_sample/test_android_app.py then runs Maven offline): the dependencies of
# android_sample/app/pom.xml and the instrumented Android frameworks Robolectric 4.14.1 loads.
set -euo pipefail
cd "$(dirname "$0")"
mvn -B -q -f pom.xml dependency:resolve
for version in 14-robolectric-10818077-i7 15-robolectric-12650502-i7; do
  mvn -B -q -f pom.xml dependency:get -Dartifact="org.robolectric:android-all-instrumented:$version"
done
