"""Typed records of the coordinator's durable state: what the store returns, never a
database row. The store interface (`coordinator.store.base`) reads and writes these."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PopulationRecord:
    name: str
    created_at: float
    enrollment_secret_hash: str = ""  # sha256 of the secret; "" when anyone may register
    require_attestation: bool = False


# Slotted: a simulation holds a million of them and the gateway's cache up to 200,000; without
# a __dict__ apiece one is a third of the memory and one cache line fewer to read.
@dataclass(frozen=True, slots=True)
class DeviceRecord:
    device_id: str
    population: str
    token_hash: str
    label: str
    created_at: float
    last_seen: float = 0.0
    # When the device said it would be back by (the retry time it was given, or its round's
    # deadline, plus a grace): past it without a check-in, it is gone (pace steering counts
    # the devices not yet overdue, never the registered ones).
    due: float = 0.0


@dataclass(frozen=True)
class TaskRecord:
    task_id: str
    population: str
    config: dict  # TaskConfig.to_dict()
    model_sha: str
    manifest: str  # Manifest.to_json()
    state: str  # active | paused | cancelled | completed
    checkpoint_sha: str
    created_at: float
    reason: str = ""


@dataclass(frozen=True)
class RoundRecord:
    task_id: str
    round: int
    state: str
    opened_at: float
    selection_deadline: float
    report_deadline: float
    closed_at: float | None = None
    selected: int = 0
    reported: int = 0
    examples: int = 0
    reason: str = ""
    metrics: dict = field(default_factory=dict)
    checkpoint_sha: str = ""

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class AssignmentRecord:
    task_id: str
    round: int
    device_id: str
    token_hash: str
    assigned_at: float


@dataclass(frozen=True)
class UpdateRecord:
    task_id: str
    round: int
    device_id: str
    examples: int
    meta: dict  # the device's bounded metrics (protocol.messages.UploadMeta)
    blob: str  # where the update's bytes are
    digest: str  # sha256 of those bytes: a retry with the same bytes is the same update
    received_at: float


@dataclass(frozen=True)
class SecAggRoundRecord:
    """What a SecAgg round settled so far; empty until the phase that settles it closes."""

    task_id: str
    round: int
    advertise_deadline: float
    share_deadline: float
    unmask_deadline: float
    roster: dict[int, str] = field(default_factory=dict)  # roster index -> device id
    params: dict | None = None  # SecAggParams.to_dict()
    sharers: list[int] = field(default_factory=list)  # indices whose shares were complete
    survivors: list[int] = field(default_factory=list)  # indices whose masked input was counted


@dataclass(frozen=True)
class ReleaseRecord:
    """A model release (coordinator.releases): a committed checkpoint, as an inference model,
    offered to ``percent`` of a population's devices on a channel, signed."""

    release_id: str
    population: str
    channel: str
    sequence: int
    task_id: str
    round: int
    model_sha: str
    size: int
    percent: float
    state: str  # coordinator.releases.states.ReleaseState
    note: str
    signature: str
    rollback_of: str
    created_at: float
    updated_at: float

    def to_dict(self) -> dict:
        return {"release_id": self.release_id, "population": self.population, "channel": self.channel,
                "sequence": self.sequence, "task_id": self.task_id, "round": self.round,
                "model_sha256": self.model_sha, "size": self.size, "percent": self.percent, "state": self.state,
                "note": self.note, "rollback_of": self.rollback_of, "created_at": self.created_at,
                "updated_at": self.updated_at}
