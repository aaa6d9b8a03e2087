"""`fedge export`: Keras model -> one trainable `.tflite` with an embedded manifest."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace

import numpy as np

from fedge import __version__
from model_export.builtin_gradients.registry import UnsupportedGradient
from model_export.convert import convert_module
from model_export.embed import embed_metadata
from model_export.initializers import initializer_buffers
from model_export.travelling import backing
from model_export.errors import ExportError
from model_export.op_origin import layers_by_name, origin_suffix
from model_export.parity import DEFAULT_TOLERANCE, ParityReport, run_dp_parity, run_parity
from model_export.sublayers import sublayers
from model_export.training_graph import TrainingGraph
from protocol import codec
from protocol.manifest import (
    INITIAL_WEIGHTS_METADATA_NAME,
    MANIFEST_METADATA_NAME,
    Manifest,
    TensorSpec,
    WeightSpec,
    control_key,
    personal_key,
    weight_key,
)

DEFAULT_BATCH_SIZE = 32
# FedProx parity runs with this mu: large enough that the proximal term moves the weights
# by more than the tolerance within the parity steps of a typical model.
PARITY_PROXIMAL_MU = 0.5


@dataclass
class ExportResult:
    tflite: bytes
    manifest: Manifest
    parity: ParityReport | None
    model_parameters: int = 0  # every variable of the model, frozen ones included


def _signature_table(graph: TrainingGraph) -> dict:
    keys = [weight_key(i) for i in range(len(graph.model_vars))]
    personal = [personal_key(i) for i in range(len(graph.personal_vars))]
    extra = {"get_personal": {"inputs": [], "outputs": personal},
             "set_personal": {"inputs": personal, "outputs": ["ok"]}} if personal else {}
    controls = [control_key(i) for i, v in enumerate(graph.model_vars) if v.trainable]
    extra["set_control"] = {"inputs": controls, "outputs": ["ok"]}
    if graph.dp_microbatches:
        extra["train_dp"] = {"inputs": ["x", "y", "sample_weight", "learning_rate", "proximal_mu", "l2_norm_clip",
                                        "noise_multiplier", "noise"], "outputs": ["loss"]}
    return {**extra,
        "train": {"inputs": ["x", "y", "sample_weight", "learning_rate", "proximal_mu"], "outputs": ["loss"]},
        "infer": {"inputs": ["x"], "outputs": ["output"]},
        "evaluate": {"inputs": ["x", "y", "sample_weight"], "outputs": ["loss_sum", "correct"]},
        "get_weights": {"inputs": [], "outputs": keys},
        "set_weights": {"inputs": keys, "outputs": ["ok"]},
    }


def build_manifest(graph: TrainingGraph, name: str, content_sha256: str, flex_ops: list[str],
                   options: dict) -> Manifest:
    return Manifest(
        model_name=name,
        batch_size=graph.batch_size,
        input=TensorSpec("x", graph.input_shape, graph.input_dtype),
        label=TensorSpec("y", graph.label_shape, graph.label_dtype),
        task_kind=graph.loss_spec.task_kind,
        num_classes=graph.num_classes,
        loss=graph.loss_spec.name,
        optimizer=graph.opt.to_dict(),
        weights=tuple(
            WeightSpec(weight_key(i), v.path, tuple(int(d) for d in v.variable.shape), "float32", v.trainable)
            for i, v in enumerate(graph.model_vars)
        ),
        personal=tuple(
            WeightSpec(personal_key(i), v.path, tuple(int(d) for d in v.variable.shape), "float32", v.trainable)
            for i, v in enumerate(graph.personal_vars)
        ),
        signatures=_signature_table(graph),
        fedge_version=__version__,
        content_sha256=content_sha256,
        requires_flex=bool(flex_ops),
        flex_ops=tuple(flex_ops),
        export_options=options,
    )


def traced_signatures(graph: TrainingGraph, layers: dict) -> dict:
    """Trace the signatures; an op TensorFlow cannot differentiate becomes one ExportError line."""
    try:
        return graph.concrete_signatures()
    except UnsupportedGradient as exc:
        where = origin_suffix(exc.tensor, layers)
        raise ExportError(f"no builtin gradient for {exc.op_type}{where}: {exc.reason} is not supported") from None
    except LookupError as exc:  # TensorFlow: "No gradient defined for operation 'x' (op type: Y)"
        text = str(exc).strip().splitlines()[0]
        found = re.search(r"operation '([^']+)' \(op type: ([A-Za-z0-9_]+)\)", text)
        if not found:
            raise ExportError(f"tracing the train step failed: {text}") from None
        where = origin_suffix(found.group(1), layers)
        raise ExportError(f"TensorFlow has no gradient for {found.group(2)}{where}") from None


_DROPOUT_RATES = ("rate", "dropout", "recurrent_dropout")  # Dropout layers, recurrent layers and cells


def _has_stochastic_layers(model) -> bool:
    return any(float(getattr(layer, attr, 0.0) or 0.0) > 0
               for layer in sublayers(model)
               for attr in _DROPOUT_RATES)


def _silent(stage: str) -> None:
    pass


def export_model(model, name: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 allow_flex: bool = False, parity_steps: int = 3,
                 tolerance: float = DEFAULT_TOLERANCE, progress=_silent, personal: tuple[str, ...] = (),
                 dp_microbatches: int = 0) -> ExportResult:
    """`personal`: names of layers that train on the device and never travel (FedPer).
    `dp_microbatches` > 0 adds the example-level DP-SGD step ``train_dp`` (see training_graph).
    `progress(stage)` is called as each stage starts (a large model takes tens of seconds)."""
    if batch_size < 1:
        raise ExportError("--batch-size must be >= 1")
    progress("tracing the train step from the model's call")
    graph = TrainingGraph(model, batch_size=batch_size, stochastic=True, personal=personal,
                          dp_microbatches=dp_microbatches)
    layers = layers_by_name(model)
    signatures = traced_signatures(graph, layers)
    progress("converting to TFLite builtin ops")
    raw, flex_ops = convert_module(graph, signatures, allow_flex=allow_flex, layers=layers)
    options = {"batch_size": batch_size, "allow_flex": allow_flex, "parity_steps": parity_steps,
               "tolerance": tolerance, "personal": list(personal)}
    if dp_microbatches:
        options["dp_microbatches"] = dp_microbatches
    manifest = build_manifest(graph, name or model.name, hashlib.sha256(raw).hexdigest(), flex_ops, options)
    values = [v.variable.numpy() for v in graph.model_vars]
    # The initial weights are read from the variables' own initializers when each has one of
    # its own (no second copy in the file); otherwise they travel as metadata too.
    travelling = {id(v.variable) for v in graph.model_vars}
    others = [backing(v).numpy() for v in model.variables if id(backing(v)) not in travelling]
    buffers = initializer_buffers(raw, values, others)
    if any(b >= 0 for b in buffers):
        manifest = replace(manifest, initial_buffers=buffers)
    rest = [v for v, b in zip(values, buffers) if b < 0]  # all of them, with no buffer of their own
    entries = {INITIAL_WEIGHTS_METADATA_NAME: codec.encode(rest, codec.CodecSpec("f32"), np.random.default_rng(0))
               } if rest else {}
    tflite = embed_metadata(raw, {MANIFEST_METADATA_NAME: manifest.to_json().encode(), **entries})
    report = None
    if parity_steps > 0 and not flex_ops:
        parity_bytes = tflite
        if _has_stochastic_layers(model):
            # Same graph without dropout noise, so both sides are deterministic.
            progress("building a dropout-free copy for the parity check")
            det = TrainingGraph(model, batch_size=batch_size, stochastic=False, personal=personal,
                                dp_microbatches=dp_microbatches)
            parity_bytes, _ = convert_module(det, traced_signatures(det, layers), layers=layers)
        progress(f"parity: {parity_steps} training steps in LiteRT and in Keras")
        report = run_parity(model, parity_bytes, manifest, steps=parity_steps, tolerance=tolerance)
        progress(f"FedProx + SCAFFOLD parity: {parity_steps} steps with proximal_mu {PARITY_PROXIMAL_MU:g} and a "
                 "control correction on both sides")
        report.proximal = run_parity(model, parity_bytes, manifest, steps=parity_steps, tolerance=tolerance,
                                     proximal_mu=PARITY_PROXIMAL_MU, scaffold=True)
        if dp_microbatches:
            progress(f"DP-SGD parity: {parity_steps} train_dp steps ({dp_microbatches} microbatches, clipped and "
                     "noised) against a reference DP-SGD step fed the same noise")
            report.dp = run_dp_parity(model, parity_bytes, manifest, steps=parity_steps, tolerance=tolerance)
    total = sum(int(np.prod(v.shape)) for v in model.weights)
    return ExportResult(tflite, manifest, report, total)
