"""The stores: SQLite's in-place migrations, PostgreSQL's numbered ones, what --db accepts,
and the typed interface behaving the same on both backends."""

import sqlite3

import pytest

from coordinator.store.records import AssignmentRecord, DeviceRecord, PopulationRecord, UpdateRecord
from coordinator.store.factory import open_store
from coordinator.store.sqlite import SqliteStore


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
    from coordinator.store.postgres import MIGRATIONS, PostgresStore

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
        store.touch_devices({"d1": (123.25, 150.0)})
        assert store.count_seen(100.0, "p") == 1 and store.count_devices("p") == 1
        assert store.count_present(149.0, "p") == 1 and store.count_present(151.0, "p") == 0
        assert store.population("p") == PopulationRecord("p", 1.5, "h", True)
        store.add_round("t", 1, 10.5, 20.5, 30.5)
        assert store.assign(AssignmentRecord("t", 1, "d1", "x", 11.0)) == 1
        assert store.assign(AssignmentRecord("t", 1, "d1", "y", 12.0)) is None  # one assignment per device
        assert store.assign(AssignmentRecord("t", 1, "d2", "y", 12.0), capacity=1) is None  # the round is full
        assert store.assignment("t", 1, "d2") is None  # ...and nothing was written
        assert store.add_update(UpdateRecord("t", 1, "d1", 7, {"train_loss": 0.5}, "/b", "dd", 13.0),
                                only_open=True) == 1
        rnd = store.round("t", 1)
        assert (rnd.selected, rnd.reported, rnd.examples, rnd.opened_at) == (1, 1, 7, 10.5)
        assert not store.commit_round("t", 1, 14.0, "sha", {"reports": 1})  # only an aggregating round commits
        assert not store.set_round_state("t", 1, "aggregating", "", None, expected="reporting")  # it is selecting
        assert store.set_round_state("t", 1, "aggregating", "", None, expected="selecting")
        # An update that arrives once the round stopped taking them is not written at all.
        assert store.add_update(UpdateRecord("t", 1, "d2", 5, {}, "/c", "ee", 13.5), only_open=True) is None
        assert store.update("t", 1, "d2") is None and store.round("t", 1).reported == 1
        assert store.commit_round("t", 1, 14.0, "sha", {"reports": 1})
        assert not store.commit_round("t", 1, 15.0, "sha2", {"reports": 2})  # committed once, by one replica
        assert store.last_committed("t").metrics == {"reports": 1} and store.committed_count("t") == 1
        store.add_secagg_message("t", 1, "share", "d1", "{}", "dg", 15.0, [(2, 1, b"\x00\xffsealed")])
        assert store.secagg_inbox("t", 1, 2) == [(1, b"\x00\xffsealed")]
        store.delete_secagg_shares("t", 1, keep_senders=[3])
        assert store.secagg_inbox("t", 1, 2) == []
    finally:
        store.close()


def test_leases_are_held_by_one_replica_until_they_expire(store_db):
    db, data_dir = store_db
    a, b = open_store(db, data_dir), open_store(db, data_dir)  # two replicas on one database
    try:
        assert a.acquire_lease("t", "A", now=100.0, ttl_s=3.0)
        assert not b.acquire_lease("t", "B", now=101.0, ttl_s=3.0)  # A's lease runs until 103
        assert a.acquire_lease("t", "A", now=102.0, ttl_s=3.0)  # renewed until 105
        assert not b.acquire_lease("t", "B", now=104.9, ttl_s=3.0)
        assert b.acquire_lease("t", "B", now=105.1, ttl_s=3.0)  # A stopped renewing: B takes over
        assert not a.acquire_lease("t", "A", now=105.2, ttl_s=3.0)
        assert a.acquire_lease("u", "A", now=105.2, ttl_s=3.0)  # per task
        b.release_leases("B")
        assert a.acquire_lease("t", "A", now=105.3, ttl_s=3.0)  # released: no wait for the expiry
    finally:
        a.close()
        b.close()
