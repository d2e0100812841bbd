"""test.py --fuse_weights (two one-stream models over the same windows, late fusion's inputs) and
build_tubes.py on what it writes; tiny random-weight models on the toy dataset (CPU)."""
import json

import numpy as np
import pytest
import torch

import build_tubes
import test as test_script
from data import layout
from data.annotations import load_class_names, read_video_list
from data.dataset import ActionDetection, DataConfig, collate
from engine.inference import decode_outputs, linking_outputs
from models import ModelConfig, build_model
from tubes.detections import read_video_detections
from utils.checkpoint import save_checkpoint

RUN = ["--device", "cpu", "--num_workers", "0", "--batch_size", "8", "--dataset", "toy", "--eval_gaps", "12"]


@pytest.fixture(scope="module")
def streams(toy_root, tmp_path_factory):
    """Random-weight rgb (1 frame) and fastOF (2 stacked frames) models; test.py fused and one stream each."""
    work = tmp_path_factory.mktemp("late_fusion")
    num_classes = len(load_class_names(toy_root)) + 1
    weights = {}
    for seed, (name, frames) in enumerate([("rgb", 1), ("fastOF", 2)]):
        torch.manual_seed(seed)
        model = build_model(ModelConfig(num_classes=num_classes, width_mult=0.0625, input_frames_base=frames))
        weights[name] = save_checkpoint(work / f"{name}.pth", model, flags={"input_type_base": name})
    root = ["--data_root", str(toy_root), *RUN]
    assert test_script.main([*root, "--weights", str(weights["rgb"]), "--fuse_weights", str(weights["fastOF"]),
                             "--det_dir", str(work / "fused")]) == 0
    assert test_script.main([*root, "--weights", str(weights["rgb"]), "--det_dir", str(work / "rgb")]) == 0
    assert test_script.main([*root, "--weights", str(weights["fastOF"]), "--input_type_base", "fastOF",
                             "--det_dir", str(work / "flow")]) == 0
    return work, weights


def test_each_stream_as_its_one_stream_run(toy_root, streams):
    """base/ and fuse/ are what test.py writes for each model alone (the fuse model read fastOF)."""
    work, _ = streams
    videos = read_video_list(layout.split_path(toy_root, "testlist01.txt"))
    for sub, alone in (("base", "rgb"), ("fuse", "flow")):
        for video in videos:
            got, want = (read_video_detections(work / d / f"{video}.npz") for d in (f"fused/{sub}", alone))
            np.testing.assert_array_equal(got.boxes, want.boxes)
            np.testing.assert_array_equal(got.scores, want.scores)
            np.testing.assert_array_equal(got.frames, want.frames)
    base = read_video_detections(work / "fused" / "base" / f"{videos[0]}.npz")
    fuse = read_video_detections(work / "fused" / "fuse" / f"{videos[0]}.npz")
    assert len(base.scores) != len(fuse.scores) or np.any(base.scores != fuse.scores)


def test_mean_is_the_mean_softmax_per_prior_on_the_base_boxes(toy_root, streams):
    work, weights = streams
    cfg = DataConfig(dataset="toy", data_root=str(toy_root), two_stream=True, input_type_extra="fastOF",
                     input_frames_extra=2, eval_gap=12)
    dataset = ActionDetection(cfg, "test", full_test=True)
    batch = collate([dataset[0]])
    models = [torch.load(weights[n], weights_only=True) for n in ("rgb", "fastOF")]
    outputs = []
    for state, x in zip(models, (batch["images"]["base"], batch["images"]["extra"])):
        model = build_model(ModelConfig.from_dict(state["model_config"]))
        model.load_state_dict(state["model"])
        with torch.no_grad():
            outputs.append(decode_outputs(*model.eval()(x), model.priors))
    (boxes, scores_rgb), (_, scores_flow) = outputs
    (want_boxes, want_scores), = linking_outputs(boxes, (scores_rgb + scores_flow) / 2)
    det = read_video_detections(work / "fused" / "mean" / f"{batch['videos'][0]}.npz")
    w = int(np.flatnonzero((det.frames == batch["frames"][0].numpy()).all(1))[0])
    np.testing.assert_allclose(det.scores[det.window == w], want_scores, rtol=1e-6)
    np.testing.assert_allclose(det.boxes[det.window == w], want_boxes, atol=1e-6)
    summary = json.loads((work / "fused" / "mean-frame_map.json").read_text())
    assert summary["fusion"] == "mean" and summary["stream"] == "mean" and 0 <= summary["frame_map_voc"] <= 1


def tubes(toy_root, det_dir, out, *flags):
    return build_tubes.main(["--det_dir", str(det_dir), "--det_format", "npz", "--annot",
                             str(layout.split_path(toy_root, layout.ANNOT_FILE)), "--out_dir", str(out), "--strict", *flags])


def test_build_tubes_on_test_py_late_fusion(toy_root, streams, tmp_path):
    work, _ = streams
    mean = tubes(toy_root, work / "fused" / "mean", tmp_path / "mean", "--fusion", "mean")
    assert mean["fusion"]["type"] == "mean" and mean["fusion"]["prefused_by_test_py"]
    assert mean["video_map"] == tubes(toy_root, work / "fused" / "mean", tmp_path / "plain")["video_map"]
    union = tubes(toy_root, work / "fused" / "base", tmp_path / "union", "--fuse_det_dir", str(work / "fused" / "fuse"),
                  "--fusion", "union")
    assert union["fusion"]["type"] == "union" and "frame_map_frameap" in union
    # each stream's own top boxes do not align row by row: mean fusion of base/ and fuse/ is refused
    with pytest.raises(SystemExit, match=r"mean fusion needs the same priors .*fuse/.*\.npz frame \d+ has"):
        tubes(toy_root, work / "fused" / "base", tmp_path / "bad", "--fuse_det_dir", str(work / "fused" / "fuse"),
              "--fusion", "mean")
    with pytest.raises(SystemExit, match="late fusion needs both"):
        tubes(toy_root, work / "fused" / "base", tmp_path / "bad", "--fusion", "mean")
