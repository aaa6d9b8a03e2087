"""Silence the native libraries' stderr while TensorFlow and LiteRT load and convert.

TensorFlow 2.21 logs through absl before absl is initialised ("oneDNN custom operations
are on", "Could not find cuda drivers"), which TF_CPP_MIN_LOG_LEVEL does not reach, and
LiteRT announces its XNNPACK delegate; the export's own output is what a user wants.
`fedge export --debug` leaves stderr alone. Python exceptions are not affected: they
propagate and are reported after the block.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager


@contextmanager
def native_stderr_silenced(enabled: bool = True):
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
