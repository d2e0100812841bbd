"""Online evaluation as in the ROAD paper (Singh et al., ICCV 2017, Fig. 4): early label prediction
and video-mAP against the fraction of each video observed.

For each fraction x (10%, 20%, ..., 100%) a video of F frames is observed up to frame
``n = ceil(x * F)`` (at least 1) and linked online (``OnlineLinker``, the linking of build_tubes.py):

- its label at x is the class of its best-scoring live path at frame n, a path's score being the mean
  of its class scores (gaps filled), as demo.py shows it; no live path is a wrong label (so a video whose
  action ended earlier has none); ``early_label="all"`` takes the best of all paths so far instead;
- its tubes at x are the paths linked up to frame n (what build_tubes.py would get from a video that
  ended there), trimmed as usual (``trim_video``), and are evaluated against the ground truth
  restricted to frames 1..n (tubes cut at n; a tube starting later is left out).

The linking is online, so the paths at frame n are those of the whole video cut at n: one pass over
each video gives every fraction. At 100% the tubes are build_tubes.py's. Frames past a video's
last detection file are not linked (the paths stay as they were at its last frame).
"""
import json
import logging
import math
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data.annotations import VideoAnnotation
from utils.io import atomic_path, release_free_memory

from .ap import save_figure
from .linking import OnlineLinker, _link_boxes_and_scores, filter_frame_padded, linking_filter
from .micro import MicroTubeLinker, windows_in_order
from .runner import VideoMaps, alpha_label, read_frames, video_parts, videos_without_detections
from .trimming import trim_video
from .video_map import VIDEO_IOU_THRESHOLDS

log = logging.getLogger(__name__)

FRACTIONS = tuple(k / 10 for k in range(1, 11))
ONLINE_IOUS = (0.2, 0.5, 0.75)
ONLINE_FILE = "online.json"


def observed_frames(fraction: float, num_frames: int) -> int:
    """Frames observed at ``fraction`` of a video: ``ceil(fraction * F)`` (rounded first: 0.7 * 20 is 14), >= 1."""
    return max(1, min(num_frames, math.ceil(round(fraction * num_frames, 9))))


EARLY_LABELS = ("live", "all")  # the paths an early label comes from: live ones (the paper's), or all so far


def best_path_label(linker: OnlineLinker, paths: str = "live") -> int:
    """Class of the path with the highest mean class score (first class on ties), -1 without one: among
    the live paths (``live``), or also the ended ones that the linking keeps (``all``; incremental_linking.m
    drops ended paths of jumpgap detections or fewer)."""
    if paths not in EARLY_LABELS:
        raise ValueError(f"early label paths must be one of {EARLY_LABELS}, got {paths!r}")
    per_class = [linker.paths(c) for c in range(linker.num_classes)]
    if paths == "all":  # finish(): the live and ended paths with more than jumpgap detections
        per_class = [live + ended for live, ended in zip(per_class, linker.finish())]
    best, label = -np.inf, -1
    for c in range(linker.num_classes):
        for path in per_class[c]:
            score = float(np.mean(path.scores, dtype=np.float64))
            if score > best:
                best, label = score, c
    return label


def online_video(frames, frame_size: tuple, num_frames: int, num_classes: int, alphas: tuple,
                 fractions: tuple = FRACTIONS, link_iou: float = 0.1, jumpgap: int = 3,
                 link_score: float = 0.001, early_label: str = "live", link: str = "frame") -> tuple:
    """One video's per-frame ``(loc, scores)`` -> ``(labels [len(fractions)], [{alpha: [ActionTube]}] per fraction)``.

    ``num_frames``: the video's length F (the annotation's), which the fractions divide; ``early_label``:
    the paths the label comes from (``best_path_label``). ``link="micro"``: ``frames`` is the video's
    micro-tubes (a ``VideoDetections``), linked window by window (``tubes.micro``); at frame n the windows
    that end before it have been linked (an online detector has not seen the frames of the others).
    """
    stops = [observed_frames(x, num_frames) for x in fractions]
    if link == "micro":
        linker = MicroTubeLinker(num_classes, frames.frame_size, link_iou, jumpgap, linking_filter(link_score))
        windows = windows_in_order(frames, num_classes)
        steps = [(int(w[0][-1]), lambda w=w: linker.update(*w)) for w in windows]
    else:
        linker = OnlineLinker(num_classes, link_iou, jumpgap, linking_filter(link_score))
        steps = _frame_steps(linker, frames, frame_size, num_classes)
    if not steps:
        return [-1] * len(fractions), [trim_video(linker.finish(), alphas) for _ in fractions]
    labels, tubes = [], []
    for stop in stops:
        while linker.t < len(steps) and steps[linker.t][0] < stop:
            steps[linker.t][1]()
        labels.append(best_path_label(linker, early_label))
        tubes.append(trim_video(linker.finish(), alphas))
    return labels, tubes


def _frame_steps(linker, frames, frame_size, num_classes):
    """``online_video``'s steps of the frame-level linking: (frame, link that frame), or none without detections."""
    if not any(len(loc) for loc, _ in frames):
        return []
    boxes, scores, offsets = _link_boxes_and_scores(frames, frame_size)
    if scores.shape[1] != num_classes + 1:
        raise ValueError(f"scores have {scores.shape[1]} columns, expected {num_classes + 1} (background first)")
    class_scores = scores[:, 1:]

    def step(f):
        b, s = boxes[offsets[f]:offsets[f + 1]], class_scores[offsets[f]:offsets[f + 1]]
        linker.link(b, s, filter_frame_padded(b, s, (linker.filter_cfg,))[0])
    return [(f, lambda f=f: step(f)) for f in range(len(frames))]


def restrict(video: VideoAnnotation, num_frames: int) -> VideoAnnotation:
    """The ground truth of frames ``0..num_frames-1`` (0-based): tubes cut there, later ones left out."""
    tubes = [replace(t, boxes=t.boxes[:num_frames - t.start]) for t in video.tubes if t.start < num_frames]
    return VideoAnnotation(video.name, num_frames, video.class_id, tubes)


def _worker(cfg, annotation, num_classes, fractions, early_label, thresholds):
    """One video's labels and, per fraction, its tubes' video-AP matching against the ground truth cut there
    (``runner.video_parts``: a few numbers per tube, not the tubes); as build_tubes.py, unreadable detections
    count as none (logged) unless ``cfg.strict``."""
    video, num_frames, error = annotation.name, annotation.num_frames, None
    try:
        frames, frame_size = read_frames(cfg, video, micro=cfg.link == "micro")
        labels, tubes = online_video(frames, frame_size, num_frames, num_classes, cfg.alphas, fractions, cfg.link_iou,
                                     cfg.jumpgap, cfg.link_score, early_label, cfg.link)
    except ValueError as e:  # DetectionError included
        if cfg.strict:
            raise ValueError(f"{video}: {e}") from e
        log.error("%s: %s; counted as a video without detections (--strict stops instead)", video, e)
        error = str(e)
        labels, tubes = online_video([], cfg.frame_size, num_frames, num_classes, cfg.alphas, fractions)
    parts = [video_parts(restrict(annotation, observed_frames(x, num_frames)), tubes[i], num_classes, cfg.protocols,
                         thresholds) for i, x in enumerate(fractions)]
    release_free_memory(every=8)  # as build_tubes.py's workers
    return video, labels, parts, error


def online_thresholds(ious: tuple) -> tuple:
    """The ST-IoU thresholds of ``ious``: build_tubes.py's (``VIDEO_IOU_THRESHOLDS``, 0.8500000000000001) where
    one is within 1e-9, else the value given."""
    return tuple(next((t for t in VIDEO_IOU_THRESHOLDS if abs(t - x) < 1e-9), x) for x in ious)


def online_curves(cfg, annotations: dict, videos: list, num_classes: int, class_names: list,
                  fractions: tuple = FRACTIONS, ious: tuple = ONLINE_IOUS, early_label: str = "live") -> dict:
    """Both curves for the videos' detections (``cfg``: a ``tubes.runner.TubeConfig``), as fractions:
    ``{"fractions", "accuracy": [...], "protocol", "linking", "video_map": [{"protocol", "alpha", "iou", "mAP": [...]}],
    "failed_videos": {video: error}, "videos_without_detections": [...]}``, video-mAP for each of
    ``cfg.protocols``, alpha and ST-IoU threshold in ``ious``; a video without detections (none found, or
    unreadable: ``failed_videos``) has no paths, so no label and no tubes. Each worker returns a video's
    labels and matching (``_worker``), so memory does not grow with the tubes of all videos."""
    thresholds = online_thresholds(ious)
    args = [(cfg, annotations[v], num_classes, fractions, early_label, thresholds) for v in videos]
    maps = [VideoMaps(cfg.protocols, cfg.alphas, num_classes, thresholds) for _ in fractions]
    labels, failed = [], {}
    with ProcessPoolExecutor(cfg.workers) if cfg.workers > 1 else nullcontext() as pool:
        results = pool.map(_worker, *zip(*args)) if pool and args else (_worker(*a) for a in args)
        for video, video_labels, parts, error in tqdm(results, total=len(videos), desc="videos", leave=False):
            labels.append(video_labels)
            for fraction_maps, fraction_parts in zip(maps, parts):
                fraction_maps.add(fraction_parts)
            if error is not None:
                failed[video] = error
    truth = np.array([annotations[v].class_id for v in videos])
    out = {"protocol": "+".join(cfg.protocols), "linking": cfg.linking(), "fractions": list(fractions),
           "early_label": early_label,
           "accuracy": [float(np.mean(np.array([v[i] for v in labels]) == truth)) for i in range(len(fractions))],
           "video_map": []}
    curves = {}
    for fraction_maps in maps:
        _, results = fraction_maps.results(class_names)  # {protocol: {alpha: [result per threshold]}}
        for p in cfg.protocols:
            for a in cfg.alphas:
                for x, r in zip(ious, results[p][a]):
                    curves.setdefault((p, a, x), []).append(r.mAP)
    out["video_map"] = [{"protocol": p, "alpha": alpha_label(a), "iou": t, "mAP": m} for (p, a, t), m in curves.items()]
    out["failed_videos"] = failed
    out["videos_without_detections"] = videos_without_detections(cfg, videos, failed)
    return out


def write_online(out_dir: Path, results: dict) -> list:
    """``online.json`` and the two plots (``online_accuracy.png``, ``online_map.png``) in ``out_dir``; their paths."""
    out_dir = Path(out_dir)
    with atomic_path(out_dir / ONLINE_FILE) as tmp:
        Path(tmp).write_text(json.dumps(results, indent=1))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    x = 100 * np.asarray(results["fractions"])
    paths = [out_dir / ONLINE_FILE, out_dir / "online_accuracy.png", out_dir / "online_map.png"]
    for path, series, ylabel, title in (
            (paths[1], [("early label", results["accuracy"])], "label accuracy (%)",
             "Early label prediction (the same under every protocol)"),
            (paths[2], [(f"{e['protocol']}, alpha {e['alpha']}, ST-IoU {e['iou']:g}", e["mAP"]) for e in results["video_map"]],
             "video-mAP (%)", f"Online video-mAP ({' and '.join(results['protocol'].split('+'))} protocol)")):
        fig, ax = plt.subplots(figsize=(7, 5))
        for label, y in series:
            ax.plot(x, 100 * np.asarray(y), marker="o", label=label)
        ax.set(xlabel="video observed (%)", ylabel=ylabel, xlim=(0, 100), ylim=(0, 100), title=title)
        ax.grid(True)
        ax.legend(fontsize=7)
        save_figure(fig, path)
    return paths


def table(results: dict) -> str:
    """The curves in percent, one column per fraction."""
    head = "observed        " + " ".join(f"{100 * x:6.0f}%" for x in results["fractions"])
    lines = [f"online evaluation ({results['protocol']} protocol)", head,
             "label accuracy  " + " ".join(f"{100 * a:7.2f}" for a in results["accuracy"])]
    for e in results["video_map"]:
        name = f"{e['protocol']} a{e['alpha']} mAP@{e['iou']:g}"
        lines.append(f"{name:<16}" + " ".join(f"{100 * m:7.2f}" for m in e["mAP"]))
    return "\n".join(lines)
