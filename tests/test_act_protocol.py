"""``--protocol act`` equals MOC-Detector's ``src/ACT.py`` (videoAP, frameAP) on the fixtures that
tools/act/make_fixtures.py wrote by running ACT.py itself; and hand-worked differences from ``road``."""
import json
import logging
import pickle

import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tubes import act
from tubes.frame_map import FrameAP
from tubes.results_table import table
from tubes.runner import evaluate, load_annotations, video_frame_aps
from tubes.trimming import ActionTube
from tubes.tube_files import load_act_tubes
from tubes.video_map import VIDEO_IOU_THRESHOLDS, gt_from_annotation

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "act"


def load_case(name):
    d = FIXTURES / name
    with open(d / "gt.pkl", "rb") as f:
        content = pickle.load(f)
    videos = content["test_videos"][0]
    annotations = load_annotations(d / "gt.pkl")
    with open(d / "frame_detections.pkl", "rb") as f:
        alldets = pickle.load(f)
    # ACT's alldets rows -> this project's frame-AP rows [frame 0-based, class, score, link boxes (+1)]
    rows = {v: np.column_stack([alldets[alldets[:, 0] == i][:, 1] - 1, alldets[alldets[:, 0] == i][:, 2:4],
                                alldets[alldets[:, 0] == i][:, 4:8] + np.float32(1)]).astype(np.float32)
            for i, v in enumerate(videos)}
    ref = json.loads((d / "reference.json").read_text())
    return content["labels"], videos, annotations, load_act_tubes(d / "tubes", videos), rows, ref


def act_frame_ap(annotations, videos, rows, num_classes, names):
    acc = FrameAP.merge([video_frame_aps(gt_from_annotation(annotations[v]), rows[v], num_classes, ("act",))["act"]
                         for v in videos])
    return act.frame_ap(acc, names)


def test_video_ap_equals_act_py():
    labels, videos, annotations, tubes, _, ref = load_case("basic")
    got = act.video_ap([annotations[v] for v in videos], tubes, len(labels), VIDEO_IOU_THRESHOLDS, labels)
    assert [r.iou for r in got] == [r["iou"] for r in ref["video_ap"]]
    for r, e in zip(got, ref["video_ap"]):
        np.testing.assert_allclose(r.ap, e["ap"], rtol=0, atol=1e-6)  # pr_to_ap's fractions
        assert abs(r.mAP - e["mAP"] / 100) < 1e-6  # ACT.py's mAP is in percent
    assert len({round(r.mAP, 6) for r in got}) >= 5  # the thresholds give different numbers


def test_frame_ap_equals_act_py():
    labels, videos, annotations, _, rows, ref = load_case("basic")
    fmap, ap = act_frame_ap(annotations, videos, rows, len(labels), labels)
    np.testing.assert_allclose(ap, ref["frame_ap"]["ap"], rtol=0, atol=1e-6)
    assert abs(fmap - ref["frame_ap"]["mAP"] / 100) < 1e-6 and 0 < fmap < 1


def test_class_with_detections_but_no_gt(caplog):
    """ACT.py divides by zero (ZeroDivisionError); here AP 0 with a warning naming the class."""
    labels, videos, annotations, tubes, rows, ref = load_case("no_gt")
    assert all(r["error"] == "ZeroDivisionError" for r in ref["video_ap"]) and ref["frame_ap"]["error"] == "ZeroDivisionError"
    assert any(t.class_id == 2 for v in videos for t in tubes[v])
    with caplog.at_level(logging.WARNING):
        got = act.video_ap([annotations[v] for v in videos], tubes, len(labels), (0.5,), labels)[0]
        _, fap = act_frame_ap(annotations, videos, rows, len(labels), labels)
    assert got.ap[2] == 0 and fap[2] == 0 and got.ap[0] > 0 and fap[0] > 0
    assert "Wave" in caplog.text and "ZeroDivisionError" in caplog.text


def _tube(c, score, start, boxes):
    return ActionTube(c, score, start, np.asarray(boxes, np.float64) + 1)  # link boxes: 0-based + 1


def test_one_common_frame_and_threshold_rules():
    """Hand-worked: GT frames 1..10 (0-based 0..9) box [0 0 9 9]; a tube on frames 10..19 (0-based
    9..18) with the same box shares one frame: ACT's ST-IoU is 1 * 1/19, ROAD's 0."""
    from data.annotations import Tube, VideoAnnotation
    ann = VideoAnnotation("A/v1", 30, 0, [Tube(0, 0, np.tile([0, 0, 9, 9], (10, 1)).astype(np.float32))])
    gt_rows = act.tube_rows(0, ann.tubes[0].boxes)
    touching = act.tube_rows(9, np.tile([0, 0, 9, 9], (10, 1)))
    assert act.st_iou(gt_rows, touching) == pytest.approx(1 / 19)
    # a half-width box on all 10 frames: IoU exactly 50/100 = 0.5 with +1 widths ([0 0 4 9]: 5 x 10 pixels)
    half = _tube(0, 0.9, 0, np.tile([0, 0, 4, 9], (10, 1)))
    res, _ = evaluate({"A/v1": ann}, ["A/v1"], {3: {"A/v1": [half]}}, 1, ["A"], protocols=("road", "act"))
    act_at = {r["iou"]: r["mAP"] for r in res["video_map_act"]}
    assert act_at[0.5] == 1.0 and act_at[0.55] == 0.0  # >= 0.5 matches: AP (0 + 1)/2 * 1 + ... = 1
    road_at = {r["iou"]: r["mAP"] for r in res["video_map"]}
    assert road_at[0.2] == 1.0 and road_at[0.5] == 0.0  # ROAD matches at > 0.5 only
    printed = table(res)
    assert "protocol road" in printed and "protocol act" in printed
    assert res["protocol"] == "road+act" and all(r["protocol"] == "act" for r in res["video_map_act"])


def test_trapezoid_ap_and_tube_nms():
    """Hand-worked: ranks TP, FP, TP of 2 GT -> pr (1,0), (1,.5), (.5,.5), (2/3,1):
    AP = .5*(1+1)/2 + 0 + .5*(.5+2/3)/2 = 0.5 + 0.291666..; VOC would give 0.5 + 0.5*2/3."""
    ap, recall, precision = act.pr_to_ap(np.array([True, False, True]), 2)
    assert ap == pytest.approx(0.5 + 0.5 * (0.5 + 2 / 3) / 2, abs=1e-7)
    np.testing.assert_allclose(precision, [1, 0.5, 2 / 3], rtol=1e-7)
    # NMS at 0.3: the second tube (IoU 0.5 with the best) goes, the third (no overlap) stays
    a = act.tube_rows(0, np.tile([0, 0, 9, 9], (5, 1)))
    b = act.tube_rows(0, np.tile([0, 0, 4, 9], (5, 1)))
    c = act.tube_rows(10, np.tile([0, 0, 9, 9], (5, 1)))
    assert act.tube_nms([b, a, c], np.array([0.5, 0.9, 0.1])).tolist() == [1, 2]


def octave_case_files(root, case="small"):
    """An octave fixture case's detections as road_mat files under ``root/dets`` and its video list: the
    loaded fixture, its video names and build_tubes.py's input flags for them."""
    from tests.test_tubes_octave import FIXTURES as OCTAVE, _frames
    from tubes.detections import write_road_mat_frame
    det = np.load(OCTAVE / f"{case}.npz")
    names = [str(n) for n in det["names"]]
    for v, name in enumerate(names):
        for f, (loc, scores) in enumerate(_frames(det, v), 1):
            write_road_mat_frame(root / "dets" / name / f"{f:05d}.mat", loc, scores)
    (root / "videos.txt").write_text("\n".join(names) + "\n")
    return det, names, ["--det_dir", str(root / "dets"), "--annot", str(OCTAVE / f"{case}_finalAnnots.mat"),
                        "--video_list", str(root / "videos.txt")]


def test_build_tubes_with_both_protocols(tmp_path, capsys):
    """build_tubes.py --protocol road,act: road's numbers as without the flag, act's equal tubes/act.py on the
    written tubes and on the linking's frame-AP rows (the octave 'small' fixture's detections)."""
    import build_tubes
    from data.matlab_annots import load_final_annots
    from tests.test_tubes_octave import FIXTURES as OCTAVE, _frames
    from tubes.linking import FRAME_AP_FILTER, link_frames
    from tubes.tube_files import load_tubes
    det, names, common = octave_case_files(tmp_path)
    annot = OCTAVE / "small_finalAnnots.mat"
    common += ["--alphas", "3"]
    road = build_tubes.main(common + ["--out_dir", str(tmp_path / "road")])
    both = build_tubes.main(common + ["--out_dir", str(tmp_path / "both"), "--protocol", "road,act"])
    assert road["protocol"] == "road" and "video_map_act" not in road and both["protocol"] == "road+act"
    assert both["video_map"] == road["video_map"] and both["frame_map_frameap"] == road["frame_map_frameap"]
    annotations = load_final_annots(annot)
    classes = [str(c) for c in det["classes"]]
    _, tubes = load_tubes(tmp_path / "both" / "tubes_alpha3.npz")
    want = act.video_ap([annotations[n] for n in names], tubes, len(classes), VIDEO_IOU_THRESHOLDS)
    assert [e["mAP"] for e in both["video_map_act"]] == [r.mAP for r in want] and want[0].mAP > 0
    rows = {n: link_frames(_frames(det, v), len(classes), extra_filter=FRAME_AP_FILTER)[1] for v, n in enumerate(names)}
    fmap, _ = act_frame_ap(annotations, names, rows, len(classes), classes)
    assert both["frame_map_act"]["mAP"] == fmap and both["frame_map_act"]["protocol"] == "act"
    assert "ACT.py frameAP frame-mAP@0.5" in capsys.readouterr().out


def test_st_iou_matrix_equals_pairwise_iou3dt():
    """The vectorised matrix against ``st_iou`` (``iou3dt``, pair by pair) on random tubes, one-frame
    overlaps and disjoint pairs included."""
    rng = np.random.default_rng(0)

    def tube(start, n):
        xy = rng.uniform(0, 100, (n, 2))
        return act.tube_rows(start, np.concatenate([xy, xy + rng.uniform(5, 60, (n, 2))], 1))
    a = [tube(int(s), int(n)) for s, n in zip(rng.integers(0, 30, 12), rng.integers(1, 25, 12))]
    b = [tube(int(s), int(n)) for s, n in zip(rng.integers(0, 30, 9), rng.integers(1, 25, 9))] + [tube(40, 2)]
    a.append(act.tube_rows(10, np.tile([0, 0, 9, 9], (5, 1))))  # frames 11-15 and 15-17: one shared frame
    b.insert(-1, act.tube_rows(14, np.tile([0, 0, 9, 9], (3, 1))))
    want = np.array([[act.st_iou(x, y) for y in b] for x in a])
    np.testing.assert_allclose(act.st_iou_matrix(a, b), want, rtol=0, atol=1e-12)
    assert want[-1, -2] == pytest.approx(1 / 7)  # IoU 1 on 1 of 7 frames
    assert (want == 0).any() and (want > 0.05).any()
