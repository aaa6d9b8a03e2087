import itertools
import os

import pytest

from protocol.errors import ProtocolError
from protocol.secagg import shamir


def test_any_threshold_subset_recovers_the_secret():
    secret = os.urandom(32)
    shares = shamir.split(secret, list(range(1, 8)), 4)
    for subset in itertools.combinations(shares, 4):
        assert shamir.reconstruct({x: shares[x] for x in subset}, 4) == secret


def test_fewer_than_threshold_shares_are_refused_and_wrong_ones_do_not_give_the_secret():
    secret = os.urandom(32)
    shares = shamir.split(secret, [1, 2, 3, 4, 5], 3)
    with pytest.raises(ProtocolError, match="need 3"):
        shamir.reconstruct({1: shares[1], 2: shares[2]}, 3)
    # Interpolating a degree-2 polynomial through 2 points as if it were degree 1 gives a
    # random field element: almost surely not a 32-byte value, never the secret.
    try:
        assert shamir.reconstruct({1: shares[1], 2: shares[2]}, 2) != secret
    except ProtocolError as exc:
        assert exc.code == "bad_share"


def test_tampered_share_never_gives_the_secret():
    secret = os.urandom(32)
    shares = shamir.split(secret, [1, 2, 3], 3)
    shares[2] = (shares[2] + 1) % shamir.PRIME
    try:
        assert shamir.reconstruct(shares, 3) != secret
    except ProtocolError as exc:
        assert exc.code == "bad_share"
    shares[2] = (shares[2] + 2**400 + 12345) % shamir.PRIME  # a large error lands outside 32 bytes
    with pytest.raises(ProtocolError, match="inconsistent"):
        shamir.reconstruct(shares, 3)


def test_share_bytes_round_trip_and_bad_inputs():
    y = shamir.split(os.urandom(32), [1, 2], 2)[1]
    assert shamir.share_from_bytes(shamir.share_to_bytes(y)) == y
    with pytest.raises(ProtocolError):
        shamir.share_from_bytes(b"\xff" * shamir.SHARE_BYTES)  # >= p
    with pytest.raises(ProtocolError):
        shamir.share_from_bytes(b"\x00" * 10)
    with pytest.raises(ProtocolError):
        shamir.split(os.urandom(32), [1, 1, 2], 2)
    with pytest.raises(ProtocolError):
        shamir.split(os.urandom(32), [1, 2], 3)
    with pytest.raises(ProtocolError):
        shamir.split(b"short", [1, 2], 2)


def test_lagrange_coefficients_sum_to_one():
    # f = 1 (constant) is recovered as sum(l_i * 1).
    assert sum(shamir.lagrange_at_zero([3, 7, 11, 20]).values()) % shamir.PRIME == 1
