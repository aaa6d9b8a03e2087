from simulation.polls import LongPolls


def test_wake_takes_the_oldest_live_polls_first_and_cancels_their_returns():
    polls = LongPolls(long_poll_s=10.0)
    a = polls.hold(7, "req7", now=100.2, ends=110.2)
    b = polls.hold(3, "req3", now=100.7, ends=102.0)  # a short poll: its retry time came first
    c = polls.hold(5, "req5", now=101.5, ends=111.5)
    d = polls.hold(9, "req9", now=103.0, ends=113.0)
    assert len({a, b, c, d}) == 4
    # At 105 device 3's poll has ended: it is not woken, and its return stands.
    assert polls.wake(2, now=105.0) == [(7, "req7"), (5, "req5")]
    assert not polls.returns(a) and not polls.returns(c)
    assert polls.returns(b) and polls.returns(d)
    # A return is cancelled once: the number is never reused.
    assert polls.returns(a)
    assert polls.wake(None, now=105.0) == [(9, "req9")]
    assert polls.wake(None, now=105.0) == []


def test_polls_that_ended_are_never_woken():
    polls = LongPolls(long_poll_s=10.0)
    first = polls.hold(1, "r1", now=0.5, ends=10.5)
    polls.hold(2, "r2", now=30.0, ends=40.0)  # by now the first second's bucket is gone
    assert polls.wake(None, now=30.0) == [(2, "r2")]
    assert polls.returns(first)
    # Exactly at its end a poll is over (the device comes back on its own a second later).
    polls.hold(4, "r4", now=50.0, ends=55.0)
    assert polls.wake(None, now=55.0) == []


def test_a_device_held_again_after_its_return_is_woken_once():
    polls = LongPolls(long_poll_s=10.0)
    polls.hold(1, "old", now=0.0, ends=2.0)
    polls.hold(1, "new", now=3.0, ends=13.0)  # back at 3 s, held again
    assert polls.wake(None, now=5.0) == [(1, "new")]
