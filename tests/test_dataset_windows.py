"""Micro-tube windows: hand-computed cases, and the real UCF101-24 annotations."""
from collections import Counter

import numpy as np
import pytest

from data.annotations import DatasetAnnotations, Tube, VideoAnnotation
from data.dataset import DataConfig, load_annotations, stack_indices
from data.windows import UCF24_RATIOS, make_windows, video_windows


def _video(num_frames, spans, class_id=0):
    tubes = [Tube(class_id, a, np.tile(np.array([[10, 20, 50, 80]], np.float32) + t, (b - a, 1)))
             for t, (a, b) in enumerate(spans)]
    return VideoAnnotation("C/v", num_frames, class_id, tubes)


def test_training_windows_keep_only_fully_present_tubes():
    # numf 10, seq_len 2, gap 0: starts arange(0, 10 - 2) = 0..7; tube on frames 2..5 (end 6).
    windows = video_windows(_video(10, [(2, 6)]), 0, seq_len=2, seq_gap=0, step=1)
    assert [w.frames.tolist() for w in windows] == [[2, 3], [3, 4], [4, 5]]
    assert windows[0].boxes.shape == (1, 2, 4) and windows[0].class_ids.tolist() == [0]


def test_half_present_tube_invalidates_window_even_with_another_full_tube():
    # Tube 0 spans everything, tube 1 covers frames 4..5: windows [3,4] and [5,6] are half on tube 1.
    windows = video_windows(_video(10, [(0, 10), (4, 6)]), 0, seq_len=2, seq_gap=0, step=1)
    frames = [w.frames.tolist() for w in windows]
    assert [3, 4] not in frames and [5, 6] not in frames
    assert [4, 5] in frames and len(windows[frames.index([4, 5])].class_ids) == 2
    assert [w.frames[0] for w in windows] == [0, 1, 2, 4, 6, 7]
    # At test time the window stays, without targets (the original's placeholder window).
    full = video_windows(_video(10, [(0, 10), (4, 6)]), 0, seq_len=2, seq_gap=0, step=1, full_test=True)
    assert [len(w.class_ids) for w in full] == [1, 1, 1, 0, 2, 0, 1, 1, 1]
    assert full[3].boxes.shape == (0, 2, 4)


def test_seq_gap_spaces_frames_and_limits_starts():
    # seq_len 3, gap 2: frames s, s+3, s+6; starts arange(0, 20 - (2*2 + 3)) = 0..12.
    windows = video_windows(_video(20, [(0, 20)]), 0, seq_len=3, seq_gap=2, step=5)
    assert [w.frames.tolist() for w in windows] == [[0, 3, 6], [5, 8, 11], [10, 13, 16]]


def test_fractional_step_repeats_starts_like_the_original():
    # np.arange(0, 4, 0.7) = 0, .7, 1.4, 2.1, 2.8, 3.5 -> int 0, 0, 1, 2, 2, 3
    windows = video_windows(_video(6, [(0, 6)]), 0, seq_len=2, seq_gap=0, step=0.7)
    assert [int(w.frames[0]) for w in windows] == [0, 0, 1, 2, 2, 3]


def test_full_test_keeps_empty_windows_and_appends_last_window():
    # eval_gap 1, seq_len 2: step 2, starts arange(0, 10 - 3, 2) = 0,2,4,6 plus numf-step-1 = 7.
    windows = video_windows(_video(10, [(2, 6)]), 0, seq_len=2, seq_gap=1, step=2, full_test=True)
    assert [w.frames.tolist() for w in windows] == [[0, 2], [2, 4], [4, 6], [6, 8], [7, 9]]
    assert [len(w.class_ids) for w in windows] == [0, 1, 0, 0, 0]  # [4,6]: tube ends at 5 -> half present
    assert windows[0].boxes.shape == (0, 2, 4)


def test_stack_indices_clamp_at_both_ends():
    # pull_item, 1-based fn, numf 10, 5 frames: near the start max(fn-2, 1); near the end the last 5.
    expected = {0: [0, 1, 2, 3, 4], 1: [0, 1, 2, 3, 4], 2: [0, 1, 2, 3, 4], 3: [1, 2, 3, 4, 5],
                6: [4, 5, 6, 7, 8], 7: [5, 6, 7, 8, 9], 9: [5, 6, 7, 8, 9]}
    for frame, frames in expected.items():
        assert stack_indices(frame, 5, 10).tolist() == frames
    assert stack_indices(4, 1, 10).tolist() == [4]
    assert stack_indices(9, 1, 10).tolist() == [9]
    assert stack_indices(1, 5, 3).tolist() == [0, 0, 0, 1, 2]  # shorter than the stack: end frames repeat


def test_computed_balanced_steps_for_other_class_lists():
    # Class 0: 2 videos of 12 frames, class 1: 1 video; 10 windows per video at step 1; median 15.
    videos = {f"A/v{i}": VideoAnnotation(f"A/v{i}", 12, 0, _video(12, [(0, 12)]).tubes) for i in range(2)}
    videos["B/v0"] = VideoAnnotation("B/v0", 12, 1, _video(12, [(0, 12)], class_id=1).tubes)
    annots = DatasetAnnotations(["A", "B"], videos, sorted(videos), [])
    windows = make_windows("ucf24", annots, "train", 2, 0)
    counts = Counter(int(w.class_ids[0]) for w in windows)
    # class 0 step 20/15: arange(0, 10, 1.333) has 8 starts per video; class 1 step 10/15 -> 15 starts.
    assert counts == {0: 16, 1: 15}


@pytest.fixture(scope="module")
def ucf24(ucf24_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("ucf24")
    (root / "splitfiles").mkdir()
    for name in ("pyannot.pkl", "testlist01.txt"):
        (root / "splitfiles" / name).symlink_to(ucf24_dir / name)
    for name in (ucf24_dir / "testlist01.txt").read_text().split():  # class names from the class folders
        (root / "rgb-images" / name.split("/")[0]).mkdir(parents=True, exist_ok=True)
    return load_annotations(DataConfig(dataset="ucf24", data_root=str(root)))


def _reference_windows(video, seq_len, seq_gap, step):
    """A frame-by-frame loop over the original's rule, for comparison."""
    out = []
    for start in np.arange(0, video.num_frames - ((seq_len - 1) * seq_gap + seq_len), step):
        frames = [int(start) + k * (seq_gap + 1) for k in range(seq_len)]
        counts = [sum(t.start <= f < t.end for f in frames) for t in video.tubes]
        if all(c in (0, seq_len) for c in counts) and seq_len in counts:
            boxes = [[t.boxes[f - t.start].tolist() for f in frames] for t, c in zip(video.tubes, counts) if c == seq_len]
            out.append((frames, boxes))
    return out


def test_real_ucf24_split_and_window_counts(ucf24):
    assert (len(ucf24.train_videos), len(ucf24.test_videos)) == (2284, 910)
    order = sorted(ucf24.videos)
    windows = make_windows("ucf24", ucf24, "train", 2, 0)
    by_video = {}
    for w in windows:
        by_video.setdefault(order[w.video_index], []).append((w.frames.tolist(), w.boxes.tolist()))
    ratios = UCF24_RATIOS[2]
    for name in ucf24.train_videos[::40]:
        video = ucf24.videos[name]
        assert by_video.get(name, []) == _reference_windows(video, 2, 0, ratios[video.class_id]), name
    # The original's ratios are counts at step 1 over a base of 5000 ("5000 as base number"):
    # classes whose ratio is at least 1 come out near 5000 windows each.
    counts = Counter(ucf24.videos[order[w.video_index]].class_id for w in windows)
    for c, ratio in enumerate(ratios):
        if ratio >= 1:
            assert abs(counts[c] - 5000) < 150, (c, counts[c])


def test_real_ucf24_no_half_present_tube(ucf24):
    order = sorted(ucf24.videos)
    for split in ("train", "test"):
        by_video = {}
        for w in make_windows("ucf24", ucf24, split, 3, 1):
            by_video.setdefault(w.video_index, []).append(w)
        for index, windows in by_video.items():
            video = ucf24.videos[order[index]]
            frames = np.stack([w.frames for w in windows])[:, :, None]  # [W, T, 1]
            starts = np.array([t.start for t in video.tubes])
            ends = np.array([t.end for t in video.tubes])
            counts = ((frames >= starts) & (frames < ends)).sum(axis=1)  # [W, tubes]
            assert np.all((counts == 0) | (counts == 3)), video.name
            assert [len(w.class_ids) for w in windows] == (counts == 3).sum(axis=1).tolist()
            assert np.all((counts == 3).any(axis=1))


def test_real_ucf24_test_windows_cover_every_frame(ucf24):
    order = sorted(ucf24.videos)
    for eval_gap in (1, 0):
        covered = {name: np.zeros(ucf24.videos[name].num_frames, bool) for name in ucf24.test_videos}
        for w in make_windows("ucf24", ucf24, "test", 2, 0, eval_gap=eval_gap, full_test=True):
            mask = covered[order[w.video_index]]
            if eval_gap == 0:
                mask[w.frames] = True            # every frame is a window frame
            else:
                mask[w.frames[0]:w.frames[-1] + 1] = True  # frames between are the micro-tube's span
        missing = [name for name, mask in covered.items() if not mask.all()]
        assert not missing, (eval_gap, missing[:3])
