"""`make demo` (pipeline.py with its defaults: the toy dataset and the README's training recipe)
trains a model that finds the toy actors, and every stage leaves its outputs.

This is the suite's one long test (the README's iterations on 2 CPU cores)."""
import dataclasses
import json
import os
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torchvision.ops import batched_nms

import pipeline
from data import layout
from data.annotations import load_pyannot, read_video_list
from data.toy import EXTRA_TEST_VIDEOS, make_toy_dataset
from tubes.detections import frame_detections, read_video_detections
from tubes.frame_map import FrameAP
from tubes.results_table import summary_row


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    work = tmp_path_factory.mktemp("pipeline")
    assert pipeline.main(["--work_dir", str(work)]) == 0
    return work


def frame_ap(det_dir, root, videos, gt_of):
    """Frame-mAP@0.5 of the npz detections (per class: score > 0.01, NMS 0.45, top 20) against
    the ground truth ``gt_of(video, frame)`` returns."""
    annots = load_pyannot(layout.split_path(root, layout.ANNOT_FILE))
    acc = FrameAP(4, 0.5, inclusive=False)
    for video in videos:
        det = read_video_detections(det_dir / f"{video}.npz")
        scale = np.array(det.frame_size * 2, np.float64)
        for f, (loc, scores) in enumerate(frame_detections(det)):
            cls = torch.as_tensor(scores[:, 1:])
            rows, labels = torch.nonzero(cls > 0.01, as_tuple=True)
            boxes = torch.as_tensor(loc, dtype=torch.float64)[rows]
            keep = batched_nms(boxes, cls[rows, labels].double(), labels, 0.45)
            keep = torch.cat([keep[labels[keep] == c][:20] for c in range(4)])
            gt_boxes, gt_labels = gt_of(annots, video, f)
            acc.add_frame(boxes[keep].numpy() * scale, cls[rows, labels][keep].numpy(), labels[keep].numpy(),
                          gt_boxes, gt_labels)
    return acc.compute()[0]


def ground_truth(annots, video, frame):
    tubes = [t for t in annots[video].tubes if t.start <= frame < t.end]
    return (np.array([t.boxes[frame - t.start] for t in tubes], np.float64).reshape(-1, 4),
            np.array([t.class_id for t in tubes], np.int64))


def test_demo_finds_the_toy_actors(demo):
    summary = json.loads((demo / "summary.json").read_text())
    root = demo / "toy_data"
    videos = read_video_list(layout.split_path(root, "testlist01.txt"))
    assert len(videos) == 8 + EXTRA_TEST_VIDEOS  # a quarter of the 32 videos and the extra test videos
    det_dir = demo / "detections"
    # Chance: the same detections scored against the ground truth of another video's frame
    # (a detector that ignores the image, with this detector's output statistics).
    rng = np.random.default_rng(0)

    def someone_elses(annots, video, frame):
        other = videos[(videos.index(video) + 1 + rng.integers(len(videos) - 1)) % len(videos)]
        return ground_truth(annots, other, rng.integers(annots[other].num_frames))

    chance = frame_ap(det_dir, root, videos, someone_elses)
    trained = frame_ap(det_dir, root, videos, ground_truth)
    # test.py's frame-mAP (post-processing on the model's outputs) and ours on its saved
    # detections agree up to the linking-candidate cut; both must be far above chance.
    # Chance is about 0.001. The bounds are below the minimum of the seed x thread sweep (bench/bench_sweep.py,
    # BENCHMARKS.md "A larger toy test set": VOC frame-mAP at least 0.72, video-mAP@0.2 at least 0.70 and @0.5 at
    # least 0.58), with margin for other CPUs' rounding and for CPUs without bfloat16 (float32).
    assert summary["frame_map_voc"] == pytest.approx(trained, abs=0.05)
    assert chance < 0.02, chance
    assert summary["frame_map_voc"] > 0.6 and summary["frame_map_voc"] > 20 * chance, (summary["frame_map_voc"], chance)
    assert sum(ap > 0.4 for ap in summary["frame_ap_voc"].values()) >= 3, summary["frame_ap_voc"]
    # the linked, trimmed tubes find actors too, and end where they do (video-mAP at ST-IoU 0.2 and
    # 0.5, alpha 3; 0.175 at 0.5 before --link_score 0.1)
    vmap = {(r["alpha"], round(r["iou"], 2)): r["mAP"] for r in summary["video_map"]}
    assert vmap[(3.0, 0.2)] > 0.5, vmap
    assert vmap[(3.0, 0.5)] > 0.5, vmap
    # AMTNet's linking of whole micro-tubes is the recipe's, in the tubes and the online stages
    assert json.loads((demo / "tubes" / "results.json").read_text())["linking"]["mode"] == "micro"
    assert json.loads((demo / "online" / "online.json").read_text())["linking"]["mode"] == "micro"
    # the checkpoint tested is the last one (pipeline.py --checkpoint last), and the held-out videos were validated
    scores = json.loads((Path(summary["weights"]).parent / "validation.json").read_text())
    assert Path(summary["weights"]).stem == f"AMTNet_{max(int(it) for it in scores)}" and len(scores) == 4, scores


def test_demo_outputs_and_rerun_skips_finished_stages(demo):
    root = demo / "toy_data"
    videos = read_video_list(layout.split_path(root, "testlist01.txt"))
    for video in videos:
        det = read_video_detections(demo / "detections" / f"{video}.npz")
        assert det.num_frames == load_pyannot(layout.split_path(root, layout.ANNOT_FILE))[video].num_frames
    with np.load(demo / "tubes" / "tubes_alpha3.npz") as tubes:
        assert len(tubes["class_id"]) > 0 and set(tubes["videos"].tolist()) == set(videos)
    plots = sorted((demo / "eval").glob("pr_alpha3_iou*.png"))
    assert plots and all(cv2.imread(str(p)) is not None for p in plots)
    # the online curves: with the whole video observed, the tubes are build_tubes.py's
    summary = json.loads((demo / "summary.json").read_text())
    assert [Path(p).name for p in summary["online"]] == ["online_accuracy.png", "online_map.png"]
    assert all(cv2.imread(p) is not None for p in summary["online"])
    online = json.loads((demo / "online" / "online.json").read_text())
    assert online["fractions"][-1] == 1.0
    whole = {(r["alpha"], round(r["iou"], 2)): r["mAP"] for r in summary["video_map"]}
    for curve in online["video_map"]:
        assert curve["mAP"][-1] == pytest.approx(whole[(curve["alpha"], round(curve["iou"], 2))], abs=1e-9), curve
    first = videos[0]
    annotated = cv2.VideoCapture(str(demo / "demo" / f"{first.split('/')[1]}.mp4"))
    assert int(annotated.get(cv2.CAP_PROP_FRAME_COUNT)) == len(list(layout.video_dir(root, "rgb", first).glob("*.jpg")))
    weights = sorted((demo / "train").glob("*/AMTNet_*.pth"))
    stamps = {p: os.stat(p).st_mtime_ns for p in [*weights, demo / "detections-frame_map.json", demo / "tubes" / "results.json"]}
    log_lines = len((demo / "pipeline.log").read_text().splitlines())
    assert pipeline.main(["--work_dir", str(demo), "--stages", "data,train,detect,tubes"]) == 0
    assert {p: os.stat(p).st_mtime_ns for p in stamps} == stamps
    new_lines = (demo / "pipeline.log").read_text().splitlines()[log_lines:]
    assert any("not training again" in line for line in new_lines)
    assert any("is up to date" in line for line in new_lines)


def test_a_stage_runs_again_when_its_flags_change(tmp_path):
    """A stage is skipped when its output is newer than its inputs and was made with the same flags."""
    calls = []

    def main(argv):
        calls.append(argv)
        (tmp_path / "out.json").write_text("{}")
    script = types.SimpleNamespace(__name__="fake", main=main)
    for argv in (["--alphas", "3"], ["--alphas", "3"], ["--alphas", "5"], ["--alphas", "5"]):
        pipeline.run_stage("fake", script, argv, tmp_path / "out.json")
    assert calls == [["--alphas", "3"], ["--alphas", "5"]]


def test_interrupted_training_resumes_from_the_latest_checkpoint(tmp_path):
    small = ["--work_dir", str(tmp_path), "--toy_videos", "8", "--toy_test_videos", "0", "--width_mult", "0.0625",
             "--batch_size", "2", "--num_workers", "0", "--stages", "data,train"]
    assert pipeline.main(small + ["--max_iter", "2"]) == 0  # as if stopped after its checkpoint at 2
    exp = tmp_path / "train" / "rgb_w0.0625"
    assert (exp / "AMTNet_2.pth").is_file()
    assert pipeline.main(small + ["--max_iter", "4"]) == 0
    assert (exp / "AMTNet_4.pth").is_file()
    assert f"resumed from {exp / 'AMTNet_2.pth'} at iteration 2" in (exp / "training.log").read_text()


def test_a_toy_set_with_other_videos_is_rendered_again(tmp_path, monkeypatch):
    """An existing toy set (a run of an older version, or other --toy_videos / --toy_test_videos) is replaced by
    the one the flags ask for; the one they ask for is kept as it is. (Rendered in small frames: the same videos.)"""
    def small(root, cfg):
        return make_toy_dataset(root, dataclasses.replace(cfg, min_frames=16, max_frames=16, frame_size=(64, 48)),
                                progress=False)
    monkeypatch.setattr(pipeline, "make_toy_dataset", small)
    argv = ["--work_dir", str(tmp_path), "--toy_videos", "8", "--stages", "data"]
    test_list = layout.split_path(tmp_path / "toy_data", "testlist01.txt")
    assert pipeline.main(argv + ["--toy_test_videos", "0"]) == 0
    assert len(read_video_list(test_list)) == 4
    assert pipeline.main(argv + ["--toy_test_videos", "2"]) == 0
    assert len(read_video_list(test_list)) == 6
    stamp = os.stat(test_list).st_mtime_ns
    assert pipeline.main(argv + ["--toy_test_videos", "2"]) == 0
    assert os.stat(test_list).st_mtime_ns == stamp


def test_two_stream_rows(tmp_path, toy_root):
    """--late_fusion and --fusion_type: a flow model beside the RGB one, the late fusions of their detections
    and the two-stream network initialised from both, one row each in the results table (on the shared small
    toy set, whose short videos keep the five rows' detection quick)."""
    argv = ["--work_dir", str(tmp_path), "--data_root", str(toy_root), "--width_mult", "0.0625", "--batch_size", "2",
            "--num_workers", "0", "--max_iter", "2", "--late_fusion", "boost,mean", "--fusion_type", "sum",
            "--stages", "data,train,detect,tubes"]
    assert pipeline.main(argv) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    names = ["RGB", "FastOF", "RGB+FastOF boost", "RGB+FastOF mean", "RGB+FastOF SUM"]
    assert list(summary["rows"]) == names and list(summary["models"]) == names
    assert summary["results_table"].splitlines()[1].split()[0] == "RGB" and len(summary["results_table"].splitlines()) == 6
    for name, key in zip(names, ["", "_fastOF", "_boost", "_mean", "_SUM"]):
        results = json.loads((tmp_path / f"tubes{key}" / "results.json").read_text())
        assert summary["rows"][name] == pytest.approx(summary_row(results, 3.0))
        fusion = name.split()[-1] if name.split()[-1] in ("boost", "union", "mean") else None
        assert (results.get("fusion") or {}).get("type") == fusion
    boost = json.loads((tmp_path / "tubes_boost" / "results.json").read_text())["fusion"]
    assert (boost["base_det_dir"], boost["fuse_det_dir"]) == (str(tmp_path / "detections"), str(tmp_path / "detections_fastOF"))
    # mean fusion: test.py --fuse_weights ran both models over the same windows; its base stream is the RGB row's
    for det in sorted((tmp_path / "detections").rglob("*.npz")):
        late = tmp_path / "detections_late" / "base" / det.relative_to(tmp_path / "detections")
        with np.load(det) as a, np.load(late) as b:
            assert all(np.array_equal(a[k], b[k]) for k in a.files)
    def first_conv(checkpoint, stream):
        return next(v for k, v in checkpoint["model"].items() if k.startswith(f"{stream}.vgg.0.") and v.dim() == 4)
    flow = torch.load(tmp_path / "train" / "fastOF_w0.0625" / "AMTNet_2.pth", weights_only=True)
    assert first_conv(flow, "core_base").shape[1] == 15  # 5 stacked flow frames, as the original's
    fused = torch.load(tmp_path / "train" / "rgb+fastOF_SUM_w0.0625" / "AMTNet_2.pth", weights_only=True)
    assert fused["model_config"]["fusion_type"] == "SUM" and first_conv(fused, "core_extra").shape[1] == 15
    log = (tmp_path / "train" / "rgb+fastOF_SUM_w0.0625" / "training.log").read_text()
    assert log.count("backbone: loaded") == 2  # initialised from the two one-stream models
