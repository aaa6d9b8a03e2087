import os

import pytest

from tests.missing_tool import skip_or_fail

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# TensorFlow turns its oneDNN kernels on by default only on some CPUs (some Intel ones, and
# some AMD ones with AVX-512); its plain kernels lack some ops (dilated Conv2DBackpropInput)
# and round differently. The suite always runs the plain ones, the set every CPU has, so a
# result here does not depend on the CPU's vendor. Set before anything imports TensorFlow;
# subprocesses the tests start inherit it.
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"


@pytest.fixture(scope="session")
def digits_tflite(tmp_path_factory) -> bytes:
    """The zoo digits MLP, exported once per test session (needs the [export] extra)."""
    from model_export.exporter import export_model
    from model_export.zoo import digits_mlp

    result = export_model(digits_mlp(), name="digits_mlp", parity_steps=0)
    return result.tflite


@pytest.fixture(scope="session")
def digits_dp_tflite(tmp_path_factory) -> bytes:
    """The zoo digits MLP with the example-level DP-SGD step (fedge export --dp-sgd)."""
    from model_export.exporter import export_model
    from model_export.zoo import digits_mlp

    return export_model(digits_mlp(), name="digits_mlp_dp", parity_steps=0, dp_microbatches=32).tflite


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL cluster for the session (Debian's package, in a temp dir). Without it
    the PostgreSQL variants are skipped, unless FEDGE_REQUIRE_POSTGRES=1 (set by .ci/run,
    which installs it) makes that a failure."""
    from fedge.local_postgres import LocalPostgres, find_bin_dir

    if find_bin_dir() is None:
        skip_or_fail("PostgreSQL not installed (apt-get install postgresql)", "FEDGE_REQUIRE_POSTGRES")
    server = LocalPostgres().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server():
    """One S3-compatible object store for the session (SeaweedFS, built by
    scripts/seaweedfs.sh, in a temp dir), with its bucket `fedge-tests`. Without the binary the
    S3 variants are skipped, unless FEDGE_REQUIRE_S3=1 (set by .ci/run, which builds it) makes
    that a failure."""
    from fedge.local_s3 import LocalS3, find_weed

    if find_weed() is None:
        skip_or_fail("SeaweedFS not built (bash scripts/seaweedfs.sh install)", "FEDGE_REQUIRE_S3")
    server = LocalS3().start()
    server.create_bucket("fedge-tests")
    yield server
    server.stop()


_prefixes = iter(range(1, 1_000_000))


@pytest.fixture
def s3_blobs_url(s3_server, monkeypatch) -> str:
    """``s3://fedge-tests/tN``: a fresh, empty prefix of the session's bucket, with the AWS
    variables pointing this process (and the coordinators it starts) at the store."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return f"s3://fedge-tests/t{next(_prefixes)}"


_databases = iter(range(1, 1_000_000))


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh, empty database on the session's cluster."""
    return postgres_server.create_database(f"t{next(_databases)}")


@pytest.fixture(params=["sqlite", "postgres"])
def store_db(request, tmp_path) -> tuple[str, str]:
    """(--db, --data-dir) for each backend: the tests that take it run against both."""
    if request.param == "sqlite":
        return str(tmp_path / "c.db"), ""
    return request.getfixturevalue("postgres_url"), str(tmp_path / "data")
