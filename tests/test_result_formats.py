"""Other people's results: the same tubes written as build_tubes.py's .npz, convert2eval.m's xmldata
(.mat) and ACT/MOC tube pickles, and the same ground truth as pyannot.pkl, finalAnnots.mat and an
ACT ground-truth pickle, all give identical video-mAP under both protocols; bad files name themselves."""
import json
import pickle

import numpy as np
import pytest
import scipy.io
from numpy.lib.recfunctions import drop_fields

import eval_video_ap
from data.annotations import Tube, VideoAnnotation, to_pyannot_entry, xyxy0_to_xywh1
from tubes.runner import evaluate, load_annotations
from tubes.trimming import ActionTube
from tubes.tube_files import load_any_tubes, save_act_tubes, save_tubes, save_xmldata

CLASSES = ["Jump", "Run"]


def make_annotations():
    rng = np.random.default_rng(0)

    def tube(c, start, n):
        xy = rng.integers(0, 200, 2)
        wh = rng.integers(20, 60, 2)
        return Tube(c, start, np.tile(np.concatenate([xy, xy + wh]), (n, 1)).astype(np.float32) + np.arange(n)[:, None] % 3)
    return {"Jump/v1": VideoAnnotation("Jump/v1", 30, 0, [tube(0, 0, 30), tube(0, 5, 12)]),
            "Jump/v2": VideoAnnotation("Jump/v2", 25, 0, [tube(0, 3, 20)]),
            "Run/v1": VideoAnnotation("Run/v1", 40, 1, [tube(1, 10, 30)])}


def make_tubes(annotations):
    """Jittered copies of the GT (link boxes on a 1/4 pixel grid), some of the wrong class, shifted."""
    rng = np.random.default_rng(1)
    out = {}
    for name, video in annotations.items():
        out[name] = []
        for t in video.tubes:
            for shift, cls in ((0, t.class_id), (3, t.class_id), (-2, 1 - t.class_id)):
                start = max(0, t.start + shift)
                boxes = t.boxes[:len(t.boxes) - abs(shift)] + np.round(rng.normal(0, 3, (len(t.boxes) - abs(shift), 4)) * 4) / 4
                out[name].append(ActionTube(cls, float(np.round(rng.uniform(0.1, 0.9), 4)), start, boxes.astype(np.float64) + 1))
    return out


def write_annotations(tmp_path, annotations):
    paths = {"pyannot": tmp_path / "pyannot.pkl", "finalAnnots": tmp_path / "finalAnnots.mat", "act": tmp_path / "GT.pkl"}
    with open(paths["pyannot"], "wb") as f:
        pickle.dump({n: to_pyannot_entry(v) for n, v in annotations.items()}, f)
    annot = np.zeros(len(annotations), dtype=[("name", object), ("num_imgs", object), ("tubes", object)])
    for i, v in enumerate(annotations.values()):
        rows = np.zeros(len(v.tubes), dtype=[("sf", object), ("ef", object), ("class", object), ("boxes", object)])
        for k, t in enumerate(v.tubes):
            rows[k] = np.uint16(t.start + 1), np.uint16(t.end), np.uint8(t.class_id + 1), xyxy0_to_xywh1(t.boxes)
        annot[i] = v.name, np.uint16(v.num_frames), rows
    scipy.io.savemat(paths["finalAnnots"], {"annot": annot})
    gttubes = {v.name: {v.class_id: [np.column_stack([np.arange(t.start + 1, t.end + 1), t.boxes]) for t in v.tubes]}
               for v in annotations.values()}
    with open(paths["act"], "wb") as f:
        pickle.dump({"labels": CLASSES, "gttubes": gttubes, "nframes": {n: v.num_frames for n, v in annotations.items()},
                     "resolution": {n: (240, 320) for n in annotations}, "train_videos": [[]],
                     "test_videos": [list(annotations)]}, f)
    return paths


def write_tubes(tmp_path, tubes):
    paths = {"npz": tmp_path / "tubes_alpha3.npz", "xmldata": tmp_path / "xmldata.mat", "act": tmp_path / "act_tubes"}
    save_tubes(paths["npz"], list(tubes), {v: {3.0: t} for v, t in tubes.items()}, 3.0)
    save_xmldata(paths["xmldata"], tubes)
    save_act_tubes(paths["act"], tubes, len(CLASSES))
    return paths


def strip_alpha(results):
    return {k: [{f: x for f, x in e.items() if f != "alpha"} for e in v] if isinstance(v, list) else v
            for k, v in results.items()}


def test_all_formats_give_identical_numbers(tmp_path):
    annotations = make_annotations()
    tubes = make_tubes(annotations)
    annot_paths, tube_paths = write_annotations(tmp_path, annotations), write_tubes(tmp_path, tubes)
    videos = list(annotations)
    results = []
    for a_fmt, a_path in annot_paths.items():
        loaded = load_annotations(a_path)
        assert {n: [(t.class_id, t.start, t.boxes.tolist()) for t in v.tubes] for n, v in loaded.items()} == \
            {n: [(t.class_id, t.start, t.boxes.tolist()) for t in v.tubes] for n, v in annotations.items()}, a_fmt
        for t_fmt, t_path in tube_paths.items():
            label, by_video = load_any_tubes(t_path)
            for v in videos:  # the tubes themselves come back exactly (ACT's files group them by class)
                assert sorted((t.class_id, t.score, t.start, t.boxes.tolist()) for t in by_video[v]) == \
                    sorted((t.class_id, t.score, t.start, t.boxes.tolist()) for t in tubes[v]), (t_fmt, v)
            res, _ = evaluate(loaded, videos, {label: by_video}, len(CLASSES), CLASSES, protocols=("road", "act"))
            results.append(strip_alpha(res))
    assert all(r == results[0] for r in results[1:])
    maps = [e["mAP"] for e in results[0]["video_map"]] + [e["mAP"] for e in results[0]["video_map_act"]]
    assert 0 < min(maps[:2]) and max(maps) < 1 and results[0]["video_map"] != results[0]["video_map_act"]


def test_eval_video_ap_reads_act_files_and_draws(tmp_path, capsys):
    annotations = make_annotations()
    tubes = make_tubes(annotations)
    annot_paths, tube_paths = write_annotations(tmp_path, annotations), write_tubes(tmp_path, tubes)
    out = tmp_path / "eval"
    res = eval_video_ap.main(["--tubes", str(tube_paths["act"]), str(tube_paths["npz"]), "--annot", str(annot_paths["act"]),
                              "--out_dir", str(out), "--protocol", "road,act"])
    assert json.loads((out / "results.json").read_text()) == res and res["protocol"] == "road+act"
    assert {e["alpha"] for e in res["video_map_act"]} == {"act_tubes", 3}
    for name in ("map_vs_iou.png", "pr_alpha3_iou0.5.png", "pr_act_alpha3_iou0.5.png", "pr_act_alphaact_tubes_iou0.2.png"):
        assert (out / name).stat().st_size > 1000, name
    printed = capsys.readouterr().out
    assert "protocol road" in printed and "protocol act" in printed and "act_tubes" in printed


def test_bad_files_name_file_video_and_field(tmp_path):
    tubes = {"Jump/v1": [ActionTube(0, 0.5, 2, np.tile([1.0, 1, 10, 10], (5, 1)))]}
    save_act_tubes(tmp_path / "act", tubes, 2)
    path = tmp_path / "act" / "Jump" / "v1_tubes.pkl"
    with open(path, "rb") as f:
        content = pickle.load(f)
    content[0][0][0][3, 0] = 99  # a frame number out of sequence
    with open(path, "wb") as f:
        pickle.dump(content, f)
    with pytest.raises(ValueError, match=r"v1_tubes\.pkl: video Jump/v1 label 0 tube 0 field 'rows' \(column 0\): frame numbers"):
        load_any_tubes(tmp_path / "act")
    save_xmldata(tmp_path / "x.mat", tubes)
    mat = scipy.io.loadmat(tmp_path / "x.mat")
    scipy.io.savemat(tmp_path / "x.mat", {"xmldata": drop_fields(mat["xmldata"], "boxes", usemask=False)})
    with pytest.raises(ValueError, match=r"x\.mat: variable 'xmldata' has no field 'boxes'"):
        load_any_tubes(tmp_path / "x.mat")
    mat["xmldata"][0, 0]["boxes"][0, 0]["bxs"] = np.zeros((4, 4))  # 4 boxes for 5 frames
    scipy.io.savemat(tmp_path / "y.mat", {"xmldata": mat["xmldata"]})
    with pytest.raises(ValueError, match=r"y\.mat: video Jump/v1 tube 1 field 'boxes\.bxs': expected 5 rows"):
        load_any_tubes(tmp_path / "y.mat")


def test_act_ground_truth_is_evaluated_as_the_file_has_it(tmp_path):
    """ACT.py does not clip boxes to the frame: the evaluation keeps a box past the frame as it is."""
    annotations = make_annotations()
    annotations["Run/v1"].tubes[0].boxes[3] = [300, 200, 330, 250]  # past the 320 x 240 frame
    loaded = load_annotations(write_annotations(tmp_path, annotations)["act"])
    np.testing.assert_array_equal(loaded["Run/v1"].tubes[0].boxes, annotations["Run/v1"].tubes[0].boxes)
