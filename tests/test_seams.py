"""Where a contributor adds things: a late fusion type is one ``LateFusion`` record in ``tubes.fusion.LATE_FUSIONS``
and its function, a protocol one ``Protocol`` record in ``tubes.protocols.PROTOCOLS``; the flags, the runner, test.py's
streams and the plots read them. Also the flags' one spelling per meaning, with the former ones as aliases."""
import dataclasses
import json

import numpy as np
import pytest
import torch

import build_tubes
import demo
import eval_video_ap
import test as test_script
from data.dataset import ActionDetection, DataConfig, count_windows
from engine.inference import late_fusion_streams
from tests.test_fusion_octave import FIXTURES, build, write_streams
from tubes.detections import frame_map_path
from tubes.fusion import LATE_FUSIONS, LateFusion, check_link, fusion_streams
from tubes.linking import filter_frame_padded
from tubes.protocols import PROTOCOLS
from tubes.runner import TubeConfig


def second_stream_only(bb, bs, tb, ts, fuse_iou, filter_cfg, fixed):
    """A per-frame fusion that keeps the second stream's detections as they are."""
    return tb, ts[:, 1:], filter_frame_padded(tb, ts[:, 1:], (filter_cfg,))[0]


@pytest.fixture()
def streams(tmp_path):
    """The Octave fixture's two streams (rgb/, flow/: other boxes and scores) as road_mat folders."""
    write_streams(np.load(FIXTURES / "fusion.npz"), tmp_path)
    return tmp_path


def one_stream(root, stream, out, *flags):
    return build_tubes.main(["--det_dir", str(root / stream), "--annot", str(FIXTURES / "fusion_finalAnnots.mat"),
                             "--video_list", str(root / "videos.txt"), "--out_dir", str(root / out), "--alphas", "3,5",
                             "--strict", *flags])


def video_maps(results, key="video_map", alpha=None):
    return [(r["iou"], r["mAP"]) for r in results[key] if alpha is None or r["alpha"] == alpha]


def test_a_new_late_fusion_is_one_record(streams, monkeypatch, capsys):
    parse = build_tubes.get_args_parser().parse_args
    required = ["--det_dir", "d", "--fuse_det_dir", "f", "--annot", "a.pkl", "--out_dir", "o"]
    with pytest.raises(SystemExit):
        parse(required + ["--late_fusion", "second"])
    monkeypatch.setitem(LATE_FUSIONS, "second", LateFusion("second", "top-only", True, second_stream_only))
    parse = build_tubes.get_args_parser().parse_args
    assert parse(required + ["--late_fusion", "second"]).late_fusion == "second"
    assert parse(required + ["--fusion", "TOP-ONLY"]).late_fusion == "top-only"  # the original's name, the old flag
    fused = build(streams, "--late_fusion", "top-only")
    assert "late fusion: second (top-only) of" in capsys.readouterr().out
    assert fused["fusion"]["type"] == "second" and fused["fusion"]["fuse_iou"] is None
    # the runner linked what the record's function gave: the flow stream alone, not the rgb one
    flow, rgb = one_stream(streams, "flow", "flow_out"), one_stream(streams, "rgb", "rgb_out")
    assert video_maps(fused) == video_maps(flow) != video_maps(rgb)
    with pytest.raises(ValueError, match="--link micro links one stream's micro-tubes; --late_fusion second fuses per "
                                         r"frame \(use --link frame, or --late_fusion mean\)"):
        check_link("top-only", "micro")


def test_a_prior_by_prior_fusion_is_a_test_py_stream(tmp_path, monkeypatch):
    monkeypatch.setitem(LATE_FUSIONS, "flow_scores", LateFusion("flow_scores", "flow", False, lambda b, t: t + 0 * b,
                                                                link_modes=("frame", "micro")))
    assert fusion_streams() == ("base", "fuse", "mean", "flow_scores")
    base = (torch.rand(1, 4, 2, 4), torch.tensor([[[0.9, 0.1]] * 4]))
    fuse = (torch.rand(1, 4, 2, 4), torch.tensor([[[0.3, 0.7]] * 4]))
    out = late_fusion_streams(base, fuse)
    assert list(out) == ["base", "fuse", "mean", "flow_scores"]
    assert out["flow_scores"][0] is base[0] and torch.equal(out["flow_scores"][1], fuse[1])
    assert torch.allclose(out["mean"][1], torch.tensor([[[0.6, 0.4]] * 4]))
    # test.py's DET_DIR/flow_scores (its summary names the fusion) links alone, micro-tubes too
    frame_map_path(tmp_path / "flow_scores").write_text(json.dumps({"fusion": "flow_scores"}))
    assert TubeConfig(tmp_path / "flow_scores", "npz", link="micro", fusion="flow").prefused


def test_a_new_protocol_is_one_record(streams, monkeypatch, capsys):
    common = ["--protocol", "road,again"]
    with pytest.raises(SystemExit):
        one_stream(streams, "rgb", "refused", *common)
    monkeypatch.setitem(PROTOCOLS, "again", dataclasses.replace(
        PROTOCOLS["road"], name="again", label="ROAD once more", video_key="video_map_again",
        frame_key="frame_map_again", file_prefix="again_"))
    res = one_stream(streams, "rgb", "out", *common)
    assert res["protocol"] == "road+again"
    assert res["video_map_again"] == [{**e, "protocol": "again"} for e in res["video_map"]]
    assert res["frame_map_again"]["mAP"] == res["frame_map_frameap"]["mAP"] and 0 < res["frame_map_again"]["mAP"] < 1
    assert "protocol again: ROAD once more" in capsys.readouterr().out
    evaluated = eval_video_ap.main(["--tubes", str(streams / "out" / "tubes_alpha3.npz"), "--annot",
                                    str(FIXTURES / "fusion_finalAnnots.mat"), "--protocol", "again",
                                    "--out_dir", str(streams / "eval")])
    assert video_maps(evaluated, "video_map_again") == video_maps(res, "video_map_again", alpha=3)
    assert (streams / "eval" / "pr_again_alpha3_iou0.5.png").is_file()


def test_one_spelling_per_meaning_with_the_former_as_alias():
    late = ["--weights", "w.pth", "--out", "o.mp4", "--video", "v.mp4"]
    for flag in ("--late_fusion", "--fusion"):
        assert demo.get_args_parser().parse_args(late + [flag, "cat"]).late_fusion == "cat"
    for flag in ("--eval_gaps", "--eval_gap"):
        assert test_script.get_args_parser().parse_args([flag, "1,3"]).eval_gaps == [1, 3]
        assert demo.get_args_parser().parse_args(late + [flag, "3"]).eval_gap == 3
    parse = demo.get_args_parser().parse_args
    assert parse(late + ["--realtime"]).realtime and not parse(late + ["--no-realtime"]).realtime


@pytest.fixture(scope="module")
def toy16(tmp_path_factory):
    """A toy set with three training videos per class (so 30% of them can be held out), small frames, no flow."""
    from data.toy import ToyConfig, make_toy_dataset
    root = tmp_path_factory.mktemp("toy16")
    make_toy_dataset(root, ToyConfig(num_videos=16, seed=5, min_frames=24, max_frames=40, flow=False,
                                     frame_size=(128, 96)), progress=False)
    return root


@pytest.mark.parametrize("split,kw", [("train", {}), ("train", {"seq_len": 3, "seq_gap": 1}),
                                      ("val", {"val_fraction": 0.3}), ("test", {}),
                                      ("test", {"full_test": True}), ("test", {"full_test": True, "eval_gap": 3})])
def test_windows_are_counted_without_a_dataset(toy16, split, kw):
    full_test = kw.get("full_test", False)
    cfg = DataConfig(dataset="toy", data_root=str(toy16), **{k: v for k, v in kw.items() if k != "full_test"})
    assert count_windows(cfg, split, full_test) == len(ActionDetection(cfg, split, full_test)) > 0
