"""The discrete-event queue and the virtual clock (simulation/events.py, simulation/clock.py)."""

import heapq
import random

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


@pytest.mark.parametrize("bucket_s", [0.25, 1.0, 60.0])
def test_buckets_hand_events_out_as_one_heap_would_while_events_are_scheduled_between_pops(bucket_s):
    """The bucketed queue against a plain heap of (at, seq): events scheduled into the bucket
    being drained, into later ones, at the current instant and on bucket edges."""
    rng = random.Random(7)
    q, reference, seq, now, out, expected = EventQueue(bucket_s), [], 0, 0.0, [], []

    def schedule(at):
        nonlocal seq
        seq += 1
        q.schedule(at, "k", seq)
        heapq.heappush(reference, (at, seq))

    for _ in range(200):
        schedule(rng.uniform(0, 50))
    while reference:
        assert len(q) == len(reference) and q.peek_time() == reference[0][0]
        ev = q.pop()
        out.append((ev.at, ev.device))
        expected.append(heapq.heappop(reference))
        now = ev.at
        if len(out) < 2000:
            for _ in range(rng.choice([0, 1, 1, 2])):
                schedule(rng.choice([now, now + rng.uniform(0, 2 * bucket_s), now + rng.uniform(0, 300),
                                     (int(now // bucket_s) + 1) * bucket_s]))
    assert out == expected and len(out) > 2000 and q.pop_until(1e9) is None and len(q) == 0
    with pytest.raises(IndexError):
        q.pop()


def test_pop_until_leaves_later_events_in_the_queue():
    q = EventQueue(1.0)
    for at in (3.5, 0.5, 10.0):
        q.schedule(at, "k")
    assert [q.pop_until(5.0)[0], q.pop_until(5.0)[0], q.pop_until(5.0)] == [0.5, 3.5, None]
    assert len(q) == 1 and q.processed == 2 and q.pop_until(10.0)[0] == 10.0


def test_virtual_time_only_moves_forward():
    clock = VirtualClock(start=100.0)
    clock.advance_to(160.0)
    assert clock() == 160.0 and clock.elapsed_s == 60.0
    with pytest.raises(ValueError):
        clock.advance_to(150.0)


def test_waiting_counts_a_kind_in_the_current_and_later_buckets():
    q = EventQueue(1.0)
    for at, kind in ((0.2, "upload"), (0.7, "arrive"), (0.9, "upload"), (7.0, "upload"), (9.0, "tick")):
        q.schedule(at, kind)
    assert q.pop_until(0.5)[2] == "upload"  # the first bucket is now the heap
    assert (q.waiting("upload"), q.waiting("arrive"), q.waiting("tick"), q.waiting("x")) == (2, 1, 1, 0)
