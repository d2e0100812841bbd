"""export.py: the ONNX graph gives PyTorch's decoded boxes and softmax scores (float rounding) at any
batch, for one-stream and two-stream models, carries what demo.py needs, and demo.py --onnx gives
demo.py's detections. Skipped where the optional packages (requirements-onnx.txt) are absent."""
import builtins
import json

import numpy as np
import pytest
import torch

import demo
import export
from data import layout
from data.annotations import read_video_list
from engine.export import (DecodedDetector, OnnxDetector, compare, example_inputs, onnx_available, require,
                           within_rounding)
from models import ModelConfig, build_model
from tests.conftest import optional
from tests.test_demo import CLASSES
from tubes.detections import frame_detections, read_video_detections
from utils.checkpoint import save_checkpoint


def onnx_packages():
    optional(onnx_available(), "the optional ONNX packages (pip install -r requirements-onnx.txt)")


def checkpoint(path, **kwargs):
    torch.manual_seed(11)
    model = build_model(ModelConfig(num_classes=5, width_mult=0.0625, **kwargs))
    save_checkpoint(path, model, classes=CLASSES, flags={"input_type_base": "rgb", "input_type_extra": "fastOF"})
    return model.eval()


@pytest.fixture(scope="module")
def one_stream(tmp_path_factory):
    onnx_packages()
    folder = tmp_path_factory.mktemp("export")
    model = checkpoint(folder / "tiny.pth")
    assert export.main(["--weights", str(folder / "tiny.pth"), "--format", "onnx", "--out", str(folder / "tiny.onnx")]) == 0
    return model, folder


def assert_same_outputs(model, detector, batch):
    inputs = example_inputs(model.cfg, batch, seed=batch)
    with torch.no_grad():
        want = DecodedDetector(model)(inputs["base"], inputs.get("extra"))
    got = detector.decoded(inputs["base"], inputs.get("extra"))
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.dtype == torch.float32
        largest = float(b.abs().max())
        assert float((a - b).abs().max()) <= 1e-5 * max(1.0, largest)


def test_one_stream_graph_equals_pytorch_at_any_batch(one_stream):
    model, folder = one_stream
    detector = OnnxDetector(folder / "tiny.onnx")
    assert detector.cfg == model.cfg and detector.inputs == ["base"]
    assert detector.metadata["classes"] == CLASSES and detector.metadata["streams"] == {"base": ["rgb", 1]}
    for batch in (1, 4):
        assert_same_outputs(model, detector, batch)
    # the per-frame graphs beside it: one backbone pass per time step, then the heads
    assert detector.split and sorted(p.name for p in folder.glob("tiny.*.onnx")) == ["tiny.base.onnx", "tiny.heads.onnx"]
    diff = compare(model, detector)
    assert set(diff) == {"boxes", "scores", "per-frame boxes", "per-frame scores"} and within_rounding(diff)


def test_two_stream_graph_equals_pytorch(tmp_path):
    onnx_packages()
    model = checkpoint(tmp_path / "fused.pth", fusion_type="CAT", input_frames_extra=3)
    assert export.main(["--weights", str(tmp_path / "fused.pth"), "--out", str(tmp_path / "fused.onnx")]) == 0
    detector = OnnxDetector(tmp_path / "fused.onnx")
    assert detector.inputs == ["base", "extra"] and detector.metadata["streams"]["extra"] == ["fastOF", 3]
    assert_same_outputs(model, detector, 2)
    assert detector.split and within_rounding(compare(model, detector))  # per-frame graphs, both streams
    with pytest.raises(ValueError, match="give the extra stream"):
        detector.decoded(torch.zeros(1, 2, 3, 300, 300))


def test_within_rounding():
    assert within_rounding({"boxes": (0.005, 1000.0), "scores": (1e-6, 1.0)})
    assert not within_rounding({"boxes": (0.05, 1000.0), "scores": (1e-6, 1.0)})
    assert not within_rounding({"boxes": (0.0, 0.5), "scores": (1e-4, 1.0)})


def test_demo_onnx_equals_demo_pytorch(one_stream, toy_root):
    _, folder = one_stream
    video = read_video_list(layout.split_path(toy_root, "testlist01.txt"))[0]
    frames = str(layout.video_dir(toy_root, "rgb", video))
    runs = {"torch": ["--weights", str(folder / "tiny.pth"), "--no-frame_cache"],
            "onnx": ["--onnx", str(folder / "tiny.onnx"), "--no-frame_cache"],
            "onnx-per-frame": ["--onnx", str(folder / "tiny.onnx")]}
    for name, flags in runs.items():
        assert demo.main(["--video", frames, "--device", "cpu", "--out", str(folder / f"{name}.avi"),
                          "--det_out", str(folder / f"{name}.npz")] + flags) == 0
    for name in ("onnx", "onnx-per-frame"):
        assert_close_detections(folder / f"{name}.npz", folder / "torch.npz")
    tubes = json.loads((folder / "onnx-per-frame-tubes-alpha3.json").read_text())
    assert tubes["video"] == video.split("/")[1]


def test_demo_onnxruntime_backend_exports_a_checkpoint_once(one_stream, toy_root, tmp_path, monkeypatch):
    """--backend onnxruntime (and auto, on the CPU with the packages) exports the checkpoint once to the
    cache and reuses it: the same detections as demo.py --onnx on export.py's file of the checkpoint."""
    _, folder = one_stream
    monkeypatch.setenv("AMTNET_CACHE", str(tmp_path / "cache"))
    video = read_video_list(layout.split_path(toy_root, "testlist01.txt"))[0]
    run = ["--video", str(layout.video_dir(toy_root, "rgb", video)), "--device", "cpu"]
    outputs = {}
    for name, flags in {"file": ["--onnx", str(folder / "tiny.onnx")],
                        "first": ["--weights", str(folder / "tiny.pth"), "--backend", "onnxruntime"],
                        "again": ["--weights", str(folder / "tiny.pth"), "--backend", "auto"]}.items():
        if name == "again":  # nothing is exported the second time
            monkeypatch.setattr("engine.export.export_onnx", lambda *a, **k: pytest.fail("exported again"))
        assert demo.main(run + flags + ["--out", str(tmp_path / f"{name}.avi"), "--det_out",
                                        str(tmp_path / f"{name}.npz")]) == 0
        outputs[name] = frame_detections(read_video_detections(tmp_path / f"{name}.npz"))
    cached = list((tmp_path / "cache" / "onnx").iterdir())
    assert len(cached) == 1 and sorted(p.name for p in cached[0].iterdir()) == [
        "model.base.onnx", "model.heads.onnx", "model.onnx"]
    for name in ("first", "again"):
        for (loc_a, scores_a), (loc_b, scores_b) in zip(outputs[name], outputs["file"], strict=True):
            np.testing.assert_array_equal(loc_a, loc_b)
            np.testing.assert_array_equal(scores_a, scores_b)


def assert_close_detections(got_path, want_path):
    got, want = (frame_detections(read_video_detections(p)) for p in (got_path, want_path))
    assert len(got) == len(want) > 0
    for (loc_a, scores_a), (loc_b, scores_b) in zip(got, want):
        np.testing.assert_allclose(loc_a, loc_b, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(scores_a, scores_b, rtol=1e-4, atol=1e-5)


def test_demo_onnx_late_fusion_equals_pytorch(one_stream, toy_root):
    """--onnx with --fuse_onnx (mean): the exported model as both streams, the second reading fastOF. (Each
    stream's own linking candidates are no test here: on the flat flow images of the toy set many priors tie,
    and float rounding decides which of them make a class's top 50.)"""
    _, folder = one_stream
    video = read_video_list(layout.split_path(toy_root, "testlist01.txt"))[0]
    runs = {"fused-torch": ["--weights", str(folder / "tiny.pth"), "--fuse_weights", str(folder / "tiny.pth")],
            "fused-onnx": ["--onnx", str(folder / "tiny.onnx"), "--fuse_onnx", str(folder / "tiny.onnx")]}
    for name, flags in runs.items():
        assert demo.main(["--video", str(layout.video_dir(toy_root, "rgb", video)), "--device", "cpu",
                          "--out", str(folder / f"{name}.avi"), "--det_out", str(folder / f"{name}.npz"),
                          "--fusion", "mean", "--fuse_input_type", "fastOF"] + flags) == 0
    assert_close_detections(folder / "fused-onnx.npz", folder / "fused-torch.npz")


def test_missing_packages_are_named(monkeypatch):
    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    with pytest.raises(ImportError, match="onnxruntime is not installed.*pip install -r requirements-onnx.txt"):
        require("onnxruntime")
