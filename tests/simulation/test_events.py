"""The discrete-event queue and the virtual clock (simulation/events.py, simulation/clock.py)."""

import pytest

from simulation.clock import VirtualClock
from simulation.events import EventQueue


def test_events_come_in_time_order_and_ties_in_the_order_they_were_scheduled():
    q = EventQueue()
    q.schedule(5.0, "b", 1)
    q.schedule(1.0, "a", 2)
    q.schedule(5.0, "c", 3, data={"not": "compared"})
    q.schedule(5.0, "d", 0)
    assert q.peek_time() == 1.0
    assert [(e.at, e.kind) for e in (q.pop() for _ in range(4))] == [(1.0, "a"), (5.0, "b"), (5.0, "c"), (5.0, "d")]
    assert len(q) == 0 and q.processed == 4 and q.peek_time() is None


def test_virtual_time_only_moves_forward():
    clock = VirtualClock(start=100.0)
    clock.advance_to(160.0)
    assert clock() == 160.0 and clock.elapsed_s == 60.0
    with pytest.raises(ValueError):
        clock.advance_to(150.0)
