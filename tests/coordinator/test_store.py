"""The SQLite store: in-place migrations, and what --db accepts."""

import sqlite3

import pytest

from coordinator.store import Store


def test_an_older_database_gains_the_population_columns(tmp_path):
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE populations (name TEXT PRIMARY KEY, created_at REAL NOT NULL)")
    con.execute("INSERT INTO populations VALUES ('legacy', 1.0)")
    con.commit()
    con.close()
    store = Store(db)
    row = store.one("SELECT * FROM populations WHERE name='legacy'")
    assert row["enrollment_secret_hash"] == "" and row["require_attestation"] == 0
    store.close()


def test_a_database_url_is_refused_not_turned_into_a_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="only a SQLite file path"):
        Store("postgresql://user@localhost:5432/fedge")
    assert list(tmp_path.iterdir()) == []
