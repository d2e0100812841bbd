"""Micro-tube windows: which frames a sample holds, and which ground-truth tubes it targets.

A window is ``seq_len`` frames spaced ``seq_gap + 1`` apart. Its targets are the tubes
present in all of its frames. The rules follow ``make_lists_ucf`` / ``make_lists_jhmdb``
of the original (``data/shared.py``):

- window starts are ``np.arange(0, numf - ((seq_len - 1) * seq_gap + seq_len), step)``,
  truncated to integers (a fractional step below 1 repeats a start: the original's
  oversampling of rare classes);
- training and validation windows are kept only if every tube is present in all or none
  of their frames and at least one tube is present in all;
- test windows (``full_test``) use ``seq_gap = eval_gap`` and ``step = (seq_len - 1) *
  (eval_gap + 1)``, keep every window (those failing the rule above have no targets), and
  append the window starting at ``numf - step - 1`` so the last frame is covered (the
  original's ``if numf-step-1 not in possible_frame_nums and fulltest``).

Per-class steps: UCF101-24 training uses the original's ``all_ratios`` for ``seq_len`` 2
and 6, test videos ``max(1, ratio) * 4``; J-HMDB-21 uses 1 for training and 1.5 for
test videos. Any other class list or ``seq_len`` gets a computed balanced step: the
class's number of valid windows at step 1 divided by the median over classes (the
original's ratios are such counts divided by a base number), so every class yields
about the median count.
"""
import logging
from dataclasses import dataclass

import numpy as np

from .annotations import DatasetAnnotations, VideoAnnotation

log = logging.getLogger(__name__)

UCF24_CLASSES = ("Basketball", "BasketballDunk", "Biking", "CliffDiving", "CricketBowling", "Diving", "Fencing",
                 "FloorGymnastics", "GolfSwing", "HorseRiding", "IceDancing", "LongJump", "PoleVault", "RopeClimbing",
                 "SalsaSpin", "SkateBoarding", "Skiing", "Skijet", "SoccerJuggling", "Surfing", "TennisSwing",
                 "TrampolineJumping", "VolleyballSpiking", "WalkingWithDog")

# data/shared.py, make_lists_ucf: all_ratios['2'] ("5000 as base number") and all_ratios['6'] ("4000").
UCF24_RATIOS = {
    2: (1.00, 0.80, 4.19, 1.30, 0.85, 2.34, 1.98, 2.64, 2.66, 4.49, 5.53, 2.44,
        3.15, 2.74, 3.77, 2.26, 4.00, 3.06, 6.04, 3.25, 1.47, 3.02, 0.70, 3.82),
    6: (1.11, 0.85, 5.10, 1.53, 1.0, 2.82, 2.38, 3.21, 3.21, 5.49, 6.78, 2.95,
        3.82, 3.34, 4.16, 2.74, 4.90, 3.75, 7.44, 3.92, 1.64, 3.61, 0.76, 4.68),
}
UCF_TEST_STEP_FACTOR = 4.0     # make_lists_ucf: step = max(1, ratios[actidx]) * 4 for test videos
JHMDB_TEST_STEP_FACTOR = 1.5   # make_lists_jhmdb: step = max(1, ratios[actidx]) * 1.5, ratios all 1


@dataclass
class Window:
    """One sample: ``frames`` [T] 0-based; ``boxes`` [N, T, 4] pixels x1, y1, x2, y2; ``class_ids`` [N]."""
    video_index: int
    frames: np.ndarray
    boxes: np.ndarray
    class_ids: np.ndarray


def window_offsets(seq_len: int, seq_gap: int) -> np.ndarray:
    return np.arange(seq_len) * (seq_gap + 1)


def presence_matrix(video: VideoAnnotation) -> np.ndarray:
    """``[num_frames, num_tubes]`` bool: tube present in frame."""
    present = np.zeros((video.num_frames, len(video.tubes)), dtype=bool)
    for t, tube in enumerate(video.tubes):
        present[tube.start:tube.end, t] = True
    return present


def candidate_starts(num_frames: int, seq_len: int, seq_gap: int, step: int, full_test: bool = False) -> np.ndarray:
    """Window starts, as the original computes them (see module doc)."""
    limit = num_frames - ((seq_len - 1) * seq_gap + seq_len)
    starts = np.arange(0, limit, step) if limit > 0 else np.zeros(0)
    if full_test and num_frames - step - 1 >= 0 and num_frames - step - 1 not in starts:
        starts = np.append(starts, num_frames - step - 1)
    return starts.astype(np.int64)


def valid_mask(present: np.ndarray, frames: np.ndarray) -> tuple:
    """For windows ``frames`` [W, T]: (valid [W], full [W, tubes]) under the all-or-none rule."""
    counts = present[frames].sum(axis=1)  # [W, tubes]
    seq_len = frames.shape[1]
    full = counts == seq_len
    valid = np.all((counts == 0) | full, axis=1) & np.any(full, axis=1)
    return valid, full


def _window_frames(video: VideoAnnotation, seq_len: int, seq_gap: int, step: int, full_test: bool = False) -> tuple:
    """A video's candidate windows ``frames`` [W, T] with ``valid_mask``'s (valid [W], full [W, tubes])."""
    starts = candidate_starts(video.num_frames, seq_len, seq_gap, step, full_test)
    frames = starts[:, None] + window_offsets(seq_len, seq_gap)[None, :]
    frames = frames[frames[:, -1] < video.num_frames]
    return (frames, *valid_mask(presence_matrix(video), frames))


def video_windows(video: VideoAnnotation, video_index: int, seq_len: int, seq_gap: int, step: int,
                  full_test: bool = False) -> list:
    """Windows of one video (list of ``Window``)."""
    frames, valid, full = _window_frames(video, seq_len, seq_gap, step, full_test)
    # Boxes of every tube at every window frame ([W, tubes, T, 4]); only fully present ones are kept.
    boxes = np.zeros((len(frames), len(video.tubes), seq_len, 4), np.float32)
    for t, tube in enumerate(video.tubes):
        boxes[:, t] = tube.boxes[np.clip(frames - tube.start, 0, len(tube.boxes) - 1)]
    class_ids = np.array([tube.class_id for tube in video.tubes], dtype=np.int64)
    keep = full & valid[:, None]  # test windows failing the rule get no targets, as the original's
    return [Window(video_index, frames[w], boxes[w, keep[w]], class_ids[keep[w]])
            for w in range(len(frames)) if valid[w] or full_test]


def valid_window_counts(videos: dict, names: list, num_classes: int, seq_len: int, seq_gap: int) -> np.ndarray:
    """Number of valid windows per class at step 1 (the basis of the balanced steps)."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for name in names:
        video = videos[name]
        starts = candidate_starts(video.num_frames, seq_len, seq_gap, 1)
        frames = starts[:, None] + window_offsets(seq_len, seq_gap)[None, :]
        if len(frames) and video.tubes:
            counts[video.class_id] += int(valid_mask(presence_matrix(video), frames)[0].sum())
    return counts


def class_ratios(dataset: str, classes: list, videos: dict, train_names: list, seq_len: int, seq_gap: int) -> np.ndarray:
    """Per-class training step (see module doc)."""
    if dataset == "jhmdb21":
        return np.ones(len(classes))
    if tuple(classes) == UCF24_CLASSES and seq_len in UCF24_RATIOS:
        return np.asarray(UCF24_RATIOS[seq_len])
    counts = valid_window_counts(videos, train_names, len(classes), seq_len, seq_gap)
    present = counts[counts > 0]
    base = float(np.median(present)) if len(present) else 1.0
    ratios = np.where(counts > 0, counts / base, 1.0)
    log.info("balanced training steps per class (valid windows at step 1 / median %.1f): %s",
             base, ", ".join(f"{r:.2f}" for r in ratios))
    return ratios


def make_windows(dataset: str, annotations: DatasetAnnotations, split: str, seq_len: int, seq_gap: int,
                 eval_gap: int = 1, full_test: bool = False, video_order: list | None = None) -> list:
    """All windows of ``split`` (``'train'``/``'test'``) of a ``DatasetAnnotations``.

    ``video_order``: names in index order (``Window.video_index``); default all annotated
    videos sorted, as the original's ``video_list``.
    """
    order = video_order if video_order is not None else sorted(annotations.videos)
    index = {name: i for i, name in enumerate(order)}
    seq_gap, steps = _split_steps(dataset, annotations, split, seq_len, seq_gap, eval_gap, full_test)
    windows = []
    for name in annotations.split_videos(split):
        video = annotations.videos[name]
        windows.extend(video_windows(video, index[name], seq_len, seq_gap, steps[video.class_id], full_test))
    return windows


def count_split_windows(dataset: str, annotations: DatasetAnnotations, split: str, seq_len: int, seq_gap: int,
                        eval_gap: int = 1, full_test: bool = False) -> int:
    """``len(make_windows(...))`` without making the windows (no boxes gathered)."""
    seq_gap, steps = _split_steps(dataset, annotations, split, seq_len, seq_gap, eval_gap, full_test)
    total = 0
    for name in annotations.split_videos(split):
        video = annotations.videos[name]
        frames, valid, _ = _window_frames(video, seq_len, seq_gap, steps[video.class_id], full_test)
        total += len(frames) if full_test else int(valid.sum())
    return total


def _split_steps(dataset: str, annotations: DatasetAnnotations, split: str, seq_len: int, seq_gap: int,
                 eval_gap: int, full_test: bool) -> tuple:
    """``(seq_gap, steps)`` of a split's windows: the gap between a window's frames and each class's step
    between window starts (see module doc)."""
    if full_test:
        # make_lists_ucf: step = (seq_len - 1) * (seq_gap + 1); at least 1 so seq_len 1 works.
        step = max(1, (seq_len - 1) * (eval_gap + 1))
        return eval_gap, [step] * len(annotations.classes)
    ratios = class_ratios(dataset, annotations.classes, annotations.videos, annotations.train_videos, seq_len, seq_gap)
    test_factor = JHMDB_TEST_STEP_FACTOR if dataset == "jhmdb21" else UCF_TEST_STEP_FACTOR
    return seq_gap, ratios if split == "train" else np.maximum(1.0, ratios) * test_factor
