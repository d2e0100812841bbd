"""The port against the original Matlab run under GNU Octave (fixtures from tools/octave/make_fixtures.py)."""
import json
from pathlib import Path

import numpy as np
import pytest

from data.matlab_annots import load_final_annots
from tests.reference import assert_paths_equal_matlab, assert_tubes_equal_matlab, assert_video_map_equal_matlab, \
    link_and_trim
from tubes.detections import read_road_mat_video, write_road_mat_frame
from tubes.frame_map import frame_map_of
from tubes.linking import FRAME_AP_FILTER, link_frames
from tubes.video_map import VideoGT, gt_from_annotation

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "octave"
CASES = ["small", "clutter", "mixed", "single", "multiclass"]  # single: float32 detections, computed in single


def _frames(det, v):
    ends = np.cumsum(det[f"counts_{v}"])
    starts = ends - det[f"counts_{v}"]
    return [(det[f"loc_{v}"][a:b], det[f"scores_{v}"][a:b]) for a, b in zip(starts, ends)]


@pytest.fixture(scope="module", params=CASES)
def case(request, tmp_path_factory):
    det = np.load(FIXTURES / f"{request.param}.npz")
    expected = json.loads((FIXTURES / f"{request.param}.json").read_text())
    names = [str(n) for n in det["names"]]
    num_classes = len(det["classes"])
    alphas = [float(a) for a in det["alphas"]]
    root = tmp_path_factory.mktemp(request.param)
    built = {}
    for v, name in enumerate(names):
        frames = _frames(det, v)
        if v == 0:  # one video goes through the road_mat files, as the Matlab read it
            for f, (loc, scores) in enumerate(frames, 1):
                write_road_mat_frame(root / name / f"{f:05d}.mat", loc, scores)
            frames = read_road_mat_video(root / name)
        built[name] = link_and_trim(frames, num_classes, alphas, iou_thresh=float(det["iou_thresh"]))
    gt = load_final_annots(FIXTURES / f"{request.param}_finalAnnots.mat")
    return names, num_classes, alphas, built, expected, [gt_from_annotation(gt[n]) for n in names]


def test_paths_equal_matlab(case):
    names, num_classes, _, built, expected, _ = case
    assert assert_paths_equal_matlab({n: built[n][0] for n in names}, expected, num_classes) > 0


def test_tubes_equal_matlab(case):
    names, _, alphas, built, expected, _ = case
    assert assert_tubes_equal_matlab({n: built[n][1] for n in names}, expected, alphas) > 0


def test_video_map_equal_matlab(case):
    names, num_classes, alphas, built, expected, gts = case
    assert_video_map_equal_matlab(gts, {n: built[n][1] for n in names}, expected, num_classes, alphas)


@pytest.mark.parametrize("name", CASES)
def test_frame_map_equal_matlab(name):
    """frameAp.m (its evaluation untouched, set-up pointed at the fixture) against ours: the
    filtering pass that build_tubes.py runs beside the linking, then the frame-mAP with
    frameAp.m's matching (any_class). The default matching (GT of the detection's class only)
    is the same where no frame has GT of two classes; on 'multiclass', where frames do, it
    equals frameAp.m run one class at a time (only that class's detections and GT)."""
    det = np.load(FIXTURES / f"{name}.npz")
    expected = json.loads((FIXTURES / f"{name}.json").read_text())["frame_map"]
    names = [str(n) for n in det["names"]]
    num_classes = len(det["classes"])
    annots = load_final_annots(FIXTURES / f"{name}_finalAnnots.mat")
    frame_dets = {n: link_frames(_frames(det, v), num_classes, iou_thresh=float(det["iou_thresh"]),
                                 extra_filter=FRAME_AP_FILTER)[1] for v, n in enumerate(names)}
    gts = [gt_from_annotation(annots[n]) for n in names]
    mean_ap, aps, _ = frame_map_of(gts, frame_dets, num_classes, any_class=True)
    assert abs(mean_ap - expected["mAP"]) < 1e-12
    np.testing.assert_allclose(aps, expected["ap"], rtol=0, atol=1e-12)
    assert 0 < mean_ap < 1  # the fixtures have misses and false positives
    _, own_class_aps, _ = frame_map_of(gts, frame_dets, num_classes)
    if name != "multiclass":
        np.testing.assert_array_equal(own_class_aps, aps)
        return
    assert aps.max() > 1 and np.all(own_class_aps <= 1)  # frameAp.m: class 0 takes class 1's boxes
    for c in range(num_classes):
        only_c = [VideoGT(g.name, g.class_id, g.num_frames, [t for t in g.tubes if t.class_id == c]) for g in gts]
        dets_c = {n: rows[rows[:, 1] == c] for n, rows in frame_dets.items()}
        assert frame_map_of(only_c, dets_c, num_classes, any_class=True)[1][c] == own_class_aps[c]


def test_build_tubes_cli_equals_matlab(tmp_path):
    """build_tubes.py end to end on the 'multiclass' fixture's road_mat files, with frameAp.m's matching."""
    import build_tubes
    det = np.load(FIXTURES / "multiclass.npz")
    expected = json.loads((FIXTURES / "multiclass.json").read_text())
    names = [str(n) for n in det["names"]]
    for v, name in enumerate(names):
        for f, (loc, scores) in enumerate(_frames(det, v), 1):
            write_road_mat_frame(tmp_path / "dets" / name / f"{f:05d}.mat", loc, scores)
    (tmp_path / "videos.txt").write_text("\n".join(names) + "\n")
    res = build_tubes.main(["--det_dir", str(tmp_path / "dets"), "--annot", str(FIXTURES / "multiclass_finalAnnots.mat"),
                            "--video_list", str(tmp_path / "videos.txt"), "--out_dir", str(tmp_path / "out"),
                            "--alphas", ",".join(f"{a:g}" for a in det["alphas"]), "--frame_ap_any_class"])
    want = np.asarray(expected["results"]["rows"])
    got = np.array([[r["alpha"], r["iou"], r["mAP"], r["mean_iou"], r["accuracy"]] for r in res["video_map"]])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert abs(res["frame_map_frameap"]["mAP"] - expected["frame_map"]["mAP"]) < 1e-12
    np.testing.assert_allclose(list(res["frame_map_frameap"]["ap"].values()), expected["frame_map"]["ap"], rtol=0, atol=1e-12)
