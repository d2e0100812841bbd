"""Error analysis (tubes/errors.py, analyze.py): hand-made runs where each error type occurs once, with the
oracles' mAPs worked out here; the counts on random runs and on build_tubes.py's tubes; the script end to end."""
import json
import pickle

import numpy as np
import pytest

from data.annotations import Tube, VideoAnnotation, to_pyannot_entry
from tubes import act
from tubes.errors import ERROR_TYPES, FIXES, analyze, class_aps, summarize
from tubes.protocols import PROTOCOLS
from tubes.trimming import ActionTube
from tubes.video_map import gt_from_annotation, video_ap

GT_BOX = (9, 19, 48, 78)  # 0-based x1 y1 x2 y2: 40 x 60 pixels
NARROW = (9, 19, 18, 78)  # the left 10 columns: IoU 10/40 = 0.25 with GT_BOX
NARROW_RIGHT = (39, 19, 48, 78)  # the right 10 columns: IoU 0.25 with GT_BOX, 0 with NARROW
SIXTEEN = (9, 19, 24, 78)  # the left 16 columns: IoU 0.4
FAR = (200, 150, 239, 209)  # no overlap
A, B = 0, 1


def gt(c, first=1, last=20):
    """A GT tube on 1-based frames first..last with GT_BOX."""
    return Tube(c, first - 1, np.tile(np.array(GT_BOX, np.float32), (last - first + 1, 1)))


def det(protocol, c, score, first=1, last=20, box=GT_BOX):
    """A tube on 1-based frames first..last whose boxes the evaluator of ``protocol`` compares as ``box``, in the
    GT's 0-based pixels: get_PR_curve.m's convert2eval.m (+1, widths) meets 1-based x y w h, so the link boxes equal
    the 0-based GT box; ACT.py reads link boxes - 1."""
    shift = 0 if protocol == "road" else 1
    return ActionTube(c, score, first - 1, np.tile(np.asarray(box, np.float64) + shift, (last - first + 1, 1)))


def videos():
    """Three videos of 40 frames: A/v1 and A/v2 with a class-A GT tube on frames 1-20, B/v3 with a class-B one."""
    return [VideoAnnotation("A/v1", 40, A, [gt(A)]), VideoAnnotation("A/v2", 40, A, [gt(A)]),
            VideoAnnotation("B/v3", 40, B, [gt(B)])]


def case(name, p):
    """The detections of a run with exactly one error of type ``name`` (or one missed GT tube). Besides it, B/v3's
    GT tube is found (score 0.5) and class A's GT tube of A/v1 too (0.5), but in the duplicate case."""
    perfect_v1 = [det(p, A, 0.5)]
    dets = {"B/v3": [det(p, B, 0.5)], "A/v1": perfect_v1}
    if name == "duplicate":
        # frames 1-12 and 9-20: temporal IoU 12/20 = 0.6 with the GT tube each, 4/20 = 0.2 with each other (kept by
        # ACT's tube NMS at 0.3); the first takes A/v1's GT tube, the second is its duplicate
        dets["A/v1"] = [det(p, A, 0.9, 1, 12), det(p, A, 0.8, 9, 20)]
        dets["A/v2"] = [det(p, A, 0.5)]
    elif name == "classification":
        dets["A/v2"] = [det(p, B, 0.9)]  # A/v2's GT tube, labelled B
    elif name == "spatial":
        dets["A/v2"] = [det(p, A, 0.9, box=NARROW)]  # temporal IoU 1, spatial 0.25
    elif name == "temporal":
        dets["A/v2"] = [det(p, A, 0.9, 11, 40)]  # 10 common frames of 40: temporal IoU 0.25, spatial 1
    elif name == "both":
        dets["A/v2"] = [det(p, A, 0.9, 11, 30, SIXTEEN)]  # temporal IoU 10/30, spatial 0.4: ST-IoU 0.133 >= 0.1
    elif name == "background":
        dets["A/v2"] = [det(p, A, 0.9, box=FAR), det(p, A, 0.6)]  # A/v2's GT tube found, below a tube far from it
    # "missed": A/v2 has no tubes
    return dets


# mAP (mean of A's and B's AP) of each case: as matched, with its own type fixed, with all false positives removed,
# with all misses removed; every other fix leaves it as matched. Hand-worked, class A's 2 GT tubes:
# ROAD (VOC all-point AP over the precision envelope):
#   duplicate: A ranks TP, FP, TP: recall .5 at precision 1, recall 1 at 2/3 -> .5 + .5 * 2/3 = 5/6; B 1 -> 11/12;
#     removing the duplicate (or every FP) gives A 1 -> 1; nothing is missed.
#   classification: A: TP of 2 -> 1/2; B: FP (the relabelled tube, .9), TP -> 1/2: 1/2. Fixed: the tube becomes
#     A's TP at .9 -> A 1, B 1: 1. FPs removed: A 1/2, B 1: 3/4. Misses removed: A 1 (1 GT tube), B 1/2: 3/4.
#   spatial, temporal, both: A: FP, TP -> recall .5 at precision 1/2 -> 1/4; B 1 -> 5/8. Fixed: TP, TP -> 1.
#     FPs removed: A 1/2 -> 3/4. Misses removed: A: FP, TP of 1 -> 1/2 -> 3/4.
#   background: A: FP, TP (.6), TP (.5) -> envelope 2/3 at recall .5 and 1 -> 2/3; B 1 -> 5/6; removed: 1.
#   missed: A: TP of 2 -> 1/2 -> 3/4; the missed GT tube (or every miss) not counted: A 1 -> 1.
# ACT (trapezoids from precision 1 at recall 0):
#   duplicate: A: .5 * (1 + 1) / 2 + 0 + .5 * (1/2 + 2/3) / 2 = 19/24 -> 43/48; fixed 1.
#   classification: A: .5 * (1 + 1) / 2 = 1/2; B: FP at (0, 0), TP at (1/2, 1): 1 * (0 + 1/2) / 2 = 1/4 -> 3/8.
#     Fixed 1; FPs removed: A 1/2, B 1: 3/4; misses removed: A 1, B 1/4: 5/8.
#   spatial, temporal, both: A: .5 * (0 + 1/2) / 2 = 1/8 -> 9/16; fixed 1; FPs removed: A 1/2 -> 3/4;
#     misses removed: A: 1 * (0 + 1/2) / 2 = 1/4 -> 5/8.
#   background: A: .5 * (0 + 1/2) / 2 + .5 * (1/2 + 2/3) / 2 = 5/12 -> 17/24; removed 1.
#   missed: A 1/2 -> 3/4; fixed 1.
EXPECTED = {
    "road": {"duplicate": (11 / 12, 1, 1, 11 / 12), "classification": (1 / 2, 1, 3 / 4, 3 / 4),
             "spatial": (5 / 8, 1, 3 / 4, 3 / 4), "temporal": (5 / 8, 1, 3 / 4, 3 / 4), "both": (5 / 8, 1, 3 / 4, 3 / 4),
             "background": (5 / 6, 1, 1, 5 / 6), "missed": (3 / 4, 1, 3 / 4, 1)},
    "act": {"duplicate": (43 / 48, 1, 1, 43 / 48), "classification": (3 / 8, 1, 3 / 4, 5 / 8),
            "spatial": (9 / 16, 1, 3 / 4, 5 / 8), "temporal": (9 / 16, 1, 3 / 4, 5 / 8), "both": (9 / 16, 1, 3 / 4, 5 / 8),
            "background": (17 / 24, 1, 1, 17 / 24), "missed": (3 / 4, 1, 3 / 4, 1)},
}


def evaluator_map(protocol, annotations, dets, num_classes, iou=0.5):
    if protocol == "road":
        return video_ap([gt_from_annotation(a) for a in annotations], dets, num_classes, (iou,))[0].mAP
    return act.video_ap(annotations, dets, num_classes, (iou,))[0].mAP


@pytest.mark.parametrize("protocol", ["road", "act"])
@pytest.mark.parametrize("name", list(EXPECTED["road"]))
def test_each_error_alone(protocol, name):
    annotations, dets = videos(), case(name, protocol)
    a = analyze(annotations, dets, 2, protocol)
    counts = a.counts()
    expected = {t: int(t == name) for t in ERROR_TYPES}
    assert {t: counts[t] for t in ERROR_TYPES} == expected
    assert counts["false_positives"] == int(name != "missed")
    assert counts["missed"] == int(name == "missed")
    # the GT tube A/v2 is not found where its tube is wrong: the error targets it, so it is not "missed"
    assert counts["false_negatives"] == int(name in ("missed", "classification", "spatial", "temporal", "both"))
    base, fixed, no_fp, no_fn = EXPECTED[protocol][name]
    assert class_aps(a).mean() == pytest.approx(base)
    assert class_aps(a).mean() == evaluator_map(protocol, annotations, dets, 2)
    for fix in FIXES:
        want = {name: fixed, "false_positives": no_fp, "false_negatives": no_fn}.get(fix, base)
        assert class_aps(a, fix).mean() == pytest.approx(want), fix


@pytest.mark.parametrize("protocol", ["road", "act"])
def test_what_each_type_measures(protocol):
    """The target and the two IoU factors that decide the spatial, temporal and both types."""
    for name, t_iou, s_iou in (("spatial", 1, 0.25), ("temporal", 0.25, 1), ("both", 1 / 3, 0.4)):
        a = analyze(videos(), case(name, protocol), 2, protocol)
        wrong = np.flatnonzero(a.error >= 0)
        assert len(wrong) == 1 and a.target[wrong[0]] == 1  # A/v2's GT tube
        assert a.t_iou[wrong[0]] == pytest.approx(t_iou) and a.s_iou[wrong[0]] == pytest.approx(s_iou, abs=1e-12)
    a = analyze(videos(), case("classification", protocol), 2, protocol)
    assert a.target[a.error == 1].tolist() == [1] and a.gt_class[1] == A
    # a class-B GT tube 24 columns wide overlaps the narrow tube more (10/24) than A's GT tube (0.25), yet fails:
    # the tube is a spatial error of its own class's GT tube
    wide = Tube(B, 0, np.tile(np.array([9, 19, 32, 78], np.float32), (20, 1)))
    a = analyze([VideoAnnotation("A/v1", 40, A, [wide, gt(A)])], {"A/v1": [det(protocol, A, 0.9, box=NARROW)]}, 2, protocol)
    assert a.error.tolist() == [ERROR_TYPES.index("spatial")] and a.target.tolist() == [1]
    assert a.s_iou[0] == pytest.approx(0.25, abs=1e-12)


@pytest.mark.parametrize("protocol", ["road", "act"])
def test_one_fix_per_ground_truth_tube(protocol):
    """TIDE's BestGTMatch: of two spatial errors on A/v2's free GT tube, the better becomes its true positive and
    the other goes; a spatial error on A/v1's GT tube, already found, goes too.
    ROAD: A ranks FP .9, FP .8, FP .7, TP .5: recall .5 at precision 1/4 -> 1/8, B 1 -> 9/16; fixed: TP .9, TP .5 -> 1.
    ACT: A 1/2 * (0 + 1/4) / 2 = 1/16 -> 17/32; fixed 1. Keeping a removed tube would give A < 1."""
    dets = {"A/v1": [det(protocol, A, 0.5), det(protocol, A, 0.7, box=NARROW)],
            "A/v2": [det(protocol, A, 0.9, box=NARROW), det(protocol, A, 0.8, box=NARROW_RIGHT)],
            "B/v3": [det(protocol, B, 0.5)]}
    a = analyze(videos(), dets, 2, protocol)
    assert a.counts()["spatial"] == 3 and a.counts()["false_positives"] == 3
    assert class_aps(a).mean() == pytest.approx({"road": 9 / 16, "act": 17 / 32}[protocol])
    assert class_aps(a, "spatial").mean() == pytest.approx(1.0)


@pytest.mark.parametrize("protocol", ["road", "act"])
def test_sensitivity_bins(protocol):
    """Class A's GT tubes of 10, 20 and 30 frames in three videos (terciles 16.7 and 23.3: one per bin); the first
    and the last found (.6, .5), the second missed, and a 30-frame tube far from the last one's GT tube at .9.
    By length: bin 1 holds the 10-frame GT tube and its TP -> 1; bin 2 the missed one -> 0; bin 3 the 30-frame GT
    tube, its TP and the far tube (30 frames) ranked first -> ROAD 1/2, ACT 1 * (0 + 1/2) / 2 = 1/4.
    One actor per video and one box size: all in the first bin, the whole run's mAP:
    ROAD FP, TP, TP of 3 -> envelope 2/3 at recall 1/3 and 2/3 -> 4/9; ACT 1/3 * (0 + 1/2) / 2 + 1/3 * (1/2 + 2/3) / 2 = 5/18."""
    annotations = [VideoAnnotation(f"A/v{n}", 40, A, [gt(A, 1, n * 10)]) for n in (1, 2, 3)]
    dets = {"A/v1": [det(protocol, A, 0.6, 1, 10)], "A/v3": [det(protocol, A, 0.5, 1, 30), det(protocol, A, 0.9, 1, 30, FAR)]}
    a = analyze(annotations, dets, 1, protocol)
    s = summarize(a, ["A"])["sensitivity"]
    whole = {"road": 4 / 9, "act": 5 / 18}[protocol]
    assert [b["mAP"] for b in s["length"]["bins"]] == pytest.approx([1, 0, {"road": 1 / 2, "act": 1 / 4}[protocol]])
    assert [b["gt_tubes"] for b in s["length"]["bins"]] == [1, 1, 1]
    assert [b["false_positives"] for b in s["length"]["bins"]] == [0, 0, 1]
    for name in ("actors", "box_size"):
        assert s[name]["bins"][0]["mAP"] == pytest.approx(whole) and s[name]["bins"][0]["gt_tubes"] == 3
        assert [b["mAP"] for b in s[name]["bins"][1:]] == [None, None]
    assert class_aps(a).mean() == pytest.approx(whole)


def random_run(seed, num_videos=25, num_classes=4):
    """Videos with 0-3 GT tubes of random classes; tubes near each (jittered in time and space, some relabelled)
    and a few anywhere, some scores tied."""
    rng = np.random.default_rng(seed)
    annotations, dets = [], {}
    for v in range(num_videos):
        tubes = []
        for _ in range(rng.integers(0, 4)):
            s, xy = int(rng.integers(0, 40)), rng.uniform(0, 200, 2)
            boxes = np.tile(np.r_[xy, xy + rng.uniform(20, 80, 2)], (int(rng.integers(2, 60 - s)), 1))
            tubes.append(Tube(int(rng.integers(0, num_classes)), s, np.round(boxes + rng.normal(0, 3, boxes.shape)).astype(np.float32)))
        annotations.append(VideoAnnotation(f"C/v{v}", 60, tubes[0].class_id if tubes else 0, tubes))
        found = []
        for g in tubes:
            for _ in range(rng.integers(0, 4)):
                s = max(0, g.start + int(rng.integers(-5, 6)))
                n = max(2, min(60 - s, len(g.boxes) + int(rng.integers(-6, 6))))
                c = g.class_id if rng.random() < 0.7 else int(rng.integers(0, num_classes))
                boxes = np.tile(g.boxes[0], (n, 1)) + 1 + rng.normal(0, rng.uniform(0, 15), (n, 4))
                found.append(ActionTube(c, float(np.round(rng.random(), 1)), s, boxes))
        for _ in range(rng.integers(0, 3)):
            s, xy = int(rng.integers(0, 40)), rng.uniform(0, 200, 2)
            found.append(ActionTube(int(rng.integers(0, num_classes)), float(rng.random()), s,
                                    np.tile(np.r_[xy, xy + 40], (int(rng.integers(2, 60 - s)), 1))))
        dets[annotations[-1].name] = found
    return annotations, dets, num_classes


def check_counts(a, summary):
    """The types sum to the false positives, the true positives and false negatives to the GT tubes."""
    c = summary["counts"]
    assert sum(c[t] for t in ERROR_TYPES) == c["false_positives"] == c["tubes"] - c["true_positives"]
    assert c["true_positives"] + c["false_negatives"] == c["gt_tubes"] == len(a.gt_class)
    assert c["missed"] <= c["false_negatives"]
    assert sum(v["false_positives"] for v in summary["videos"].values()) == c["false_positives"]
    assert sum(v["missed"] for v in summary["per_class"].values()) == c["missed"]
    assert all(g >= -1e-12 for g in summary["gain"].values())  # no oracle lowers the mAP


@pytest.mark.parametrize("protocol", ["road", "act"])
def test_random_runs(protocol):
    rules = PROTOCOLS[protocol]
    for seed in range(4):
        annotations, dets, num_classes = random_run(seed)
        a = analyze(annotations, dets, num_classes, protocol)
        summary = summarize(a, [f"c{c}" for c in range(num_classes)])
        assert summary["mAP"] == evaluator_map(protocol, annotations, dets, num_classes)  # exactly the evaluator's
        check_counts(a, summary)
        assert summary["counts"]["false_positives"] > 10 and summary["counts"]["true_positives"] > 3
        st = a.t_iou * a.s_iou
        for k, name in ((2, "spatial"), (3, "temporal"), (4, "both")):
            mine = a.error == k
            assert not rules.passes(st[mine], 0.5).any() and (st[mine] >= 0.1).all(), name
            # spatial: the temporal factor passes (the spatial one may too: their product fails); temporal: only the
            # spatial factor passes; both: neither
            assert (rules.passes(a.t_iou[mine], 0.5) == (k == 2)).all(), name
            assert k == 2 or (rules.passes(a.s_iou[mine], 0.5) == (k == 3)).all(), name
        # each oracle's mAP rises to the fix of all false positives or all misses at most by its kind
        assert summary["fixed_mAP"]["missed"] <= summary["fixed_mAP"]["false_negatives"] + 1e-12
        for fix in ("duplicate", "background"):
            assert summary["fixed_mAP"][fix] <= summary["fixed_mAP"]["false_positives"] + 1e-12
        # at a lower threshold, more matches
        assert analyze(annotations, dets, num_classes, protocol, 0.2).counts()["true_positives"] >= summary["counts"]["true_positives"]


def write_pyannot(path, annotations):
    with open(path, "wb") as f:
        pickle.dump({a.name: to_pyannot_entry(a) for a in annotations}, f)


def test_analyze_script_end_to_end(tmp_path, capsys):
    """analyze.py on a tube file and a pyannot.pkl (the classification case), both protocols: errors.json holds the
    package's summaries, the plots are written, the table printed; ACT tube pickles give the same analysis."""
    import analyze as script
    from tubes.tube_files import save_act_tubes, save_tubes
    annotations = videos()
    write_pyannot(tmp_path / "pyannot.pkl", annotations)
    dets = case("classification", "road")
    save_tubes(tmp_path / "tubes.npz", [a.name for a in annotations], {v: {3.0: t} for v, t in dets.items()}, 3.0)
    out = script.main(["--tubes", str(tmp_path / "tubes.npz"), "--annot", str(tmp_path / "pyannot.pkl"),
                       "--protocol", "road,act", "--out_dir", str(tmp_path / "out")])
    written = json.loads((tmp_path / "out" / "errors.json").read_text())
    assert written == json.loads(json.dumps(out)) and written["protocol"] == "road+act"
    road = written["road"]
    assert road["mAP"] == pytest.approx(1 / 2) and road["fixed_mAP"]["classification"] == pytest.approx(1)
    assert road["counts"]["classification"] == 1 and road["per_class"]["B"]["classification"] == 1
    assert road["videos"]["A/v2"]["classification"] == 1 and road["videos"]["A/v2"]["false_negatives"] == 1
    assert written["act"]["match"] == ">=" and written["act"]["counts"]["classification"] == 1
    for prefix in ("errors_", "errors_act_"):
        for plot in ("summary", "per_class", "sensitivity"):
            assert (tmp_path / "out" / f"{prefix}{plot}.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "protocol road, ST-IoU > 0.5: video-mAP 50.00" in printed and "protocol act" in printed
    assert [line.split()[:2] for line in printed.splitlines() if line.startswith("classification")] == [["classification", "1"]] * 2
    save_act_tubes(tmp_path / "act", dets, 2)
    again = script.main(["--tubes", str(tmp_path / "act"), "--annot", str(tmp_path / "pyannot.pkl"),
                         "--out_dir", str(tmp_path / "out2"), "--iou", "0.5"])
    assert {k: v for k, v in again["road"].items()} == out["road"]
    with pytest.raises(SystemExit):
        script.main(["--tubes", str(tmp_path / "tubes.npz"), "--annot", str(tmp_path / "pyannot.pkl"),
                     "--out_dir", str(tmp_path / "o"), "--iou", "1.5"])
    assert "argument --iou: expected a number in [0, 1], got '1.5'" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="tube file not found"):
        script.main(["--tubes", str(tmp_path / "none.npz"), "--annot", str(tmp_path / "pyannot.pkl"),
                     "--out_dir", str(tmp_path / "o")])


def test_on_build_tubes_output(tmp_path, ucf24_dir):
    """build_tubes.py on detections made from real annotations (GT boxes, some relabelled or shifted, plus
    clutter), then analyze.py on its tubes: the same video-mAP@0.5 as build_tubes.py, and the counts add up."""
    import analyze as script
    import build_tubes
    from data.annotations import load_pyannot, read_video_list, xyxy0_to_xywh1
    from tubes.detections import write_road_mat_frame
    annots = load_pyannot(ucf24_dir / "pyannot.pkl")
    names = list({annots[n].class_id: n for n in read_video_list(ucf24_dir / "testlist01.txt")[::-1]
                  if annots[n].num_frames < 90}.values())[:3]  # short videos of three classes
    rng = np.random.default_rng(1)
    for k, name in enumerate(names):
        video = annots[name]
        label = (video.class_id + (k % 3 == 1)) % 24  # every third video's tubes come labelled as another class
        for f in range(video.num_frames):
            loc, scores = [[0.0, 0.0, 0.1, 0.1]], [np.r_[0.9, np.full(24, 0.0001)]]
            for t in video.tubes:
                if t.start <= f < t.end:
                    x, y, w, h = xyxy0_to_xywh1(t.boxes[f - t.start:f - t.start + 1])[0]
                    x = x + w / 2 if k % 3 == 2 else x  # every third video's boxes half their width to the right
                    box = np.array([x - 2, y - 2, x + w - 3, y + h - 3])
                    loc.append((box + rng.integers(-2, 3, 4)) / [320, 240, 320, 240])
                    scores.append(np.r_[0.001, np.full(24, 0.002)])
                    scores[-1][label + 1] = 0.9
            write_road_mat_frame(tmp_path / "dets" / name / f"{f + 1:05d}.mat", np.array(loc), np.array(scores))
    (tmp_path / "list.txt").write_text("\n".join(names) + "\n")
    write_pyannot(tmp_path / "pyannot.pkl", [annots[n] for n in names])  # the 3 videos' (quick to read)
    common = ["--annot", str(tmp_path / "pyannot.pkl"), "--video_list", str(tmp_path / "list.txt")]
    results = build_tubes.main(common + ["--det_dir", str(tmp_path / "dets"), "--alphas", "3", "--out_dir",
                                         str(tmp_path / "tubes"), "--no_frame_map", "--protocol", "road,act"])
    out = script.main(common + ["--tubes", str(tmp_path / "tubes" / "tubes_alpha3.npz"), "--protocol", "road,act",
                                "--num_classes", "24", "--out_dir", str(tmp_path / "errors")])
    for protocol, key in (("road", "video_map"), ("act", "video_map_act")):
        assert out[protocol]["mAP"] == next(r["mAP"] for r in results[key] if r["iou"] == 0.5)
        counts = out[protocol]["counts"]
        assert sum(counts[t] for t in ERROR_TYPES) == counts["false_positives"] == counts["tubes"] - counts["true_positives"]
        assert counts["true_positives"] + counts["false_negatives"] == counts["gt_tubes"]
        for k, name in enumerate(names):  # the first video's tube found, the second's relabelled, the third's shifted
            assert out[protocol]["videos"][name][("true_positives", "classification", "spatial")[k]] == 1
