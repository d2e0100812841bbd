"""Property sweeps of the toy renderer: every seed and size gives a whole, valid dataset."""
import hashlib
import logging
import pickle

import numpy as np
import pytest

import data.toy as toy
from data import layout
from data.annotations import check_dataset, load_pyannot, read_video_list, xywh1_to_xyxy0
from data.toy import ToyConfig, make_toy_dataset, render_video

# Small frames and short videos keep the sweep fast; the actors keep their size in pixels, so in
# small frames they often walk partly or wholly out of view (the case that used to crash).
SIZES = ((32, 32), (48, 36), (64, 48), (96, 72), (160, 120))


def _digest(root):
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return hashlib.sha256(b"".join(str(p.relative_to(root)).encode() + p.read_bytes() for p in files)).hexdigest()


def check_toy_dataset(root, cfg, caplog):
    """What every rendered toy dataset must satisfy; returns the number of tubes."""
    assert root.is_dir() and not list(root.parent.glob(f".{root.name}.*")), "temporaries left beside the dataset"
    summary = check_dataset(root, ["rgb"] + (["fastOF"] if cfg.flow else []))
    assert summary["videos"] == cfg.num_videos + cfg.test_videos
    width, height = cfg.frame_size
    raw = pickle.load(open(layout.split_path(root, layout.ANNOT_FILE), "rb"), encoding="latin1")
    for name, entry in raw.items():
        assert cfg.min_frames <= int(entry["numf"]) <= cfg.max_frames, name
        for tube in entry["annotations"]:
            sf, ef, boxes = tube["sf"], tube["ef"], tube["boxes"].astype(np.int64)
            assert 0 <= sf < ef <= int(entry["numf"]) and boxes.shape == (ef - sf, 4), (name, sf, ef)
            x, y, w, h = boxes.T  # 1-based pixels, as the released file
            assert (x >= 1).all() and (y >= 1).all(), name
            assert (x + w - 1 <= width).all() and (y + h - 1 <= height).all(), name
            assert (w >= 2).all() and (h >= 2).all(), name  # positive area: x2 > x1, y2 > y1 (0-based, inclusive)
    # the reader takes every tube as it is: nothing clipped, dropped or split
    with caplog.at_level(logging.WARNING, logger="data.annotations"):
        caplog.clear()
        videos = load_pyannot(layout.split_path(root, layout.ANNOT_FILE), frame_size=cfg.frame_size)
        assert not caplog.records, caplog.text
    for name, entry in raw.items():
        read = videos[name].tubes
        assert [(t.start, t.end) for t in read] == [(t["sf"], t["ef"]) for t in entry["annotations"]], name
        for t, r in zip(entry["annotations"], read):
            np.testing.assert_array_equal(r.boxes, xywh1_to_xyxy0(t["boxes"]))
    return summary["tubes"]


@pytest.fixture
def visibility(monkeypatch):
    """Counts how often an actor within its tube's span does not show (``toy._visible`` false)."""
    counts = {"hidden": 0}
    visible = toy._visible

    def counting(xs, ys):
        shown = visible(xs, ys)
        counts["hidden"] += not shown
        return shown
    monkeypatch.setattr(toy, "_visible", counting)
    return counts


def test_every_seed_and_size_gives_a_whole_valid_dataset(tmp_path, caplog, visibility):
    """200 seeds over five frame sizes, 16 to 20 frames, 8 to 9 videos; every tenth seed twice."""
    tubes = 0
    for seed in range(200):
        cfg = ToyConfig(num_videos=8 + seed % 2, seed=seed, min_frames=16, max_frames=20, flow=False,
                        frame_size=SIZES[seed % len(SIZES)])
        root = tmp_path / f"s{seed}"
        videos = make_toy_dataset(root, cfg, progress=False)
        assert len(videos) == cfg.num_videos
        tubes += check_toy_dataset(root, cfg, caplog)
        if seed % 10 == 0:
            again = make_toy_dataset(tmp_path / "again", cfg, progress=False)  # replaces the previous one
            assert _digest(tmp_path / "again") == _digest(root), seed
            assert again.keys() == videos.keys()
    assert visibility["hidden"] > 100 and tubes > 200  # the sweep did reach actors out of view


@pytest.mark.parametrize("seed", [3, 4])
def test_seeds_that_crashed_at_the_default_size(tmp_path, caplog, visibility, seed):
    """``prepare_data.py toy --videos 8 --seed 3`` (and 4) stopped with an empty actor mask."""
    cfg = ToyConfig(num_videos=8, seed=seed, flow=False)
    make_toy_dataset(tmp_path / "toy", cfg, progress=False)
    check_toy_dataset(tmp_path / "toy", cfg, caplog)
    assert visibility["hidden"] > 0


def test_a_tube_ends_where_its_actor_leaves_and_restarts_where_it_returns():
    boxes = [(1, 1, 5, 5), None, None, (2, 2, 6, 6), (3, 3, 7, 7), None]
    tubes = toy._visible_tubes(2, 10, boxes)
    assert [(t.class_id, t.start, t.end) for t in tubes] == [(2, 10, 11), (2, 13, 15)]
    np.testing.assert_array_equal(tubes[1].boxes, [[2, 2, 6, 6], [3, 3, 7, 7]])
    assert toy._visible_tubes(0, 0, [None, None]) == []
    assert not toy._visible(np.array([]), np.array([]))
    assert not toy._visible(np.array([4, 4, 4]), np.array([1, 2, 3]))  # one pixel wide: no area
    assert toy._visible(np.array([4, 5]), np.array([1, 2]))


def test_long_videos_keep_whole_frames():
    """The background pans back once its margin is used up (it ran off the canvas after 80 frames)."""
    rng = np.random.default_rng(7)
    frames, tubes = render_video(rng, 0, 300, (48, 36))
    assert len(frames) == 300 and {f.shape for f in frames} == {(36, 48, 3)}
    assert [toy._pan_offset(s) for s in (-32.0, 0.0, 32.0, 33.0, 96.0, 97.0, -33.0, -96.0)] == [0, 32, 64, 63, 0, 1, 1, 64]


@pytest.mark.parametrize("field, value, message", [
    ("num_videos", 7, "at least 8 videos"), ("min_frames", 15, "16 <= min_frames <= max_frames"),
    ("max_frames", 20, "min_frames=48, max_frames=20"), ("test_fraction", 1.0, "test_fraction"),
    ("frame_size", (31, 240), "frame_size must be at least 32x32"), ("test_videos", -1, "test_videos must be >= 0")])
def test_config_errors_name_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        ToyConfig(**{field: value})


def test_more_test_videos_leave_the_first_videos_and_the_training_split_as_they_were(tmp_path, caplog):
    """``test_videos`` adds videos after the first ``num_videos``, all in the test split: the first videos' frames,
    annotations and split are the same as without them (test sets of different sizes stay comparable)."""
    small = dict(num_videos=8, seed=6, min_frames=16, max_frames=18, frame_size=(64, 48))
    plain, more = ToyConfig(**small), ToyConfig(**small, test_videos=5)
    first = make_toy_dataset(tmp_path / "a", plain, progress=False)
    second = make_toy_dataset(tmp_path / "b", more, progress=False)
    check_toy_dataset(tmp_path / "b", more, caplog)
    assert list(second)[:8] == list(first) and len(second) == 13
    for name in first:
        for kind in ("rgb", "fastOF"):
            folders = [layout.video_dir(tmp_path / d, kind, name) for d in ("a", "b")]
            assert _digest(folders[0]) == _digest(folders[1]), (kind, name)
    annots = [load_pyannot(layout.split_path(tmp_path / d, layout.ANNOT_FILE)) for d in ("a", "b")]
    for name in first:
        assert [(t.start, t.end, t.boxes.tolist()) for t in annots[0][name].tubes] == \
            [(t.start, t.end, t.boxes.tolist()) for t in annots[1][name].tubes], name
    lists = [{split: read_video_list(layout.split_path(tmp_path / d, layout.split_list_name(split, 1)))
              for split in ("train", "test")} for d in ("a", "b")]
    assert lists[1]["train"] == lists[0]["train"] and len(lists[0]["test"]) == 4
    assert sorted(lists[1]["test"]) == sorted(lists[0]["test"] + list(second)[8:])
    # the new videos cycle through the classes as the first ones do, numbered after them
    assert [second[n].class_id for n in list(second)[8:]] == [0, 1, 2, 3, 0]
    assert list(second)[8] == toy.video_name(0, 2) and toy.video_names(more) == list(second)
    # pipeline.py renders again where the set at hand is not the one its flags ask for
    assert toy.has_toy_dataset(tmp_path / "a", plain) and toy.has_toy_dataset(tmp_path / "b", more)
    assert not toy.has_toy_dataset(tmp_path / "a", more) and not toy.has_toy_dataset(tmp_path / "b", plain)
    assert not toy.has_toy_dataset(tmp_path / "none", plain)
    layout.split_path(tmp_path / "a", layout.split_list_name("test", 1)).write_text("\n".join(lists[0]["test"][:-1]) + "\n")
    assert not toy.has_toy_dataset(tmp_path / "a", plain)  # another split of the same videos


def test_an_interrupted_render_leaves_the_previous_dataset_and_a_rerun_completes(tmp_path, caplog, monkeypatch):
    cfg = ToyConfig(num_videos=8, seed=1, min_frames=16, max_frames=18, frame_size=(64, 48))
    root = tmp_path / "toy"
    make_toy_dataset(root, cfg, progress=False)
    before = _digest(root)
    calls = {"n": 0}
    write_frames = toy.write_frames

    def failing(frames, directory):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("disk full")
        write_frames(frames, directory)
    monkeypatch.setattr(toy, "write_frames", failing)
    new = ToyConfig(num_videos=8, seed=2, min_frames=16, max_frames=18, frame_size=(64, 48))
    with pytest.raises(OSError, match="disk full"):
        make_toy_dataset(root, new, progress=False)
    assert _digest(root) == before and sorted(p.name for p in tmp_path.iterdir()) == ["toy"]
    monkeypatch.undo()
    # what a kill -9 leaves: a temporary folder beside the output, removed by the next run
    stale = tmp_path / ".toy2.x1y2.tmp"
    (stale / "rgb-images").mkdir(parents=True)
    make_toy_dataset(tmp_path / "toy2", new, progress=False)
    assert not stale.exists()
    check_toy_dataset(tmp_path / "toy2", new, caplog)
    make_toy_dataset(root, new, progress=False)  # an existing toy dataset is replaced
    assert _digest(root) == _digest(tmp_path / "toy2")


def test_refuses_to_overwrite_a_folder_that_is_not_a_toy_dataset(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="mine exists and is not a toy dataset"):
        make_toy_dataset(tmp_path / "mine", ToyConfig(num_videos=8, min_frames=16, max_frames=16), progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_prepare_data_toy_renders_the_default_test_videos_and_takes_other_counts(tmp_path, capsys):
    import prepare_data
    assert prepare_data.get_args_parser().parse_args(["toy"]).test_videos == toy.EXTRA_TEST_VIDEOS == 24
    small = ["--quiet", "toy", "--videos", "8", "--min_frames", "16", "--max_frames", "16", "--frame_size", "64x48",
             "--no_flow"]
    assert prepare_data.main(small + ["--out", str(tmp_path / "t"), "--test_videos", "2"]) == 0
    assert len(read_video_list(layout.split_path(tmp_path / "t", layout.split_list_name("test", 1)))) == 4 + 2
    with pytest.raises(SystemExit) as stop:
        prepare_data.main(small + ["--out", str(tmp_path / "u"), "--test_videos", "-1"])
    assert stop.value.code == "prepare_data.py toy: test_videos must be >= 0, got -1"
