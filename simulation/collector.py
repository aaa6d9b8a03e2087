"""The garbage collector's pace while a simulation runs.

CPython collects its youngest generation every 700 allocations, and every so often all of
them, walking each tracked object. A simulation allocates a tuple or two per event and keeps
a record, a list and a queue entry per device: at a million devices the collector's walks
were a quarter of the run (1M devices x 2 virtual hours: 62,000 -> 81,000 events/s with
these settings, same events). Its garbage is short-lived and acyclic, which reference
counting frees at once; the collector only has to run now and then, and never over the
objects made before the run (frozen)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

THRESHOLDS = (50_000, 20, 100)  # allocations before a young collection; young/middle ones before the next


@contextmanager
def rare_collections() -> Iterator[None]:
    """Collect rarely, and not over what exists now, until the block ends (then as before)."""
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
