"""The compiled Keras optimizer, as update rules over the model's own variables.

Each rule is Keras 3's ``update_step`` for that optimizer, with the learning rate an
input of the train signature (the coordinator sets it per round). Decoupled weight
decay (AdamW, or any optimizer's ``weight_decay``) is applied first, as Keras does.
Slots (momenta, second moments, accumulators) live in the model file, never travel,
and are reset by ``set_weights`` so each round's local training starts afresh.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import tensorflow as tf

from model_export.errors import ExportError

SUPPORTED = ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad")


@dataclass(frozen=True)
class OptimizerSpec:
    name: str  # sgd, adam, adamw, rmsprop, adagrad
    learning_rate: float
    momentum: float = 0.0
    nesterov: bool = False
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7
    amsgrad: bool = False
    rho: float = 0.9
    centered: bool = False
    initial_accumulator_value: float = 0.1
    weight_decay: float = 0.0
    # Variable paths Keras excludes from weight decay (exclude_from_weight_decay).
    no_decay: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["no_decay"] = list(self.no_decay)
        return d

    def slot_names(self) -> list[tuple[str, float]]:
        """(slot name, initial value) per trainable variable."""
        if self.name == "sgd":
            return [("momentum", 0.0)] if self.momentum else []
        if self.name in ("adam", "adamw"):
            return [("m", 0.0), ("v", 0.0)] + ([("v_hat", 0.0)] if self.amsgrad else [])
        if self.name == "rmsprop":
            return ([("velocity", 0.0)] + ([("momentum", 0.0)] if self.momentum else [])
                    + ([("average_gradient", 0.0)] if self.centered else []))
        return [("accumulator", self.initial_accumulator_value)]


def _float(value) -> float:
    return float(value.numpy()) if hasattr(value, "numpy") else float(value)


def optimizer_spec_of(model) -> OptimizerSpec:
    opt = getattr(model, "optimizer", None)
    if opt is None:
        raise ExportError("the model is not compiled with an optimizer")
    kind = type(opt).__name__
    if kind not in SUPPORTED:
        raise ExportError(f"optimizer '{kind}' is not supported; use one of {', '.join(SUPPORTED)}")
    for attr in ("clipnorm", "clipvalue", "global_clipnorm"):
        if getattr(opt, attr, None):
            raise ExportError(f"optimizer option {attr} is not supported by fedge export")
    if getattr(opt, "use_ema", False):
        raise ExportError("optimizer option use_ema is not supported by fedge export")
    if getattr(opt, "gradient_accumulation_steps", None):
        raise ExportError("optimizer option gradient_accumulation_steps is not supported by fedge export")
    if not isinstance(opt._learning_rate, (int, float)) and not hasattr(opt._learning_rate, "numpy"):
        raise ExportError(
            "learning-rate schedules are not exported: the coordinator sets the learning rate each round; "
            "compile with a constant learning rate"
        )
    lr = _float(opt.learning_rate)
    wd = float(getattr(opt, "weight_decay", None) or 0.0)
    no_decay = tuple(sorted(v.path for v in model.trainable_variables if wd and not opt._use_weight_decay(v)))
    common = dict(learning_rate=lr, weight_decay=wd, no_decay=no_decay)
    if kind == "SGD":
        return OptimizerSpec("sgd", momentum=float(opt.momentum), nesterov=bool(opt.nesterov), **common)
    if kind in ("Adam", "AdamW"):
        return OptimizerSpec(kind.lower(), beta_1=float(opt.beta_1), beta_2=float(opt.beta_2),
                             epsilon=float(opt.epsilon), amsgrad=bool(opt.amsgrad), **common)
    if kind == "RMSprop":
        return OptimizerSpec("rmsprop", rho=float(opt.rho), momentum=float(opt.momentum),
                             epsilon=float(opt.epsilon), centered=bool(opt.centered), **common)
    return OptimizerSpec("adagrad", epsilon=float(opt.epsilon),
                         initial_accumulator_value=float(opt.initial_accumulator_value), **common)


class OptimizerState(tf.Module):
    """Slots and the step counter for `spec` over `variables` (the trainable ones)."""

    def __init__(self, spec: OptimizerSpec, variables: list, paths: list[str]):
        super().__init__(name="optimizer")
        self.spec = spec
        self.targets = variables
        self.decays = [bool(spec.weight_decay) and p not in spec.no_decay for p in paths]
        self.step = tf.Variable(0.0, trainable=False, name="step")
        # A slot starts as a copy of its variable's value, not as a constant of zeros: the
        # converter stores identical constants once, so the slots' start costs no bytes in the
        # file (a zeros constant per shape cost as much as the weights). set_weights resets them
        # (`reset`, from a runtime value) before any training.
        self.slots = [
            {name: tf.Variable(v.read_value(), trainable=False, name=name) for name, init in spec.slot_names()}
            for v in variables
        ]
        self.initial = dict(spec.slot_names())

    def reset(self) -> None:
        # From a runtime value (the variable times 0), not a constant: the converter folds
        # zeros_like or fill into a constant of the slot's shape, bytes as many as the weights.
        for target, slots in zip(self.targets, self.slots):
            for name, s in slots.items():
                s.assign(target.read_value() * 0.0 + self.initial[name])
        self.step.assign(0.0)

    def apply(self, grads, lr) -> None:
        # Each new value is assigned and then used as the tensor just computed, not read
        # back: in LiteRT every READ_VARIABLE is a copy of the whole variable.
        o = self.spec
        step = self.step.read_value() + 1.0
        self.step.assign(step)
        if o.name in ("adam", "adamw"):
            alpha = lr * tf.sqrt(1.0 - tf.pow(o.beta_2, step)) / (1.0 - tf.pow(o.beta_1, step))
        for var, slots, g, decays in zip(self.targets, self.slots, grads, self.decays):
            if g is None:
                continue
            value = var.read_value()
            if decays:
                value = value - value * o.weight_decay * lr
            if o.name == "sgd":
                value = self._sgd(value, slots, g, lr)
            elif o.name in ("adam", "adamw"):
                value = self._adam(value, slots, g, alpha)
            elif o.name == "rmsprop":
                value = self._rmsprop(value, slots, g, lr)
            else:
                acc = _updated(slots["accumulator"], slots["accumulator"] + g * g)
                value = value - lr * g / tf.sqrt(acc + o.epsilon)
            var.assign(value)

    def _sgd(self, value, slots, g, lr):
        o = self.spec
        if not o.momentum:
            return value - g * lr
        m = _updated(slots["momentum"], slots["momentum"] * o.momentum - g * lr)
        return value + (m * o.momentum - g * lr if o.nesterov else m)

    def _adam(self, value, slots, g, alpha):
        o = self.spec
        m = _updated(slots["m"], slots["m"] + (g - slots["m"]) * (1.0 - o.beta_1))
        v = _updated(slots["v"], slots["v"] + (g * g - slots["v"]) * (1.0 - o.beta_2))
        if o.amsgrad:
            v = _updated(slots["v_hat"], tf.maximum(slots["v_hat"], v))
        return value - m * alpha / (tf.sqrt(v) + o.epsilon)

    def _rmsprop(self, value, slots, g, lr):
        o = self.spec
        velocity = _updated(slots["velocity"], o.rho * slots["velocity"] + (1.0 - o.rho) * g * g)
        if o.centered:
            avg = _updated(slots["average_gradient"], o.rho * slots["average_gradient"] + (1.0 - o.rho) * g)
            denominator = velocity - tf.square(avg) + o.epsilon
        else:
            denominator = velocity + o.epsilon
        increment = lr * g / tf.sqrt(denominator)
        if o.momentum:
            return value - _updated(slots["momentum"], o.momentum * slots["momentum"] + increment)
        return value - increment


def _updated(slot: tf.Variable, value):
    """Assign `value` to `slot` and return it (the tensor, not a re-read of the slot)."""
    slot.assign(value)
    return value
