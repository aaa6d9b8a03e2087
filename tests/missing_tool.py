"""A test whose system tool (chromium, PostgreSQL, HAProxy, a JDK, the emulated Pi) is not
installed is skipped on a developer's machine and fails in CI, where .ci/run installs the
tool and sets the tool's FEDGE_REQUIRE_* variable to 1."""

import os

import pytest


def skip_or_fail(message: str, require_env: str):
    if os.environ.get(require_env) == "1":
        pytest.fail(message)
    pytest.skip(message)
