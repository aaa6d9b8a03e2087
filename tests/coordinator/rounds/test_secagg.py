"""SecAgg through the coordinator's HTTP API, with protocol clients standing in for devices.

The devices' quantized updates are chosen by the test, so the committed model can be
compared bit for bit with the plain sum of the survivors' codes.
"""

import json

import numpy as np
import pytest
from scipy import stats

from protocol import codec
from protocol.secagg import ring
from protocol.secagg.client import SecAggClient
from protocol.secagg.messages import SecAggView, round_context
from tests.coordinator.conftest import ADMIN

N = 10


class Party:
    """One emulated device: its HTTP identity, its assignment and its protocol state."""

    def __init__(self, harness, headers, assignment):
        self.h, self.headers, self.a = harness, headers, assignment
        self.proto = SecAggClient(round_context(assignment["task_id"], assignment["round"]))
        self.view: SecAggView | None = None
        self.codes = None

    @property
    def base(self):
        return f"/v1/tasks/{self.a['task_id']}/rounds/{self.a['round']}/secagg"

    def _headers(self, token=None):
        return {**self.headers, "Fedge-Upload-Token": token or self.a["upload_token"]}

    async def post(self, phase, message, token=None):
        return await self.h.client.post(f"{self.base}/{phase}", json=message, headers=self._headers(token))

    async def refresh(self):
        resp = await self.h.client.get(self.base, headers=self._headers())
        assert resp.status == 200, await resp.text()
        self.view = SecAggView.from_dict(await resp.json())
        return self.view

    async def advertise(self):
        resp = await self.post("keys", self.proto.public_keys().to_dict())
        assert resp.status == 201, await resp.text()

    async def share(self):
        v = await self.refresh()
        shares = self.proto.share_keys(v.my_index, v.params, v.keys)
        resp = await self.post("shares", {"shares": [s.to_dict() for s in shares]})
        assert resp.status == 201, await resp.text()

    async def mask_and_upload(self, rng, hostile: bool = False):
        v = await self.refresh()
        # An honest device's codes: a clipped update sits near the middle of the grid (random codes
        # over the whole grid would be an update of norm ~2.3 C, which the coordinator bounds).
        mid = 1 << (v.params.quant_bits - 1)
        self.codes = rng.integers(mid - 8, mid + 8, v.params.vector_length, dtype=np.uint32)
        self.codes[v.params.coded_length:] = 1  # the adaptive-clipping bit slot, when the round has one
        masked = self.proto.masked_input(self.codes, v.sharers, v.inbox)
        if hostile:  # any ring element it likes (past what the client library allows): the code that
            # takes the sum of n devices' codes to the top of its honest range, n (2^b - 1)
            k, n, levels = v.params.modulus_bits, v.params.n, (1 << v.params.quant_bits) - 1
            target = np.full(self.codes.shape, n * levels - (n - 1) * mid, np.uint64)
            masked = ((masked.astype(np.uint64) + target - self.codes) % (1 << k)).astype(np.uint32)
            self.codes = target.astype(np.uint32)
        body = ring.pack(masked, v.params.modulus_bits)
        resp = await self.h.upload(self.headers, self.a, body)
        assert resp.status == 201, await resp.text()

    async def unmask(self):
        v = await self.refresh()
        reveals = self.proto.unmask(v.unmask)
        resp = await self.post("reveals", {"shares": [s.to_dict() for s in reveals]})
        assert resp.status == 201, await resp.text()


async def _parties(harness, n=N, **config):
    cfg = {"goal_count": n, "over_selection": 1.0, "min_reports": 3, "secagg": "secagg", "clip_norm": 1.0,
           "secagg_phase_s": 10, **config}
    await harness.setup_task(**cfg)
    parties = []
    for _ in range(n):
        headers = await harness.register()
        resp = await harness.checkin(headers)
        body = await resp.json()
        assert body["outcome"] == "assigned", body
        assert body["assignment"]["plan"]["secagg"] == cfg["secagg"]
        parties.append(Party(harness, headers, body["assignment"]))
    return parties


async def _state(harness):
    return (await harness.rounds())[0]


async def _checkpoint(harness):
    resp = await harness.client.get("/v1/admin/tasks/t1", headers=ADMIN)
    sha = (await resp.json())["checkpoint_sha256"]
    data = await (await harness.client.get(f"/v1/blobs/{sha}")).read()
    return codec.decode(data).values


async def _run(harness, parties, drop_before: dict[str, set[int]], rng):
    """Runs the phases; ``drop_before[phase]`` holds the parties (by position) that vanish before it.
    Phases that wait on a vanished party close at their deadline (the clock is advanced)."""
    alive = list(range(len(parties)))
    for phase, act in [("advertise", Party.advertise), ("share", Party.share),
                       ("masked_input", lambda p: p.mask_and_upload(rng)), ("unmask", Party.unmask)]:
        alive = [i for i in alive if i not in drop_before.get(phase, set())]
        state_before = (await _state(harness))["state"]
        for i in alive:
            await act(parties[i])
        harness.tick()
        if (await _state(harness))["state"] == state_before:  # someone is missing: wait out the deadline
            harness.clock.t = _phase_deadline(harness, state_before) + 0.01
            harness.tick()
        if phase == "masked_input":
            uploaded = list(alive)
    return uploaded


def _phase_deadline(harness, state):
    row = harness.coordinator.store.one("SELECT * FROM secagg_rounds WHERE task_id='t1' AND round=1")
    rnd = harness.coordinator.store.one("SELECT * FROM rounds WHERE task_id='t1' AND round=1")
    return {"advertising": row["advertise_deadline"], "sharing": row["share_deadline"],
            "reporting": rnd["report_deadline"], "unmasking": row["unmask_deadline"]}[state]


def _expected_mean(parties, uploaded):
    p = parties[uploaded[0]].view.params
    total = np.zeros(p.coded_length, np.uint64)
    for i in uploaded:
        total += parties[i].codes[: p.coded_length]
    total &= np.uint64((1 << p.modulus_bits) - 1)
    return (ring.dequantize_sum(total, len(uploaded), p.num_values, p.quant_bits, p.value_range,
                                p.rotation_seed, p.length, p.kept) / len(uploaded)).astype(np.float32)


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("phase", ["advertise", "share", "masked_input", "unmask"])
async def test_committed_model_is_exactly_the_survivors_sum(harness, rate, phase):
    parties = await _parties(harness)
    before = await _checkpoint(harness)
    gone = set(range(int(rate * N)))
    uploaded = await _run(harness, parties, {phase: gone}, np.random.default_rng(1))
    rnd = await _state(harness)
    assert rnd["state"] == "committed", rnd["reason"]
    assert rnd["reported"] == len(uploaded) == N - (len(gone) if phase != "unmask" else 0)
    after = await _checkpoint(harness)
    # FedAvg with server learning rate 1: new = old + mean, bit for bit.
    assert np.array_equal(after, (before + _expected_mean(parties, uploaded)).astype(np.float32))
    secagg = harness.coordinator.driver.secagg
    assert rnd["metrics"]["secagg_modulus_bits"] > 0 and secagg.wire == {} and secagg.sums == {}  # nothing kept


async def test_sparse_secagg_masks_only_the_rounds_kept_codes(harness):
    """codec +sparse:F under SecAgg: m = ceil(F L) codes travel masked (the subset of the
    round's rotation seed), and the committed model is old + the kept sum scaled by L / m."""
    from protocol import sparse

    parties = await _parties(harness, codec="q8+sparse:0.25")
    before = await _checkpoint(harness)
    uploaded = await _run(harness, parties, {"unmask": {0}}, np.random.default_rng(3))
    assert (await _state(harness))["state"] == "committed"
    p = parties[1].view.params
    assert p.kept == sparse.kept_count(0.25, p.length) < p.length and p.vector_length == p.kept
    after = await _checkpoint(harness)
    assert np.array_equal(after, (before + _expected_mean(parties, uploaded)).astype(np.float32))
    limit = harness.coordinator.gateway.upload_limit(harness.coordinator.store.device(parties[1].headers[
        "Authorization"].split()[1].split(".")[0]), "t1")
    assert limit == ring.packed_size(32, p.kept)


async def test_a_hostile_device_in_a_sparse_round_moves_the_mean_by_a_bounded_amount(harness):
    """A device can mask any ring element; with a sparse subset its kept codes are scaled by
    L / m, so the coordinator bounds the sum's norm by what n honest devices' kept parts weigh
    (ring.sum_norm_bound: n C kappa sqrt(L / m) plus rounding): a hostile device moves the mean
    by at most about C kappa / sqrt(F), the scale of an honest device's own sparse estimate."""
    parties = await _parties(harness, codec="q8+sparse:0.25")
    before = await _checkpoint(harness)
    await _advertise_and_share(harness, parties)
    rng = np.random.default_rng(7)
    for i, p in enumerate(parties):
        await p.mask_and_upload(rng, hostile=i == 0)
    harness.tick()
    for p in parties:
        await p.unmask()
    harness.tick()
    assert (await _state(harness))["state"] == "committed"
    p = parties[1].view.params
    moved = float(np.linalg.norm(await _checkpoint(harness) - before))
    n = len(parties)
    bound = ring.sum_norm_bound(n, 1.0, 8, p.length, p.kept) / n  # clip 1.0 (the round's), per device of the mean
    assert bound < 0.75 * (1 + 8 / 255) * p.length / p.kept  # tighter than scaling the dense bound by L / m
    assert moved <= bound * 1.001
    unbounded = float(np.linalg.norm(_expected_mean(parties, list(range(len(parties))))))
    assert unbounded > 1.5 * bound  # what its codes decode to unbounded: the bound is what stopped it


async def test_secagg_plus_with_dropouts_in_every_phase(harness):
    parties = await _parties(harness, n=12, secagg="secagg+", secagg_degree=8)
    before = await _checkpoint(harness)
    uploaded = await _run(harness, parties, {"share": {0}, "masked_input": {1}, "unmask": {2}},
                          np.random.default_rng(2))
    assert (await _state(harness))["state"] == "committed"
    assert parties[5].view.params.degree == 8
    after = await _checkpoint(harness)
    assert np.array_equal(after, (before + _expected_mean(parties, uploaded)).astype(np.float32))


async def test_below_threshold_the_round_fails_and_commits_nothing(harness):
    parties = await _parties(harness)
    before = await _checkpoint(harness)
    # t = 6 of the 10 holders of each secret; 6 of 10 vanish before unmasking, leaving 4 responders.
    await _run(harness, parties, {"unmask": set(range(6))}, np.random.default_rng(3))
    rnd = await _state(harness)
    assert rnd["state"] == "failed"
    assert "cannot unmask" in rnd["reason"] and "threshold 6" in rnd["reason"]
    assert np.array_equal(await _checkpoint(harness), before)
    assert len(await harness.rounds()) == 2  # the next round opened


async def test_bad_and_replayed_messages_get_4xx_and_the_round_still_commits(harness):
    parties = await _parties(harness, n=5)
    p0, p1 = parties[0], parties[1]
    before = await _checkpoint(harness)
    # AdvertiseKeys: malformed, another device's token, then a replay of p0's keys by p1.
    assert (await p0.post("keys", {"c_public": "!!", "s_public": "x"})).status == 400
    assert (await p0.post("keys", p0.proto.public_keys().to_dict(), token=p1.a["upload_token"])).status == 403
    await p0.advertise()
    assert (await p0.post("keys", p0.proto.public_keys().to_dict())).status == 200  # identical retry
    assert (await p0.post("keys", p1.proto.public_keys().to_dict())).status == 409  # different keys
    assert (await p1.post("keys", p0.proto.public_keys().to_dict())).status == 409  # someone else's keys
    bad_round = await harness.client.post("/v1/tasks/t1/rounds/99/secagg/keys", json={},
                                          headers={**p0.headers, "Fedge-Upload-Token": p0.a["upload_token"]})
    assert bad_round.status == 403
    for p in parties[1:]:
        await p.advertise()
    harness.tick()
    assert (await _state(harness))["state"] == "sharing"
    assert (await p0.post("keys", p0.proto.public_keys().to_dict())).status == 200  # retry stays harmless
    # ShareKeys: shares to the wrong receivers, a duplicated receiver, a late AdvertiseKeys.
    v = await p0.refresh()
    shares = [s.to_dict() for s in p0.proto.share_keys(v.my_index, v.params, v.keys)]
    assert (await p0.post("shares", {"shares": shares[:-1]})).status == 400
    assert (await p0.post("shares", {"shares": shares[:-1] + shares[:1]})).status == 400
    assert (await p0.post("shares", {"shares": [{**shares[0], "sender": 99}] + shares[1:]})).status == 400
    assert (await p0.post("shares", {"shares": "nope"})).status == 400
    assert (await p0.post("shares", {"shares": shares})).status == 201
    new_keys = SecAggClient(b"x").public_keys().to_dict()
    assert (await harness.client.post(f"{p0.base}/keys", json=new_keys, headers={
        **(await harness.register()), "Fedge-Upload-Token": "forged"})).status == 403
    for p in parties[1:]:
        await p.share()
    harness.tick()
    assert (await _state(harness))["state"] == "reporting"
    assert (await p0.post("shares", {"shares": shares})).status == 200  # identical retry after the phase
    # Masked inputs: a wrong-size body, a plain codec update, then the real ones.
    rng = np.random.default_rng(4)
    assert (await harness.upload(p0.headers, p0.a, b"FSAM" + bytes(20))).status == 400
    assert (await harness.upload(p0.headers, p0.a, harness.payload())).status == 400
    for p in parties:
        await p.mask_and_upload(rng)
    harness.tick()
    assert (await _state(harness))["state"] == "unmasking"
    # Unmasking: asking to reveal the wrong kind of share, or a share too many.
    v = await p0.refresh()
    reveals = [s.to_dict() for s in p0.proto.unmask(v.unmask)]
    flipped = [{**reveals[0], "kind": "mask_key"}] + reveals[1:]
    assert (await p0.post("reveals", {"shares": flipped})).status == 400
    assert (await p0.post("reveals", {"shares": reveals + reveals[:1]})).status == 400
    assert (await p0.post("unknown", {})).status == 404
    for p in parties:
        await p.unmask()
    harness.tick()
    assert (await _state(harness))["state"] == "committed"
    after = await _checkpoint(harness)
    assert np.array_equal(after, (before + _expected_mean(parties, list(range(5)))).astype(np.float32))


async def _advertise_and_share(harness, parties):
    for p in parties:
        await p.advertise()
    harness.tick()
    for p in parties:
        await p.share()
    harness.tick()


async def test_what_the_coordinator_stores_for_a_device_looks_uniform(harness):
    parties = await _parties(harness, n=4)
    await _advertise_and_share(harness, parties)
    rng = np.random.default_rng(5)
    for p in parties:
        await p.mask_and_upload(rng)
    rows = harness.coordinator.store.all("SELECT blob FROM updates WHERE task_id='t1' AND round=1")
    params = parties[0].view.params
    stored = ring.unpack(harness.coordinator.store.blobs.read_object(rows[0]["blob"]), params.modulus_bits, params.length)
    # The device's own codes sit in [0, 255]; what is stored fills [0, 2^k) evenly.
    k = params.modulus_bits
    counts = np.bincount((stored >> (k - 4)).astype(np.int64), minlength=16)
    # The masks come from fresh X25519 keys, so these are random draws: at 1e-3 a truly
    # uniform vector failed ~1 run in 250 (two tests, two backends; it did in CI). At 1e-6
    # the test still separates cleanly: unmasked codes score p < 1e-300.
    assert stats.chisquare(counts).pvalue > 1e-6
    assert stats.kstest(stored / float(1 << k), "uniform").pvalue > 1e-6
    assert stats.kstest(parties[0].codes / float(1 << k), "uniform").pvalue < 1e-6
    # And nothing else the coordinator keeps in memory for the round is per device.
    assert set(harness.coordinator.secagg.sums) == {("t1", 1)}


async def test_a_restarted_coordinator_finishes_the_round(harness, aiohttp_client):
    from coordinator.http.app import create_app

    parties = await _parties(harness, n=4)
    before = await _checkpoint(harness)
    await _advertise_and_share(harness, parties)
    rng = np.random.default_rng(6)
    for p in parties[:3]:
        await p.mask_and_upload(rng)
    # Restart on the same database mid-reporting.
    await harness.client.close()
    harness.client = await aiohttp_client(create_app(harness.config, run_ticker=False, clock=harness.clock))
    for p in parties:
        p.h = harness
    await parties[3].mask_and_upload(rng)
    harness.tick()
    assert (await _state(harness))["state"] == "unmasking"
    for p in parties:
        await p.unmask()
    harness.tick()
    assert (await _state(harness))["state"] == "committed"
    after = await _checkpoint(harness)
    assert np.array_equal(after, (before + _expected_mean(parties, list(range(4)))).astype(np.float32))


async def test_adaptive_clip_bit_travels_masked_and_is_summed(harness):
    parties = await _parties(harness, n=5, dp_noise_multiplier=0.02, dp_target_quantile=0.5, dp_population=100,
                             dp_clipped_count_stddev=0.05)
    await _advertise_and_share(harness, parties)
    params = parties[0].view.params
    assert params.extra == 1 and parties[0].a["plan"]["report_clip_bit"] is True
    rng = np.random.default_rng(7)
    for p in parties:
        await p.mask_and_upload(rng)  # each reports "below the clip"
    harness.tick()
    for p in parties:
        await p.unmask()
    harness.tick()
    rnd = await _state(harness)
    assert rnd["state"] == "committed", rnd["reason"]
    # 5 bits of 1 over goal 5, plus N(0, 0.05^2) / 5.
    assert abs(rnd["metrics"]["dp_below_clip"] - 1.0) < 0.05
    device = harness.coordinator.gateway.authenticate(parties[0].headers["Authorization"])
    assert harness.coordinator.gateway.upload_limit(device, "t1") >= 12 + 4 * params.vector_length


async def test_secagg_task_config_is_validated(harness):
    await harness.client.post("/v1/admin/populations", json={"name": "pop"}, headers=ADMIN)
    resp = await harness.client.post("/v1/admin/models", data=harness.model,
                                     headers={**ADMIN, "Content-Type": "application/octet-stream"})
    sha = (await resp.json())["model_sha256"]
    for cfg, code in [({"secagg": "secagg"}, "clip_required"), ({"secagg": "yes", "clip_norm": 1.0}, "bad_request"),
                      ({"secagg": "secagg", "clip_norm": 1.0, "goal_count": 2, "over_selection": 1.0},
                       "bad_request")]:
        resp = await harness.client.post("/v1/admin/populations/pop/tasks", headers=ADMIN,
                                         json={"model_sha256": sha, "config": cfg})
        assert resp.status == 400 and (await resp.json())["error"]["code"] == code, json.dumps(cfg)


async def test_secagg_across_two_replicas(harness, aiohttp_client):
    """Half the devices talk to a second replica on the same database for every phase; the
    replica that drives the task unmasks a sum whose masked inputs arrived on both."""
    if not harness.coordinator.store.shared:
        pytest.skip("replicas share a PostgreSQL database; SQLite is one process's")
    await _secagg_on_two_replicas(harness, harness.config, aiohttp_client)


async def test_secagg_across_two_replicas_that_share_nothing_but_the_database_and_a_bucket(
        aiohttp_client, digits_tflite, postgres_url, s3_blobs_url, tmp_path):
    """The same with each replica's own empty --data-dir and the blobs in an S3-compatible
    store: the masked inputs stored through the second replica are read from the bucket by
    the first, and nothing lands in either folder but the admin token."""
    from dataclasses import replace

    from tests.coordinator.conftest import _harness

    harness = await _harness(aiohttp_client, digits_tflite, postgres_url, str(tmp_path / "r1"), blobs=s3_blobs_url)
    await _secagg_on_two_replicas(harness, replace(harness.config, data_dir=str(tmp_path / "r2")), aiohttp_client)
    for folder in ("r1", "r2"):
        assert not [p for p in (tmp_path / folder).rglob("*") if p.is_file()], folder


async def _secagg_on_two_replicas(harness, other_config, aiohttp_client):
    from coordinator.http.app import create_app
    from tests.coordinator.conftest import Harness

    parties = await _parties(harness, n=6)
    before = await _checkpoint(harness)
    other = Harness(await aiohttp_client(create_app(other_config, run_ticker=False, clock=harness.clock)),
                    harness.clock, harness.model)
    for p in parties[3:]:
        p.h = other

    def tick_both():
        harness.tick()
        other.tick()

    rng = np.random.default_rng(7)
    for act in (Party.advertise, Party.share, lambda p: p.mask_and_upload(rng), Party.unmask):
        for p in parties:
            await act(p)
        tick_both()
    assert harness.coordinator.driver.holds_lease(harness.coordinator.tasks["t1"])  # the first replica drove
    assert not other.coordinator.driver.holds_lease(other.coordinator.tasks["t1"])
    rnd = await _state(harness)
    assert rnd["state"] == "committed", rnd["reason"]
    assert rnd["reported"] == 6
    after = await _checkpoint(harness)
    assert np.array_equal(after, (before + _expected_mean(parties, range(6))).astype(np.float32))
