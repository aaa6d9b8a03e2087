"""What `--blobs` accepts and refuses, and an object store that cannot be used: one clear
line at start, before anything is served."""

import subprocess
import sys

import pytest

from coordinator.store.factory import open_blobs, open_store
from coordinator.store.s3_blobs import MAX_URL_LIFE_S, MIN_URL_LIFE_S, S3BlobStore, parse_blobs_url


@pytest.mark.parametrize("url, expected", [("s3://bucket", ("bucket", "")), ("s3://b/p/q/", ("b", "p/q")),
                                           ("s3://b//deep", ("b", "deep"))])
def test_a_blobs_url_names_a_bucket_and_a_prefix(url, expected):
    assert parse_blobs_url(url) == expected


@pytest.mark.parametrize("url", ["s3://", "http://host/bucket", "bucket/prefix", "s3://b/p?x=1", "s3://b/p#f"])
def test_other_blobs_urls_are_refused(url):
    with pytest.raises(ValueError, match="s3://BUCKET"):
        parse_blobs_url(url)


def test_blobs_options_that_cannot_go_together_are_refused():
    with pytest.raises(ValueError, match="s3://BUCKET/PREFIX"):
        open_blobs("/srv/blobs")
    with pytest.raises(ValueError, match="--blobs-public-endpoint"):
        open_blobs("", public_endpoint="https://cdn.example")
    with pytest.raises(ValueError, match=":memory:"):
        open_store(":memory:", blobs=S3BlobStore("s3://b", endpoint="http://127.0.0.1:9"))


def test_wrong_credentials_are_one_clear_error(s3_blobs_url, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(RuntimeError, match="refused a write/read/delete"):
        open_blobs(s3_blobs_url)


def test_fedge_serve_with_an_unreachable_store_exits_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    res = subprocess.run([sys.executable, "-m", "fedge", "serve", "--db", str(tmp_path / "c.db"),
                          "--blobs", "s3://fedge/x", "--admin-token", "t"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("fedge serve: error: the object store at s3://fedge/x"), res.stderr[-2000:]
    assert not (tmp_path / "c.db").exists()  # nothing was created


def test_a_url_lives_until_the_deadline_within_its_bounds(s3_blobs_url):
    import hashlib

    store = S3BlobStore(s3_blobs_url)
    data = b"x" * 100
    sha = hashlib.sha256(data).hexdigest()
    store.put(sha, data)
    now = 1_000.0

    def life(expires_at):
        url = store.download_url(sha, expires_at, now)
        return int(url.split("X-Amz-Expires=")[1].split("&")[0])

    assert MIN_URL_LIFE_S <= life(now + 1) <= MIN_URL_LIFE_S + 15  # too short: the minimum
    assert 600 - 15 <= life(now + 600) <= 600  # never past the deadline
    assert life(now + 30 * 24 * 3600) <= MAX_URL_LIFE_S
    assert store.download_url(sha, now + 600, now) == store.download_url(sha, now + 601, now + 1)  # shared
