"""demo.py with late fusion (--fuse_weights, --fusion boost|union|mean) equals test.py --fuse_weights +
build_tubes.py --fusion on a toy test video; tiny random-weight rgb and fastOF models (CPU).

The dataset's fastOF images are JPEGs of the DIS flow of the rendered frames, while demo.py computes
the flow of the decoded frames and never compresses it; so the video's flow images are rewritten here
losslessly (PNG data under the .jpg names, which cv2.imread reads by content) from the decoded frames,
as demo.py computes them."""
import shutil

import cv2
import numpy as np
import pytest
import torch

import build_tubes
import demo
import test as test_script
from data import layout
from data.annotations import load_class_names, read_video_list
from data.flow import flow_images
from models import ModelConfig, build_model
from tubes.detections import frame_detections, read_video_detections
from tubes.tube_files import load_tubes, tube_file
from utils.checkpoint import save_checkpoint


def tiny(path, classes, input_type, seed, **cfg):
    torch.manual_seed(seed)
    model = build_model(ModelConfig(num_classes=len(classes) + 1, width_mult=0.0625, **cfg))
    return save_checkpoint(path, model, classes=classes, flags={"input_type_base": input_type})


@pytest.fixture(scope="module")
def late_fusion(toy_root, tmp_path_factory):
    """A one-video copy of the toy set with lossless online-equal flow, the two models, and test.py's detections."""
    work = tmp_path_factory.mktemp("demo_fusion")
    root = shutil.copytree(toy_root, work / "data")
    video = read_video_list(layout.split_path(root, "testlist01.txt"))[0]
    layout.split_path(root, "testlist01.txt").write_text(video + "\n")
    frames = [cv2.imread(str(p)) for p in sorted(layout.video_dir(root, "rgb", video).glob("*.jpg"))]
    for i, image in enumerate(flow_images(frames)):
        cv2.imencode(".png", image)[1].tofile(str(layout.frame_path(root, "fastOF", video, i)))
    classes = load_class_names(root)
    weights = {"rgb": tiny(work / "rgb.pth", classes, "rgb", 0),
               "fastOF": tiny(work / "flow.pth", classes, "fastOF", 1, input_frames_base=2)}
    assert test_script.main(["--data_root", str(root), "--dataset", "toy", "--weights", str(weights["rgb"]),
                             "--fuse_weights", str(weights["fastOF"]), "--det_dir", str(work / "det"),
                             "--device", "cpu", "--num_workers", "0", "--batch_size", "1"]) == 0
    return work, root, video, weights


def assert_same_detections(got_path, want_path):
    got, want = (frame_detections(read_video_detections(p)) for p in (got_path, want_path))
    assert len(got) == len(want) and sum(len(loc) for loc, _ in got) > 0
    for (loc_a, scores_a), (loc_b, scores_b) in zip(got, want):
        np.testing.assert_array_equal(loc_a, loc_b)
        np.testing.assert_array_equal(scores_a, scores_b)


@pytest.mark.parametrize("fusion, matlab_name", [("boost", "nwsum-plus"), ("union", "cat"), ("mean", "mean")])
def test_demo_late_fusion_equals_test_py_and_build_tubes(late_fusion, fusion, matlab_name):
    work, root, video, weights = late_fusion
    name, out = video.split("/")[1], work / fusion / "demo.avi"
    out.parent.mkdir()
    assert demo.main(["--video", str(layout.video_dir(root, "rgb", video)), "--weights", str(weights["rgb"]),
                      "--fuse_weights", str(weights["fastOF"]), "--fusion", matlab_name, "--out", str(out),
                      "--det_out", str(work / fusion / "det.npz"), "--device", "cpu", "--alphas", "3"]) == 0
    det = work / "det"
    flags = ["--det_dir", str(det / "mean")] if fusion == "mean" else \
        ["--det_dir", str(det / "base"), "--fuse_det_dir", str(det / "fuse")]
    build_tubes.main([*flags, "--fusion", fusion, "--det_format", "npz", "--out_dir", str(work / fusion / "offline"),
                      "--annot", str(layout.split_path(root, layout.ANNOT_FILE)), "--alphas", "3", "--strict",
                      "--no_frame_map"])
    # --det_out: what the fusion reads, test.py's files for the video
    for got, want in ([("det.npz", "mean")] if fusion == "mean" else [("det.npz", "base"), ("det-fuse.npz", "fuse")]):
        assert_same_detections(work / fusion / got, det / want / f"{video}.npz")
    _, online = load_tubes(out.with_name("demo-tubes-alpha3.npz"))
    _, offline = load_tubes(tube_file(work / fusion / "offline", 3))
    assert len(online[name]) == len(offline[video]) > 0
    for a, b in zip(online[name], offline[video]):
        assert (a.class_id, a.start, len(a.boxes)) == (b.class_id, b.start, len(b.boxes))
        assert a.score == b.score
        np.testing.assert_array_equal(a.boxes, b.boxes)


def test_late_fusion_inputs_are_checked(late_fusion, tmp_path):
    _, root, video, weights = late_fusion
    classes = load_class_names(root)
    run = ["--video", str(layout.video_dir(root, "rgb", video)), "--weights", str(weights["rgb"]), "--out",
           str(tmp_path / "o.avi"), "--device", "cpu", "--fusion", "boost", "--fuse_weights"]
    brox = tiny(tmp_path / "brox.pth", classes, "brox", 2, input_frames_base=2)
    with pytest.raises(SystemExit, match=r"brox\.pth\) reads 'brox' images, which cannot be computed online"):
        demo.main([*run, str(brox)])
    longer = tiny(tmp_path / "seq3.pth", classes, "fastOF", 2, seq_len=3)
    with pytest.raises(SystemExit, match="--weights and --fuse_weights must be one-stream models of the same seq_len"):
        demo.main([*run, str(longer)])
    for flags in (run[:-1], [*run, str(weights["fastOF"]), "--fuse_onnx", str(tmp_path / "flow.onnx")]):
        with pytest.raises(SystemExit, match="late fusion needs both --late_fusion and one of --fuse_weights and"):
            demo.main(flags)
    with pytest.raises(SystemExit, match="--link micro links one stream's micro-tubes; --late_fusion boost fuses per frame"):
        demo.main([*run, str(weights["fastOF"]), "--link", "micro"])
    assert not (tmp_path / "o.avi").exists()
