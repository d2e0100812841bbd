"""Run a model over test videos: per-video detection files and the VOC-style frame-mAP
(gurkirt/AMTNet ``evaluate.py``); the model inputs of a batch and the frame-AP accumulation
that the validation during training shares."""
import hashlib
import json
import logging
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from data.dataset import ActionDetection
from layers.postprocess import decode_outputs, detect_decoded
from models.config import ModelConfig
from tubes.detections import VideoDetections, frame_detections, write_road_mat_frame, write_video_detections
from tubes.frame_map import FrameAP
from tubes.fusion import LATE_FUSIONS, ONE_STREAM_OUTPUTS, fusion_streams
from models.amtnet import ANCHORS_PER_CELL
from utils.checkpoint import CheckpointError
from utils.io import atomic_path, release_free_memory, remove_stale_temporary_files

from .frame_cache import FeatureMapCache

log = logging.getLogger(__name__)

# The Matlab linking (online-tubes/actionpath/actionPaths.m, dofilter) keeps, per class and
# frame, the boxes scoring above 0.001, then the 50 highest. The original evaluate.py saves
# all 8732 priors per window; keeping the union over classes of each class's 50 highest
# priors above 0.001 (with their full score rows) loses nothing the linking can select.
LINK_SCORE_THRESH = 0.001
LINK_TOP_K = 50


def batch_inputs(batch: dict, device: torch.device) -> tuple:
    """Model inputs (base, extra or None) and targets on ``device``."""
    images = batch["images"]
    base = images["base"].to(device, non_blocking=True)
    extra = images["extra"].to(device, non_blocking=True) if "extra" in images else None
    targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in batch["targets"]]
    return base, extra, targets


def process_share(windows: list, rank: int, world_size: int) -> list:
    """The indices of the windows process ``rank`` of ``world_size`` runs in test.py: whole videos, dealt out
    longest first (most windows) to the process with the fewest windows so far (ties: the lower rank), so that
    every process gets a share of about the same size whatever the videos' order in the dataset."""
    counts = Counter(w.video_index for w in windows)
    loads, owner = [0] * world_size, {}
    for video, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        target = min(range(world_size), key=lambda r: (loads[r], r))
        owner[video] = target
        loads[target] += count
    return [i for i, w in enumerate(windows) if owner[w.video_index] == rank]


def voc_frame_ap(num_classes: int, iou_thresh: float = 0.5) -> FrameAP:
    """The accumulator of the VOC-style frame-mAP (continuous box areas, as the original Python
    evaluation), which test.py and the validation during training report."""
    return FrameAP(num_classes, iou_thresh, inclusive=False)


def add_first_frames(accumulator: FrameAP, detections: list, targets: list, sizes: list) -> None:
    """Add each window's first frame to a ``voc_frame_ap`` accumulator: ``detect``'s detections and
    the targets (normalised boxes ``[K, T, 4]``, labels 1..C) in pixels of frames of ``sizes`` (height, width)."""
    for det, target, (height, width) in zip(detections, targets, sizes):
        scale = np.array([width, height, width, height], np.float64)
        accumulator.add_frame(det["boxes"][:, 0].cpu().double().numpy() * scale, det["scores"].cpu().numpy(),
                              det["labels"].cpu().numpy() - 1, target["boxes"][:, 0].cpu().double().numpy() * scale,
                              target["labels"].cpu().numpy() - 1)


def linking_candidates(scores: torch.Tensor, top_k: int = LINK_TOP_K, thresh: float = LINK_SCORE_THRESH) -> torch.Tensor:
    """Indices of the priors any class could keep: scores [A, C+1] softmax -> sorted indices [K]."""
    cls = scores[:, 1:]
    top, idx = cls.topk(min(top_k, cls.shape[0]), dim=0)
    return torch.unique(idx[top > thresh])


def linking_outputs(boxes: torch.Tensor, scores: torch.Tensor) -> list:
    """Per window of a batch (``decode_outputs``' boxes ``[B, A, T, 4]`` and scores ``[B, A, C+1]``):
    the linking candidates' boxes ``[K, T, 4]`` (clipped to the frame) and scores ``[K, C+1]``, numpy."""
    out = []
    for i in range(len(scores)):
        keep = linking_candidates(scores[i])
        out.append((boxes[i, keep].clamp(0, 1).cpu().numpy(), scores[i, keep].cpu().numpy()))
    return out


class VideoWriter:
    """Collects one video's windows and writes its npz (and road_mat files) when all have arrived."""

    def __init__(self, out_dir: Path, windows_per_video: dict, num_frames: dict, save_mat: bool = False):
        self.out_dir, self.expected, self.num_frames, self.save_mat = Path(out_dir), windows_per_video, num_frames, save_mat
        self.parts = defaultdict(list)
        self.written = []

    def add(self, video: str, frames: np.ndarray, boxes: np.ndarray, scores: np.ndarray, size: tuple) -> bool:
        """One window; True when it was the video's last, and its files are written."""
        parts = self.parts[video]
        parts.append((frames, boxes, scores, size))
        if len(parts) == self.expected[video]:
            self._write(video, self.parts.pop(video))
            return True
        return False

    def _write(self, video, parts):
        parts.sort(key=lambda p: tuple(p[0]))
        frames = np.stack([p[0] for p in parts])
        window = np.concatenate([np.full(len(p[1]), w) for w, p in enumerate(parts)])
        height, width = parts[0][3]
        boxes = np.concatenate([p[1] for p in parts])
        scores = np.concatenate([p[2] for p in parts])
        path = self.out_dir / f"{video}.npz"
        remove_stale_temporary_files(path)  # a killed run's (test.py resumes)
        write_video_detections(path, frames, boxes, scores, window, self.num_frames[video], (width, height))
        if self.save_mat:
            det = VideoDetections(frames, boxes, scores, window, self.num_frames[video], (width, height))
            for f, (loc, score) in enumerate(frame_detections(det)):
                frame_path = self.out_dir.parent / f"{self.out_dir.name}-mat" / video / f"{f + 1:05d}.mat"
                remove_stale_temporary_files(frame_path)
                write_road_mat_frame(frame_path, loc, score)
        self.written.append(path)


# Flags that do not change a video's outputs (or are replaced by the checkpoint and gap of one run): not in
# ``run_key``, so that a resumed run may give them otherwise.
OUTPUT_NEUTRAL_FLAGS = ("num_workers", "eval_iters", "eval_gaps", "det_dir")


def run_key(flags: dict, checkpoints: list) -> str:
    """A short fingerprint of what a test run's outputs depend on: its flags (``OUTPUT_NEUTRAL_FLAGS`` left out)
    and each checkpoint's path, size and modification time (None: no such checkpoint)."""
    identity = {"flags": {k: v for k, v in flags.items() if k not in OUTPUT_NEUTRAL_FLAGS},
                "checkpoints": [(str(Path(c).resolve()), Path(c).stat().st_size, Path(c).stat().st_mtime_ns)
                                for c in checkpoints if c is not None]}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def video_batches(dataset: ActionDetection, window_indices: list, batch_size: int) -> list:
    """Batches (lists of dataset indices) of at most ``batch_size`` of ``window_indices``, in order, none spanning
    two videos: a video's detections then do not depend on the videos run with it (a resumed run's, or another
    process's share's, equal an uninterrupted one-process run's)."""
    batches, video = [], None
    for i in window_indices:
        v = dataset.windows[i].video_index
        if not batches or v != video or len(batches[-1]) == batch_size:
            batches.append([])
        batches[-1].append(i)
        video = v
    return batches


class VideoRecords:
    """A finished video's share of a test run's results, ``DET_DIR-videos/<video>.npz``, written (atomically)
    after all of its detection files: the run's key (``run_key``), each output's VOC frame-AP matches, its
    windows and seconds. A resumed run (the same key) skips the videos that have one and takes their matches
    from it; a video without one, or with another run's, is run (again) and its files overwritten.

    ``streams``: the outputs' names (test.py --fuse_weights: ``fusion_streams()``; one model: ``(None,)``).
    """

    def __init__(self, det_dir: Path, key: str, streams: tuple = (None,)):
        self.det_dir = Path(det_dir)
        self.dir = self.det_dir.parent / f"{self.det_dir.name}-videos"
        self.key, self.streams = key, tuple(streams)
        self.videos, self.done = [], {}  # the share's videos in order; those finished, with their records

    def path(self, video: str) -> Path:
        return self.dir / f"{video}.npz"

    def pending(self, dataset: ActionDetection, window_indices: list) -> list:
        """The windows of ``window_indices`` (in order) of the videos without a record of this run (or without
        their detection files); the others' records are read (``done``). ``videos``: every video of the
        windows, in order."""
        self.videos = list(dict.fromkeys(dataset.videos[dataset.windows[i].video_index] for i in window_indices))
        self.done = {v: r for v in self.videos
                     if all((self.det_dir / (s or "") / f"{v}.npz").is_file() for s in self.streams)
                     and (r := self.load(v, dataset.num_classes)) is not None}
        if self.done:
            log.info("%s: %d of %d videos already done (their records in %s), %d to run", self.dir.name,
                     len(self.done), len(self.videos), self.dir, len(self.videos) - len(self.done))
        return [i for i in window_indices if dataset.videos[dataset.windows[i].video_index] not in self.done]

    def _field(self, stream, name):
        return name if stream is None else f"{stream}.{name}"

    def save(self, video: str, entry: dict) -> None:
        """``entry``: ``{"frame_ap": {stream: FrameAP}, "windows", "network_seconds", "total_seconds"}``."""
        fields = {"key": np.array(self.key), **{k: np.array(entry[k]) for k in RECORD_COUNTS}}
        for stream in self.streams:
            fields.update({self._field(stream, k): v for k, v in entry["frame_ap"][stream].arrays().items()})
        path = self.path(video)
        remove_stale_temporary_files(path)
        with atomic_path(path) as tmp:
            np.savez(tmp, **fields)
        self.done[video] = entry

    def load(self, video: str, num_classes: int) -> dict | None:
        """A video's record of this run as ``save`` took it; None if it has none, another run's, or an unreadable one."""
        path = self.path(video)
        if not path.is_file():
            return None
        try:
            with np.load(path) as z:
                if str(z["key"]) != self.key:
                    return None
                frame_aps = {s: FrameAP.from_arrays({k: z[self._field(s, k)] for k in ("scores", "hits", "labels",
                                                                                      "num_gt")},
                                                    num_classes, inclusive=False) for s in self.streams}
                return {"frame_ap": frame_aps, **{k: z[k].item() for k in RECORD_COUNTS}}
        except (OSError, ValueError, KeyError) as e:  # a damaged record: its video runs again
            log.warning("%s: cannot read (%s); video %s runs again", path, e, video)
            return None


RECORD_COUNTS = ("windows", "network_seconds", "total_seconds")


class VideoResults:
    """Per video of a run: each output's VOC frame-AP matches, its windows and seconds; ``finish`` a video once its
    files are written (``records`` then keeps it, ``VideoRecords.save``). ``totals`` merges the videos in order:
    a video's matches then those of the next, as one accumulator over the windows in order would have them."""

    def __init__(self, num_classes: int, iou_thresh: float, streams: tuple = (None,),
                 records: VideoRecords | None = None):
        self.num_classes, self.iou_thresh, self.streams, self.records = num_classes, iou_thresh, streams, records
        self.running, self.finished, self.order = {}, {}, []
        self.last = time.perf_counter()

    def add(self, videos: list, network_seconds: float, detections: dict, targets: list, sizes: list) -> None:
        """One batch: its windows' videos, the network time, ``{stream: detect()'s detections}``, targets, sizes."""
        for i, video in enumerate(videos):
            if video not in self.running:
                self.order.append(video)
                self.running[video] = {"frame_ap": {s: voc_frame_ap(self.num_classes, self.iou_thresh)
                                                    for s in self.streams},
                                       "windows": 0, "network_seconds": 0.0, "total_seconds": 0.0}
            entry = self.running[video]
            entry["windows"] += 1
            entry["network_seconds"] += network_seconds / len(videos)
            for stream, found in detections.items():
                add_first_frames(entry["frame_ap"][stream], [found[i]], [targets[i]], [sizes[i]])

    def finish(self, video: str) -> None:
        entry = self.running.pop(video)
        now = time.perf_counter()
        entry["total_seconds"], self.last = now - self.last, now
        if self.records is not None:
            self.records.save(video, entry)
        self.finished[video] = entry
        release_free_memory()  # the video's arrays are gone: so that memory does not grow with the videos seen

    def totals(self, seq_len: int) -> tuple:
        """``({stream: FrameAP}, stats)`` over every video (a resumed run's share: those run earlier too)."""
        if self.running:
            raise RuntimeError(f"videos with missing windows: {sorted(self.running)[:5]}")
        videos = self.records.videos if self.records is not None else self.order
        entries = [self.finished[v] if v in self.finished else self.records.done[v] for v in videos]
        if not entries:
            return {s: voc_frame_ap(self.num_classes, self.iou_thresh) for s in self.streams}, \
                {"windows": 0, "frames": 0, "network_seconds": 0.0, "total_seconds": 0.0, "videos": 0}
        accumulators = {s: FrameAP.merge([e["frame_ap"][s] for e in entries]) for s in self.streams}
        stats = {k: sum(e[k] for e in entries) for k in RECORD_COUNTS}
        stats = {"windows": int(stats["windows"]), "frames": int(stats["windows"]) * seq_len,
                 "network_seconds": stats["network_seconds"], "total_seconds": stats["total_seconds"],
                 "videos": len(entries)}
        return accumulators, stats


def run_windows(model: torch.nn.Module, cache: FeatureMapCache | None, base: torch.Tensor, extra: torch.Tensor | None,
                batch: dict) -> tuple:
    """The model's outputs on a batch of test windows, through ``cache`` (a ``FeatureMapCache``, or None
    for the plain forward); the cache keeps the last window's frames, which the next window shares."""
    if cache is None:
        return model(base, extra)
    keys = [[(v, int(f)) for f in frames] for v, frames in zip(batch["video_indices"], batch["frames"])]
    inputs = {"base": base} if extra is None else {"base": base, "extra": extra}
    outputs = cache.outputs(inputs, keys)
    cache.keep(keys[-1])
    return outputs


def _video_windows(dataset, window_indices):
    """Per video, the number of windows the loader covers, and every video's frame count (``VideoWriter``)."""
    indices = range(len(dataset)) if window_indices is None else window_indices
    per_video = defaultdict(int)
    for i in indices:
        per_video[dataset.videos[dataset.windows[i].video_index]] += 1
    return per_video, {dataset.videos[v]: dataset.num_frames(v) for v in range(len(dataset.videos))}


def _timed(device, run):
    """``(run(), seconds)``, the device synchronised around it (network time)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    tick = time.perf_counter()
    out = run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - tick


@torch.no_grad()
def detect_videos(model: torch.nn.Module, loader: Iterable, dataset: ActionDetection, device: torch.device,
                  out_dir: Path, conf_thresh: float = 0.01, nms_thresh: float = 0.45, top_k: int = 20,
                  iou_thresh: float = 0.5, save_mat: bool = False, window_indices: list | None = None,
                  progress: Callable | None = None, frame_cache: bool = True,
                  records: VideoRecords | None = None) -> tuple:
    """Detections of every window of ``loader`` written per video; frame-mAP accumulated.

    Returns ``(FrameAP accumulator, stats)`` where stats has frame counts and timings.
    ``window_indices``: the dataset windows this loader covers (all by default).
    ``frame_cache``: run the backbone once per frame (``FeatureMapCache``; the loader must give each
    video's windows in order, as test.py's does), not once per window and frame.
    ``records``: each finished video's record is saved there, and the totals include the videos it
    already had (``VideoRecords.pending``: a resumed run).
    """
    model.eval()
    writer = VideoWriter(out_dir, *_video_windows(dataset, window_indices), save_mat)
    results = VideoResults(dataset.num_classes, iou_thresh, records=records)
    priors = model.priors
    cache = FeatureMapCache(model) if frame_cache else None
    for batch in (progress(loader) if progress else loader):
        base, extra, targets = batch_inputs(batch, device)
        (loc, conf), seconds = _timed(device, lambda: run_windows(model, cache, base, extra, batch))
        loc, conf = loc.float(), conf.float()
        boxes_all, scores_all = decode_outputs(loc, conf, priors)
        results.add(batch["videos"], seconds, {None: detect_decoded(boxes_all, scores_all, conf_thresh, nms_thresh,
                                                                     top_k)}, targets, batch["sizes"])
        for i, (boxes, scores) in enumerate(linking_outputs(boxes_all, scores_all)):
            if writer.add(batch["videos"][i], batch["frames"][i].numpy(), boxes, scores, batch["sizes"][i]):
                results.finish(batch["videos"][i])
    accumulators, stats = results.totals(dataset.cfg.seq_len)
    return accumulators[None], stats


def late_fusion_streams(decoded_base: tuple, decoded_fuse: tuple) -> dict:
    """``{stream: (boxes [B, A, T, 4], scores [B, A, C+1])}`` of ``tubes.fusion.fusion_streams()`` (test.py
    --fuse_weights's sub-folders of DET_DIR) from the two models' decoded outputs on the same windows: each
    model's own (base, fuse), and each prior-by-prior late fusion's (mean): the base boxes with the fused scores."""
    (boxes, scores_base), (_, scores_fuse) = decoded_base, decoded_fuse
    out = dict(zip(ONE_STREAM_OUTPUTS, (decoded_base, decoded_fuse)))
    for stream in fusion_streams()[len(ONE_STREAM_OUTPUTS):]:
        out[stream] = (boxes, LATE_FUSIONS[stream].fuse(scores_base, scores_fuse))
    return out


def check_late_fusion(cfg: ModelConfig, fuse_cfg: ModelConfig, names: tuple = ("--weights", "--fuse_weights")) -> None:
    """ValueError unless the late fusion's two models (their ``ModelConfig``) are one-stream models of the
    same ``seq_len`` (the same windows) and classes."""
    same = (cfg.seq_len, cfg.num_classes) == (fuse_cfg.seq_len, fuse_cfg.num_classes)
    if cfg.two_stream or fuse_cfg.two_stream or not same:
        raise ValueError(f"{names[0]} and {names[1]} must be one-stream models of the same seq_len and classes (got "
                         f"{cfg.fusion_type}/{cfg.seq_len}/{cfg.num_classes - 1} and {fuse_cfg.fusion_type}/"
                         f"{fuse_cfg.seq_len}/{fuse_cfg.num_classes - 1}: fusion type/seq_len/classes)")


def checkpoint_classes(state) -> tuple:
    """``(action classes, class names)`` a loaded checkpoint was trained for, None where it does not say: this
    project's from its model config and ``classes``; the original AMTNet's state dict from its first confidence
    layer, which has ANCHORS_PER_CELL[0] x (C + 1) outputs."""
    if not isinstance(state, dict):
        return None, None
    if "model_config" in state:
        names = state.get("classes")
        return int(state["model_config"]["num_classes"]) - 1, None if names is None else [str(n) for n in names]
    conf = next((v for k, v in state.items() if k.removeprefix("module.") == "conf.0.weight"), None)
    if conf is None or conf.ndim != 2 or conf.shape[0] % ANCHORS_PER_CELL[0]:
        return None, None
    return conf.shape[0] // ANCHORS_PER_CELL[0] - 1, None


def check_classes(state, classes: list, path, what: str = "the dataset") -> None:
    """A checkpoint (``state``, loaded from ``path``) against the class names ``classes`` that ``what`` has: a
    CheckpointError naming both numbers if it was trained for another number of classes; a warning if it
    names its classes and they differ."""
    num_classes, names = checkpoint_classes(state)
    if num_classes is not None and num_classes != len(classes):
        raise CheckpointError(f"{path}: the checkpoint's model detects {num_classes} classes, but {what} has "
                              f"{len(classes)} ({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''})")
    differ = [] if names is None else [i for i, (a, b) in enumerate(zip(names, classes)) if a != b]
    if differ:
        log.warning("%s: %d of the %d class names differ from the checkpoint's (first: class %d is %r in the "
                    "checkpoint, %r in %s); results are named as %s names them",
                    path, len(differ), len(classes), differ[0] + 1, names[differ[0]], classes[differ[0]], what, what)


@torch.no_grad()
def detect_videos_late_fusion(models: tuple, loader: Iterable, dataset: ActionDetection, device: torch.device,
                              out_dir: Path, conf_thresh: float = 0.01, nms_thresh: float = 0.45, top_k: int = 20,
                              iou_thresh: float = 0.5, save_mat: bool = False, window_indices: list | None = None,
                              progress: Callable | None = None, frame_cache: bool = True,
                              records: VideoRecords | None = None) -> tuple:
    """Two one-stream models over the same windows: ``models[0]`` on the loader's ``base`` images,
    ``models[1]`` on its ``extra`` images (a two-stream ``DataConfig``). Writes, as ``detect_videos``,
    ``OUT/base`` and ``OUT/fuse`` (each model's own detections) and ``OUT/mean`` (the base model's
    boxes with the mean of the two softmax outputs, prior by prior: mean fusion, whose linking
    candidates are chosen by the mean scores). ``frame_cache``: as ``detect_videos``, one cache per model;
    ``records``: as ``detect_videos``, with each stream's matches (``streams`` ``fusion_streams()``).

    Returns ``({stream: FrameAP accumulator}, stats)``.
    """
    for model in models:
        model.eval()
    counts = _video_windows(dataset, window_indices)
    streams = fusion_streams()
    writers = {s: VideoWriter(Path(out_dir) / s, *counts, save_mat) for s in streams}
    caches = [FeatureMapCache(model) if frame_cache else None for model in models]
    results = VideoResults(dataset.num_classes, iou_thresh, streams, records)
    for batch in (progress(loader) if progress else loader):
        base, extra, targets = batch_inputs(batch, device)
        outputs, seconds = _timed(device, lambda: [run_windows(model, cache, x, None, batch)
                                                   for model, cache, x in zip(models, caches, (base, extra))])
        decoded = [decode_outputs(loc.float(), conf.float(), model.priors) for (loc, conf), model in zip(outputs, models)]
        fused = late_fusion_streams(*decoded)
        results.add(batch["videos"], seconds, {stream: detect_decoded(boxes_all, scores_all, conf_thresh, nms_thresh,
                                                                      top_k)
                                               for stream, (boxes_all, scores_all) in fused.items()},
                    targets, batch["sizes"])
        written = set()
        for stream, (boxes_all, scores_all) in fused.items():
            for i, (boxes, scores) in enumerate(linking_outputs(boxes_all, scores_all)):
                if writers[stream].add(batch["videos"][i], batch["frames"][i].numpy(), boxes, scores,
                                       batch["sizes"][i]):
                    written.add(batch["videos"][i])
        for video in sorted(written, key=batch["videos"].index):  # every stream's files are written
            results.finish(video)
    return results.totals(dataset.cfg.seq_len)
