"""protocol/releases.py: the rollout hash (stable, monotone in the percentage, uniform) and the
signed release statement against the golden vectors both devices check."""

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import releases
from protocol.errors import ProtocolError
from protocol.golden import GOLDEN_DIR
from protocol.releases import ReleaseOffer

GOLDEN = json.loads((GOLDEN_DIR / "releases.json").read_text())


@pytest.mark.parametrize("case", GOLDEN["rollout"], ids=lambda c: f"{c['release_id']}/{c['device_id']}")
def test_rollout_buckets_are_the_golden_ones(case):
    assert releases.rollout_bucket(case["release_id"], case["device_id"]) == case["bucket"]
    assert releases.in_rollout(case["release_id"], case["device_id"], 10.0) == case["in_10_percent"]


def test_a_rollout_only_grows_with_its_percentage_and_is_about_that_share():
    devices = [f"d-{i:06x}" for i in range(20_000)]
    shares = {}
    for percent in (1.0, 10.0, 50.0, 100.0):
        members = {d for d in devices if releases.in_rollout("r-9", d, percent)}
        shares[percent] = members
        assert abs(len(members) / len(devices) - percent / 100) < 0.01, (percent, len(members))
    assert shares[1.0] <= shares[10.0] <= shares[50.0] <= shares[100.0] == set(devices)
    assert not any(releases.in_rollout("r-9", d, 0.0) for d in devices[:1000])
    # Another release's 10% is another cohort (the hash is salted by the release).
    other = {d for d in devices if releases.in_rollout("r-10", d, 10.0)}
    assert len(other & shares[10.0]) < 0.2 * len(other)


@pytest.mark.parametrize("case", GOLDEN["signed"], ids=lambda c: f"{c['offer']['release_id']}-{c.get('why', 'ok')}")
def test_signed_releases_verify_exactly_as_the_golden_file_says(case):
    offer = ReleaseOffer.from_dict(case["offer"])
    if "statement" in case:
        assert releases.statement(offer.population, offer.channel, offer.release_id, offer.sequence,
                                  offer.model_sha256).hex() == case["statement"]
    if case["valid"]:
        offer.verify(GOLDEN["public_key"], case["device_population"], case["installed_sequence"])
    else:
        with pytest.raises(ProtocolError) as err:
            offer.verify(GOLDEN["public_key"], case["device_population"], case["installed_sequence"])
        assert err.value.code == case["why"]


def test_a_signature_by_another_key_is_refused():
    case = next(c for c in GOLDEN["signed"] if c["valid"])
    forger = Ed25519PrivateKey.generate()
    o = case["offer"]
    forged = {**o, "signature": releases.sign(forger, o["population"], o["channel"], o["release_id"], o["sequence"],
                                              o["model_sha256"])}
    with pytest.raises(ProtocolError, match="does not verify") as err:
        ReleaseOffer.from_dict(forged).verify(GOLDEN["public_key"], o["population"], 0)
    assert err.value.code == "bad_signature"
    with pytest.raises(ProtocolError):
        ReleaseOffer.from_dict(forged).verify("zz" * 32, o["population"], 0)  # a damaged pinned key


@pytest.mark.parametrize("change", [{"sequence": 0}, {"sequence": 1.5}, {"model_sha256": "ab"}, {"signature": "00"},
                                    {"url": "x" * 5000}, {"release_id": "r" * 65}, {"size": -1}])
def test_a_malformed_offer_is_refused(change):
    o = {**GOLDEN["signed"][0]["offer"], **change}
    with pytest.raises(ProtocolError):
        ReleaseOffer.from_dict(o)
