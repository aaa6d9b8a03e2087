"""The stores: SQLite's in-place migrations, PostgreSQL's numbered ones, what --db accepts,
and the typed interface behaving the same on both backends."""

import sqlite3

import pytest

from coordinator.records import AssignmentRecord, DeviceRecord, PopulationRecord, UpdateRecord
from coordinator.store import open_store
from coordinator.store_sqlite import SqliteStore


def test_an_older_database_gains_the_population_columns(tmp_path):
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE populations (name TEXT PRIMARY KEY, created_at REAL NOT NULL)")
    con.execute("INSERT INTO populations VALUES ('legacy', 1.0)")
    con.commit()
    con.close()
    store = SqliteStore(db)
    row = store.one("SELECT * FROM populations WHERE name='legacy'")
    assert row["enrollment_secret_hash"] == "" and row["require_attestation"] == 0
    store.close()


def test_what_db_accepts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="needs --data-dir"):
        open_store("postgresql://user@localhost:5432/fedge")
    with pytest.raises(ValueError, match="SQLite file path or a postgresql:// URL"):
        open_store("mysql://user@localhost/fedge")
    assert list(tmp_path.iterdir()) == []  # neither became a directory


def test_postgres_migrations_are_numbered_and_run_once(postgres_url, tmp_path):
    from coordinator.store_postgres import MIGRATIONS, PostgresStore

    first = PostgresStore(postgres_url, tmp_path / "data")
    first.add_population(PopulationRecord("p", 1.0))
    first.close()
    again = PostgresStore(postgres_url, tmp_path / "data")  # a second replica, or a restart
    assert again.schema_version() == MIGRATIONS[-1][0]
    assert [p.name for p in again.populations()] == ["p"]  # nothing recreated
    again.close()


def test_typed_interface_round_trip(store_db):
    db, data_dir = store_db
    store = open_store(db, data_dir)
    try:
        store.add_population(PopulationRecord("p", 1.5, "h", True))
        store.add_device(DeviceRecord("d1", "p", "th", "label", 2.0))
        store.touch_devices({"d1": 123.25})
        assert store.count_seen(100.0, "p") == 1 and store.count_devices("p") == 1
        assert store.population("p") == PopulationRecord("p", 1.5, "h", True)
        store.add_round("t", 1, 10.5, 20.5, 30.5)
        assert store.assign(AssignmentRecord("t", 1, "d1", "x", 11.0))
        assert not store.assign(AssignmentRecord("t", 1, "d1", "y", 12.0))  # one assignment per device
        store.add_update(UpdateRecord("t", 1, "d1", 7, {"train_loss": 0.5}, "/b", "dd", 13.0))
        rnd = store.round("t", 1)
        assert (rnd.selected, rnd.reported, rnd.examples, rnd.opened_at) == (1, 1, 7, 10.5)
        store.commit_round("t", 1, 14.0, "sha", {"reports": 1})
        assert store.last_committed("t").metrics == {"reports": 1} and store.committed_count("t") == 1
        store.add_secagg_message("t", 1, "share", "d1", "{}", "dg", 15.0, [(2, 1, b"\x00\xffsealed")])
        assert store.secagg_inbox("t", 1, 2) == [(1, b"\x00\xffsealed")]
        store.delete_secagg_shares("t", 1, keep_senders=[3])
        assert store.secagg_inbox("t", 1, 2) == []
    finally:
        store.close()


def test_one_serving_coordinator_per_postgres_database(postgres_url, tmp_path):
    first = open_store(postgres_url, str(tmp_path / "data"), exclusive=True)
    with pytest.raises(RuntimeError, match="already serving this database"):
        open_store(postgres_url, str(tmp_path / "data"), exclusive=True)
    reader = open_store(postgres_url, str(tmp_path / "data"))  # tools that only read are fine
    reader.close()
    first.close()  # a coordinator that stops (or dies: the session ends) frees the database
    open_store(postgres_url, str(tmp_path / "data"), exclusive=True).close()
