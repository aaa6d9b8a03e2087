"""The exported graph: the fedge signatures around the model's own ``call``.

The train step calls the Keras model itself (functional graphs, nested models, custom
layers: whatever its ``call`` does), differentiates it with TensorFlow's autodiff and
applies the compiled optimizer's update rule to the model's own variables. Tracing
happens inside `lowering.builtin_lowering()`, which swaps builtin-only gradients (and a
few forward ops) into TensorFlow for the duration, so every op the converter sees has a
TFLite builtin kernel.

Signatures (all with a static batch dimension, see the manifest's ``batch_size``):

- ``train(x, y, sample_weight, learning_rate, proximal_mu) -> loss``: one optimizer step;
  padded rows carry ``sample_weight`` 0 so a short last batch trains exactly. The trainable
  travelling variables' gradients get mu (w - w_anchor) + c added: FedProx's term (Li et al.
  2020; the step minimizes loss + mu/2 * sum ||w - w_anchor||^2) and SCAFFOLD's correction
  (see ``set_control``); ``loss`` is the data loss alone. With mu = 0 and no correction
  (``set_weights`` zeroes it) the terms add exact zeros: plain FedAvg. One step for all three,
  with no IF and no second ``train_plain`` copy of the forward and backward pass: the file
  holds the training graph once (files exported before carry ``train_plain``, which devices
  still step with when neither term is on; files exported before FedProx have no
  ``proximal_mu`` input: the manifest's signature table says which a file has). The terms
  cost a tiny MLP's step 5 microseconds of 32 and a CNN's nothing measurable.
- ``train_dp(x, y, sample_weight, learning_rate, proximal_mu, l2_norm_clip, noise_multiplier,
  noise) -> loss`` (only in files exported with ``fedge export --dp-sgd``): example-level
  DP-SGD (Abadi et al. 2016). The batch splits into the manifest's ``dp_microbatches``
  equal microbatches (``batch_size`` of them: one example each); each microbatch's gradient
  (all trainable variables, personal ones included, as one vector) is clipped to L2 norm
  ``l2_norm_clip``, the clipped gradients are summed, ``noise_multiplier * l2_norm_clip *
  noise`` is added (``noise``: one standard normal per trainable coordinate, drawn by the
  device, so the file needs no random kernel and a test can feed the same noise to a
  reference) and the sum is divided by the number of microbatches, a constant, as DP-SGD's
  accounting assumes. FedProx's and SCAFFOLD's terms are added after the noise (they do not
  read this batch). The microbatches run in a WHILE loop, one forward and backward pass each,
  so the file grows by one step's graph, not by one per example.
- ``infer(x) -> output``: what the model returns.
- ``evaluate(x, y, sample_weight) -> loss_sum, correct``: weighted sums, so a caller
  adds them over batches and divides by the weight total.
- ``get_weights() -> w000, w001, ...``: the travelling variables (see `travelling`).
- ``set_control(c000, ...) -> ok``: SCAFFOLD's correction c - c_i (Karimireddy et al. 2020)
  for the trainable travelling variables (key cNNN for weight wNNN), added to their
  gradients by every following train step; ``set_weights`` resets it to zero, so a round
  that does not call it trains exactly as FedAvg. Set once per round rather than passed
  with every step: a step's inputs are copied in, and this one is the model's size.
- ``get_personal() -> p000, ...`` / ``set_personal(p000, ...) -> ok`` (only with personal
  layers, ``fedge export --personal LAYER``): the personal layers' variables, which train
  like the others but never travel; a device keeps them between rounds.
- ``set_weights(w000, ...) -> ok``: loads them, *resets the optimizer slots*, so each
  round's local training starts from fresh optimizer state (slots never travel), and keeps
  the trainable ones as FedProx's anchor. **Call set_weights before training** (devices do,
  every round; so does the parity check): until then the slots, anchors and corrections
  hold copies of the weights, which cost the file no bytes (the converter stores identical
  constants once), where zero-filled starts cost a constant as large as the weights.
"""

from __future__ import annotations

import tensorflow as tf

from model_export.errors import ExportError
from model_export.losses import loss_spec_of, per_example_correct, per_example_loss
from model_export.lowering import builtin_lowering
from model_export.optimizers import OptimizerState, optimizer_spec_of
from model_export.travelling import backing, travelling_variables
from protocol.manifest import control_key, personal_key, weight_key


class _Untracked:
    """Holds the Keras model out of tf.Module's tracking (only its variables are saved)."""

    def __init__(self, model):
        self.model = model


def _static(shape, what: str) -> tuple[int, ...]:
    dims = tuple(shape)
    if any(d is None for d in dims):
        raise ExportError(f"the model's {what} shape {dims} has an unknown dimension; give a fixed shape")
    return tuple(int(d) for d in dims)


def _personal_variable_ids(model, names: tuple[str, ...]) -> set[int]:
    """ids of the tf.Variables of the named layers (FedPer's personal layers)."""
    if not names:
        return set()
    from model_export.sublayers import sublayers

    layers = {layer.name: layer for layer in sublayers(model)}
    unknown = [n for n in names if n not in layers]
    if unknown:
        raise ExportError(f"--personal: no layer named {', '.join(repr(n) for n in unknown)}; the model's layers "
                          f"with variables: {', '.join(sorted(n for n, l in layers.items() if l.variables))}")
    out = set()
    for n in names:
        if not layers[n].variables:
            raise ExportError(f"--personal: layer {n!r} has no variables to keep on the device")
        out |= {id(backing(v)) for v in layers[n].variables}
    return out


def _check_dp_sgd(model, batch_size: int, microbatches: int) -> None:
    """DP-SGD's per-example guarantee needs every example's gradient to depend on that
    example alone (within its microbatch)."""
    from model_export.sublayers import sublayers

    if microbatches < 1 or batch_size % microbatches:
        raise ExportError(f"--dp-microbatches {microbatches} must divide the batch size {batch_size}")
    mixing = sorted({type(layer).__name__ for layer in sublayers(model)
                     if type(layer).__name__ in ("BatchNormalization", "SyncBatchNormalization")})
    if mixing:
        raise ExportError(f"--dp-sgd: the model has {', '.join(mixing)}, whose training-mode statistics mix the "
                          "examples of a batch, so no example's gradient is its own and DP-SGD's per-example "
                          "clipping bounds nothing; use LayerNormalization or GroupNormalization")


class TrainingGraph(tf.Module):
    def __init__(self, model, batch_size: int, stochastic: bool = True, personal: tuple[str, ...] = (),
                 dp_microbatches: int = 0):
        super().__init__(name="fedge")
        if getattr(model, "inputs", None) is None or getattr(model, "outputs", None) is None:
            raise ExportError(
                f"{type(model).__name__} has no symbolic inputs (a subclassed keras.Model): wrap it as "
                "keras.Model(inp := keras.Input(shape), YourModel()(inp)) so the export knows its input shape"
            )
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ExportError(
                f"the model has {len(model.inputs)} inputs and {len(model.outputs)} outputs; fedge export needs "
                "one of each (concatenate several inputs into one tensor, or split it inside the model)"
            )
        self.batch_size = batch_size
        self.dp_microbatches = dp_microbatches  # 0: no train_dp signature
        if dp_microbatches:
            _check_dp_sgd(model, batch_size, dp_microbatches)
        self.stochastic = stochastic
        self.loss_spec = loss_spec_of(model)
        self.opt = optimizer_spec_of(model)
        self._keras = _Untracked(model)
        self.input_shape = _static(model.inputs[0].shape[1:], "input")
        self.input_dtype = "int32" if "int" in str(model.inputs[0].dtype) else "float32"
        out_shape = _static(model.outputs[0].shape[1:], "output")
        self.output_shape = out_shape
        if self.loss_spec.name == "sparse_categorical_crossentropy":
            self.num_classes = out_shape[-1]
            self.label_shape = out_shape[:-1]
        else:
            self.num_classes = out_shape[-1] if self.loss_spec.task_kind != "regression" else 0
            self.label_shape = out_shape
        self.label_dtype = self.loss_spec.label_dtype
        with builtin_lowering(model, stochastic=False):
            local = travelling_variables(model, self._x_spec())
        mine = _personal_variable_ids(model, personal)
        self.model_vars = [v for v in local if id(v.variable) not in mine]
        self.personal_vars = [v for v in local if id(v.variable) in mine]
        if personal and not self.model_vars:
            raise ExportError("every variable would be personal: nothing would travel; leave at least one layer "
                              "shared")
        # Assigning the variables to attributes makes tf.Module track them for the SavedModel.
        self.all_variables = [backing(v) for v in model.variables]
        trainable = [v for v in self.model_vars if v.trainable]
        personal_trainable = [v for v in self.personal_vars if v.trainable]
        # Travelling ones first: FedProx's anchors pair with the first len(anchors) of them.
        self.trainable = [v.variable for v in trainable + personal_trainable]
        self.optimizer = OptimizerState(self.opt, self.trainable, [v.path for v in trainable + personal_trainable])
        # FedProx's anchors: the round's starting weights, set by set_weights (travelling only).
        # Like the optimizer's slots they start as copies of their weights (no bytes in the file):
        # set_weights sets the anchors and zeroes the corrections before any training.
        self.anchors = [tf.Variable(v.variable.read_value(), trainable=False, name="proximal_anchor")
                        for v in trainable]
        self._trainable_index = [i for i, v in enumerate(self.model_vars) if v.trainable]
        # SCAFFOLD's correction c - c_i, set by set_control, zeroed by set_weights.
        self.corrections = [tf.Variable(v.variable.read_value(), trainable=False, name="control_correction")
                            for v in trainable]

    def _x_spec(self):
        return tf.TensorSpec([self.batch_size, *self.input_shape], self.input_dtype, name="x")

    # -- signatures ----------------------------------------------------------------
    def _loss_and_gradients(self, x, y, sample_weight):
        with tf.GradientTape() as tape:
            out = self._keras.model(x, training=True)
            per_example = per_example_loss(self.loss_spec, out, y, self.batch_size)
            loss = tf.reduce_sum(per_example * sample_weight) / tf.maximum(tf.reduce_sum(sample_weight), 1.0)
        return loss, tape.gradient(loss, self.trainable)

    def _with_terms(self, grads, mu):
        """FedProx's and SCAFFOLD's terms added to the gradients. d/dw mu/2 ||w - a||^2 =
        mu (w - a): added, not taped (no second pass); personal variables (after the
        travelling ones) have no anchor and no correction."""
        n = len(self.anchors)
        return [g + mu * (v - a) + c for g, v, a, c in zip(grads[:n], self.trainable[:n], self.anchors,
                                                           self.corrections)] + list(grads[n:])

    def train(self, x, y, sample_weight, learning_rate, proximal_mu):
        loss, grads = self._loss_and_gradients(x, y, sample_weight)
        self.optimizer.apply(self._with_terms(grads, proximal_mu[0]), learning_rate[0])
        return {"loss": loss}

    def train_dp(self, x, y, sample_weight, learning_rate, proximal_mu, l2_norm_clip, noise_multiplier, noise):
        m = self.dp_microbatches
        size = self.batch_size // m
        xs = tf.reshape(x, [m, size, *x.shape[1:]])
        ys = tf.reshape(y, [m, size, *y.shape[1:]])
        ws = tf.reshape(sample_weight, [m, size])
        clip = l2_norm_clip[0]

        def one_microbatch(j, loss_sum, weight_sum, *summed):
            xb, yb, wb = tf.gather(xs, j), tf.gather(ys, j), tf.gather(ws, j)
            with tf.GradientTape() as tape:
                out = self._keras.model(xb, training=True)
                per_example = per_example_loss(self.loss_spec, out, yb, size) * wb
                # The microbatch's mean loss (a padded row has weight 0 and no gradient).
                loss = tf.reduce_sum(per_example) / tf.maximum(tf.reduce_sum(wb), 1.0)
            grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                     for g, v in zip(tape.gradient(loss, self.trainable), self.trainable)]
            norm = tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(g)) for g in grads]))
            scale = clip / tf.maximum(norm, clip)  # min(1, C / |g|), and 1 for a zero gradient
            return (j + 1, loss_sum + tf.reduce_sum(per_example), weight_sum + tf.reduce_sum(wb),
                    *[s + g * scale for s, g in zip(summed, grads)])

        start = (tf.constant(0), tf.constant(0.0), tf.constant(0.0),
                 # Runtime zeros: tf.zeros would be a constant as large as the weights in the file.
                 *[v.read_value() * 0.0 for v in self.trainable])
        _, loss_sum, weight_sum, *summed = tf.while_loop(lambda j, *_: j < m, one_microbatch, start,
                                                         maximum_iterations=m)
        sizes = [int(v.shape.num_elements()) for v in self.trainable]
        std = noise_multiplier[0] * clip
        grads = [(s + std * tf.reshape(n, s.shape)) / float(m)
                 for s, n in zip(summed, tf.split(noise, sizes))]
        self.optimizer.apply(self._with_terms(grads, proximal_mu[0]), learning_rate[0])
        return {"loss": loss_sum / tf.maximum(weight_sum, 1.0)}

    @property
    def dp_noise_size(self) -> int:
        return sum(int(v.shape.num_elements()) for v in self.trainable)

    def infer(self, x):
        return {"output": self._keras.model(x, training=False)}

    def evaluate(self, x, y, sample_weight):
        out = self._keras.model(x, training=False)
        loss_sum = tf.reduce_sum(per_example_loss(self.loss_spec, out, y, self.batch_size) * sample_weight)
        correct = tf.reduce_sum(per_example_correct(self.loss_spec, out, y, self.batch_size) * sample_weight)
        return {"loss_sum": loss_sum, "correct": correct}

    def get_weights(self):
        return {weight_key(i): tf.identity(v.variable) for i, v in enumerate(self.model_vars)}

    def set_control(self, corrections):
        for variable, value in zip(self.corrections, corrections):
            variable.assign(value)
        return {"ok": tf.constant(1, tf.int32)}

    def get_personal(self):
        return {personal_key(i): tf.identity(v.variable) for i, v in enumerate(self.personal_vars)}

    def set_personal(self, weights):
        for v, value in zip(self.personal_vars, weights):
            v.variable.assign(value)
        return {"ok": tf.constant(1, tf.int32)}

    def set_weights(self, weights):
        for v, value in zip(self.model_vars, weights):
            v.variable.assign(value)
        for anchor, correction, i in zip(self.anchors, self.corrections, self._trainable_index):
            anchor.assign(weights[i])
            correction.assign(weights[i] * 0.0)  # a runtime zero: zeros_like would be a constant in the file
        self.optimizer.reset()
        return {"ok": tf.constant(1, tf.int32)}

    def step_specs(self) -> tuple:
        """(x, y, sample_weight, learning_rate): the inputs every train step starts with."""
        b = self.batch_size
        # learning_rate is float32[1], not a scalar: LiteRT's Python signature runner resizes
        # every input on every call, and resizing a rank-0 input crashed ai-edge-litert 2.3 on
        # aarch64 (emulated Pi, SIGSEGV in ResizeInputTensor). A rank-1 input avoids that path.
        return (self._x_spec(), tf.TensorSpec([b, *self.label_shape], self.label_dtype, name="y"),
                tf.TensorSpec([b], tf.float32, name="sample_weight"),
                tf.TensorSpec([1], tf.float32, name="learning_rate"))

    def concrete_signatures(self) -> dict:
        x, y, w, lr = self.step_specs()
        mu = tf.TensorSpec([1], tf.float32, name="proximal_mu")
        wspecs = [tf.TensorSpec(v.variable.shape, tf.float32, name=weight_key(i))
                  for i, v in enumerate(self.model_vars)]
        pspecs = [tf.TensorSpec(v.variable.shape, tf.float32, name=personal_key(i))
                  for i, v in enumerate(self.personal_vars)]
        cspecs = [tf.TensorSpec(self.model_vars[i].variable.shape, tf.float32, name=control_key(i))
                  for i in self._trainable_index]
        # No autograph: the signatures have no Python control flow on tensors, and an error
        # raised while tracing then reaches the exporter as itself, not as a StagingError.
        with builtin_lowering(self._keras.model, stochastic=self.stochastic):
            extra = {
                "get_personal": tf.function(self.get_personal, autograph=False).get_concrete_function(),
                "set_personal": tf.function(self.set_personal, autograph=False).get_concrete_function(pspecs),
            } if self.personal_vars else {}
            if self.dp_microbatches:
                clip = tf.TensorSpec([1], tf.float32, name="l2_norm_clip")
                z = tf.TensorSpec([1], tf.float32, name="noise_multiplier")
                noise = tf.TensorSpec([self.dp_noise_size], tf.float32, name="noise")
                extra["train_dp"] = tf.function(self.train_dp, autograph=False).get_concrete_function(
                    x, y, w, lr, mu, clip, z, noise)
            return {**extra,
                "train": tf.function(self.train, autograph=False).get_concrete_function(x, y, w, lr, mu),
                "infer": tf.function(self.infer, autograph=False).get_concrete_function(x),
                "evaluate": tf.function(self.evaluate, autograph=False).get_concrete_function(x, y, w),
                "get_weights": tf.function(self.get_weights, autograph=False).get_concrete_function(),
                "set_weights": tf.function(self.set_weights, autograph=False).get_concrete_function(wspecs),
                "set_control": tf.function(self.set_control, autograph=False).get_concrete_function(cspecs),
            }
