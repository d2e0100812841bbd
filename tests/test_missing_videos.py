"""Every video of the split is evaluated: one without detections (or without tubes in a tube file) counts
with its ground truth missed, is listed in the results and refused by --strict; a folder with no detections
at all says what was looked for and where."""
import json

import numpy as np
import pytest

import build_tubes
import eval_online
import eval_video_ap
from data.annotations import Tube, VideoAnnotation
from tests.test_result_formats import write_annotations
from tests.test_tubes import _write_gt_detections
from tubes.detections import write_video_detections

MISSING = "Jump/v2"


def _tube(class_id, start, n, box):
    return Tube(class_id, start, np.tile(np.asarray(box, np.float32), (n, 1)))


ANNOTATIONS = {"Jump/v1": VideoAnnotation("Jump/v1", 20, 0, [_tube(0, 0, 20, [50, 40, 120, 150])]),
               MISSING: VideoAnnotation(MISSING, 16, 0, [_tube(0, 0, 16, [100, 60, 180, 200])]),
               "Run/v1": VideoAnnotation("Run/v1", 24, 1, [_tube(1, 2, 20, [30, 30, 90, 100])])}


@pytest.fixture
def data(tmp_path):
    """The three videos' annotations (pyannot.pkl with testlist01.txt beside it; an ACT GT pickle alone in
    act/) and GT-like road_mat detections of all but ``MISSING``."""
    paths = write_annotations(tmp_path, ANNOTATIONS)
    (tmp_path / "testlist01.txt").write_text("".join(f"{v}\n" for v in ANNOTATIONS))
    (tmp_path / "act").mkdir()
    act_gt = paths["act"].rename(tmp_path / "act" / "GT.pkl")
    for name, video in ANNOTATIONS.items():
        if name != MISSING:
            _write_gt_detections(tmp_path / "dets", video, 2, np.random.default_rng(0), jitter=0)
    return tmp_path, paths["pyannot"], act_gt


def _map_at(entries, iou=0.5):
    return next(e["mAP"] for e in entries if abs(e["iou"] - iou) < 1e-9)


def test_build_tubes_counts_a_video_without_detections_as_missed(data, caplog, capsys):
    """Jump has two GT tubes, one found: AP 0.5 under both protocols (1.0 if the video were dropped); its GT
    boxes count in frame-mAP; results.json lists it; --strict refuses it."""
    root, pyannot, _ = data
    common = ["--det_dir", str(root / "dets"), "--annot", str(pyannot), "--alphas", "3", "--protocol", "road,act"]
    with caplog.at_level("WARNING"):
        res = build_tubes.main(common + ["--out_dir", str(root / "out")])
    for key in ("video_map", "video_map_act"):
        assert _map_at(res[key]) == pytest.approx((0.5 + 1.0) / 2)
    jump_frames = [ANNOTATIONS[v].tubes[0].end - ANNOTATIONS[v].tubes[0].start for v in ("Jump/v1", MISSING)]
    assert res["frame_map_frameap"]["ap"]["Jump"] == pytest.approx(jump_frames[0] / sum(jump_frames))
    assert res["frame_map_frameap"]["ap"]["Run"] == pytest.approx(1.0)
    assert res["videos_without_detections"] == [MISSING] and res["failed_videos"] == {}
    assert json.loads((root / "out" / "results.json").read_text())["videos_without_detections"] == [MISSING]
    assert "no detections for 1 of the 3 videos" in caplog.text and MISSING in caplog.text
    assert "1 of 3 videos counted as without detections, 0 of them unreadable" in capsys.readouterr().out
    with pytest.raises(SystemExit, match=rf"no detections for 1 of the 3 videos of .*testlist01\.txt \({MISSING}\)"):
        build_tubes.main(common + ["--out_dir", str(root / "strict"), "--strict"])
    assert not (root / "strict" / "results.json").exists()


def test_eval_online_counts_a_video_without_detections(data, capsys):
    """At 100%: the video without detections has no label (accuracy 2/3, not 1) and its tube is missed."""
    root, pyannot, _ = data
    common = ["--det_dir", str(root / "dets"), "--annot", str(pyannot), "--alphas", "3", "--fractions", "1",
              "--protocol", "road,act"]
    res = eval_online.main(common + ["--out_dir", str(root / "online")])
    assert res["accuracy"] == [pytest.approx(2 / 3)]
    assert {e["protocol"]: e["mAP"][0] for e in res["video_map"] if e["iou"] == 0.5} == \
        {"road": pytest.approx(0.75), "act": pytest.approx(0.75)}
    assert res["videos_without_detections"] == [MISSING]
    assert json.loads((root / "online" / "online.json").read_text())["videos_without_detections"] == [MISSING]
    assert "1 of 3 videos counted as without detections" in capsys.readouterr().out
    with pytest.raises(SystemExit, match=rf"no detections for 1 of the 3 videos .*{MISSING}"):
        eval_online.main(common + ["--out_dir", str(root / "strict"), "--strict"])


def test_eval_video_ap_counts_videos_a_tube_file_lacks(data, caplog):
    """A tube file of two of the three test videos: the third counts as one without tubes (the split from
    testlist01.txt beside pyannot.pkl, or from an ACT GT pickle's test list), is listed, and --strict refuses."""
    root, pyannot, act_gt = data
    (root / "two.txt").write_text("Jump/v1\nRun/v1\n")
    built = build_tubes.main(["--det_dir", str(root / "dets"), "--annot", str(pyannot), "--alphas", "3",
                              "--video_list", str(root / "two.txt"), "--out_dir", str(root / "two")])
    assert _map_at(built["video_map"]) == pytest.approx(1.0)  # the listed videos alone
    tubes = root / "two" / "tubes_alpha3.npz"
    for annot in (pyannot, act_gt):
        caplog.clear()
        with caplog.at_level("WARNING"):
            res = eval_video_ap.main(["--tubes", str(tubes), "--annot", str(annot), "--protocol", "road,act",
                                      "--out_dir", str(root / "eval")])
        assert _map_at(res["video_map"]) == _map_at(res["video_map_act"]) == pytest.approx(0.75)
        assert res["videos_without_tubes"] == {str(tubes): [MISSING]}
        assert f"{tubes}: no tubes for 1 of the 3 videos" in caplog.text
        with pytest.raises(SystemExit, match=rf"{tubes}: no tubes for 1 of the 3 videos .*\({MISSING}\)"):
            eval_video_ap.main(["--tubes", str(tubes), "--annot", str(annot), "--out_dir", str(root / "x"), "--strict"])
    # the listed videos: nothing missing
    res = eval_video_ap.main(["--tubes", str(tubes), "--annot", str(pyannot), "--video_list", str(root / "two.txt"),
                              "--out_dir", str(root / "eval2"), "--strict"])
    assert res["videos_without_tubes"] == {str(tubes): []} and _map_at(res["video_map"]) == pytest.approx(1.0)


@pytest.mark.parametrize("script", [build_tubes, eval_online])
def test_no_detections_at_all_says_what_was_looked_for(data, script):
    """An empty --det_dir, a missing one, npz files read as road_mat (and back), a folder one level too deep:
    one line naming the folder, the file looked for and what is there (the format's flag)."""
    root, pyannot, _ = data
    common = ["--annot", str(pyannot), "--out_dir", str(root / "out")]
    (root / "empty").mkdir()
    for det_dir, said in ((root / "empty", "the folder is empty"), (root / "nowhere", "is not a folder")):
        with pytest.raises(SystemExit) as e:
            script.main(["--det_dir", str(det_dir)] + common)
        message = str(e.value)
        assert "\n" not in message and said in message
        assert f"{det_dir}: no detections for any of the 3 videos of {root / 'testlist01.txt'}" in message
        assert f"looked for {det_dir / 'Jump' / 'v1'}/00001.mat" in message
    npz = root / "npz"
    write_video_detections(npz / "Run" / "v1.npz", [[0]], np.zeros((1, 1, 4)), [[0.5, 0.3, 0.2]], [0], 24)
    with pytest.raises(SystemExit, match=rf"it holds npz detections \({npz / 'Run' / 'v1.npz'}\): --det_format npz"):
        script.main(["--det_dir", str(npz)] + common)
    with pytest.raises(SystemExit, match=r"looked for .*Jump/v1\.npz \(--det_format npz\); it holds road_mat detections "
                                         r"\(.*dets/Jump/v1\): --det_format road_mat"):
        script.main(["--det_dir", str(root / "dets"), "--det_format", "npz"] + common)
    with pytest.raises(SystemExit, match=r"looked for .*dets/Jump/Jump/v1/00001\.mat .*; the folder holds v1$"):
        script.main(["--det_dir", str(root / "dets" / "Jump")] + common)  # one level too deep
