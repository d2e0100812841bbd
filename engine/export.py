"""The detector as an ONNX graph (decoded boxes and softmax scores, any batch) and its onnxruntime
runner (export.py, demo.py --onnx). onnx, onnxscript and onnxruntime are optional dependencies
(requirements-onnx.txt): importing this module needs none of them.

The graph's inputs are ``base`` [B, T, 3*input_frames_base, 300, 300] (and ``extra`` for a
two-stream model), its outputs ``boxes`` [B, A, T, 4] (normalised x1, y1, x2, y2, unclipped) and
``scores`` [B, A, C+1] (softmax, background first): ``layers.postprocess.decode_outputs`` of the
model's outputs. The model config, the class names and the streams' input types travel in the
file's metadata, so demo.py rebuilds the online detector from the .onnx file alone.
"""
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from layers.postprocess import decode_outputs
from models.config import ModelConfig
from utils.io import atomic_path

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install -r requirements-onnx.txt"


def require(module):
    """Import an optional ONNX package, or exit with how to install it."""
    try:
        return __import__(module)
    except ImportError as error:
        raise SystemExit(f"{module} is not installed ({error}); {INSTALL_HINT}") from error


class DecodedDetector(nn.Module):
    """model -> (boxes [B, A, T, 4], scores [B, A, C+1]), what the exported graph computes."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, base, extra=None):
        loc, conf = self.model(base, extra)
        return decode_outputs(loc, conf, self.model.priors)


def example_inputs(cfg: ModelConfig, batch=2, seed=0):
    """Random inputs of the model's shape (the batch of 2 keeps the exported batch dynamic)."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch, cfg.seq_len)
    inputs = {"base": torch.rand(*shape, 3 * cfg.input_frames_base, 300, 300, generator=g) * 255 - 120}
    if cfg.two_stream:
        inputs["extra"] = torch.rand(*shape, 3 * cfg.input_frames_extra, 300, 300, generator=g) * 255 - 120
    return inputs


def export_onnx(model, path, metadata: dict):
    """Write ``model`` (an AMTNet on CPU) as an ONNX graph to ``path``, atomically; ``metadata``
    (JSON-serialisable values) goes into the file's metadata with the model config."""
    require("onnxscript")
    onnx = require("onnx")
    wrapper = DecodedDetector(model.eval()).eval()
    inputs = example_inputs(model.cfg)
    batch = torch.export.Dim("batch")
    with torch.no_grad(), warnings.catch_warnings():
        # base and extra share the batch dimension; the exporter says so, once per name
        warnings.filterwarnings("ignore", "The axis name: batch will not be used")
        program = torch.onnx.export(wrapper, tuple(inputs.values()), input_names=list(inputs),
                                    output_names=["boxes", "scores"], dynamic_shapes={k: {0: batch} for k in inputs},
                                    dynamo=True, verbose=False)
    proto = program.model_proto
    for key, value in {"model_config": model.cfg.to_dict(), **metadata}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
    return path


class OnnxDetector:
    """An exported detector run by onnxruntime on CPU: ``decoded(base, extra)`` gives
    ``DecodedDetector``'s (boxes, scores) as float32 tensors; ``cfg`` and ``metadata`` from the file."""

    def __init__(self, path, threads=None):
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        if "model_config" not in meta:
            raise SystemExit(f"{path}: not an AMTNet exported by export.py (no model_config in its metadata)")
        self.metadata = {k: json.loads(v) for k, v in meta.items()}
        self.cfg = ModelConfig.from_dict(self.metadata["model_config"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def decoded(self, base, extra=None):
        feed = {"base": np.ascontiguousarray(base.cpu().numpy(), np.float32)}
        if "extra" in self.inputs:
            if extra is None:
                raise ValueError("a two-stream model: give the extra stream")
            feed["extra"] = np.ascontiguousarray(extra.cpu().numpy(), np.float32)
        boxes, scores = self.session.run(["boxes", "scores"], feed)
        return torch.from_numpy(boxes), torch.from_numpy(scores)


def compare(model, detector, batch=3, seed=1):
    """onnxruntime against PyTorch on the same random inputs (a batch other than the export's), per
    output: {'boxes': (max abs diff, largest abs value), 'scores': ...}. Boxes of an untrained model
    reach hundreds (exp of large offsets), so the difference is judged against the largest value."""
    inputs = example_inputs(model.cfg, batch, seed)
    with torch.no_grad():
        want = DecodedDetector(model.eval())(inputs["base"], inputs.get("extra"))
    got = detector.decoded(inputs["base"], inputs.get("extra"))
    return {name: (float((a - b).abs().max()), float(b.abs().max())) for name, a, b in zip(("boxes", "scores"), got, want)}


def within_rounding(diff, rtol=1e-5):
    """Whether every ``compare`` difference is float rounding: at most rtol times max(1, largest value)."""
    return all(d <= rtol * max(1.0, largest) for d, largest in diff.values())


def load_onnx_detector(path, classes=None, threads=None):
    """(OnnxDetector, class names, ``StreamSpec.streams``) from an export.py file; ``classes``
    overrides the file's."""
    if not Path(path).is_file():
        raise SystemExit(f"ONNX model not found: {path}")
    detector = OnnxDetector(path, threads)
    classes = classes or detector.metadata.get("classes")
    if len(classes) != detector.cfg.num_classes - 1:
        raise SystemExit(f"{len(classes)} class names for a model of {detector.cfg.num_classes - 1} classes")
    streams = {s: tuple(v) for s, v in detector.metadata["streams"].items()}
    return detector, list(classes), streams
