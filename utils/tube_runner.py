"""What build_tubes.py and eval_video_ap.py run: detections -> tubes -> video/frame mAP.

Videos are processed in parallel (each worker reads one video's detections once,
links, trims and filters its frames for frame-mAP); the evaluation runs in the main
process, in the video list's order, as the Matlab does.
"""
import json
import logging
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data.annotations import load_pyannot, read_video_list
from data.matlab_annots import load_final_annots

from .detections import frame_detections, read_road_mat_video, read_video_detections
from .evaluation import VIDEO_IOU_THRESHOLDS, FrameAP, gt_from_annotation, video_ap
from .io import atomic_path
from .linking import FRAME_AP_FILTER
from .tubes import ActionTube, link_frames, trim_video

log = logging.getLogger(__name__)


@dataclass
class TubeConfig:
    det_dir: Path
    det_format: str = "road_mat"
    alphas: tuple = (3.0, 5.0)
    iou_thresh: float = 0.1
    jumpgap: int = 3
    frame_size: tuple = (320, 240)
    workers: int = 1


def load_annotations(path):
    """``finalAnnots.mat`` or ``pyannot.pkl`` -> ``{name: VideoAnnotation}`` (identical on UCF101-24)."""
    path = Path(path)
    return load_final_annots(path) if path.suffix == ".mat" else load_pyannot(path)


def class_names_from(annotations, num_classes, classes_file=None):
    """Names in label order: a ``--classes`` file, else each class's video-name prefix."""
    if classes_file:
        names = read_video_list(classes_file)
    else:
        found = {}
        for video in annotations.values():
            found.setdefault(video.class_id, video.name.split("/")[0])
        names = [found.get(c, f"class{c:02d}") for c in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes of detections")
    return names


def detection_path(det_dir, video, det_format):
    return Path(det_dir) / (f"{video}.npz" if det_format == "npz" else video)


def resolve_videos(cfg, annotations, annot_path, video_list=None):
    """The listed videos, or the test split beside the annotations (else all annotated) with detections."""
    if video_list:
        videos = read_video_list(video_list)
    else:
        split = Path(annot_path).with_name("testlist01.txt")
        names = read_video_list(split) if split.is_file() else sorted(annotations)
        videos = [v for v in names if detection_path(cfg.det_dir, v, cfg.det_format).exists()]
        if not videos:
            raise FileNotFoundError(f"{cfg.det_dir}: no detections for any video of the test split")
    missing = [v for v in videos if v not in annotations]
    if missing:
        raise KeyError(f"videos without annotations: {missing[:5]}")
    return videos


def read_frames(cfg, video):
    """Per-frame ``(loc, scores)`` of a video; ``[]`` (with a warning) when it has no detections."""
    path = detection_path(cfg.det_dir, video, cfg.det_format)
    if not path.exists():
        log.warning("%s: no detections for video %s; counted as no detections", path, video)
        return [], cfg.frame_size
    if cfg.det_format == "npz":
        det = read_video_detections(path)
        return frame_detections(det), det.frame_size
    return read_road_mat_video(path), cfg.frame_size


def process_video(cfg, video, num_classes):
    """Worker: read, link + trim, frame-AP filtering of one video; CPU seconds per stage."""
    t0 = time.process_time()
    frames, frame_size = read_frames(cfg, video)
    t1 = time.process_time()
    try:
        paths, frame_dets = link_frames(frames, num_classes, frame_size, cfg.iou_thresh, cfg.jumpgap, FRAME_AP_FILTER)
    except ValueError as e:
        raise ValueError(f"{video}: {e}") from e
    t2 = time.process_time()
    tubes = trim_video(paths, cfg.alphas)
    t3 = time.process_time()
    return video, tubes, frame_dets, {"read": t1 - t0, "link+filter": t2 - t1, "trim": t3 - t2}


def num_classes_of(cfg, videos):
    """Score columns minus background, from the first video with detections."""
    for video in videos:
        frames, _ = read_frames(cfg, video)
        for _, scores in frames:
            return scores.shape[1] - 1
    raise ValueError(f"{cfg.det_dir}: no detections in any listed video")


def build_all(cfg, videos, num_classes):
    """``{video: {alpha: [ActionTube]}}``, frame-AP rows per video, summed stage times."""
    tubes, frame_dets, times = {}, {}, {}
    args = [(cfg, v, num_classes) for v in videos]
    if cfg.workers > 1:
        with ProcessPoolExecutor(cfg.workers) as pool:
            results = pool.map(process_video, *zip(*args), chunksize=4)
            for video, t, fd, tm in tqdm(results, total=len(videos), desc="videos", leave=False):
                tubes[video], frame_dets[video] = t, fd
                for k, v in tm.items():
                    times[k] = times.get(k, 0.0) + v
    else:
        for a in tqdm(args, desc="videos", leave=False):
            video, t, fd, tm = process_video(*a)
            tubes[video], frame_dets[video] = t, fd
            for k, v in tm.items():
                times[k] = times.get(k, 0.0) + v
    return tubes, frame_dets, times


def frame_map_of(gts, frame_dets, num_classes, iou_thresh=0.5):
    """frameAp.m over the listed videos, frames 1..num_frames of the annotation (all frames at once)."""
    acc = FrameAP(num_classes, iou_thresh)
    det, gt, offset = [], [], 0
    for video in gts:
        rows = frame_dets.get(video.name, np.zeros((0, 7)))
        rows = rows[rows[:, 0] < video.num_frames]
        det.append((offset + rows[:, 0].astype(np.int64), rows[:, 3:], rows[:, 2], rows[:, 1].astype(np.int64)))
        for t in video.tubes:
            f = np.arange(t.sf - 1, min(t.ef, video.num_frames))
            if len(f) == 0:
                continue
            x, y, w, h = t.boxes[f + 1 - t.sf].T
            gt.append((offset + f, np.stack([x, y, x + w - 1, y + h - 1], 1), np.full(len(f), t.class_id)))
        offset += video.num_frames
    det_frame, det_boxes, det_scores, det_labels = (np.concatenate(a) for a in zip(*det)) if det else [np.zeros(0)] * 4
    gt_frame, gt_boxes, gt_labels = (np.concatenate(a) for a in zip(*gt)) if gt else (np.zeros(0), np.zeros((0, 4)), np.zeros(0))
    order = np.argsort(gt_frame, kind="stable")  # per frame, GT boxes in tube order
    acc.add_frames(det_frame, det_boxes, det_scores, det_labels, gt_frame[order], gt_boxes[order], gt_labels[order])
    return acc.compute()


def evaluate(annotations, videos, tubes_by_alpha, num_classes, class_names, frame_dets=None):
    """results.json content (values as fractions) and the PR curves per alpha."""
    gts = [gt_from_annotation(annotations[v]) for v in videos]
    out = {"protocol": "road", "video_map": []}
    curves = {}
    for alpha, tubes in tubes_by_alpha.items():
        res = video_ap(gts, tubes, num_classes, VIDEO_IOU_THRESHOLDS)
        curves[alpha] = res
        for r in res:
            out["video_map"].append({"alpha": alpha, "iou": round(r.iou, 4), "mAP": r.mAP, "mean_iou": r.mean_iou,
                                     "accuracy": r.accuracy, "ap": dict(zip(class_names, r.ap.tolist()))})
    if frame_dets is not None:
        fmap, fap, _ = frame_map_of(gts, frame_dets, num_classes)
        out["frame_map"] = {"iou": 0.5, "mAP": fmap, "ap": dict(zip(class_names, fap.tolist()))}
    return out, curves


def table(results):
    """The seed's layout: mAP at 0.2, 0.5, 0.75, mean over 0.5:0.95, accuracy, per alpha (percent)."""
    lines = ["alpha  mAP@0.2  mAP@0.5  mAP@0.75  mAP@0.5:0.95  accuracy"]
    alphas = sorted({r["alpha"] for r in results["video_map"]})
    for a in alphas:
        rows = {round(r["iou"], 2): r for r in results["video_map"] if r["alpha"] == a}
        avg = np.mean([rows[t]["mAP"] for t in rows if t >= 0.5])
        lines.append(f"{a:<6g} {100 * rows[0.2]['mAP']:7.2f}  {100 * rows[0.5]['mAP']:7.2f}  {100 * rows[0.75]['mAP']:8.2f}"
                     f"  {100 * avg:12.2f}  {100 * rows[0.2]['accuracy']:8.2f}")
    if "frame_map" in results:
        lines.append(f"frame-mAP@0.5: {100 * results['frame_map']['mAP']:.2f}")
    return "\n".join(lines)


def write_json(path, obj):
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=1))


def save_tubes(path, videos, tubes, alpha):
    """Tubes of one alpha: boxes in this project's 0-based pixels (link boxes - 1)."""
    flat = [(i, t) for i, v in enumerate(videos) for t in tubes.get(v, {}).get(alpha, [])]
    boxes = np.concatenate([t.boxes - 1 for _, t in flat]) if flat else np.zeros((0, 4))
    with atomic_path(path) as tmp:
        np.savez(tmp, videos=np.asarray(videos), alpha=np.float64(alpha),
                 video=np.array([i for i, _ in flat], np.int32), class_id=np.array([t.class_id for _, t in flat], np.int32),
                 score=np.array([t.score for _, t in flat], np.float64), start=np.array([t.start for _, t in flat], np.int32),
                 length=np.array([len(t.boxes) for _, t in flat], np.int32), boxes=boxes.astype(np.float64))


def load_tubes(path):
    """``(alpha, {video: [ActionTube]})`` from ``save_tubes`` (boxes back to link boxes, +1)."""
    with np.load(path) as z:
        videos = [str(v) for v in z["videos"]]
        out = {v: [] for v in videos}
        ends = np.cumsum(z["length"])
        for k, (i, c, s, st) in enumerate(zip(z["video"], z["class_id"], z["score"], z["start"])):
            out[videos[i]].append(ActionTube(int(c), float(s), int(st), z["boxes"][ends[k] - z["length"][k]:ends[k]] + 1))
        return float(z["alpha"]), out


def plot_pr_curves(path, results, class_names, title):
    """One figure: PR curve per class (Agg backend)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 7))
    for name, (recall, precision), ap in zip(class_names, results.curves, results.ap):
        if len(recall):
            ax.plot(np.nan_to_num(recall), np.nan_to_num(precision), label=f"{name} {100 * ap:.1f}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=f"{title}: mAP {100 * results.mAP:.2f}")
    ax.grid(True)
    ax.legend(fontsize=6, ncol=2, loc="lower left")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
