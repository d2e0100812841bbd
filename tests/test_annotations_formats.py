"""J-HMDB-21 pyannot, the ACT / MOC ground-truth format, and split resolution."""
import pickle

import numpy as np
import pytest

from data import layout
from data.act_annots import load_act_gt
from data.annotations import AnnotationError, load_ucf_layout, resolve_split
from data.dataset import DataConfig, load_annotations


def _write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(content, f, protocol=2)


def _jhmdb_root(tmp_path):
    boxes = np.array([[11, 21, 30, 40]] * 15, np.uint16)  # x, y, w, h 1-based
    db = {
        "catch/v1": {"numf": np.uint8(99), "label": 1,  # numf is ignored: J-HMDB takes the first tube's length
                     "annotations": [{"label": 1, "sf": 0, "ef": 15, "boxes": boxes}]},
        "brush_hair/v2": {"numf": np.uint8(0), "label": 0,
                          "annotations": [{"label": 0, "sf": 0, "ef": 12, "boxes": boxes[:12]}]},
        "brush_hair/v3": {"numf": np.uint8(0), "label": 0,
                          "annotations": [{"label": 0, "sf": 0, "ef": 10, "boxes": boxes[:10]}]},
    }
    _write(layout.split_path(tmp_path, layout.ANNOT_FILE), db)
    for cls in ("brush_hair", "catch"):
        (layout.images_dir(tmp_path, "rgb") / cls).mkdir(parents=True)
    layout.split_path(tmp_path, "trainlist01.txt").write_text("catch/v1\nbrush_hair/v3\n")
    layout.split_path(tmp_path, "trainlist02.txt").write_text("brush_hair/v2\n")
    return tmp_path


def test_jhmdb_pyannot_frames_from_first_tube_and_trainlists(tmp_path):
    root = _jhmdb_root(tmp_path)
    annots = load_ucf_layout(root, split=1, jhmdb=True)
    assert annots.classes == ["brush_hair", "catch"]
    assert annots.videos["catch/v1"].num_frames == 15 and annots.videos["brush_hair/v2"].num_frames == 12
    assert annots.train_videos == ["brush_hair/v3", "catch/v1"] and annots.test_videos == ["brush_hair/v2"]
    tube = annots.videos["catch/v1"].tubes[0]
    assert (tube.start, tube.end) == (0, 15)
    split2 = load_annotations(DataConfig(dataset="jhmdb21", data_root=str(root), train_split=2))
    assert split2.train_videos == ["brush_hair/v2"] and len(split2.test_videos) == 2


def _ucf_root(tmp_path):
    boxes = np.array([[11, 21, 30, 40]] * 15, np.uint16)  # x, y, w, h as the released UCF101-24 file
    db = {"Run/v1": {"numf": np.uint16(20), "label": 0,
                     "annotations": [{"label": 0, "sf": 3, "ef": 18, "boxes": boxes}]}}
    _write(layout.split_path(tmp_path, layout.ANNOT_FILE), db)
    (layout.images_dir(tmp_path, "rgb") / "Run").mkdir(parents=True)
    layout.split_path(tmp_path, "trainlist01.txt").write_text("Run/v1\n")
    return tmp_path


def test_box_conversion_follows_the_original_per_dataset(tmp_path):
    """The same numbers x, y, w, h = 11, 21, 30, 40 in each dataset's pyannot.pkl, read by both loaders
    (load_ucf_layout and the training set's load_annotations). gurkirt/AMTNet data/shared.py:
      make_lists_ucf:   box -= 1; box[2] += box[0]; box[3] += box[1]          -> 10, 20, 39, 59
      make_lists_jhmdb: boxes[:,2] += boxes[:,0]; boxes[:,3] += boxes[:,1]    -> 11, 21, 41, 61"""
    ucf, jhmdb = _ucf_root(tmp_path / "ucf"), _jhmdb_root(tmp_path / "jhmdb")
    for name, root, video, expected in (("ucf24", ucf, "Run/v1", [10, 20, 39, 59]),
                                        ("jhmdb21", jhmdb, "catch/v1", [11, 21, 41, 61])):
        loaded = (load_ucf_layout(root, split=1, jhmdb=name == "jhmdb21"),
                  load_annotations(DataConfig(dataset=name, data_root=str(root))))
        for annots in loaded:
            boxes = annots.videos[video].tubes[0].boxes
            assert boxes.tolist() == [expected] * 15, name


def _act_content():
    rows = np.array([[f, 10.0, 20.0, 60.0 + f, 90.0] for f in (1, 2, 3, 5, 6)])
    return {
        "labels": ["run", "jump"],
        "gttubes": {"jump/a": {1: [rows]},
                    "run/b": {0: [np.array([[4, -5.0, 10, 50, 300], [5, 0, 10, 50, 60]])]}},
        "nframes": {"jump/a": 8, "run/b": 6},
        "resolution": {"jump/a": (240, 320), "run/b": (240, 320)},
        "train_videos": [["jump/a"], ["run/b"]],
        "test_videos": [["run/b"], ["jump/a", "absent/c"]],
    }


def test_act_format_reader(tmp_path):
    path = tmp_path / "JHMDB-GT.pkl"
    _write(path, _act_content())
    annots = load_act_gt(path, split=1)
    assert annots.classes == ["run", "jump"]
    assert annots.train_videos == ["jump/a"] and annots.test_videos == ["run/b"]
    video = annots.videos["jump/a"]
    assert (video.num_frames, video.class_id) == (8, 1)
    # 1-based frames 1, 2, 3, 5, 6: two contiguous pieces, 0-based starts 0 and 3.
    assert [(t.start, t.end) for t in video.tubes] == [(0, 3), (4, 6)]
    assert video.tubes[1].boxes.tolist() == [[10, 20, 65, 90], [10, 20, 66, 90]]
    clipped = annots.videos["run/b"].tubes[0].boxes  # x1 < 0 and y2 > 239 are clipped to the frame
    assert clipped.tolist() == [[0, 10, 50, 239], [0, 10, 50, 60]]
    assert annots.frame_sizes["run/b"] == (320, 240)
    split2 = load_act_gt(path, split=2)
    assert split2.train_videos == ["run/b"] and split2.test_videos == ["jump/a"]  # absent/c has no tubes


def test_act_file_found_by_the_dataset_loader(tmp_path):
    _write(tmp_path / "UCF101v2-GT.pkl", _act_content())
    annots = load_annotations(DataConfig(dataset="ucf24", data_root=str(tmp_path)))
    assert annots.classes == ["run", "jump"] and sorted(annots.videos) == ["jump/a", "run/b"]


@pytest.mark.parametrize("change, message", [
    (lambda c: c.pop("nframes"), "missing field 'nframes'"),
    (lambda c: c["gttubes"]["jump/a"].update({7: []}), "label 7 is outside 0..1"),
    (lambda c: c["nframes"].update({"jump/a": 5}), r"'jump/a' field 'gttubes' label 1 tube 0: frame numbers 1..6 .* within 1..5"),
    (lambda c: c["gttubes"]["run/b"].update({1: [np.array([[1, 0, 0, 5, 5], [2, 0, 0, 5, 5]])]}), r"'run/b' field 'gttubes' has labels \[0, 1\]"),
    (lambda c: c["gttubes"]["run/b"].update({0: [np.ones((2, 4))]}), r"'run/b' field 'gttubes' label 0 tube 0 has shape \(2, 4\)"),
])
def test_act_format_errors_name_video_and_field(tmp_path, change, message):
    content = _act_content()
    change(content)
    _write(tmp_path / "gt.pkl", content)
    with pytest.raises(AnnotationError, match=message):
        load_act_gt(tmp_path / "gt.pkl")
    with pytest.raises(AnnotationError, match="split 3 requested"):
        _write(tmp_path / "ok.pkl", _act_content())
        load_act_gt(tmp_path / "ok.pkl", split=3)


def test_split_resolution_order(tmp_path):
    videos = {"A/1": None, "A/2": None, "B/3": None}
    with pytest.raises(FileNotFoundError, match="no split 1"):
        resolve_split(tmp_path, 1, videos)
    _write(layout.split_path(tmp_path, layout.ANNOT_WITH_NAMES_FILE),
           {"db": {}, "classes": ["A", "B"], "trainvideos": ["A/1", "Z/9"]})
    assert resolve_split(tmp_path, 1, videos) == (["A/1"], ["A/2", "B/3"])  # Z/9 is not annotated
    layout.split_path(tmp_path, "testlist01.txt").write_text("A/1\n")
    assert resolve_split(tmp_path, 1, videos) == (["A/2", "B/3"], ["A/1"])
    layout.split_path(tmp_path, "trainlist01.txt").write_text("B/3\n")
    assert resolve_split(tmp_path, 1, videos) == (["B/3"], ["A/1", "A/2"])
