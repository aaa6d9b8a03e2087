"""Uploads over a network that breaks (`[network] upload_failure` in the population file).

An attempt's connection breaks with the population's probability: half the time before the
coordinator has the update, half after (the coordinator took it and its answer is lost). The
device retries as `fedge device` does (its client's policy, `device_runtime.client`): a wait
that doubles from BACKOFF_INITIAL_S with up to BACKOFF_JITTER_S of jitter, at most
BACKOFF_MAX_S, for up to RETRY_FOR_S from its first failure, each retry sending the update
again. A retry of an update the coordinator already took is answered as the served gateway
answers it: a duplicate, accepted once."""

from __future__ import annotations

import random
from typing import NamedTuple

from device_runtime.client import BACKOFF_INITIAL_S, BACKOFF_JITTER_S, BACKOFF_MAX_S, RETRY_FOR_S

ANSWER_LOST = 0.5  # of the broken attempts, the share that broke after the coordinator had the update


class Attempt(NamedTuple):
    number: int = 1  # 1: the first attempt
    failing_since: float | None = None  # when the first attempt broke (the retry budget's start)


class Outcome(NamedTuple):
    delivered: bool  # the coordinator received the update (whether or not the device learns it)
    retry_after_s: float | None = None  # None: no retry (it went through, or the device gave up)
    retry: Attempt | None = None  # the attempt to make after that wait


def attempt(failure: float, tried: Attempt, now: float, rng: random.Random) -> Outcome:
    """What became of one attempt. No random draw when the network never fails (``failure``
    0), so a population without failures runs exactly as before the setting existed."""
    if failure <= 0 or rng.random() >= failure:
        return Outcome(True)
    delivered = bool(rng.random() < ANSWER_LOST)
    since = now if tried.failing_since is None else tried.failing_since
    if now - since >= RETRY_FOR_S:
        return Outcome(delivered)  # the client's retry time is spent: the device gives up
    return Outcome(delivered, backoff_s(tried.number, rng), Attempt(tried.number + 1, since))


def backoff_s(number: int, rng: random.Random) -> float:
    """The wait after failed attempt ``number`` (tenacity's wait_exponential_jitter)."""
    return min(BACKOFF_INITIAL_S * 2.0 ** min(number - 1, 30) + rng.uniform(0.0, BACKOFF_JITTER_S),
               BACKOFF_MAX_S)
