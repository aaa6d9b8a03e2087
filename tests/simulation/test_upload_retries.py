import numpy as np

from device_runtime.client import BACKOFF_MAX_S, RETRY_FOR_S
from simulation.upload_retries import Attempt, attempt, backoff_s


def test_the_wait_doubles_with_jitter_up_to_the_clients_cap():
    rng = np.random.default_rng(0)
    first = [backoff_s(1, rng) for _ in range(200)]
    assert 0.2 <= min(first) and max(first) <= 1.2 and np.std(first) > 0.2  # 0.2 s plus up to 1 s
    assert all(1.6 <= backoff_s(4, rng) <= 2.6 for _ in range(50))  # 0.2 x 2^3
    assert all(backoff_s(n, rng) == BACKOFF_MAX_S for n in (7, 30, 1000))


def test_a_network_that_never_fails_draws_nothing():
    rng = np.random.default_rng(1)
    before = rng.bit_generator.state
    assert attempt(0.0, Attempt(), 100.0, rng) == (True, None, None)
    assert rng.bit_generator.state == before


def test_a_broken_attempt_is_retried_until_the_clients_retry_time_is_spent():
    rng = np.random.default_rng(2)
    outcomes = [attempt(0.9, Attempt(), 100.0, rng) for _ in range(400)]
    broken = [o for o in outcomes if o.retry_after_s is not None]
    assert 300 < len(broken) < 400  # about 90% break
    delivered = sum(o.delivered for o in broken) / len(broken)
    assert 0.4 < delivered < 0.6  # half of them after the coordinator had the update
    assert all(o.retry == Attempt(2, 100.0) for o in broken)  # the retry budget counts from here
    again = attempt(0.9999, Attempt(2, 100.0), 130.0, rng)
    assert again.retry == Attempt(3, 100.0)
    # Failing since RETRY_FOR_S ago: the device gives up (no retry), whatever happened to this one.
    late = [attempt(0.9, Attempt(9, 100.0), 100.0 + RETRY_FOR_S, rng) for _ in range(50)]
    assert all(o.retry_after_s is None for o in late) and not all(o.delivered for o in late)
