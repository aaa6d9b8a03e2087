"""The stores: the one schema's migrations on SQLite and PostgreSQL, what --db accepts, and the
typed interface behaving the same on every backend (SQLite, PostgreSQL, in memory)."""

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
    memory = open_store(":memory:")
    assert type(memory).__name__ == "MemoryStore" and list(tmp_path.iterdir()) == []  # nothing on disk here
    memory.close()


def test_postgres_migrations_are_numbered_and_run_once(postgres_url, tmp_path):
    from coordinator.store.postgres import PostgresStore
    from coordinator.store.schema import LATEST

    first = PostgresStore(postgres_url, tmp_path / "data")
    first.add_population(PopulationRecord("p", 1.0))
    first.close()
    again = PostgresStore(postgres_url, tmp_path / "data")  # a second replica, or a restart
    assert again.schema_version() == LATEST
    assert [p.name for p in again.populations()] == ["p"]  # nothing recreated
    again.close()


@pytest.fixture(params=["sqlite", "postgres", "memory"])
def any_store_db(request, tmp_path) -> tuple[str, str]:
    """(--db, --data-dir) of every backend, the in-memory store included: the contract's tests."""
    if request.param == "memory":
        return ":memory:", ""
    if request.param == "sqlite":
        return str(tmp_path / "c.db"), ""
    return request.getfixturevalue("postgres_url"), str(tmp_path / "data")


def test_typed_interface_round_trip(any_store_db):
    db, data_dir = any_store_db
    store = open_store(db, data_dir)
    try:
        store.add_population(PopulationRecord("p", 1.5, "h", True))
        store.add_device(DeviceRecord("d1", "p", "th", "label", 2.0))
        store.touch_devices({"d1": (123.25, 150.0)})
        assert store.count_seen(100.0, "p") == 1 and store.count_devices("p") == 1
        assert store.count_present(149.0, "p") == 1 and store.count_present(151.0, "p") == 0
        assert store.population("p") == PopulationRecord("p", 1.5, "h", True)
        store.add_round("t", 1, 10.5, 20.5, 30.5)
        assert [r.round for r in store.rounds("t")] == [1] and store.rounds("t", first=2) == []
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


def test_many_devices_are_added_all_or_none(any_store_db):
    db, data_dir = any_store_db
    store = open_store(db, data_dir)
    try:
        store.add_population(PopulationRecord("p", 1.0))
        store.add_devices([DeviceRecord(f"d{i}", "p", f"th{i}", "", 2.0) for i in range(5)])
        assert store.count_devices("p") == 5 and store.device("d3").token_hash == "th3"
        with pytest.raises(Exception):  # d4 is there already: the batch is refused
            store.add_devices([DeviceRecord("d5", "p", "x", "", 3.0), DeviceRecord("d4", "p", "y", "", 3.0)])
        assert store.count_devices("p") == 5 and store.device("d5") is None and store.device("d4").token_hash == "th4"
    finally:
        store.close()


def test_last_seen_and_due_count_present_and_seen_devices_per_population(any_store_db):
    """The columns every check-in rewrites (arrays in the in-memory store, SQL elsewhere)."""
    db, data_dir = any_store_db
    store = open_store(db, data_dir)
    try:
        for p in ("p", "q"):
            store.add_population(PopulationRecord(p, 1.0))
        store.add_devices([DeviceRecord(f"p{i}", "p", "h", "", 1.0, last_seen=1.0, due=50.0) for i in range(4)])
        store.add_device(DeviceRecord("q0", "q", "h", "", 1.0))
        assert store.count_present(40.0, "p") == 4 and store.count_present(40.0, "q") == 0
        store.touch_devices({"p0": (10.0, 100.0), "p1": (20.0, 30.0), "q0": (30.0, 200.0), "nobody": (5.0, 5.0)})
        store.touch_devices({"p1": (25.0, 300.0)})  # the latest check-in wins
        assert store.device("p1").last_seen == 25.0 and store.device("p1").due == 300.0
        assert store.device("p2").last_seen == 1.0 and store.device("nobody") is None
        assert [store.count_present(t, "p") for t in (50.0, 51.0, 100.0, 101.0, 301.0)] == [4, 2, 2, 1, 0]
        assert store.count_present(150.0, "q") == 1 and store.count_present(150.0, "r") == 0
        assert store.count_seen(10.0, "p") == 2 and store.count_seen(10.0, "q") == 1 and store.count_seen(10.0) == 3
        with pytest.raises(Exception):  # a refused batch counts no device
            store.add_devices([DeviceRecord("p9", "p", "h", "", 1.0, due=1e9), DeviceRecord("p0", "p", "h", "", 1.0)])
        assert store.count_present(1e8, "p") == 0 and store.device("p9") is None
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


def test_both_backends_make_the_same_tables_from_the_one_schema(postgres_url, tmp_path):
    """The schema is written once (coordinator/store/schema.py): SQLite and PostgreSQL end with
    the same tables and columns, at the same migration number."""
    from coordinator.store.postgres import PostgresStore
    from coordinator.store.schema import LATEST

    lite = SqliteStore(tmp_path / "c.db")
    pg = PostgresStore(postgres_url, tmp_path / "data")
    try:
        assert lite.schema_version() == pg.schema_version() == LATEST
        lite_tables = {r[0]: {c[1] for c in lite.all(f"PRAGMA table_info({r[0]})")}
                       for r in lite.all("SELECT name FROM sqlite_master WHERE type='table'")}
        pg_tables: dict[str, set[str]] = {}
        for r in pg.all("SELECT table_name, column_name FROM information_schema.columns "
                        "WHERE table_schema = current_schema() AND table_name <> 'schema_migrations'"):
            pg_tables.setdefault(r[0], set()).add(r[1])
        assert lite_tables == pg_tables
    finally:
        lite.close()
        pg.close()


def test_an_unnumbered_database_is_upgraded_once_and_keeps_its_rows(tmp_path):
    """A database made before the migrations were numbered (every table, due missing) opens at
    the latest migration with its rows, and opening it again changes nothing."""
    from coordinator.store.schema import LATEST

    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE populations (name TEXT PRIMARY KEY, created_at REAL NOT NULL, "
                "enrollment_secret_hash TEXT NOT NULL DEFAULT '', require_attestation INTEGER NOT NULL DEFAULT 0)")
    con.execute("CREATE TABLE devices (device_id TEXT PRIMARY KEY, population TEXT NOT NULL, token_hash TEXT "
                "NOT NULL, label TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL, last_seen REAL NOT NULL DEFAULT 0)")
    con.execute("INSERT INTO devices VALUES ('d', 'p', 'h', '', 1.0, 2.0)")
    con.execute("PRAGMA user_version=1")
    con.commit()
    con.close()
    for _ in range(2):
        store = SqliteStore(db)
        assert store.schema_version() == LATEST
        assert store.device("d").due == 0 and store.device("d").last_seen == 2.0
        store.close()


def test_the_audit_chain_is_ordered_and_the_details_go_together(any_store_db):
    """Ordering and atomicity on every backend: consecutive sequence numbers in one chain per
    task, and a round's details deleted across their tables while its row stays."""
    db, data_dir = any_store_db
    store = open_store(db, data_dir)
    try:
        for seq_expected in (1, 2, 3):
            entry = store.append_audit("t", lambda seq, prev: {"seq": seq, "prev": prev, "hash": f"h{seq}"})
            assert entry["seq"] == seq_expected
        store.append_audit("u", lambda seq, prev: {"seq": seq, "prev": prev, "hash": "u1"})
        chain = store.audit_entries("t")
        assert [e["seq"] for e in chain] == [1, 2, 3] and [e["prev"] for e in chain[1:]] == ["h1", "h2"]
        store.add_population(PopulationRecord("p", 1.0))
        store.add_round("t", 1, 10.0, 20.0, 30.0)
        assert store.assign(AssignmentRecord("t", 1, "d1", "x", 11.0)) == 1
        store.add_update(UpdateRecord("t", 1, "d1", 3, {}, "k", "dd", 12.0))
        store.delete_round_details("t", 1)
        assert store.assignment("t", 1, "d1") is None and store.updates("t", 1) == []
        assert store.round("t", 1).reported == 1  # the round's summary row is kept for good
    finally:
        store.close()
