"""What a device keeps between rounds, never uploaded: its personal layers (FedPer) per model,
SCAFFOLD's control variate c_i per task, top-k's error-feedback residual per task, its DP-SGD
privacy ledger, and per task the full checkpoint download it holds as a base for delta
downloads. In memory and, with a folder (`fedge device --state-dir`), on disk so that it
survives a restart: each value written whole (a temporary file renamed), read back without
pickle."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from device_runtime.privacy_ledger import PrivacyLedger
from protocol.dp_sgd import DpSgdEvent


@dataclass
class KeptState:
    state_dir: Path | None = None
    personal: dict = field(default_factory=dict)  # model sha -> the personal layers
    controls: dict = field(default_factory=dict)  # task id -> c_i
    residuals: dict = field(default_factory=dict)  # task id -> what the last top-k upload left out
    bases: dict = field(default_factory=dict)  # task id -> the checkpoint digest held for delta downloads
    ledger: PrivacyLedger | None = None  # example-level DP-SGD: what this device's data has spent

    def _load(self, name: str) -> list | None:
        path = self.state_dir / f"{name}.npz" if self.state_dir is not None else None
        if path is None or not path.exists():
            return None
        # Written by this device itself (never from the network): plain arrays, no pickle.
        with np.load(path, allow_pickle=False) as data:
            return [data[f"a{i:03d}"] for i in range(len(data.files))]

    def _save(self, name: str, values: list) -> None:
        if self.state_dir is None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        final = self.state_dir / f"{name}.npz"
        tmp = final.with_name(final.name + ".tmp.npz")
        np.savez(tmp, **{f"a{i:03d}": v for i, v in enumerate(values)})
        os.replace(tmp, final)  # a crash leaves the old state or the new, never half of one

    def _recall(self, memory: dict, key: str, name: str, single: bool = False):
        """What this device keeps under ``key``: from memory, else from its state folder."""
        if key not in memory:
            loaded = self._load(name)
            if loaded is not None:
                memory[key] = loaded[0] if single else loaded
        return memory.get(key)

    def _remember(self, memory: dict, key: str, name: str, value, single: bool = False) -> None:
        memory[key] = value
        self._save(name, [value] if single else value)

    def control_for(self, task_id: str) -> np.ndarray | None:
        return self._recall(self.controls, task_id, f"control-{task_id}", single=True)

    def keep_control(self, task_id: str, c_i: np.ndarray) -> None:
        self._remember(self.controls, task_id, f"control-{task_id}", c_i, single=True)

    def residual_for(self, task_id: str) -> np.ndarray | None:
        return self._recall(self.residuals, task_id, f"residual-{task_id}", single=True)

    def keep_residual(self, task_id: str, residual: np.ndarray) -> None:
        self._remember(self.residuals, task_id, f"residual-{task_id}", residual, single=True)

    def personal_for(self, model_sha: str) -> list | None:
        return self._recall(self.personal, model_sha, f"personal-{model_sha[:32]}")

    def keep_personal(self, model_sha: str, values: list) -> None:
        self._remember(self.personal, model_sha, f"personal-{model_sha[:32]}", values)

    def spend(self, event: DpSgdEvent, delta: float) -> float:
        """Record a round's DP-SGD steps (before its update leaves); epsilon spent so far at ``delta``."""
        if self.ledger is None:
            saved = self._load("dp-sgd-ledger")
            self.ledger = PrivacyLedger.from_array(saved[0]) if saved else PrivacyLedger()
        self.ledger.add(event)
        self._save("dp-sgd-ledger", [self.ledger.to_array()])
        return self.ledger.epsilon(delta)
