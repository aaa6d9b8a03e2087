import numpy as np
import pytest

from device_runtime.fleet import datasets


def test_dirichlet_partition_covers_everything_once_and_is_skewed():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 50)
    parts = datasets.partition_dirichlet(y, 20, 0.1, rng)
    merged = np.sort(np.concatenate(parts))
    assert np.array_equal(merged, np.arange(len(y)))
    # Low alpha: most devices are dominated by few labels.
    dominant = [np.bincount(y[p], minlength=10).max() / len(p) for p in parts]
    assert np.median(dominant) > 0.5


def test_iid_partition_is_balanced():
    parts = datasets.partition_iid(np.zeros(103), 10, np.random.default_rng(0))
    assert sorted(len(p) for p in parts) == [10] * 7 + [11] * 3


def test_digits_federation_and_bad_specs():
    data = datasets.load_federated("digits", 10, "iid", seed=0)
    assert len(data.shards) == 10 and data.x_test.shape[1] == 64 and data.x_test.max() <= 1.0
    with pytest.raises(ValueError):
        datasets.load_federated("mnist", 10, "iid", 0)
    with pytest.raises(ValueError):
        datasets.load_federated("digits", 10, "pathological", 0)


def test_synthetic_is_reproducible_and_heterogeneous():
    a = datasets.load_federated("synthetic:1,1", 5, "iid", seed=3)
    b = datasets.load_federated("synthetic:1,1", 5, "iid", seed=3)
    assert np.array_equal(a.shards[0][0], b.shards[0][0])
    assert len({len(s[0]) for s in a.shards}) > 1 and a.num_classes == 10


def test_emnist_h5_loader_on_a_tiny_file(tmp_path):
    import h5py

    path = tmp_path / "fed_emnist_tiny.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for writer, n in (("f0000_14", 12), ("f0001_41", 7)):
            g = f.create_group(f"examples/{writer}")
            g["pixels"] = rng.random((n, 28, 28), dtype=np.float32)
            g["label"] = rng.integers(0, 62, n).astype(np.int32)
    shards = datasets.load_emnist_h5(str(path))
    assert [len(s[0]) for s in shards] == [12, 7] and shards[0][0].shape[1:] == (28, 28, 1)
    data = datasets.load_federated(f"emnist:{path}", 2, "writer", 0)
    assert data.num_classes == 62 and len(data.x_test) == 1 + 1
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(ValueError, match="layout"):
        datasets.load_emnist_h5(str(bad))


def test_augmented_digits_grow_the_training_part_only():
    from device_runtime.fleet.datasets import augment_digits, load_digits_pool, load_federated

    plain = load_federated("digits", 50, "iid", 0)
    grown = load_federated("digits:x4", 50, "iid", 0)
    assert sum(len(y) for _, y in grown.shards) == 4 * sum(len(y) for _, y in plain.shards)
    np.testing.assert_array_equal(grown.x_test, plain.x_test)  # the global test set is the original images
    x_tr, _, y_tr, _ = load_digits_pool(0)
    x, y = augment_digits(x_tr, y_tr, 3, np.random.default_rng(1))
    n = len(x_tr)
    np.testing.assert_array_equal(x[:n], x_tr)
    np.testing.assert_array_equal(y, np.tile(y_tr, 3))
    assert x.min() >= 0.0 and x.max() <= 1.0
    # Each copy is its original moved by at most one pixel (plus small noise): closer to it
    # than to an image of another digit, on average.
    copy = x[n:2 * n]
    own = np.abs(copy - x_tr).mean()
    other = np.abs(copy - x_tr[np.roll(np.arange(n), 1)]).mean()
    assert own < other
    # The shift each copy drew: pixel (r, c) of the original lands on (r + dx, c + dy).
    draws = np.random.default_rng(1)
    dx, dy = draws.integers(-1, 2, n), draws.integers(-1, 2, n)
    for i in range(0, n, 97):
        expected = np.zeros((8, 8), np.float32)
        for r in range(8):
            for c in range(8):
                if 0 <= r + dx[i] < 8 and 0 <= c + dy[i] < 8:
                    expected[r + dx[i], c + dy[i]] = x_tr[i].reshape(8, 8)[r, c]
        assert np.abs(copy[i].reshape(8, 8) - expected).max() < 0.35  # N(0, 0.05) noise, clipped
    for bad in ("digits:x0", "digits:x1001", "digits:big"):
        with pytest.raises(ValueError):
            load_federated(bad, 10, "iid", 0)


def test_label_mix_shards_are_equal_sized_and_skewed_at_any_population():
    from device_runtime.fleet.datasets import partition

    y = np.repeat(np.arange(10), 1000)  # 10,000 examples, 1,000 of each label
    parts = partition(y, 2000, "labelmix:0.5", np.random.default_rng(0))
    assert len(parts) == 2000 and {len(p) for p in parts} == {5}
    every = np.concatenate(parts)
    assert every.min() >= 0 and every.max() < len(y)
    # Skewed: a device's most common label is most of its shard (IID: about 1.8 of 5).
    top_share = np.mean([np.bincount(y[p], minlength=10).max() / len(p) for p in parts])
    iid_share = np.mean([np.bincount(y[p], minlength=10).max() / len(p)
                         for p in partition(y, 2000, "iid", np.random.default_rng(0))])
    assert top_share > iid_share + 0.1, (top_share, iid_share)  # measured 0.50 vs 0.36
    # Examples are reused only where a label's demand exceeds its pool: a few per cent at most.
    assert len(np.unique(every)) > 0.95 * len(every)
    again = partition(y, 2000, "labelmix:0.5", np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    with pytest.raises(ValueError):
        partition(y, 10, "labelmix:0", np.random.default_rng(0))
