"""`fedge export`: Keras model -> one trainable `.tflite` with an embedded manifest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from fedge import __version__
from model_export.convert import convert_module
import numpy as np

from model_export.embed import embed_metadata
from model_export.errors import ExportError
from model_export.parity import DEFAULT_TOLERANCE, ParityReport, run_parity
from model_export.training_graph import TrainingGraph
from protocol import codec
from protocol.manifest import (
    INITIAL_WEIGHTS_METADATA_NAME,
    MANIFEST_METADATA_NAME,
    Manifest,
    TensorSpec,
    WeightSpec,
    weight_key,
)

DEFAULT_BATCH_SIZE = 32


@dataclass
class ExportResult:
    tflite: bytes
    manifest: Manifest
    parity: ParityReport | None


def _signature_table(graph: TrainingGraph) -> dict:
    keys = [weight_key(i) for i in range(len(graph.model_vars))]
    return {
        "train": {"inputs": ["x", "y", "sample_weight", "learning_rate"], "outputs": ["loss"]},
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
        signatures=_signature_table(graph),
        fedge_version=__version__,
        content_sha256=content_sha256,
        requires_flex=bool(flex_ops),
        flex_ops=tuple(flex_ops),
        export_options=options,
    )


def _has_stochastic_layers(model) -> bool:
    return any(float(getattr(layer, "rate", 0.0) or 0.0) > 0 or float(getattr(layer, "dropout", 0.0) or 0.0) > 0
               for layer in model._flatten_layers(include_self=False, recursive=True))  # noqa: SLF001


def export_model(model, name: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 allow_flex: bool = False, parity_steps: int = 3,
                 tolerance: float = DEFAULT_TOLERANCE) -> ExportResult:
    if batch_size < 1:
        raise ExportError("--batch-size must be >= 1")
    graph = TrainingGraph(model, batch_size=batch_size, stochastic=True)
    raw, flex_ops = convert_module(graph, graph.concrete_signatures(), allow_flex=allow_flex)
    options = {"batch_size": batch_size, "allow_flex": allow_flex, "parity_steps": parity_steps,
               "tolerance": tolerance}
    manifest = build_manifest(graph, name or model.name, hashlib.sha256(raw).hexdigest(), flex_ops, options)
    initial = codec.encode([v.variable.numpy() for v in graph.model_vars], codec.CodecSpec("f32"),
                           np.random.default_rng(0))
    tflite = embed_metadata(raw, {MANIFEST_METADATA_NAME: manifest.to_json().encode(), INITIAL_WEIGHTS_METADATA_NAME: initial})
    report = None
    if parity_steps > 0 and not flex_ops:
        parity_bytes = tflite
        if _has_stochastic_layers(model):
            # Same graph without dropout noise, so both sides are deterministic.
            det = TrainingGraph(model, batch_size=batch_size, stochastic=False)
            parity_bytes, _ = convert_module(det, det.concrete_signatures())
        report = run_parity(model, parity_bytes, manifest, steps=parity_steps, tolerance=tolerance)
    return ExportResult(tflite, manifest, report)
