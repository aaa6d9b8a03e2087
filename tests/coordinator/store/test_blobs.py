"""The BlobStore contract (coordinator/store/blobs.py), as one suite every implementation
passes: durable whole writes, idempotent blobs, None for what is absent, no error deleting it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from coordinator.store.blobs import (BlobStore, LocalBlobStore, MemoryBlobStore, optimizer_state_key,
                                     round_updates_prefix, update_key)


@pytest.fixture(params=["local", "memory", "s3"])
def blobs(request, tmp_path) -> BlobStore:
    if request.param == "s3":
        from coordinator.store.s3_blobs import S3BlobStore

        return S3BlobStore(request.getfixturevalue("s3_blobs_url"))
    return LocalBlobStore(tmp_path / "data") if request.param == "local" else MemoryBlobStore()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_blob_round_trips_and_putting_it_again_changes_nothing(blobs):
    data = b"checkpoint bytes"
    sha = _sha(data)
    assert not blobs.exists(sha) and blobs.read(sha) is None
    blobs.put(sha, data)
    blobs.put(sha, data)
    assert blobs.exists(sha) and blobs.read(sha) == data
    blobs.delete(sha)
    blobs.delete(sha)  # deleting what is absent is not an error
    assert not blobs.exists(sha) and blobs.read(sha) is None


@pytest.mark.parametrize("bad", ["", "../etc/passwd", "A" * 64, "0" * 63, "g" * 64])
def test_a_name_that_is_not_a_digest_is_nothing(blobs, bad):
    assert blobs.read(bad) is None and not blobs.exists(bad) and blobs.local_path(bad) is None
    with pytest.raises(ValueError):
        blobs.put(bad, b"x")


def test_objects_replace_and_a_round_prefix_tidies_only_when_empty(blobs):
    first, second = update_key("t", 1, "d1"), update_key("t", 1, "d2", assigned_round=0)
    assert first != second and first.startswith(round_updates_prefix("t", 1))
    blobs.put_object(first, b"one")
    blobs.put_object(first, b"two")
    blobs.put_object(second, b"three")
    assert blobs.read_object(first) == b"two" and blobs.read_object(second) == b"three"
    blobs.delete_object(first)
    blobs.remove_empty_folder(round_updates_prefix("t", 1))
    assert blobs.read_object(second) == b"three"  # a folder with something in it stays
    blobs.delete_object(second)
    blobs.delete_object(second)
    blobs.remove_empty_folder(round_updates_prefix("t", 1))
    assert blobs.read_object(first) is None and blobs.read_object(optimizer_state_key("t", 1)) is None


def test_read_objects_answers_in_order_with_none_for_what_is_absent(blobs):
    keys = [update_key("t", 2, f"d{i}") for i in range(5)]
    for i, key in enumerate(keys):
        if i != 3:
            blobs.put_object(key, f"update {i}".encode())
    assert blobs.read_objects(keys) == [b"update 0", b"update 1", b"update 2", None, b"update 4"]


def test_delete_objects_deletes_every_one_and_minds_no_absent_one(blobs):
    keys = [update_key("t", 3, f"d{i}") for i in range(4)]
    for key in keys[:3]:
        blobs.put_object(key, b"u")
    blobs.put_object(update_key("t", 4, "d0"), b"kept")
    blobs.delete_objects(keys)
    assert blobs.read_objects(keys) == [None] * 4 and blobs.read_object(update_key("t", 4, "d0")) == b"kept"


def test_create_object_writes_only_the_first(blobs):
    assert blobs.create_object("keys/k.pem", b"first")
    assert not blobs.create_object("keys/k.pem", b"second")
    assert blobs.read_object("keys/k.pem") == b"first"


def test_usage_counts_what_is_stored(blobs):
    before = blobs.usage()
    blobs.put(_sha(b"a" * 100), b"a" * 100)
    blobs.put_object(update_key("t", 1, "d"), b"b" * 30)
    after = blobs.usage()
    assert after["objects"] == before["objects"] + 2 and after["bytes"] == before["bytes"] + 130


def test_an_object_key_cannot_climb_out(blobs):
    with pytest.raises(ValueError):
        blobs.put_object("updates/../../escape.bin", b"x")


def test_a_write_survives_its_folder_being_removed_meanwhile(tmp_path, monkeypatch):
    """A late upload is stored on the intake thread while the round's end removes the round's
    empty update folder: the write makes the folder again instead of failing with a 500."""
    blobs = LocalBlobStore(tmp_path)
    key = update_key("t", 1, "d")
    real = Path.write_bytes
    removed = []

    def racing_write(self, data):
        if not removed:  # the folder goes between mkdir and the write, once
            removed.append(True)
            self.parent.rmdir()
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", racing_write)
    blobs.put_object(key, b"update")
    assert removed and blobs.read_object(key) == b"update"


def test_rows_written_before_keys_still_name_readable_bytes(tmp_path):
    """Update rows from before objects had keys hold the file's absolute path."""
    blobs = LocalBlobStore(tmp_path)
    legacy = tmp_path / "updates" / "t" / "000001" / "d.bin"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"old")
    assert blobs.read_object(str(legacy)) == b"old"
