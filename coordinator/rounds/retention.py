"""What a task keeps on disk as its rounds go by, and what it lets go.

Without this a task with a million rounds keeps a million checkpoints, a million empty
update folders and every assignment and update record. After each round ends:

- the checkpoint that just left the window of the last ``keep_checkpoints`` committed
  rounds is deleted, unless its round is a multiple of ``keep_every`` or anything else
  still names it (a task's model or current checkpoint, another round). Devices only ever
  download the current checkpoint; the rest is history the operator chose to keep.
- assignments, update records and SecAgg messages of rounds older than the last
  ``keep_round_details`` go (a device retrying an upload that old gets a 403); each round's
  row in ``rounds`` (state, counts, metrics, checkpoint digest) stays for good;
- the server optimizer's state older than the previous round goes (only the previous
  round's is ever read, by the next commit).

Each step is idempotent and touches O(1) rows and files, so a crash in between leaves at
most one file for a later sweep (`disk_usage` shows it).
"""

from __future__ import annotations

import os
from pathlib import Path


def keeps_checkpoint(round_num: int, keep_every: int) -> bool:
    return keep_every > 0 and round_num % keep_every == 0


def prune_after_round(store, task_id: str, config, num: int, drop_optimizer_state) -> list[str]:
    """Apply the task's retention after round `num` ended; returns the blob digests deleted."""
    deleted = []
    old = store.committed_outside_window(task_id, config.keep_checkpoints)
    if old is not None and old.checkpoint_sha and not keeps_checkpoint(old.round, config.keep_every):
        if not store.blob_referenced(old.checkpoint_sha, (task_id, old.round)):
            if store.blobs.exists(old.checkpoint_sha):
                store.blobs.delete(old.checkpoint_sha)
                deleted.append(old.checkpoint_sha)
    if num > config.keep_round_details:
        store.delete_round_details(task_id, num - config.keep_round_details)
    if num > 2:
        drop_optimizer_state(num - 2)
    return deleted


def disk_usage(data_dir: Path, db_path: str | None) -> dict:
    """Bytes under the data directory by kind, and the SQLite files (database + WAL)."""
    out = {}
    for name in ("blobs", "updates", "server_opt"):
        total = 0
        for root, _, files in os.walk(Path(data_dir) / name):
            for f in files:
                try:
                    total += os.stat(os.path.join(root, f)).st_size
                except OSError:
                    pass
        out[name] = total
    db = 0
    if db_path:
        for suffix in ("", "-wal", "-shm"):
            try:
                db += os.stat(db_path + suffix).st_size
            except OSError:
                pass
    out["database"] = db
    out["total"] = sum(out.values())
    return out
