"""Control messages of the /v1 wire protocol, as typed dataclasses with strict parsing.

JSON bodies are parsed with ``from_dict``, which raises `ProtocolError` (HTTP 400)
for a missing field or a wrong type; nothing is coerced silently.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from protocol.dp_sgd import DpSgdEvent
from protocol.errors import ProtocolError
from protocol.releases import MAX_NAME, MAX_SEQUENCE, ReleaseOffer
from protocol.fields import (MAX_URL, MAX_DP_SGD_CLIP, MAX_DP_SGD_NOISE, MAX_PERSONALIZE_STEPS,  # noqa: F401 (re-exported)
                             MAX_PROXIMAL_MU, get_field)

MAX_COUNT = 10_000_000  # examples on one device, or evaluated on it
MAX_LOSS = 1e9  # a loss beyond this is a broken or hostile device, not information
MAX_LABEL = 64
MAX_ATTESTATION = 16 * 1024
MAX_SECRET = 256  # an enrollment secret
MAX_CACHED_MODELS = 256  # blob digests a device says it holds


@dataclass(frozen=True)
class DeviceState:
    """What a device reports at check-in; eligibility rules read these fields."""

    charging: bool = False
    unmetered: bool = False
    idle: bool = False
    battery: float = 0.0
    free_storage_mb: float = 0.0
    runtime: str = "litert"
    runtime_version: str = "0"
    supports_flex: bool = False

    @classmethod
    def from_dict(cls, raw: Any) -> "DeviceState":
        state = cls(
            charging=get_field(raw, "charging", bool, False, False),
            unmetered=get_field(raw, "unmetered", bool, False, False),
            idle=get_field(raw, "idle", bool, False, False),
            battery=get_field(raw, "battery", float, False, 0.0, lo=0.0, hi=1.0),
            free_storage_mb=get_field(raw, "free_storage_mb", float, False, 0.0, lo=0.0, hi=1e12),
            runtime=get_field(raw, "runtime", str, False, "litert", max_len=MAX_LABEL),
            runtime_version=get_field(raw, "runtime_version", str, False, "0", max_len=MAX_LABEL),
            supports_flex=get_field(raw, "supports_flex", bool, False, False),
        )
        return state

    def to_dict(self) -> dict:
        # Every field is a scalar: a shallow copy is asdict's result without its recursion and
        # deepcopy, which were the check-in path's largest Python cost after the socket
        # (`.copy()`: 0.2 us, against 0.5 for `dict(self.__dict__)`).
        return self.__dict__.copy()


@dataclass(frozen=True)
class RegisterRequest:
    population: str
    label: str = ""
    enrollment_secret: str = ""  # required by a population created with one (given to the app at provisioning)
    attestation: str = ""  # a platform attestation token, checked by the coordinator's verifier when required

    @classmethod
    def from_dict(cls, raw: Any) -> "RegisterRequest":
        return cls(get_field(raw, "population", str, max_len=MAX_LABEL),
                   get_field(raw, "label", str, False, "", max_len=MAX_LABEL),
                   get_field(raw, "enrollment_secret", str, False, "", max_len=MAX_SECRET),
                   get_field(raw, "attestation", str, False, "", max_len=MAX_ATTESTATION))


@dataclass(frozen=True)
class PopulationRequest:
    """An operator's new population: who may register is decided here."""

    name: str
    enrollment_secret: str = ""  # devices must send it to register (empty: anyone may)
    require_attestation: bool = False  # devices must pass the coordinator's attestation verifier

    @classmethod
    def from_dict(cls, raw: Any) -> "PopulationRequest":
        return cls(get_field(raw, "name", str),  # its pattern is checked by protocol.names
                   get_field(raw, "enrollment_secret", str, False, "", max_len=MAX_SECRET),
                   get_field(raw, "require_attestation", bool, False, False))


MAX_CHECKIN_WAIT_S = 30.0


@dataclass(frozen=True)
class CheckinRequest:
    """``wait_s`` > 0 asks for a long poll: a device with no slot now is held up to that
    long (and never past its retry time) and assigned the moment a round opens."""

    state: DeviceState
    cached_models: tuple[str, ...] = ()
    wait_s: float = 0.0
    # Model releases (protocol.releases): the channel the device follows ("": it takes none, and
    # its check-ins carry no offer) and the sequence of the release it has installed (0: none);
    # only a newer release of that channel is offered.
    release_channel: str = ""
    release_sequence: int = 0

    @classmethod
    def from_dict(cls, raw: Any) -> "CheckinRequest":
        cached = get_field(raw, "cached_models", list, False, [], max_len=MAX_CACHED_MODELS)
        if not all(isinstance(c, str) and len(c) <= 128 for c in cached):
            raise ProtocolError("field 'cached_models' must be a list of strings", "bad_request")
        wait_s = get_field(raw, "wait_s", float, False, 0.0, lo=0.0, hi=MAX_CHECKIN_WAIT_S)
        return cls(DeviceState.from_dict(get_field(raw, "state", dict)), tuple(cached), wait_s,
                   get_field(raw, "release_channel", str, False, "", max_len=MAX_NAME),
                   get_field(raw, "release_sequence", int, False, 0, lo=0, hi=MAX_SEQUENCE))


MAX_SPARSE_SEED = 2**53 - 1

# The bounds a device holds a plan's numbers to, declared once: Plan.from_dict applies them,
# the task keys that feed them (coordinator.tasks.config) take theirs from here, and
# protocol/golden/plan_bounds.json carries them to the Java core, which reads it.
PLAN_BOUNDS: dict[str, tuple[float, float]] = {
    "epochs": (1, 1000), "batch_size": (1, 100_000), "learning_rate": (0.0, 100.0), "chunk_size": (1, 1 << 20),
    "proximal_mu": (0.0, MAX_PROXIMAL_MU), "max_local_seconds": (0.0, 86400.0),
    "personalize_steps": (0, MAX_PERSONALIZE_STEPS), "sgd_momentum": (0.0, 0.999), "sparse_seed": (0, MAX_SPARSE_SEED),
    "dp_sgd_noise_multiplier": (0.0, MAX_DP_SGD_NOISE), "dp_sgd_clip": (0.0, MAX_DP_SGD_CLIP),
    "dp_sgd_delta": (1e-12, 0.1),
}


def _bounded(raw: Any, name: str, kind, default):
    lo, hi = PLAN_BOUNDS[name]
    return get_field(raw, name, kind, default is None, default, lo=lo, hi=hi)


@dataclass(frozen=True)
class Plan:
    """What a selected device does this round."""

    epochs: int
    batch_size: int
    learning_rate: float
    codec: str
    chunk_size: int
    clip_norm: float = 0.0  # 0 disables clipping
    max_examples: int = 0  # 0 means all local examples
    secagg: str = ""  # "", "secagg" or "secagg+": run the SecAgg phases (GET .../secagg) around the upload
    report_clip_bit: bool = False  # adaptive DP clipping: report whether |update| <= clip_norm
    proximal_mu: float = 0.0  # FedProx: the train signature's proximal_mu (0 = FedAvg)
    max_local_seconds: float = 0.0  # a budget for local training (0: none); see partial_work
    # When the budget (or, emulated, the device's capacity) ends training before `epochs`:
    # True uploads what was done, weighted by the examples processed; False uploads nothing.
    partial_work: bool = False
    # Federated evaluation: run the `evaluate` signature on the local holdout and POST an
    # EvaluationReport to the assignment's upload_url instead of training.
    evaluate_only: bool = False
    # Personalized evaluation: also report the holdout counts after this many local
    # fine-tuning steps on the training split (TFF's personalization evaluation).
    personalize_steps: int = 0
    # SCAFFOLD (Karimireddy et al. 2020): correct the gradients with c - c_i (set_control) and
    # upload the model delta followed by the control delta, one vector twice the update's size.
    scaffold: bool = False
    # The exported optimizer's momentum, when it is SGD's (SCAFFOLD's option II counts the
    # round's steps by it: protocol.scaffold.effective_steps); 0 otherwise.
    sgd_momentum: float = 0.0
    sgd_nesterov: bool = False
    # Sparse codecs (``+sparse:F``): the seed of the round's shared subset (protocol.sparse),
    # below 2^53 so that every JSON parser reads it exactly; 0 for dense codecs.
    sparse_seed: int = 0
    # Example-level DP-SGD (the file's train_dp): each example's gradient clipped to
    # dp_sgd_clip, Gaussian noise of dp_sgd_noise_multiplier x dp_sgd_clip per step; 0: off.
    dp_sgd_noise_multiplier: float = 0.0
    dp_sgd_clip: float = 0.0
    dp_sgd_delta: float = 1e-5  # the delta a device reports its example-level epsilon at

    @property
    def dp_sgd(self) -> bool:
        return self.dp_sgd_noise_multiplier > 0

    @classmethod
    def from_dict(cls, raw: Any) -> "Plan":
        z = _bounded(raw, "dp_sgd_noise_multiplier", float, 0.0)
        clip = _bounded(raw, "dp_sgd_clip", float, 0.0)
        if z > 0 and clip <= 0:
            raise ProtocolError("dp_sgd_noise_multiplier needs dp_sgd_clip > 0", "bad_request")
        return cls(
            epochs=_bounded(raw, "epochs", int, None), batch_size=_bounded(raw, "batch_size", int, None),
            learning_rate=_bounded(raw, "learning_rate", float, None), codec=get_field(raw, "codec", str),
            chunk_size=_bounded(raw, "chunk_size", int, None), clip_norm=get_field(raw, "clip_norm", float, False, 0.0),
            max_examples=get_field(raw, "max_examples", int, False, 0),
            secagg=get_field(raw, "secagg", str, False, ""),
            report_clip_bit=get_field(raw, "report_clip_bit", bool, False, False),
            proximal_mu=_bounded(raw, "proximal_mu", float, 0.0),
            max_local_seconds=_bounded(raw, "max_local_seconds", float, 0.0),
            partial_work=get_field(raw, "partial_work", bool, False, False),
            evaluate_only=get_field(raw, "evaluate_only", bool, False, False),
            personalize_steps=_bounded(raw, "personalize_steps", int, 0),
            scaffold=get_field(raw, "scaffold", bool, False, False),
            sgd_momentum=_bounded(raw, "sgd_momentum", float, 0.0),
            sgd_nesterov=get_field(raw, "sgd_nesterov", bool, False, False),
            sparse_seed=_bounded(raw, "sparse_seed", int, 0),
            dp_sgd_noise_multiplier=z, dp_sgd_clip=clip,
            dp_sgd_delta=_bounded(raw, "dp_sgd_delta", float, 1e-5),
        )


@dataclass(frozen=True)
class Assignment:
    task_id: str
    round: int
    upload_token: str
    plan: Plan
    model_sha256: str
    model_url: str
    checkpoint_sha256: str
    checkpoint_url: str
    upload_url: str
    report_deadline: float  # unix seconds
    # SCAFFOLD: the server control variate c (FEDU f32 over the travelling weights), "" otherwise.
    control_sha256: str = ""
    control_url: str = ""
    # Delta downloads (the task's download_delta_codec): a device that holds the blob
    # checkpoint_base_sha256 (a full checkpoint download of this task it named at check-in) may
    # fetch this delta instead of the checkpoint and add it to the base's values
    # (protocol.delta_download.apply_delta); "" when the coordinator has no delta for it.
    checkpoint_base_sha256: str = ""
    checkpoint_delta_sha256: str = ""
    checkpoint_delta_url: str = ""

    @classmethod
    def from_dict(cls, raw: Any) -> "Assignment":
        return cls(
            task_id=get_field(raw, "task_id", str), round=get_field(raw, "round", int),
            upload_token=get_field(raw, "upload_token", str), plan=Plan.from_dict(get_field(raw, "plan", dict)),
            model_sha256=get_field(raw, "model_sha256", str), model_url=get_field(raw, "model_url", str, max_len=MAX_URL),
            checkpoint_sha256=get_field(raw, "checkpoint_sha256", str), checkpoint_url=get_field(raw, "checkpoint_url", str, max_len=MAX_URL),
            upload_url=get_field(raw, "upload_url", str, max_len=MAX_URL), report_deadline=get_field(raw, "report_deadline", float),
            control_sha256=get_field(raw, "control_sha256", str, False, "", max_len=64),
            control_url=get_field(raw, "control_url", str, False, "", max_len=MAX_URL),
            checkpoint_base_sha256=get_field(raw, "checkpoint_base_sha256", str, False, "", max_len=64),
            checkpoint_delta_sha256=get_field(raw, "checkpoint_delta_sha256", str, False, "", max_len=64),
            checkpoint_delta_url=get_field(raw, "checkpoint_delta_url", str, False, "", max_len=MAX_URL),
        )


# Not frozen, unlike the other messages: it is the answer to every check-in, and a frozen
# dataclass's __init__ (object.__setattr__ a field) took 0.6 us of a simulated check-in's ~20.
# Nothing changes one once made (`dataclasses.replace` makes a new one).
@dataclass(slots=True)
class CheckinResponse:
    """Either an assignment, or 'come back at retry_at' with the reason."""

    outcome: str  # "assigned" or "retry"
    retry_at: float = 0.0
    reason: str = ""
    assignment: Assignment | None = None
    release: ReleaseOffer | None = None  # a newer model release for the device to infer with

    def to_dict(self) -> dict:
        out = {"outcome": self.outcome}
        if self.assignment is not None:
            out["assignment"] = asdict(self.assignment)
        else:
            out.update(retry_at=self.retry_at, reason=self.reason)
        if self.release is not None:
            out["release"] = self.release.to_dict()
        return out

    @classmethod
    def from_dict(cls, raw: Any) -> "CheckinResponse":
        outcome = get_field(raw, "outcome", str)
        offered = get_field(raw, "release", dict, False, None)
        release = ReleaseOffer.from_dict(offered) if offered is not None else None
        if outcome == "assigned":
            return cls("assigned", assignment=Assignment.from_dict(get_field(raw, "assignment", dict)), release=release)
        if outcome == "retry":
            return cls("retry", retry_at=get_field(raw, "retry_at", float), reason=get_field(raw, "reason", str, False, ""),
                       release=release)
        raise ProtocolError(f"unknown check-in outcome {outcome!r}", "bad_response")


@dataclass(frozen=True)
class EvaluationReport:
    """A device's evaluation of the round's checkpoint on its local holdout: counts only
    (POST .../evaluation, JSON). Bounded: correct <= examples, a loss sum of at most
    MAX_LOSS per example; the coordinator also caps the weight (examples) of one device."""

    examples: int
    correct: float
    loss_sum: float
    # After the plan's personalize_steps of local fine-tuning (None without personalization).
    personalized_correct: float | None = None
    personalized_loss_sum: float | None = None

    @classmethod
    def from_dict(cls, raw: Any) -> "EvaluationReport":
        examples = get_field(raw, "examples", int, lo=1, hi=MAX_COUNT)
        correct = get_field(raw, "correct", float, lo=0.0, hi=float(examples))
        loss_sum = get_field(raw, "loss_sum", float, lo=0.0, hi=MAX_LOSS * examples)
        p_correct = get_field(raw, "personalized_correct", float, False, None, lo=0.0, hi=float(examples))
        p_loss = get_field(raw, "personalized_loss_sum", float, False, None, lo=0.0, hi=MAX_LOSS * examples)
        if (p_correct is None) != (p_loss is None):
            raise ProtocolError("personalized_correct and personalized_loss_sum come together", "bad_request")
        return cls(examples, correct, loss_sum, p_correct, p_loss)

    def to_dict(self) -> dict:
        out = {"examples": self.examples, "correct": self.correct, "loss_sum": self.loss_sum}
        if self.personalized_correct is not None:
            out.update(personalized_correct=self.personalized_correct,
                       personalized_loss_sum=self.personalized_loss_sum)
        return out


@dataclass(frozen=True)
class UploadMeta:
    """Sent with an update as the ``Fedge-Upload`` header (JSON)."""

    example_count: int
    train_loss: float = 0.0
    eval_loss: float = 0.0
    eval_accuracy: float = 0.0
    eval_count: int = 0
    below_clip: bool | None = None  # with adaptive clipping and no SecAgg: |update| <= clip_norm
    # Example-level DP-SGD: this round's steps (protocol.dp_sgd.DpSgdEvent as a dict, parsed by
    # it), and the example-level epsilon the device has spent on its data so far, by its own
    # accounting (devices that cannot account, such as the Java core, leave it out).
    dp_sgd: dict | None = None
    dp_sgd_epsilon: float | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Any) -> "UploadMeta":
        meta = cls(
            example_count=get_field(raw, "example_count", int, lo=1, hi=MAX_COUNT),
            train_loss=get_field(raw, "train_loss", float, False, 0.0, lo=-MAX_LOSS, hi=MAX_LOSS),
            eval_loss=get_field(raw, "eval_loss", float, False, 0.0, lo=-MAX_LOSS, hi=MAX_LOSS),
            eval_accuracy=get_field(raw, "eval_accuracy", float, False, 0.0, lo=0.0, hi=1.0),
            eval_count=get_field(raw, "eval_count", int, False, 0, lo=0, hi=MAX_COUNT),
            below_clip=get_field(raw, "below_clip", bool, False, None),
            dp_sgd_epsilon=get_field(raw, "dp_sgd_epsilon", float, False, None, lo=0.0, hi=1e9),
        )
        event = get_field(raw, "dp_sgd", dict, False, None)
        if event is not None:
            meta = replace(meta, dp_sgd=DpSgdEvent.from_dict(event).to_dict())  # bounded, and only its fields
        return meta
