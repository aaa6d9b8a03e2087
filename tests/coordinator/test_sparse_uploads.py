"""Sparse uploads (codec ``+sparse:F``): the plan hands every device of a round the same
seed, the round commits the example-weighted mean of the scaled subsets, and an upload on
another round's subset or with another kept count is refused and changes nothing. Top-k
uploads (``+topk:F``) carry their own indices: the mean of what was sent."""

import json

import numpy as np

from protocol import codec, sparse
from tests.coordinator.conftest import ADMIN
from tests.coordinator.http.test_bad_input import _expect_error, _snapshot

CODEC = "q8+rot+sparse:0.1"


def _sparse_payload(harness, seed: int, sparse_seed: int, name: str = CODEC) -> bytes:
    rng = np.random.default_rng(seed)
    arrays = [rng.normal(size=w.shape).astype(np.float32) * 0.01 for w in harness.manifest.weights]
    return codec.encode(arrays, codec.CodecSpec.parse(name), rng, sparse_seed=sparse_seed)


async def test_a_sparse_round_shares_its_seed_and_commits_the_mean(harness):
    await harness.setup_task(goal_count=2, over_selection=1.0, codec=CODEC)
    devices = [await harness.register() for _ in range(2)]
    assignments = [(await (await harness.checkin(d)).json())["assignment"] for d in devices]
    seeds = {a["plan"]["sparse_seed"] for a in assignments}
    assert seeds == {sparse.round_seed("t1", 1)} and all(a["plan"]["codec"] == CODEC for a in assignments)
    before = harness.coordinator.tasks["t1"].checkpoint_sha
    bodies = [_sparse_payload(harness, i, sparse.round_seed("t1", 1)) for i in range(2)]
    dense = codec.CodecSpec.parse("q8").max_payload_bytes(len(harness.manifest.weights),
                                                          sum(w.size for w in harness.manifest.weights))
    assert all(len(b) < dense / 7 for b in bodies)  # a tenth of the coordinates, plus headers
    for i, (d, a) in enumerate(zip(devices, assignments)):
        resp = await harness.upload(d, a, bodies[i], examples=10 * (i + 1))
        assert resp.status == 201, await resp.text()
    harness.tick()
    r1 = (await harness.rounds())[0]
    assert r1["state"] == "committed" and r1["reported"] == 2
    store = harness.coordinator.store
    old = codec.decode(store.blobs.read(before)).values
    new = codec.decode(store.blobs.read(harness.coordinator.tasks["t1"].checkpoint_sha)).values
    decoded = [codec.decode(b).values for b in bodies]  # decoding is deterministic: the same values
    np.testing.assert_allclose(new - old, (10 * decoded[0] + 20 * decoded[1]) / 30, atol=1e-6)
    harness.tick()
    a2 = (await (await harness.checkin(devices[0])).json())["assignment"]
    assert a2["round"] == 2 and a2["plan"]["sparse_seed"] == sparse.round_seed("t1", 2) != sparse.round_seed("t1", 1)


async def test_another_rounds_subset_or_kept_count_is_refused_and_changes_nothing(harness):
    await harness.setup_task(goal_count=2, over_selection=1.0, codec=CODEC)
    device = await harness.register()
    a = (await (await harness.checkin(device)).json())["assignment"]
    harness.coordinator.gateway.refusals.limit = 10  # four refused bodies on one assignment here
    before = _snapshot(harness)
    headers = {**device, "Content-Type": "application/octet-stream", "Fedge-Upload-Token": a["upload_token"],
               "Fedge-Upload": json.dumps({"example_count": 5})}
    post = harness.client.post
    await _expect_error(await post(a["upload_url"], data=_sparse_payload(harness, 0, sparse.round_seed("t1", 2)),
                                   headers=headers), 400, "wrong_seed")
    await _expect_error(await post(a["upload_url"], data=_sparse_payload(harness, 0, 12345), headers=headers),
                        400, "wrong_seed")
    await _expect_error(await post(a["upload_url"], data=_sparse_payload(harness, 0, sparse.round_seed("t1", 1),
                                                                         "q8+rot+sparse:0.05"),
                                   headers=headers), 400, "wrong_codec")
    # A dense update is larger than this codec's exact size: refused unread.
    await _expect_error(await post(a["upload_url"], data=harness.payload(), headers=headers), 413)
    zero_seed = bytearray(_sparse_payload(harness, 0, sparse.round_seed("t1", 1)))
    table = 24 + 4 * len(harness.manifest.weights)
    zero_seed[table:table + 8] = b"\0" * 8
    await _expect_error(await post(a["upload_url"], data=bytes(zero_seed), headers=headers), 400, "wrong_seed")
    assert _snapshot(harness) == before
    good = _sparse_payload(harness, 0, sparse.round_seed("t1", 1))
    assert (await post(a["upload_url"], data=good, headers=headers)).status == 201


async def test_sparse_codecs_are_refused_where_they_cannot_work(harness):
    await harness.setup_task()
    post = harness.client.post
    sha = harness.coordinator.tasks["t1"].model_sha
    for config, fragment in (({"download_codec": "q8+sparse:0.5"}, "whole checkpoint"),
                             ({"codec": "q8+sparse:0.1", "dp_noise_multiplier": 1.0, "clip_norm": 1.0, "dp_population": 100},
                              "cannot be combined with DP"),
                             ({"codec": "q8+sparse:1.5"}, "fraction"),
                             ({"codec": "q8+topk:0.01", "secagg": "secagg", "clip_norm": 1.0}, "line up"),
                             ({"codec": "q8+rot+topk:0.01"}, "rotation spreads"),
                             ({"download_codec": "q8+topk:0.5"}, "whole checkpoint")):
        resp = await post("/v1/admin/populations/pop/tasks", headers=ADMIN,
                          json={"model_sha256": sha, "config": {"rounds": 1, **config}})
        assert resp.status == 400 and fragment in (await resp.json())["error"]["message"], await resp.text()


async def test_a_top_k_round_commits_the_mean_of_what_was_sent(harness):
    await harness.setup_task(goal_count=2, over_selection=1.0, codec="q8+topk:0.05")
    devices = [await harness.register() for _ in range(2)]
    assignments = [(await (await harness.checkin(d)).json())["assignment"] for d in devices]
    before = harness.coordinator.tasks["t1"].checkpoint_sha
    bodies = [harness.payload(seed=i, kind="q8+topk:0.05") for i in range(2)]
    for d, a, body in zip(devices, assignments, bodies):
        assert (await harness.upload(d, a, body, examples=10)).status == 201
    harness.tick()
    assert (await harness.rounds())[0]["state"] == "committed"
    store = harness.coordinator.store
    old = codec.decode(store.blobs.read(before)).values
    new = codec.decode(store.blobs.read(harness.coordinator.tasks["t1"].checkpoint_sha)).values
    sent = [codec.decode(b).values for b in bodies]
    np.testing.assert_allclose(new - old, (sent[0] + sent[1]) / 2, atol=1e-6)
    assert np.count_nonzero(new - old) <= 2 * codec.CodecSpec.parse("q8+topk:0.05").kept(old.size)


async def test_a_header_that_differs_from_the_plan_is_refused_before_any_decoding(harness, monkeypatch):
    await harness.setup_task(goal_count=2, over_selection=1.0, codec=CODEC)
    device = await harness.register()
    a = (await (await harness.checkin(device)).json())["assignment"]
    good = _sparse_payload(harness, 0, sparse.round_seed("t1", 1))
    work = []
    for module, name in ((sparse, "kept_positions"), (codec, "hadamard_chunks"), (codec, "rotation_signs")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *args, _real=real, _name=name: work.append(_name) or _real(*args))
    # The task's kept count and seed, but a chunk of 2^20: its transform would pad to 2^20 points.
    huge_chunk = bytearray(good)
    huge_chunk[12:16] = (1 << 20).to_bytes(4, "little")
    resp = await harness.upload(device, a, bytes(huge_chunk))
    body = await resp.json()
    assert resp.status == 400 and body["error"]["code"] == "wrong_codec", body
    assert "chunk 1048576" in body["error"]["message"] and "chunk 256" in body["error"]["message"]
    assert work == []  # refused on the header alone
    assert (await harness.upload(device, a, good)).status == 201
    assert "kept_positions" in work  # the accepted one was decoded


async def test_repeated_refused_uploads_end_the_assignment(harness):
    await harness.setup_task(goal_count=2, over_selection=1.0, codec=CODEC)
    device = await harness.register()
    a = (await (await harness.checkin(device)).json())["assignment"]
    wrong = _sparse_payload(harness, 0, sparse.round_seed("t1", 2))
    for _ in range(3):
        await _expect_error(await harness.upload(device, a, wrong), 400, "wrong_seed")
    good = _sparse_payload(harness, 0, sparse.round_seed("t1", 1))
    await _expect_error(await harness.upload(device, a, good), 403, "assignment_ended")
    harness.tick()
    assert (await harness.rounds())[0]["reported"] == 0
