"""The toy dataset: layout, annotation format (the real file's conventions), pixels, determinism."""
import pickle
import re

import cv2
import numpy as np
import pytest

from data import layout
from data.annotations import (AnnotationError, load_class_names, load_pyannot, read_video_list,
                              xyxy0_to_xywh1, xywh1_to_xyxy0)
from data.toy import CLASSES, ToyConfig, make_toy_dataset


def _raw(root):
    with open(layout.split_path(root, layout.ANNOT_FILE), "rb") as f:
        return pickle.load(f, encoding="latin1")


def test_layout_and_splits(toy_root):
    raw = _raw(toy_root)
    assert len(raw) == 8
    train = read_video_list(layout.split_path(toy_root, "trainlist01.txt"))
    test = read_video_list(layout.split_path(toy_root, "testlist01.txt"))
    assert sorted(train + test) == sorted(raw) and not set(train) & set(test)
    assert {raw[v]["label"] for v in test} == set(range(len(CLASSES)))  # every class is tested
    assert load_class_names(toy_root) == [c.name for c in CLASSES]
    for name, entry in raw.items():
        assert name.split("/")[0] == CLASSES[entry["label"]].name
        for kind in ("rgb", "fastOF"):
            files = sorted(layout.video_dir(toy_root, kind, name).iterdir())
            assert [f.name for f in files] == [f"{i:05d}.jpg" for i in range(1, int(entry["numf"]) + 1)]
        image = cv2.imread(str(layout.frame_path(toy_root, "rgb", name, 0)))
        assert image.shape == (240, 320, 3)


def test_annotation_format_matches_released_file(toy_root, ucf24_dir):
    """Same types and conventions as the released pyannot.pkl (see shared/ucf24/README.md)."""
    real = pickle.load(open(ucf24_dir / "pyannot.pkl", "rb"), encoding="latin1")
    real_entry = next(iter(real.values()))
    for name, entry in _raw(toy_root).items():
        assert set(entry) == set(real_entry)
        assert isinstance(entry["numf"], np.unsignedinteger) and isinstance(real_entry["numf"], np.unsignedinteger)
        numf = int(entry["numf"])
        for tube in entry["annotations"]:
            assert set(tube) == set(real_entry["annotations"][0])
            boxes = tube["boxes"]
            assert boxes.dtype.kind == real_entry["annotations"][0]["boxes"].dtype.kind == "u"
            assert boxes.shape == (tube["ef"] - tube["sf"], 4)
            # untrimmed: the tube starts and ends strictly inside the video
            assert 0 < tube["sf"] < tube["ef"] < numf
            x, y, w, h = boxes.astype(int).T
            assert (x >= 1).all() and (y >= 1).all() and (x + w - 1 <= 320).all() and (y + h - 1 <= 240).all()


def test_same_reader_for_real_and_toy_files(toy_root, ucf24_dir):
    real = load_pyannot(ucf24_dir / "pyannot.pkl", num_classes=24)
    assert len(real) == 3194
    raw = pickle.load(open(ucf24_dir / "pyannot.pkl", "rb"), encoding="latin1")
    video = real["Basketball/v_Basketball_g01_c01"]
    entry = raw["Basketball/v_Basketball_g01_c01"]
    assert video.num_frames == int(entry["numf"]) and type(video.num_frames) is int
    tube, raw_tube = video.tubes[0], entry["annotations"][0]
    assert (tube.start, tube.end) == (raw_tube["sf"], raw_tube["ef"])
    # AMTNet data/shared.py: box -= 1 on all four numbers, then x2 = x1 + w: [189 102 47 78] -> [188 101 234 178]
    np.testing.assert_array_equal(tube.boxes[0], [188, 101, 234, 178])
    toy = load_pyannot(layout.split_path(toy_root, layout.ANNOT_FILE), num_classes=len(CLASSES))
    assert set(toy) == set(_raw(toy_root))


def test_box_conversion_round_trip():
    xywh = np.array([[1, 1, 320, 240], [189, 102, 47, 78]], dtype=np.uint16)
    xyxy = xywh1_to_xyxy0(xywh)
    np.testing.assert_array_equal(xyxy, [[0, 0, 319, 239], [188, 101, 234, 178]])
    np.testing.assert_array_equal(xyxy0_to_xywh1(xyxy), xywh)


def test_boxes_frame_the_drawn_actor(toy_root):
    """Pixels inside an annotated box differ from the background; a band just outside it does not hold the actor."""
    videos = load_pyannot(layout.split_path(toy_root, layout.ANNOT_FILE), num_classes=len(CLASSES))
    checked = 0
    for name, video in videos.items():
        colour = np.array(CLASSES[video.class_id].colour, np.float32)
        for tube in video.tubes:
            f = tube.start + len(tube.boxes) // 2
            if any(t is not tube and t.start <= f < t.end for t in video.tubes):
                continue  # another actor may stand next to this one
            image = cv2.imread(str(layout.frame_path(toy_root, "rgb", name, f))).astype(np.float32)
            x1, y1, x2, y2 = tube.boxes[f - tube.start].astype(int)
            near = np.linalg.norm(image - colour, axis=2) < 60  # actor-coloured pixels
            inside = near[y1:y2 + 1, x1:x2 + 1].sum()
            ring = near[max(0, y1 - 6):y2 + 7, max(0, x1 - 6):x2 + 7].sum() - inside
            assert inside > 40, (name, f)
            assert ring < 0.1 * inside, (name, f, ring, inside)
            checked += 1
    assert checked >= 4


def test_deterministic_for_a_seed(tmp_path):
    cfg = ToyConfig(num_videos=8, seed=11, min_frames=20, max_frames=22)
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    make_toy_dataset(a, cfg, progress=False)
    make_toy_dataset(b, cfg, progress=False)
    make_toy_dataset(c, ToyConfig(num_videos=8, seed=12, min_frames=20, max_frames=22), progress=False)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert (a / "splitfiles/pyannot.pkl").read_bytes() != (c / "splitfiles/pyannot.pkl").read_bytes()


def test_too_few_videos_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="at least 8 videos"):
        make_toy_dataset(tmp_path, ToyConfig(num_videos=3), progress=False)


def test_malformed_annotation_names_video_and_field(tmp_path):
    path = tmp_path / "pyannot.pkl"
    bad = {"A/v_1": {"numf": np.uint16(10), "label": 0,
                     "annotations": [{"label": 0, "sf": 2, "ef": 14, "boxes": np.ones((12, 4), np.uint16)}]}}
    pickle.dump(bad, open(path, "wb"))
    with pytest.raises(AnnotationError, match=r"'A/v_1'.*'sf'=2, 'ef'=14.*10 frames"):
        load_pyannot(path)
    del bad["A/v_1"]["label"]
    pickle.dump(bad, open(path, "wb"))
    with pytest.raises(AnnotationError, match=r"'A/v_1' has no field 'label'"):
        load_pyannot(path)


def test_check_dataset_counts_and_names_what_is_missing(tmp_path):
    from data.annotations import check_dataset
    root = tmp_path / "toy"
    make_toy_dataset(root, ToyConfig(num_videos=8, seed=1, min_frames=24, max_frames=26), progress=False)
    summary = check_dataset(root, ["rgb", "fastOF"])
    videos = load_pyannot(layout.split_path(root, layout.ANNOT_FILE))
    assert summary["videos"] == len(videos) == 8 and summary["classes"] == ["Walking", "Jumping", "Waving", "Spinning"]
    assert summary["frames"] == sum(v.num_frames for v in videos.values())
    assert summary["tubes"] == sum(len(v.tubes) for v in videos.values())
    name, video = sorted(videos.items())[0]
    last = layout.frame_path(root, "fastOF", name, video.num_frames - 1)
    last.unlink()
    with pytest.raises(FileNotFoundError, match=f"1 videos lack frames, e.g. {re.escape(str(last))}"):
        check_dataset(root, ["rgb", "fastOF"])
    assert check_dataset(root, ["rgb"])["videos"] == 8
    with open(layout.split_path(root, "testlist01.txt"), "a") as f:
        f.write("Walking/v_Walking_g99_c01\n")
    with pytest.raises(ValueError, match="test list names videos without annotations: .*v_Walking_g99_c01"):
        check_dataset(root, ["rgb"])
