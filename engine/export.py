"""The detector as an ONNX graph (decoded boxes and softmax scores, any batch) and its onnxruntime
runner (export.py, demo.py --onnx). onnx, onnxscript and onnxruntime are optional dependencies
(requirements-onnx.txt): importing this module needs none of them.

The graph's inputs are ``base`` [B, T, 3*input_frames_base, 300, 300] (and ``extra`` for a
two-stream model), its outputs ``boxes`` [B, A, T, 4] (normalised x1, y1, x2, y2, unclipped) and
``scores`` [B, A, C+1] (softmax, background first): ``layers.postprocess.decode_outputs`` of the
model's outputs. The model config, the class names and the streams' input types travel in the
file's metadata, so demo.py rebuilds the online detector from the .onnx file alone.
"""
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import warnings
from pathlib import Path
from types import ModuleType
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from layers.postprocess import decode_outputs
from layers.priors import SSD300_V2, prior_boxes
from models.config import ModelConfig
from utils.checkpoint import CheckpointError
from utils.io import atomic_path

from .online import load_detector

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install -r requirements-onnx.txt"
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")  # export (torch.onnx's exporter) and run


def require(module: str) -> ModuleType:
    """Import an optional ONNX package; ImportError saying how to install it."""
    try:
        return __import__(module)
    except ImportError as error:
        raise ImportError(f"{module} is not installed ({error}); {INSTALL_HINT}") from error


class DecodedDetector(nn.Module):
    """model -> (boxes [B, A, T, 4], scores [B, A, C+1]), what the exported graph computes."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, base: torch.Tensor, extra: torch.Tensor | None = None) -> tuple:
        loc, conf = self.model(base, extra)
        return decode_outputs(loc, conf, self.model.priors)


def example_inputs(cfg: ModelConfig, batch: int = 2, seed: int = 0) -> dict:
    """Random inputs of the model's shape (the batch of 2 keeps the exported batch dynamic)."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch, cfg.seq_len)
    inputs = {"base": torch.rand(*shape, 3 * cfg.input_frames_base, 300, 300, generator=g) * 255 - 120}
    if cfg.two_stream:
        inputs["extra"] = torch.rand(*shape, 3 * cfg.input_frames_extra, 300, 300, generator=g) * 255 - 120
    return inputs


class _FeatureMaps(nn.Module):
    def __init__(self, model, stream):
        super().__init__()
        self.model, self.stream = model, stream

    def forward(self, images):
        return tuple(self.model.feature_maps(images, self.stream))


class _Heads(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *maps):
        n = len(maps) // (2 if self.model.cfg.two_stream else 1)
        return self.model.forward_maps(list(maps[:n]), list(maps[n:]) or None)


def part_paths(path: str | Path, cfg: ModelConfig) -> dict:
    """The graphs of the per-frame path beside ``path``: {'base': the base stream's backbone on single
    time steps, 'extra': the extra stream's (two-stream), 'heads': pooling + heads on their maps}."""
    path = Path(path)
    parts = ("base", "extra", "heads") if cfg.two_stream else ("base", "heads")
    return {part: path.with_name(f"{path.stem}.{part}{path.suffix}") for part in parts}


def _export(module, inputs: dict, outputs: list, path, metadata=None, varargs=False):
    """``module`` on ``inputs`` (all with the batch first: dynamic) as an ONNX file; ``varargs``: the
    module takes the inputs as ``*args``."""
    onnx = require("onnx")
    batch = torch.export.Dim("batch")
    dims = [{0: batch} for _ in inputs]
    with torch.no_grad(), warnings.catch_warnings():
        # the inputs share the batch dimension; the exporter says so, once per name
        warnings.filterwarnings("ignore", ".*The axis name: batch will not be used")
        program = torch.onnx.export(module.eval(), tuple(inputs.values()), input_names=list(inputs), output_names=outputs,
                                    dynamic_shapes=[tuple(dims)] if varargs else dims, dynamo=True, verbose=False)
    proto = program.model_proto
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))


def export_onnx(model: nn.Module, path: str | Path, metadata: dict) -> str | Path:
    """Write ``model`` (an AMTNet on CPU) as an ONNX graph to ``path``, atomically; ``metadata``
    (JSON-serialisable values) goes into the file's metadata with the model config. Also writes the
    per-frame path's graphs (``part_paths``), which demo.py runs with one backbone pass per frame."""
    require("onnxscript")
    model.eval()
    inputs = example_inputs(model.cfg)
    _export(DecodedDetector(model), inputs, ["boxes", "scores"], path, {"model_config": model.cfg.to_dict(), **metadata})
    parts = part_paths(path, model.cfg)
    maps = {}
    with torch.no_grad():
        for stream, x in inputs.items():
            frames = x.flatten(0, 1)
            _export(_FeatureMaps(model, stream), {"images": frames}, [f"map{k}" for k in range(6)], parts[stream])
            maps.update({f"{stream}{k}": m.view(*x.shape[:2], *m.shape[1:])
                         for k, m in enumerate(model.feature_maps(frames, stream))})
    _export(_Heads(model), maps, ["loc", "conf"], parts["heads"], varargs=True)
    return path


class OnnxDetector:
    """An exported detector run by onnxruntime on CPU: ``decoded(base, extra)`` gives
    ``DecodedDetector``'s (boxes, scores) as float32 tensors; ``cfg`` and ``metadata`` from the file.
    Where the per-frame graphs are beside it (``part_paths``), ``feature_maps`` and ``forward_maps`` run
    them as ``AMTNet``'s do, so ``FeatureMapCache`` works with it (``split`` is then true).
    ``spinning``: whether onnxruntime's threads spin while waiting (its default; false is much faster
    on a CPU shared with other jobs, BENCHMARKS.md)."""

    def __init__(self, path: str | Path, threads: int | None = None, spinning: bool = False):
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        if threads:
            options.intra_op_num_threads = threads
        session = lambda p: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
        try:
            self.session = session(path)
        except Exception as error:  # onnxruntime's own exception types: a garbage, truncated or foreign file
            first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
            raise CheckpointError(f"{path}: not an ONNX model ({first})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if "model_config" not in meta:
            raise CheckpointError(f"{path}: not an AMTNet exported by export.py (no model_config in its metadata)")
        self.metadata = {k: json.loads(v) for k, v in meta.items()}
        self.cfg = ModelConfig.from_dict(self.metadata["model_config"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        parts = part_paths(path, self.cfg)
        self.split = all(p.is_file() for p in parts.values())
        self.parts = {part: session(p) for part, p in parts.items()} if self.split else {}
        self.priors = prior_boxes(SSD300_V2)

    def decoded(self, base: torch.Tensor, extra: torch.Tensor | None = None) -> tuple:
        feed = {"base": _numpy(base)}
        if "extra" in self.inputs:
            if extra is None:
                raise ValueError("a two-stream model: give the extra stream")
            feed["extra"] = _numpy(extra)
        boxes, scores = self.session.run(["boxes", "scores"], feed)
        return torch.from_numpy(boxes), torch.from_numpy(scores)

    def feature_maps(self, images: torch.Tensor, stream: str = "base") -> list:
        return [torch.from_numpy(m) for m in self.parts[stream].run(None, {"images": _numpy(images)})]

    def forward_maps(self, base_maps: list, extra_maps: list | None = None) -> tuple:
        feed = {f"base{k}": _numpy(m) for k, m in enumerate(base_maps)}
        feed.update({f"extra{k}": _numpy(m) for k, m in enumerate(extra_maps or [])})
        return tuple(torch.from_numpy(o) for o in self.parts["heads"].run(["loc", "conf"], feed))


def _numpy(x):
    return np.ascontiguousarray(x.cpu().numpy(), np.float32)


def compare(model: nn.Module, detector: "OnnxDetector", batch: int = 3, seed: int = 1) -> dict:
    """onnxruntime against PyTorch on the same random inputs (a batch other than the export's), per
    output: {'boxes': (max abs diff, largest abs value), 'scores': ...}, and 'per-frame boxes', 'per-frame
    scores' for the per-frame graphs. Boxes of an untrained model
    reach hundreds (exp of large offsets), so the difference is judged against the largest value."""
    inputs = example_inputs(model.cfg, batch, seed)
    with torch.no_grad():
        want = DecodedDetector(model.eval())(inputs["base"], inputs.get("extra"))
    outputs = {"": detector.decoded(inputs["base"], inputs.get("extra"))}
    if detector.split:  # the per-frame graphs: feature maps of every time step, then the heads
        maps = [[m.view(*x.shape[:2], *m.shape[1:]) for m in detector.feature_maps(x.flatten(0, 1), stream)]
                for stream, x in inputs.items()]
        outputs["per-frame "] = decode_outputs(*detector.forward_maps(*maps), detector.priors)
    return {prefix + name: (float((a - b).abs().max()), float(b.abs().max()))
            for prefix, got in outputs.items() for name, a, b in zip(("boxes", "scores"), got, want)}


def within_rounding(diff: dict, rtol: float = 1e-5) -> bool:
    """Whether every ``compare`` difference is float rounding: at most rtol times max(1, largest value)."""
    return all(d <= rtol * max(1.0, largest) for d, largest in diff.values())


def load_onnx_detector(path: str | Path, classes: list | None = None, threads: int | None = None) -> tuple:
    """(OnnxDetector, class names, ``StreamSpec.streams``) from an export.py file; ``classes``
    overrides the file's."""
    if not Path(path).is_file():
        raise CheckpointError(f"{path}: no such file, expected an ONNX model (export.py writes one)")
    if Path(path).stat().st_size == 0:
        raise CheckpointError(f"{path}: an empty file, expected an ONNX model (export.py writes one)")
    detector = OnnxDetector(path, threads)
    classes = classes or detector.metadata.get("classes")
    if len(classes) != detector.cfg.num_classes - 1:
        raise ValueError(f"{len(classes)} class names for a model of {detector.cfg.num_classes - 1} classes")
    streams = {s: tuple(v) for s, v in detector.metadata["streams"].items()}
    return detector, list(classes), streams


def onnx_available() -> bool:
    """Whether the optional packages to export and run ONNX graphs are installed."""
    return all(importlib.util.find_spec(m) is not None for m in ONNX_PACKAGES)


BACKENDS = ("auto", "torch", "onnxruntime")  # demo.py --backend


def use_onnxruntime(backend: str, device: torch.device) -> bool:
    """Whether onnxruntime runs demo.py's checkpoints: asked for (``onnxruntime``), or ``auto`` on the CPU
    with the packages installed (it runs the network 1.3x to 2.7x faster than PyTorch on a 2-core CPU,
    BENCHMARKS.md, "Real time")."""
    if backend == "onnxruntime":
        if device.type != "cpu":
            raise ValueError("--backend onnxruntime runs on the CPU: give --device cpu (or --backend torch)")
        return True
    return backend == "auto" and device.type == "cpu" and onnx_available()


def export_checked(model: nn.Module, path: str | Path, metadata: dict) -> dict:
    """``export_onnx``, then the graphs against PyTorch (``compare``); graphs that differ by more than
    float rounding are deleted and the run stops. Returns the differences."""
    export_onnx(model, path, metadata)
    diff = compare(model, OnnxDetector(path))
    log.info("%s (and %s): onnxruntime vs PyTorch on the same inputs (batch 3), max abs diff: %s", path,
             ", ".join(p.name for p in part_paths(path, model.cfg).values()),
             ", ".join(f"{k} {d:.2g} (largest {m:.3g})" for k, (d, m) in diff.items()))
    if not within_rounding(diff):
        for p in (path, *part_paths(path, model.cfg).values()):
            Path(p).unlink(missing_ok=True)
        raise RuntimeError(f"the exported graph differs from PyTorch by more than float rounding: {diff}; not kept")
    return diff


def cache_root() -> Path:
    """Where ``cached_export`` keeps graphs: ``$AMTNET_CACHE`` or ``~/.cache/amtnet``, then ``onnx/``."""
    return Path(os.environ.get("AMTNET_CACHE") or Path.home() / ".cache" / "amtnet") / "onnx"


def cached_export(weights: str | Path, classes: list | None = None, original_cfg: Callable | None = None,
                  input_types: tuple = ("rgb", "fastOF")) -> Path:
    """export.py's graphs of the checkpoint ``weights``, made on first use and kept (``cache_root``), keyed
    by the checkpoint's bytes, the class names, the input types and the torch version; demo.py's
    onnxruntime backend. A folder appears whole (exported and checked beside it, then renamed)."""
    digest = hashlib.sha256()
    with open(weights, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    digest.update(json.dumps([classes, list(input_types), torch.__version__]).encode())
    folder = cache_root() / digest.hexdigest()[:24]
    path = folder / "model.onnx"
    if path.is_file():
        return path
    model, classes, streams = load_detector(weights, classes, original_cfg, input_types)
    log.info("exporting %s to ONNX for onnxruntime, once (kept in %s)", weights, folder)
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        export_checked(model, tmp / "model.onnx", {"classes": classes, "streams": streams})
        tmp.rename(folder)
    except OSError:
        if not path.is_file():  # not another process's export that won the rename
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path
