"""The task manifest: what a `.tflite` exported by fedge contains and how to drive it.

It is embedded in the model file (TFLite metadata entry ``fedge_manifest``) and can be
written beside it as JSON. Devices and the coordinator read it without TensorFlow.

Weight tensors are listed in *update order*: the order of ``get_weights`` outputs,
``set_weights`` inputs, and of the flat vector an update encodes. Signature keys are
``w000``, ``w001``, ... so that sorting by name gives that order.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

from protocol import strict_json
from protocol.errors import ProtocolError

MANIFEST_FORMAT = 1
MANIFEST_METADATA_NAME = "fedge_manifest"
INITIAL_WEIGHTS_METADATA_NAME = "fedge_initial_weights"
DTYPES = ("float32", "int32", "int64")


@dataclass(frozen=True)
class TensorSpec:
    """A signature input: name, shape *without* the batch dimension, dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class WeightSpec:
    """One model variable that ``get_weights`` returns.

    ``key`` is the signature key (``w000``...), ``path`` the Keras variable path.
    Trainable variables and the statistics a trainable BatchNormalization updates both
    travel in an update (moving statistics are averaged like weights); frozen variables
    (a ``trainable=False`` base) stay in the model file and optimizer slots never travel.
    """

    key: str
    path: str
    shape: tuple[int, ...]
    dtype: str
    trainable: bool

    @property
    def size(self) -> int:
        return math.prod(self.shape)


def train_signature(signatures, proximal_mu: float, corrected: bool, dp_sgd: bool = False) -> str:
    """Which signature a device steps with: ``train_dp`` when the round asks for example-level
    DP-SGD (the plan's ``dp_sgd_noise_multiplier``; `Manifest.check_plan` refuses a file
    without it first), else ``train_plain`` when the round uses neither FedProx's term (mu 0)
    nor SCAFFOLD's correction and the file has it (files exported with that second step,
    without the terms; today's files have one ``train``), else ``train``. Both runtimes follow this rule
    (protocol/golden/train_signature.json)."""
    if dp_sgd:
        return "train_dp"
    if proximal_mu == 0 and not corrected and "train_plain" in signatures:
        return "train_plain"
    return "train"


@dataclass(frozen=True)
class Manifest:
    model_name: str
    batch_size: int
    input: TensorSpec
    label: TensorSpec
    # "classification" (int labels), "one_hot_classification", "binary_classification"
    # (float 0/1 labels), or "regression"
    task_kind: str
    num_classes: int
    loss: str
    optimizer: dict
    weights: tuple[WeightSpec, ...]
    signatures: dict
    fedge_version: str
    content_sha256: str = ""
    requires_flex: bool = False
    flex_ops: tuple[str, ...] = ()
    export_options: dict = field(default_factory=dict)
    format: int = MANIFEST_FORMAT
    # Personal layers' variables (FedPer): trained on the device, kept in its local state
    # between rounds, never uploaded; `get_personal` / `set_personal` (keys p000...) read and
    # load them, `set_weights` leaves them alone.
    personal: tuple[WeightSpec, ...] = ()
    # The FlatBuffer buffer holding each weight's initial value (the variable's own
    # initializer constant), -1 for a weight whose value is in the ``fedge_initial_weights``
    # metadata instead; empty: the metadata holds them all (files exported before).
    initial_buffers: tuple[int, ...] = ()

    @property
    def supports_proximal(self) -> bool:
        """Whether the file's train step takes FedProx's proximal_mu (files exported before it lack the input)."""
        return "proximal_mu" in self.signatures.get("train", {}).get("inputs", [])

    def train_signature(self, proximal_mu: float, corrected: bool, dp_sgd: bool = False) -> str:
        """The signature a device steps with (see `train_signature`)."""
        return train_signature(self.signatures, proximal_mu, corrected, dp_sgd)

    @property
    def supports_dp_sgd(self) -> bool:
        """Whether the file has the example-level DP-SGD step (``fedge export --dp-sgd``)."""
        return "train_dp" in self.signatures

    @property
    def dp_noise_size(self) -> int:
        """train_dp's ``noise`` input: one value per trainable coordinate, travelling ones
        first (manifest order), then the personal layers' trainable ones."""
        return sum(w.size for w in (*self.weights, *self.personal) if w.trainable)

    @property
    def supports_scaffold(self) -> bool:
        """Whether the file has SCAFFOLD's set_control signature (files exported before lack it)."""
        return "set_control" in self.signatures

    def check_plan(self, proximal_mu: float, scaffold: bool = False, dp_sgd: bool = False) -> None:
        """A device refuses a task its file cannot run, naming why."""
        if dp_sgd and not self.supports_dp_sgd:
            raise ProtocolError(f"the task asks for example-level DP-SGD but model '{self.model_name}' has no train_dp "
                                "signature; export it with fedge export --dp-sgd", "unsupported_plan")
        if scaffold and not self.supports_scaffold:
            raise ProtocolError(f"the task uses SCAFFOLD but model '{self.model_name}' was exported before it: no "
                                "set_control signature; export it again with this fedge", "unsupported_plan")
        if proximal_mu > 0 and not self.supports_proximal:
            raise ProtocolError(f"the task asks for FedProx (proximal_mu {proximal_mu:g}) but model "
                                f"'{self.model_name}' was exported before FedProx: its train signature has no "
                                "proximal_mu input; export it again with this fedge", "unsupported_plan")

    @property
    def num_parameters(self) -> int:
        return sum(w.size for w in self.weights)

    @property
    def weight_shapes(self) -> list[tuple[int, ...]]:
        return [w.shape for w in self.weights]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Manifest":
        # A manifest arrives inside an uploaded model file: the same strict parser as every
        # device message (bounded nesting and integers, finite numbers), never plain json.
        try:
            raw = strict_json.loads(text)
        except ProtocolError as exc:
            raise ProtocolError(f"manifest is not valid JSON: {exc}", "bad_manifest") from None
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: dict) -> "Manifest":
        if not isinstance(raw, dict):
            raise ProtocolError("manifest must be a JSON object", "bad_manifest")
        if raw.get("format") != MANIFEST_FORMAT:
            raise ProtocolError(
                f"unsupported manifest format {raw.get('format')!r} (this fedge reads {MANIFEST_FORMAT})",
                "bad_manifest",
            )
        try:
            weights = tuple(
                WeightSpec(
                    key=str(w["key"]), path=str(w["path"]), shape=_shape(w["shape"]),
                    dtype=_dtype(w["dtype"]), trainable=bool(w["trainable"]),
                )
                for w in raw["weights"]
            )
            manifest = cls(
                model_name=str(raw["model_name"]),
                batch_size=_count(raw["batch_size"], "batch_size"),
                input=_tensor_spec(raw["input"]),
                label=_tensor_spec(raw["label"]),
                task_kind=str(raw["task_kind"]),
                num_classes=_count(raw["num_classes"], "num_classes"),
                loss=str(raw["loss"]),
                optimizer=dict(raw["optimizer"]),
                weights=weights,
                signatures=dict(raw["signatures"]),
                fedge_version=str(raw["fedge_version"]),
                content_sha256=str(raw.get("content_sha256", "")),
                requires_flex=bool(raw.get("requires_flex", False)),
                flex_ops=tuple(str(op) for op in raw.get("flex_ops", ())),
                export_options=dict(raw.get("export_options", {})),
                personal=tuple(
                    WeightSpec(key=str(w["key"]), path=str(w["path"]), shape=_shape(w["shape"]),
                               dtype=_dtype(w["dtype"]), trainable=bool(w["trainable"]))
                    for w in raw.get("personal", ())
                ),
                initial_buffers=tuple(-1 if b == -1 else _count(b, "initial_buffers")
                                      for b in raw.get("initial_buffers", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ProtocolError):
                raise
            raise ProtocolError(f"manifest is missing or has a bad field: {exc}", "bad_manifest") from exc
        if manifest.batch_size < 1:
            raise ProtocolError("manifest batch_size must be >= 1", "bad_manifest")
        keys = [w.key for w in manifest.weights]
        if keys != sorted(keys) or len(set(keys)) != len(keys):
            raise ProtocolError("manifest weight keys must be unique and in update order", "bad_manifest")
        named = [b for b in manifest.initial_buffers if b >= 0]
        if manifest.initial_buffers and (len(manifest.initial_buffers) != len(manifest.weights)
                                         or len(set(named)) != len(named)):
            raise ProtocolError("manifest initial_buffers must name a distinct buffer (or -1) per weight",
                                "bad_manifest")
        return manifest


MAX_COUNT = 2**31 - 1  # a dimension, class count or batch size TFLite can represent (int32)


def _count(value, what: str) -> int:
    """A non-negative integer that fits TFLite's int32: JSON's 1e400 or 2**80 is refused here."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_COUNT \
            or int(value) != value:
        raise ProtocolError(f"manifest {what} must be an integer in [0, {MAX_COUNT}], got {str(value)[:32]}",
                            "bad_manifest")
    return int(value)


def _shape(value) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)):
        raise ProtocolError("manifest shape must be a list of integers", "bad_manifest")
    return tuple(_count(d, "dimension") for d in value)


def _dtype(value) -> str:
    if value not in DTYPES:
        raise ProtocolError(f"unsupported dtype {value!r}; expected one of {DTYPES}", "bad_manifest")
    return value


def _tensor_spec(raw: dict) -> TensorSpec:
    return TensorSpec(name=str(raw["name"]), shape=_shape(raw["shape"]), dtype=_dtype(raw["dtype"]))


def control_key(index: int) -> str:
    """SCAFFOLD's correction for weight ``weight_key(index)``."""
    return f"c{index:03d}"


def personal_key(index: int) -> str:
    return f"p{index:03d}"


def weight_key(index: int) -> str:
    return f"w{index:03d}"
