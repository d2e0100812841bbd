"""The tracks dataset: real UCF101-24 tube tracks, classes told apart by motion only (data/toy_tracks.py)."""
import pickle

import numpy as np
import pytest

import prepare_data
from data import layout, toy_tracks
from data.annotations import Tube, VideoAnnotation, check_dataset, load_pyannot, read_video_list
from data.toy_tracks import CLASS_NAMES, MIN_BOX, TracksConfig, make_tracks_dataset, render_video


def _config(ucf24_dir, **changes):
    values = dict(num_videos=24, seed=5, max_frames=32, flow=False, workers=1, annot=str(ucf24_dir / "pyannot.pkl"))
    values.update(changes)
    return TracksConfig(**values)


@pytest.fixture(scope="module")
def tracks_root(tmp_path_factory, ucf24_dir):
    root = tmp_path_factory.mktemp("tracks") / "data"
    make_tracks_dataset(root, _config(ucf24_dir), progress=False)
    return root


def _raw(root):
    with open(layout.split_path(root, layout.ANNOT_FILE), "rb") as f:
        return pickle.load(f, encoding="latin1")


def test_layout_and_split(tracks_root):
    summary = check_dataset(tracks_root, ["rgb"])
    assert summary["classes"] == list(CLASS_NAMES) and summary["videos"] == 24
    raw = _raw(tracks_root)
    train = read_video_list(layout.split_path(tracks_root, "trainlist01.txt"))
    test = read_video_list(layout.split_path(tracks_root, "testlist01.txt"))
    assert sorted(train + test) == sorted(raw) and not set(train) & set(test)
    assert sorted(raw[v]["label"] for v in test) == list(range(6))  # ceil(0.25 * 4) = 1 per class
    for name in raw:
        assert len(list(layout.video_dir(tracks_root, "rgb", name).iterdir())) == int(raw[name]["numf"]) <= 32


def test_boxes_inside_the_image_and_tubes_contiguous(tracks_root, caplog):
    for name, entry in _raw(tracks_root).items():
        assert name.split("/")[0] == CLASS_NAMES[entry["label"]]
        assert entry["annotations"], name
        for tube in entry["annotations"]:
            assert tube["label"] == entry["label"]
            assert 0 <= tube["sf"] < tube["ef"] <= int(entry["numf"])
            assert tube["boxes"].shape == (tube["ef"] - tube["sf"], 4)  # one box per frame: no gaps
            x, y, w, h = tube["boxes"].astype(int).T
            assert (x >= 1).all() and (y >= 1).all() and (x + w - 1 <= 320).all() and (y + h - 1 <= 240).all()
            assert (w >= MIN_BOX).all() and (h >= MIN_BOX).all()
    load_pyannot(layout.split_path(tracks_root, layout.ANNOT_FILE), num_classes=6)
    assert "clipped" not in caplog.text  # nothing for the reader to repair


def test_several_actors_and_tubes_inside_the_video(tracks_root):
    videos = load_pyannot(layout.split_path(tracks_root, layout.ANNOT_FILE))
    assert sum(len(v.tubes) > 1 for v in videos.values()) >= 3
    assert any(t.start > 0 for v in videos.values() for t in v.tubes)
    assert any(t.end < v.num_frames for v in videos.values() for t in v.tubes)
    assert len({len(t.boxes) for v in videos.values() for t in v.tubes}) >= 3


def _iou(a, b):
    w = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]) + 1
    h = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]) + 1
    inter = w.clip(0) * h.clip(0)
    area = (a[:, 2:] - a[:, :2] + 1).prod(1) + (b[:, 2:] - b[:, :2] + 1).prod(1)
    return inter / (area - inter)


def test_actors_follow_the_real_tracks(ucf24_dir):
    real = load_pyannot(ucf24_dir / "pyannot.pkl")
    source = next(v for _, v in sorted(real.items()) if len(v.tubes) == 2 and v.num_frames <= 96)
    for class_index in range(len(CLASS_NAMES)):
        frames, tubes = render_video(np.random.default_rng(class_index), class_index, source)
        assert len(frames) == source.num_frames
        for real_tube in source.tubes:
            # the synthetic tube on this track: the one overlapping it most at its first frame
            ious = []
            for tube in tubes:
                lo, hi = max(tube.start, real_tube.start), min(tube.end, real_tube.end)
                if lo < hi:
                    ious.append(_iou(tube.boxes[lo - tube.start:hi - tube.start],
                                     real_tube.boxes[lo - real_tube.start:hi - real_tube.start]))
            best = max(ious, key=np.median)
            assert np.median(best) > 0.5, (CLASS_NAMES[class_index], np.median(best))


def test_invisible_actor_splits_its_tube():
    """A track whose box shrinks to 2 pixels for frames 10-14: the actor vanishes there and the tube is split."""
    boxes = np.tile(np.array([[100, 60, 160, 200]], np.float32), (30, 1))
    boxes[10:15] = [130, 130, 131, 131]
    real = VideoAnnotation("A/v_A_g01_c01", 40, 0, [Tube(0, 5, boxes)])
    _, tubes = render_video(np.random.default_rng(0), 2, real)
    assert [(t.start, t.end) for t in tubes] == [(5, 15), (20, 35)]
    for tube in tubes:
        assert ((tube.boxes[:, 2:] - tube.boxes[:, :2] + 1) >= MIN_BOX).all()


def _mean_colours(root, videos):
    """Per video: the mean colour of the central patch of its boxes (mostly the actor's body)."""
    import cv2
    colours = {}
    for name, video in videos.items():
        samples = []
        for tube in video.tubes:
            for f in range(tube.start, tube.end, max(1, len(tube.boxes) // 4)):
                image = cv2.imread(str(layout.frame_path(root, "rgb", name, f))).astype(np.float32)
                x1, y1, x2, y2 = tube.boxes[f - tube.start]
                cx, cy, w, h = (x1 + x2) / 2, y1 + 0.45 * (y2 - y1), x2 - x1, y2 - y1
                patch = image[int(cy - 0.1 * h):int(cy + 0.1 * h) + 1, int(cx - 0.1 * w):int(cx + 0.1 * w) + 1]
                samples.append(patch.reshape(-1, 3).mean(0))
        colours[name] = np.mean(samples, 0)
    return colours


def _colour_accuracy(root, num_classes):
    """Leave-one-out nearest-class-mean accuracy of classifying videos by actor colour."""
    videos = load_pyannot(layout.split_path(root, layout.ANNOT_FILE))
    colours = _mean_colours(root, videos)
    correct = 0
    for name, video in videos.items():
        means = [np.mean([colours[n] for n, v in videos.items() if v.class_id == c and n != name], 0)
                 for c in range(num_classes)]
        correct += int(np.argmin([np.linalg.norm(colours[name] - m) for m in means]) == video.class_id)
    return correct / len(videos)


def test_colour_does_not_tell_the_class(tracks_root, toy_root):
    # The measure finds the toy dataset's class colours; on the tracks it is at chance (1/6).
    assert _colour_accuracy(toy_root, 4) >= 0.75
    assert _colour_accuracy(tracks_root, 6) < 0.4


def test_deterministic_for_a_seed_and_any_workers(tmp_path, ucf24_dir):
    cfg = _config(ucf24_dir, num_videos=12, max_frames=8, flow=True)
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    make_tracks_dataset(a, cfg, progress=False)
    make_tracks_dataset(b, _config(ucf24_dir, num_videos=12, max_frames=8, flow=True, workers=2), progress=False)
    make_tracks_dataset(c, _config(ucf24_dir, num_videos=12, max_frames=8, seed=6), progress=False)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert any(str(p).startswith("fastOF-images") for p in files_a)
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert (a / "splitfiles/pyannot.pkl").read_bytes() != (c / "splitfiles/pyannot.pkl").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]  # no temporaries left


def test_too_few_real_videos_is_a_clear_error(tmp_path, ucf24_dir):
    with open(ucf24_dir / "pyannot.pkl", "rb") as f:
        database = pickle.load(f, encoding="latin1")
    # group 8 (training): 121 videos; g01_c01 (test groups): 24 videos
    small = {n: e for n, e in database.items() if "_g08_" in n or "_g01_c01" in n}
    path = tmp_path / "small.pkl"
    with open(path, "wb") as f:
        pickle.dump(small, f)
    with pytest.raises(ValueError, match="too few real test videos with tubes: 24 for 30 test videos"):
        make_tracks_dataset(tmp_path / "out", _config(tmp_path, num_videos=120, annot=str(path)), progress=False)


def test_interrupted_write_leaves_no_dataset(tmp_path, ucf24_dir, monkeypatch):
    calls, write = [], toy_tracks._write_video

    def failing_write(*args):
        calls.append(args)
        if len(calls) == 3:
            raise OSError("disk full")
        write(*args)

    monkeypatch.setattr(toy_tracks, "_write_video", failing_write)
    with pytest.raises(OSError, match="disk full"):
        make_tracks_dataset(tmp_path / "out", _config(ucf24_dir, num_videos=12, max_frames=8), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_bad_configs_are_clear_errors(tmp_path, ucf24_dir):
    with pytest.raises(ValueError, match="at least 12 videos"):
        make_tracks_dataset(tmp_path / "x", _config(ucf24_dir, num_videos=8), progress=False)
    with pytest.raises(ValueError, match="num_classes must be 1..6"):
        make_tracks_dataset(tmp_path / "x", _config(ucf24_dir, num_classes=7), progress=False)
    with pytest.raises(FileNotFoundError, match="--annot"):
        make_tracks_dataset(tmp_path / "x", _config(ucf24_dir, annot=str(tmp_path / "none.pkl")), progress=False)


def test_prepare_data_tracks_command(tmp_path, ucf24_dir):
    out = tmp_path / "tracks"
    assert prepare_data.main(["--quiet", "tracks", "--out", str(out), "--videos", "12", "--seed", "1", "--max_frames", "10",
                              "--annot", str(ucf24_dir / "pyannot.pkl"), "--no_flow", "--workers", "1"]) == 0
    assert check_dataset(out, ["rgb"])["classes"] == list(CLASS_NAMES)
