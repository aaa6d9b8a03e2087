"""A Java device (the Android sample's core + a pure-Java trainer) trains alongside Python
devices against a real `fedge serve`, and the global model learns."""

import subprocess
import sys
import urllib.request
from contextlib import contextmanager

import numpy as np
import pytest

from device_runtime.example_store import write_example_file
from protocol import codec
from tests.android_sample.conftest import write_examples_csv
from tests.serve_process import ADMIN, Server

pytestmark = pytest.mark.slow

ROUNDS = 4


def _global_accuracy(server: Server, x_test, y_test) -> float:
    req = urllib.request.Request(server.url + "/v1/admin/tasks/t/checkpoint", headers=ADMIN)
    with urllib.request.urlopen(req, timeout=10) as resp:
        flat = codec.decode(resp.read()).values
    kernel, bias = flat[:640].reshape(64, 10), flat[640:]
    return float(np.mean(np.argmax(x_test @ kernel + bias, axis=1) == y_test))


def _run_java_device(java_classpath: str, server: Server, population: str, csv, rounds, *extra: str,
                     timeout_s: int = 120) -> subprocess.CompletedProcess:
    """One JvmDevice process (the Android sample's core with the pure-Java trainer) against
    ``server`` for ``rounds`` rounds on the examples in ``csv``; ``extra``: more of its flags."""
    return subprocess.run(
        ["java", "-cp", java_classpath, "dev.fedge.core.jvm.JvmDevice", "--coordinator", server.url,
         "--population", population, "--data", str(csv), "--rounds", str(rounds), "--timeout-s", str(timeout_s),
         *extra], capture_output=True, text=True, timeout=timeout_s + 60)


@contextmanager
def _serving(tmp_path):
    """A real `fedge serve` on a fresh database in ``tmp_path``, killed when the test ends."""
    server = Server(str(tmp_path / "c.db"))
    server.start()
    try:
        yield server
    finally:
        server.kill9()


def _digits_csv(tmp_path, seed: int, count: int = 300):
    """A Java device's examples: ``count`` digits drawn at random (``seed``), as a CSV file."""
    from device_runtime.fleet.datasets import load_digits_pool

    x, _, y, _ = load_digits_pool(0)
    return write_examples_csv(tmp_path / "java.csv", x, y, np.random.default_rng(seed).permutation(len(y))[:count])


@pytest.mark.parametrize("secagg", ["off", "secagg", "secagg+scaffold", "secagg+distributed_dp",
                                    "secagg+distributed_dp+adaptive", "secagg+sparse"])
def test_java_device_trains_alongside_python_devices(java_classpath, softmax_tflite, tmp_path, secagg):
    """With secagg, the coordinator can only unmask the sum if the Java device's keys, sealed
    shares, grid, masks and revealed shares all agree with the Python devices' to the bit."""
    from device_runtime.fleet.datasets import load_digits_pool

    x, x_test, y, y_test = load_digits_pool(0)
    shards = np.array_split(np.random.default_rng(0).permutation(len(y)), 3)
    for i, shard in enumerate(shards[:2]):
        (tmp_path / f"py{i}").mkdir()
        write_example_file(tmp_path / f"py{i}" / "part0.npz", x[shard], y[shard])
    csv = write_examples_csv(tmp_path / "java.csv", x, y, shards[2])

    server = Server(str(tmp_path / "c.db"))
    server.start()
    procs = []
    try:
        # goal 3 of exactly 3 devices: no round can commit without the Java device's update.
        config = {"rounds": ROUNDS, "goal_count": 3, "over_selection": 1.0, "selection_window_s": 60,
                  "report_deadline_s": 60, "codec": "q8", "learning_rate": 0.5, "epochs": 2,
                  "eligibility": "charging and unmetered"}
        if secagg == "off":
            config["download_codec"] = "q8"  # the checkpoint travels quantized: both runtimes decode it
        if secagg != "off":
            # With SCAFFOLD the masked vector is model delta + control delta: the Java device's and
            # the Python devices' must agree on layout and grid, or the sum cannot be unmasked.
            config.update(secagg="secagg", clip_norm=5.0, secagg_phase_s=30, scaffold=secagg.endswith("scaffold"))
        if secagg.endswith("sparse"):
            # Only the rotation seed's subset of the codes is masked: the Java device must keep the
            # same coordinates as the Python devices, or the masks do not cancel.
            config["codec"] = "q8+sparse:0.5"
        if "distributed_dp" in secagg:
            # Each device adds its own discrete Gaussian noise before masking: the sum unmasks to
            # the right value only if the Java device's signed, noised codes wrap like Python's.
            config.update(dp_mode="distributed", dp_noise_multiplier=0.02, min_reports=3)
        if secagg.endswith("adaptive"):
            # Adaptive clipping: every device noises its clip bit before masking it; the count
            # unmasks right only if the Java device's noised bit wraps like the Python devices'.
            config.update(dp_target_quantile=0.5, dp_clipped_count_stddev=0.5)
        server.setup_task("mixed", softmax_tflite, config)
        before = _global_accuracy(server, x_test, y_test)
        for i in range(2):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "fedge", "device", "--coordinator", server.url, "--population", "mixed",
                 "--data", str(tmp_path / f"py{i}"), "--state-dir", str(tmp_path / f"state{i}"),
                 "--rounds", str(ROUNDS), "--charging", "1", "--unmetered", "1", "--log-level", "WARNING"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        # Under distributed DP the Java device also checks the round's noise against a floor of its
        # own (z 0.02 over 3 of 3 devices adds up to 0.02 sqrt(3) / sqrt(3) = 0.02 x the sensitivity).
        floor = ["--min-dp-noise-multiplier", "0.019"] if "distributed_dp" in secagg else []
        java = _run_java_device(java_classpath, server, "mixed", csv, ROUNDS, *floor, timeout_s=240)
        py_out = [p.communicate(timeout=120) for p in procs]
        assert java.returncode == 0, java.stdout + java.stderr
        assert f"java device: uploads {ROUNDS}, abandoned 0, rejected 0" in java.stdout, java.stdout
        for (out, err), p in zip(py_out, procs):
            assert p.returncode == 0, err
            assert f"uploads {ROUNDS}," in out
        rounds = server.call("GET", "/v1/admin/tasks/t", headers=ADMIN)[1]["rounds"]
        assert [r["state"] for r in rounds[:ROUNDS]] == ["committed"] * ROUNDS, rounds
        assert [r["reported"] for r in rounds[:ROUNDS]] == [3] * ROUNDS, rounds
        if secagg != "off":
            assert "masked" in java.stdout, java.stdout
        if "distributed_dp" in secagg:
            eps = [r["metrics"]["epsilon"] for r in rounds[:ROUNDS]]
            assert all(0 < e < float("inf") for e in eps) and eps == sorted(eps), eps
        if secagg.endswith("adaptive"):
            m = [r["metrics"] for r in rounds[:ROUNDS]]
            assert all(0.0 <= x["dp_below_clip"] <= 1.0 for x in m), m
            assert [x["dp_clip"] for x in m[1:]] == pytest.approx([x["dp_next_clip"] for x in m[:-1]])
        after = _global_accuracy(server, x_test, y_test)
        assert after > 0.85 and after > before + 0.5, (before, after)
        print(f"global accuracy {before:.3f} -> {after:.3f}; {java.stdout.splitlines()[-1]}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        server.kill9()


def test_java_device_trains_with_fedprox_and_takes_part_in_federated_evaluation(java_classpath, softmax_tflite,
                                                                                  tmp_path):
    """FedProx's mu and partial work in the plan, then an evaluation task (eval_every): the Java
    device trains, then reports counts on its holdout for the committed checkpoint."""
    import re

    from device_runtime.fleet.datasets import load_digits_pool

    x, _, y, _ = load_digits_pool(0)
    rows = np.random.default_rng(1).permutation(len(y))[:400]
    csv = write_examples_csv(tmp_path / "java.csv", x, y, rows)
    with _serving(tmp_path) as server:
        config = {"rounds": 1, "goal_count": 1, "over_selection": 1.0, "selection_window_s": 60,
                  "report_deadline_s": 60, "codec": "q8", "learning_rate": 0.5, "epochs": 2,
                  "proximal_mu": 0.1, "partial_work": True, "max_local_seconds": 30,
                  "eval_every": 1, "eval_goal_count": 1, "personalize_steps": 10, "eligibility": "charging"}
        server.setup_task("javaeval", softmax_tflite, config)
        java = _run_java_device(java_classpath, server, "javaeval", csv, 1, "--evaluations", "1")
        assert java.returncode == 0, java.stdout + java.stderr
        assert "java device: evaluations 1, unfinished 0" in java.stdout, java.stdout
        _, ev = server.call("GET", "/v1/admin/tasks/t-eval-1", headers=ADMIN)
        assert ev["state"] == "completed", ev
        m = ev["evaluation"]
        examples = int(re.search(r"evaluated.*?(\d+) examples", java.stdout).group(1))
        assert m["eval_devices"] == 1 and m["eval_examples"] == examples and 60 <= examples <= 100
        # The Java device's counts agree with the committed model evaluated here on its data.
        flat = codec.decode(urllib.request.urlopen(urllib.request.Request(
            server.url + "/v1/admin/tasks/t/checkpoint", headers=ADMIN), timeout=10).read()).values
        kernel, bias = flat[:640].reshape(64, 10), flat[640:]
        overall = float(np.mean(np.argmax(x[rows] @ kernel + bias, axis=1) == y[rows]))
        assert abs(m["eval_accuracy"] - overall) < 0.12, (m, overall)
        # Personalized evaluation in the Java core: 10 fine-tuning steps, then the holdout again.
        assert m["personalized_devices"] == 1 and 0 <= m["personalized_accuracy"] <= 1
        assert m["personalization_lift_p50"] == pytest.approx(m["personalized_accuracy"] - m["eval_accuracy"])


def test_java_device_runs_scaffold(java_classpath, softmax_tflite, tmp_path):
    """Two SCAFFOLD rounds of the Java device alone (goal 1, f32): the server's control variate
    is then exactly the device's c_i (its two control deltas, population factor 1)."""
    csv = _digits_csv(tmp_path, seed=2)
    with _serving(tmp_path) as server:
        config = {"rounds": 2, "goal_count": 1, "over_selection": 1.0, "selection_window_s": 60,
                  "report_deadline_s": 60, "codec": "f32", "learning_rate": 0.5, "epochs": 2, "scaffold": True,
                  "eligibility": "charging"}
        server.setup_task("javascaffold", softmax_tflite, config)
        out = tmp_path / "controls.txt"
        # Two processes, one round each (an Android job's process ends after its run): the second
        # finds c_i in its state folder. It registers again with the same data: a second device
        # to the coordinator, the same c_i chain here.
        for _ in range(2):
            java = _run_java_device(java_classpath, server, "javascaffold", csv, 1,
                                    "--state-dir", str(tmp_path / "state"), "--control-out", str(out))
            assert java.returncode == 0, java.stdout + java.stderr
        task_id, hexed = out.read_text().split()
        c_i = np.frombuffer(bytes.fromhex(hexed), "<f4")
        _, task = server.call("GET", "/v1/admin/tasks/t", headers=ADMIN)
        rounds = server.call("GET", "/v1/admin/tasks/t", headers=ADMIN)[1]["rounds"]
        assert task_id == "t" and [r["state"] for r in rounds] == ["committed", "committed"]
        sha = rounds[-1]["metrics"]["control_sha"]
        with urllib.request.urlopen(server.url + f"/v1/blobs/{sha}", timeout=10) as resp:
            c = codec.decode(resp.read()).values
        assert np.abs(c_i).max() > 0
        np.testing.assert_allclose(c, c_i, atol=1e-5)


def test_java_device_uploads_top_k_with_error_feedback(java_classpath, softmax_tflite, tmp_path):
    """Two top-k rounds of the Java device alone (goal 1, f32+topk:0.2), one process each: each
    committed step is exactly what it sent (its m largest coordinates), and what it left out is
    in its state folder, zero where it sent and no larger than anything it sent."""
    csv = _digits_csv(tmp_path, seed=3)
    with _serving(tmp_path) as server:
        config = {"rounds": 2, "goal_count": 1, "over_selection": 1.0, "selection_window_s": 60,
                  "report_deadline_s": 60, "codec": "f32+topk:0.2", "learning_rate": 0.5, "epochs": 2,
                  "eligibility": "charging"}
        server.setup_task("javatopk", softmax_tflite, config)
        checkpoints = [_checkpoint(server)]
        for _ in range(2):
            java = _run_java_device(java_classpath, server, "javatopk", csv, 1, "--state-dir",
                                    str(tmp_path / "state"))
            assert java.returncode == 0, java.stdout + java.stderr
            checkpoints.append(_checkpoint(server))
            sent = checkpoints[-1] - checkpoints[-2]  # FedAvg of one device, server rate 1: what it sent
            left = np.fromfile(tmp_path / "state" / "residual-t.f32", "<f4")
            kept = np.flatnonzero(sent)
            assert 0 < len(kept) <= codec.CodecSpec.parse("f32+topk:0.2").kept(sent.size) and left.size == sent.size
            assert not left[kept].any() and np.abs(sent[kept]).min() >= np.abs(left).max() * (1 - 1e-6)
        rounds = server.call("GET", "/v1/admin/tasks/t", headers=ADMIN)[1]["rounds"]
        assert [r["state"] for r in rounds] == ["committed", "committed"]


def _checkpoint(server) -> np.ndarray:
    sha = server.call("GET", "/v1/admin/tasks/t", headers=ADMIN)[1]["checkpoint_sha256"]
    with urllib.request.urlopen(server.url + f"/v1/blobs/{sha}", timeout=10) as resp:
        return codec.decode(resp.read()).values


def test_java_device_trains_in_an_asynchronous_task(java_classpath, softmax_tflite, tmp_path):
    """mode = "async": the Java device's assignments pin a version, and each of its updates
    publishes one (buffer_size 1): no protocol change on the device. Its uploads are sparse
    (q8+rot+sparse:0.3): the coordinator takes them only on its version's subset."""
    from device_runtime.fleet.datasets import load_digits_pool

    x, _, y, _ = load_digits_pool(0)
    csv = write_examples_csv(tmp_path / "java.csv", x, y, range(300))
    with _serving(tmp_path) as server:
        config = {"mode": "async", "buffer_size": 1, "concurrency": 1, "rounds": 2, "report_deadline_s": 60,
                  "codec": "q8+rot+sparse:0.3", "learning_rate": 0.5, "epochs": 1, "eligibility": "charging",
                  "download_codec": "q8"}
        server.setup_task("javaasync", softmax_tflite, config)
        java = _run_java_device(java_classpath, server, "javaasync", csv, 2)
        assert java.returncode == 0, java.stdout + java.stderr
        assert "java device: uploads 2" in java.stdout, java.stdout
        _, task = server.call("GET", "/v1/admin/tasks/t", headers=ADMIN)
        versions = task["rounds"]
        assert task["state"] == "completed" and [(r["round"], r["state"], r["reported"]) for r in versions[:2]] == \
            [(1, "committed", 1), (2, "committed", 1)], task
        # Its second update trained on version 1 (the assignment pinned it): staleness 0 both times.
        assert [r["metrics"]["staleness_max"] for r in versions[:2]] == [0, 0]


def test_java_device_trains_with_example_level_dp_sgd(java_classpath, softmax_dp_tflite, tmp_path):
    """A DP-SGD task (noise 1.0, per-example clip 1e-3) with the Java device alone: it clips
    every example (the committed step is no longer than the clip allows), reports its steps
    (without them the upload would be refused), and the round records their epsilon."""
    from coordinator.aggregation.privacy import epsilon
    csv = _digits_csv(tmp_path, seed=4)
    with _serving(tmp_path) as server:
        clip, z, lr, epochs = 1e-3, 1.0, 0.5, 2
        config = {"rounds": 1, "goal_count": 1, "over_selection": 1.0, "selection_window_s": 60,
                  "report_deadline_s": 60, "codec": "f32", "learning_rate": lr, "epochs": epochs,
                  "eligibility": "charging", "dp_sgd_noise_multiplier": z, "dp_sgd_clip": clip}
        server.setup_task("javadpsgd", softmax_dp_tflite, config)
        before = _checkpoint(server)
        java = _run_java_device(java_classpath, server, "javadpsgd", csv, 1)
        assert java.returncode == 0, java.stdout + java.stderr
        rounds = server.call("GET", "/v1/admin/tasks/t", headers=ADMIN)[1]["rounds"]
        assert [r["state"] for r in rounds] == ["committed"]
        # 300 rows, a fifth held out: 240 train in batches of 32, 8 steps an epoch.
        assert rounds[0]["metrics"]["dp_sgd_round_epsilon"] == pytest.approx(epsilon(z, 32 / 240, 16, 1e-5))
        assert "dp_sgd_device_epsilon" not in rounds[0]["metrics"]  # the Java core leaves accounting to the server
        step = np.linalg.norm(_checkpoint(server) - before)
        # Each of the 16 steps moves lr x (mean of clipped gradients + noise z clip N(0, I) / 32):
        # 650 coordinates of noise make the second term about 0.8 clip; unclipped it would be 1000x more.
        assert 0 < step <= 16 * lr * clip * (1 + 2 * z * np.sqrt(650) / 32)


def test_java_device_downloads_checkpoint_deltas(java_classpath, softmax_tflite, tmp_path):
    """Three rounds of the Java device alone with download_codec q8 and download_delta_codec
    q4+rot: round 1 downloads the checkpoint, rounds 2 and 3 its delta against that base
    (which the device names at check-in as a blob it holds), and the rounds commit; the model
    came gzip-compressed."""
    csv = _digits_csv(tmp_path, seed=5)
    with _serving(tmp_path) as server:
        config = {"rounds": 3, "goal_count": 1, "over_selection": 1.0, "selection_window_s": 60,
                  "report_deadline_s": 60, "codec": "q8", "learning_rate": 0.5, "epochs": 1,
                  "eligibility": "charging", "download_codec": "q8", "download_delta_codec": "q4+rot"}
        server.setup_task("javadelta", softmax_tflite, config)
        java = _run_java_device(java_classpath, server, "javadelta", csv, 3)
        assert java.returncode == 0, java.stdout + java.stderr
        assert "delta downloads 2" in java.stdout, java.stdout
        rounds = server.call("GET", "/v1/admin/tasks/t", headers=ADMIN)[1]["rounds"]
        assert [r["state"] for r in rounds] == ["committed"] * 3
        full, *later = [r["metrics"]["bytes_out"] for r in rounds]
        assert all(b < 0.6 * 650 + 1024 for b in later), (full, later)  # 650 parameters at 4 bits, plus headers
        # Round 1 carried the model too, gzip-compressed (the Java client asks for it and inflates it).
        assert full < 0.6 * len(softmax_tflite), (full, len(softmax_tflite))


def test_java_device_downloads_by_presigned_url_from_the_object_store(java_classpath, softmax_tflite, tmp_path,
                                                                      s3_blobs_url):
    """With --blobs s3://..., the Java device follows the assignment's presigned URLs to the
    object store (no token sent there, the digest checked) and trains; the coordinator serves
    none of the model's or the checkpoint's bytes."""
    csv = _digits_csv(tmp_path, seed=4)
    server = Server(str(tmp_path / "c.db"))
    server.extra_args += ("--blobs", s3_blobs_url)  # the AWS variables are in this process's environment
    server.start()
    try:
        config = {"rounds": 1, "goal_count": 1, "over_selection": 1.0, "selection_window_s": 60,
                  "report_deadline_s": 60, "codec": "q8", "learning_rate": 0.5, "epochs": 1,
                  "eligibility": "charging"}
        server.setup_task("javas3", softmax_tflite, config)
        java = _run_java_device(java_classpath, server, "javas3", csv, 1)
        assert java.returncode == 0, java.stdout + java.stderr
        assert "uploads 1" in java.stdout, java.stdout
        rounds = server.call("GET", "/v1/admin/tasks/t", headers=ADMIN)[1]["rounds"]
        assert [r["state"] for r in rounds] == ["committed"]
        req = urllib.request.Request(server.url + "/metrics", headers=ADMIN)
        with urllib.request.urlopen(req, timeout=10) as resp:
            metrics = resp.read().decode()
        served = next(float(line.split()[-1]) for line in metrics.splitlines()
                      if line.startswith("fedge_bytes_out_total "))
        assert served == 0.0
    finally:
        server.kill9()


def test_java_device_installs_a_signed_release(java_classpath, softmax_tflite, tmp_path):
    """A round trained by a Java device is released; a second Java device (pinning the key at
    registration) is offered it at check-in, verifies it and installs the signed bytes."""
    import hashlib
    import json

    csv = _digits_csv(tmp_path, seed=5)
    with _serving(tmp_path) as server:
        config = {"rounds": 1, "goal_count": 1, "over_selection": 1.0, "selection_window_s": 60,
                  "report_deadline_s": 60, "codec": "q8", "learning_rate": 0.5, "epochs": 1,
                  "eligibility": "charging"}
        server.setup_task("javarel", softmax_tflite, config)
        java = _run_java_device(java_classpath, server, "javarel", csv, 1)
        assert java.returncode == 0, java.stdout + java.stderr
        status, release = server.call("POST", "/v1/admin/tasks/t/releases", {"round": 1, "note": "java"}, ADMIN)
        assert status == 201, release
        folder = tmp_path / "releases"
        java = _run_java_device(java_classpath, server, "javarel", csv, 0, "--release-dir", str(folder))
        assert java.returncode == 0, java.stdout + java.stderr
        assert f"java device: release {release['release_id']} sequence 1 installed 1 refused 0" in java.stdout, java.stdout
        model = folder / f"{release['model_sha256']}.tflite"
        assert hashlib.sha256(model.read_bytes()).hexdigest() == release["model_sha256"]
        assert json.loads((folder / "current.json").read_text())["current"]["release_id"] == release["release_id"]
