"""Online evaluation (eval_online.py, tubes/online_eval.py): hand-worked early labels and online
video-mAP, and at 100% observed the tubes and video-mAP of build_tubes.py."""
import json

import numpy as np
import pytest

from data.annotations import Tube, VideoAnnotation
from tubes import online_eval as oe
from tubes.detections import write_road_mat_frame
from tubes.runner import TubeConfig

LOC = np.array([[0.125, 0.125, 0.5, 0.5]])  # 40, 30, 160, 120 in a 320 x 240 frame
GT_BOX = np.array([[40, 30, 160, 120]], np.float32)


def frames_of(class_scores):
    """One box per frame with scores [background, classes...] (rows of ``class_scores``; None: no detection)."""
    return [(LOC, np.array([[0.1, *s]])) if s is not None else (np.zeros((0, 4)), np.zeros((0, 1 + 2)))
            for s in class_scores]


def test_observed_frames():
    assert [oe.observed_frames(x, 20) for x in oe.FRACTIONS] == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
    assert oe.observed_frames(0.1, 5) == 1 and oe.observed_frames(0.01, 50) == 1 and oe.observed_frames(0.25, 10) == 3


def test_early_label_by_hand():
    """Class-1 video of 10 frames, one box: frames 1-4 score (a, b) = (0.6, 0.2), frames 5-10 (0.1, 0.7).
    Mean path scores after n frames: a = (2.4 + 0.1 (n - 4)) / n, b = (0.8 + 0.7 (n - 4)) / n:
    n = 6: a 2.6/6 > b 2.2/6; n = 7: a 2.7/7 < b 2.9/7. The label turns right at 70%."""
    frames = frames_of([(0.6, 0.2)] * 4 + [(0.1, 0.7)] * 6)
    labels, _ = oe.online_video(frames, (320, 240), 10, 2, (3.0,))
    assert labels == [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
    # a video without detections has no live path: a wrong label at every fraction
    assert oe.online_video(frames_of([None] * 10), (320, 240), 10, 2, (3.0,))[0] == [-1] * 10
    # a path unmatched for jumpgap (3) frames is dead: the class-0 path of frames 1-4 is live after 6
    # frames, dead after 7 (no label), and after 9 only the class-1 path of the last frames is live,
    # although the dead class-0 path scores higher
    frames = frames_of([(0.9, 0.0)] * 4 + [None] * 4 + [(0.0, 0.3)] * 2)
    assert oe.online_video(frames, (320, 240), 10, 2, (3.0,))[0] == [0, 0, 0, 0, 0, 0, -1, -1, 1, 1]
    # early_label="all": the best path so far, ended ones included: the class-0 path (mean 0.9) throughout
    assert oe.online_video(frames, (320, 240), 10, 2, (3.0,), early_label="all")[0] == [0] * 10
    with pytest.raises(ValueError, match="early label"):
        oe.online_video(frames, (320, 240), 10, 2, (3.0,), early_label="best")


def test_online_video_map_by_hand(tmp_path):
    """A 20-frame video, GT tube on frames 6-15 (0-based 5-14) and a detection exactly on it in those frames.
    A tube needs 10 frames (te - ts > 8), so it exists from 15 frames observed (80%) and then equals the
    GT cut at the same frame: AP 1 from 80% on, 0 before (the GT has a tube from 6 frames on, none before:
    AP 0 either way, the class having no tube)."""
    ann = {"A/v1": VideoAnnotation("A/v1", 20, 0, [Tube(0, 5, np.repeat(GT_BOX, 10, 0))])}
    frames = [(np.zeros((0, 4)), np.zeros((0, 2)))] * 5 + [(LOC, np.array([[0.1, 0.9]]))] * 10 + \
        [(np.zeros((0, 4)), np.zeros((0, 2)))] * 5
    labels, tubes = oe.online_video(frames, (320, 240), 20, 1, (3.0,))
    assert [len(t[3.0]) for t in tubes] == [0] * 7 + [1] * 3
    assert tubes[7][3.0][0].start == 5 and len(tubes[7][3.0][0].boxes) == 10  # 16 frames seen, 10 of the tube
    # no path before frame 6; the path is dead 3 frames after its last detection (frame 15): no label at 18, 20
    assert labels == [-1, -1, 0, 0, 0, 0, 0, 0, -1, -1]
    # the GT restricted to 8 frames: its tube cut to frames 5..7
    cut = oe.restrict(ann["A/v1"], 8)
    assert cut.num_frames == 8 and cut.tubes[0].start == 5 and len(cut.tubes[0].boxes) == 3
    assert oe.restrict(ann["A/v1"], 5).tubes == []
    # through the detection files and the evaluation, both protocols
    det_dir = tmp_path / "dets"
    for f, (loc, scores) in enumerate(frames, 1):
        write_road_mat_frame(det_dir / "A" / "v1" / f"{f:05d}.mat", loc, scores)
    cfg = TubeConfig(det_dir, "road_mat", (3.0,), protocols=("road", "act"))
    res = oe.online_curves(cfg, ann, ["A/v1"], 1, ["A"], ious=(0.5,))
    assert res["accuracy"] == [0, 0, 1, 1, 1, 1, 1, 1, 0, 0]
    assert [(e["protocol"], e["alpha"], e["iou"]) for e in res["video_map"]] == [("road", 3, 0.5), ("act", 3, 0.5)]
    for e in res["video_map"]:
        assert e["mAP"] == [0.0] * 7 + [1.0] * 3
    written = oe.write_online(tmp_path / "out", res)
    assert json.loads(written[0].read_text()) == res and all(p.stat().st_size > 1000 for p in written[1:])
    assert "online evaluation (road+act protocol)" in oe.table(res)


def test_full_video_equals_build_tubes():
    """At 100% the online tubes are build_tubes.py's (link_frames + trim_video); at 50% they end by then."""
    from tests.test_tubes_octave import FIXTURES as OCTAVE, _frames
    from data.matlab_annots import load_final_annots
    det = np.load(OCTAVE / "small.npz")
    names = [str(n) for n in det["names"]]
    annotations = load_final_annots(OCTAVE / "small_finalAnnots.mat")
    for v, name in enumerate(names):
        frames = _frames(det, v)
        _, tubes = oe.online_video(frames, (320, 240), annotations[name].num_frames, 3, (3.0, 5.0), (0.5, 1.0))
        want = _build_tubes_of(frames, (3.0, 5.0))
        for a in (3.0, 5.0):
            assert [(t.class_id, t.score, t.start, t.boxes.tolist()) for t in tubes[1][a]] == \
                [(t.class_id, t.score, t.start, t.boxes.tolist()) for t in want[a]], (name, a)
        half = oe.observed_frames(0.5, annotations[name].num_frames)
        assert all(t.end <= half for a in (3.0, 5.0) for t in tubes[0][a]) and tubes[1][3.0]


def _build_tubes_of(frames, alphas):
    from tubes.linking import link_frames
    from tubes.trimming import trim_video
    return trim_video(link_frames(frames, 3)[0], alphas)


def test_eval_online_script_at_full_video_equals_build_tubes(tmp_path, capsys):
    import build_tubes
    import eval_online
    from tests.test_act_protocol import octave_case_files
    common = octave_case_files(tmp_path)[2] + ["--alphas", "3", "--protocol", "road,act"]
    online = eval_online.main(common + ["--out_dir", str(tmp_path / "online"), "--fractions", "0.5,1"])
    built = build_tubes.main(common + ["--out_dir", str(tmp_path / "built"), "--no_frame_map"])
    assert json.loads((tmp_path / "online" / "online.json").read_text()) == online
    # the linking's settings are recorded as build_tubes.py records them
    assert online["linking"] == built["linking"] == {"mode": "frame", "iou": 0.1, "jumpgap": 3, "min_score": 0.001}
    for e in online["video_map"]:
        key = "video_map" if e["protocol"] == "road" else "video_map_act"
        want = next(r["mAP"] for r in built[key] if r["iou"] == round(e["iou"], 4))
        assert e["mAP"][1] == want
    assert online["accuracy"][1] <= 1 and max(e["mAP"][1] for e in online["video_map"]) > 0
    assert "label accuracy" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="links one stream's detections: late fusion of two is build_tubes.py's"):
        eval_online.main(common + ["--out_dir", str(tmp_path / "fused"), "--fusion", "boost", "--fuse_det_dir",
                                   common[common.index("--det_dir") + 1]])


def test_unreadable_detections_count_as_none_unless_strict(tmp_path, caplog):
    ann = {"A/v1": VideoAnnotation("A/v1", 4, 0, [Tube(0, 0, np.repeat(GT_BOX, 4, 0))])}
    (tmp_path / "dets" / "A" / "v1").mkdir(parents=True)
    (tmp_path / "dets" / "A" / "v1" / "00001.mat").write_text("not a mat file")
    cfg = TubeConfig(tmp_path / "dets", "road_mat", (3.0,))
    res = oe.online_curves(cfg, ann, ["A/v1"], 1, ["A"], fractions=(0.5, 1.0))
    assert res["accuracy"] == [0.0, 0.0] and "00001.mat" in caplog.text and "A/v1" in caplog.text
    with pytest.raises(ValueError, match=r"A/v1: .*00001\.mat"):
        oe.online_curves(TubeConfig(tmp_path / "dets", "road_mat", (3.0,), strict=True), ann, ["A/v1"], 1, ["A"])
