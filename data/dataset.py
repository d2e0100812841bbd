"""The action-detection dataset: micro-tube windows of UCF101-24, J-HMDB-21, the toy set, or
any dataset in the UCF101-24 layout (``data/layout.py``), and the batch collate function.

A sample (``ActionDetection[i]``) is a dict::

    images   {'base': float32 [T, 3 * input_frames_base, S, S],
              'extra': float32 [T, 3 * input_frames_extra, S, S]}   ('extra' only with two_stream)
    boxes    float32 [N, T, 4]  x1, y1, x2, y2 normalised to [0, 1]
    labels   int64 [N]          class_id + 1 (0 is background)
    video    str; video_index int (into ``dataset.videos``)
    frames   int64 [T]          0-based frame indices
    size     (height, width)    of the original frames

Each time step stacks ``input_frames`` consecutive frames centred on it along the
channels (frame-major: the first frame's three channels first), clamped at the video's
ends as the original's ``pull_item``. Channel order within a frame is the reverse of the
file's (R, G, B for RGB; see ``data/transforms.py``). Matching to priors is not done
here: it runs in the loss, on the device.
"""
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info
from tqdm import tqdm

from utils.errors import InputError

from . import layout
from .act_annots import ACT_FILES, is_act_file, parse_act_gt
from .annotations import (UCF_FRAME_SIZE, DatasetAnnotations, load_class_names, load_pickle, parse_ucf_database,
                          resolve_split)
from .flow import FlowChannels
from .transforms import MEANS, TestTransform, TrainTransform
from .windows import Window, count_split_windows, make_windows

log = logging.getLogger(__name__)

DATASETS = ("ucf24", "jhmdb21", "toy")
RGB_TYPES = ("rgb",)  # every other <type>-images folder holds flow


class FrameError(InputError, OSError):
    """A frame file is missing or cannot be decoded: the message names video, frame and path."""


@dataclass
class DataConfig:
    """What the dataset needs; scripts build it from their flags."""
    dataset: str = "ucf24"
    data_root: str = "."
    input_type_base: str = "rgb"
    input_type_extra: str = "brox"
    input_frames_base: int = 1
    input_frames_extra: int = 5
    two_stream: bool = False     # read the extra stream too (a fused two-stream model)
    seq_len: int = 2
    seq_gap: int = 0
    eval_gap: int = 1
    train_split: int = 1
    image_size: int = 300
    flow_channels: str = "xym"   # R, G, B planes of the flow JPEG files (data/flow.py)
    mirror_flow_pixels_only: bool = False  # True: the original mirror (flow x not negated)
    means: tuple = MEANS
    annot_file: str = None       # default: splitfiles/pyannot.pkl, else an ACT *-GT.pkl in data_root
    check_data: bool = False     # check every needed frame file exists before training
    max_expand: float = 4.0      # largest zoom-out of the Expand augmentation (the original's 4)
    channel_swap: bool = True    # the photometric distortion's random channel permutation (the original's)
    val_fraction: float = 0.0    # training videos held out per class as the 'val' split (0: none)

    def validate(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose from {', '.join(DATASETS)} "
                             f"(any dataset in the UCF101-24 layout works as ucf24 with --data_root)")
        if not Path(self.data_root).is_dir():
            raise FileNotFoundError(f"data_root {self.data_root} is not a directory")
        for name, value in (("seq_len", self.seq_len), ("input_frames_base", self.input_frames_base),
                            ("input_frames_extra", self.input_frames_extra), ("train_split", self.train_split),
                            ("image_size", self.image_size)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.seq_gap < 0 or self.eval_gap < 0:
            raise ValueError(f"seq_gap and eval_gap must be >= 0, got {self.seq_gap}, {self.eval_gap}")
        FlowChannels.parse(self.flow_channels)
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.max_expand < 1:
            raise ValueError(f"max_expand must be at least 1, got {self.max_expand}")

    def streams(self) -> dict:
        """``{stream: (input type, frames per time step)}``."""
        streams = {"base": (self.input_type_base, self.input_frames_base)}
        if self.two_stream:
            streams["extra"] = (self.input_type_extra, self.input_frames_extra)
        return streams


def stack_indices(frame: int, count: int, num_frames: int) -> np.ndarray:
    """0-based indices of the ``count`` frames stacked for time step ``frame``.

    The original (``data/dataset.py``, ``pull_item``, 1-based ``fn``): if ``numf + 1 <= fn +
    count//2 + 1`` the stack is the video's last ``count`` frames, else it starts at
    ``max(fn - count//2, 1)``. Videos shorter than ``count`` (where the original fails) repeat
    their end frames.
    """
    half = count // 2
    start = num_frames - count if frame + 1 + half >= num_frames else max(frame - half, 0)
    return np.clip(np.arange(start, start + count), 0, num_frames - 1)


def probe_frame_size(root: str | Path, videos: dict, input_type: str = "rgb") -> tuple:
    """(width, height) of the first existing frame of the first video, else UCF101-24's."""
    for name in sorted(videos)[:1]:
        path = layout.frame_path(root, input_type, name, 0)
        image = cv2.imread(str(path)) if path.is_file() else None
        if image is not None:
            return image.shape[1], image.shape[0]
    return UCF_FRAME_SIZE


def load_annotations(cfg: DataConfig) -> DatasetAnnotations:
    """``DatasetAnnotations`` for ``cfg``: pyannot.pkl (UCF101-24 layout) or the ACT format, with
    ``cfg.val_fraction`` of the training videos held out as the 'val' split."""
    annotations = _load_annotations(cfg)
    return annotations.hold_out(cfg.val_fraction) if cfg.val_fraction > 0 else annotations


def _load_annotations(cfg: DataConfig) -> DatasetAnnotations:
    root = Path(cfg.data_root)
    path = Path(cfg.annot_file) if cfg.annot_file else layout.split_path(root, layout.ANNOT_FILE)
    if not cfg.annot_file and not path.is_file():
        act = [p for name in ACT_FILES for p in (root / name, layout.split_path(root, name)) if p.is_file()]
        if not act:
            raise FileNotFoundError(f"no annotations in {root}: expected {path} or one of {', '.join(ACT_FILES)}")
        path = act[0]
    content = load_pickle(path)
    if is_act_file(content):
        return parse_act_gt(content, path, cfg.train_split)
    if isinstance(content, dict) and "db" in content and "classes" in content:
        content = content["db"]
    classes = load_class_names(root)
    frame_size = probe_frame_size(root, content)
    videos = parse_ucf_database(content, path, len(classes), frame_size, jhmdb=cfg.dataset == "jhmdb21")
    train, test = resolve_split(root, cfg.train_split, videos)
    return DatasetAnnotations(classes, videos, train, test)


def count_windows(cfg: DataConfig, split: str, full_test: bool = False) -> int:
    """``len(ActionDetection(cfg, split, full_test))`` from the annotations alone (pipeline.py's epochs):
    no windows made, no frames checked."""
    cfg.validate()
    annotations = load_annotations(cfg)
    return count_split_windows(cfg.dataset, annotations, split, cfg.seq_len, cfg.seq_gap, cfg.eval_gap, full_test)


class ActionDetection(Dataset):
    """Micro-tube windows of one split (``'train'``, ``'val'`` or ``'test'``) with their targets.

    ``full_test``: the test-time windows (``eval_gap``, every frame of every video, windows
    without ground truth included); otherwise the original's training / validation windows.
    ``augment``: default on for the training split unless ``full_test``. ``seed``: the
    augmentation's random stream (default ``torch.initial_seed()``, so ``torch.manual_seed``
    and DataLoader workers give reproducible, distinct streams).
    """

    def __init__(self, cfg: DataConfig, split: str, full_test: bool = False, augment: bool | None = None,
                 annotations: DatasetAnnotations | None = None, seed: int | None = None):
        cfg.validate()
        self.cfg, self.split, self.full_test, self.seed = cfg, split, full_test, seed
        self.root = Path(cfg.data_root)
        self.annotations = annotations if annotations is not None else load_annotations(cfg)
        self.classes = list(self.annotations.classes)
        self.videos = sorted(self.annotations.videos)
        names = self.annotations.split_videos(split)
        if not names:
            raise ValueError(f"the {split} split of {self.root} (split {cfg.train_split}) has no annotated videos")
        self.windows = make_windows(cfg.dataset, self.annotations, split, cfg.seq_len, cfg.seq_gap,
                                    cfg.eval_gap, full_test, self.videos)
        if not self.windows:
            raise ValueError(f"the {split} split of {self.root} gives no windows of seq_len {cfg.seq_len}, "
                             f"seq_gap {cfg.eval_gap if full_test else cfg.seq_gap} (videos too short, or no tubes)")
        self.streams = cfg.streams()
        self.is_flow = {s: t.lower() not in RGB_TYPES for s, (t, _) in self.streams.items()}
        augment = split == "train" and not full_test if augment is None else augment
        if augment:
            self.transform = TrainTransform(cfg.image_size, cfg.means, FlowChannels.parse(cfg.flow_channels),
                                            cfg.mirror_flow_pixels_only, cfg.max_expand, cfg.channel_swap)
        else:
            self.transform = TestTransform(cfg.image_size, cfg.means)
        self._rng, self._rng_pid = None, None
        log.info("%s %s windows: %d from %d videos; per class: %s", cfg.dataset, split, len(self.windows), len(names),
                 ", ".join(f"{self.classes[c]} {n}" for c, n in sorted(self.class_counts().items())))
        if cfg.check_data:
            self.check_frames()

    @property
    def num_classes(self) -> int:
        """Number of classes, without background."""
        return len(self.classes)

    def __len__(self):
        return len(self.windows)

    def num_frames(self, video_index: int) -> int:
        return self.annotations.videos[self.videos[video_index]].num_frames

    def class_counts(self) -> Counter:
        """Windows per class (the video's class), as the original's per-class print."""
        return Counter(self.annotations.videos[self.videos[w.video_index]].class_id for w in self.windows)

    def frame_indices(self, window: Window, count: int) -> np.ndarray:
        """[T, count] 0-based frames stacked for each time step of ``window``."""
        numf = self.num_frames(window.video_index)
        return np.stack([stack_indices(int(f), count, numf) for f in window.frames])

    def check_frames(self) -> None:
        """Raise ``FrameError`` for the first frame file any window needs that does not exist."""
        needed = {}
        for window in self.windows:
            for input_type, count in self.streams.values():
                needed.setdefault((window.video_index, input_type), set()).update(
                    self.frame_indices(window, count).ravel().tolist())
        for (video_index, input_type), frames in tqdm(sorted(needed.items()), desc="checking frames", leave=False):
            name = self.videos[video_index]
            folder = layout.video_dir(self.root, input_type, name)
            present = set(os.listdir(folder)) if folder.is_dir() else set()
            for f in sorted(frames):
                if layout.FRAME_PATTERN.format(f + 1) not in present:
                    raise FrameError(f"video {name!r}: frame {f + 1} of {input_type} is missing: "
                                     f"{layout.frame_path(self.root, input_type, name, f)}")

    def read_frame(self, video: str, input_type: str, frame: int) -> np.ndarray:
        path = layout.frame_path(self.root, input_type, video, frame)
        image = cv2.imread(str(path))
        if image is None:
            state = "cannot be decoded" if path.is_file() else "is missing"
            raise FrameError(f"video {video!r}: frame {frame + 1} of {input_type} {state}: {path}")
        return image

    def _generator(self):
        if self._rng is None or self._rng_pid != os.getpid():
            worker = get_worker_info()
            seed = torch.initial_seed() if self.seed is None else [self.seed, worker.id if worker else 0]
            self._rng, self._rng_pid = np.random.default_rng(seed), os.getpid()
        return self._rng

    def load_window(self, window: Window) -> tuple:
        """Decoded distinct frames per stream and where each stack takes them from.

        Returns ``streams`` {stream: uint8 [F, H, W, 3]} and ``gather`` {stream: [T, count]}
        indices into the F frames. Each file is decoded once per sample even when stacks
        overlap (or both streams use the same input type).
        """
        name = self.videos[window.video_index]
        decoded, streams, gather = {}, {}, {}
        for stream, (input_type, count) in self.streams.items():
            indices = self.frame_indices(window, count)
            distinct, inverse = np.unique(indices, return_inverse=True)
            for f in distinct:
                if (input_type, f) not in decoded:
                    decoded[input_type, f] = self.read_frame(name, input_type, int(f))
            frames = [decoded[input_type, f] for f in distinct]
            shapes = {im.shape for im in frames}
            if len(shapes) > 1:
                raise FrameError(f"video {name!r}: {input_type} frames {distinct + 1} differ in size: {sorted(shapes)}")
            streams[stream] = np.stack(frames)
            gather[stream] = inverse.reshape(indices.shape)
        sizes = {x.shape[1:3] for x in streams.values()}
        if len(sizes) > 1:
            raise FrameError(f"video {name!r}: the input types {[t for t, _ in self.streams.values()]} have "
                             f"different frame sizes {sorted(sizes)}")
        return streams, gather

    def __getitem__(self, index):
        return self.sample(index, self._generator())

    def sample(self, index: int, rng: np.random.Generator) -> dict:
        """Window ``index`` augmented with the random generator ``rng`` (train.py passes one
        seeded per sample, so a resumed run draws the same crops and flips)."""
        window = self.windows[index]
        streams, gather = self.load_window(window)
        height, width = next(iter(streams.values())).shape[1:3]
        images, boxes, class_ids = self.transform(streams, self.is_flow, window.boxes, window.class_ids, rng)
        # [F, 3, S, S] distinct frames -> [T, count, 3, S, S] stacks -> [T, 3 * count, S, S]
        stacked = {stream: torch.from_numpy(frames[gather[stream]].reshape(len(window.frames), -1, *frames.shape[2:]))
                   for stream, frames in images.items()}
        return {
            "images": stacked,
            "boxes": torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32)).reshape(-1, len(window.frames), 4),
            "labels": torch.from_numpy(np.asarray(class_ids, dtype=np.int64) + 1),
            "video": self.videos[window.video_index],
            "video_index": window.video_index,
            "frames": torch.from_numpy(window.frames.astype(np.int64)),
            "size": (height, width),
        }


def collate(batch: list) -> dict:
    """Samples -> ``{'images': {stream: [B, T, C, S, S]}, 'targets': [{'boxes', 'labels'}],
    'videos', 'video_indices', 'frames' [B, T], 'sizes'}``."""
    return {
        "images": {stream: torch.stack([s["images"][stream] for s in batch]) for stream in batch[0]["images"]},
        "targets": [{"boxes": s["boxes"], "labels": s["labels"]} for s in batch],
        "videos": [s["video"] for s in batch],
        "video_indices": [s["video_index"] for s in batch],
        "frames": torch.stack([s["frames"] for s in batch]),
        "sizes": [s["size"] for s in batch],
    }
