"""Rewrite docs/coordinator.md's task key table from the declarations:

    python -m coordinator.tasks.keys_docs

(tests/coordinator/tasks/test_keys.py fails while the table is stale.)"""

from __future__ import annotations

from coordinator.tasks.config import TaskConfig
from coordinator.tasks.keys import DOCS, docs_table, docs_with_table


def main() -> None:
    DOCS.write_text(docs_with_table(DOCS.read_text(), docs_table(TaskConfig)))
    print(f"wrote the task key table into {DOCS}")


if __name__ == "__main__":
    main()
