"""What build_tubes.py and eval_video_ap.py run: detections -> tubes -> video/frame mAP.

Videos are processed in parallel (each worker reads one video's detections once,
links, trims and filters its frames for frame-mAP); the evaluation runs in the main
process, in the video list's order, as the Matlab does.
"""
import json
import logging
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data.act_annots import is_act_file, parse_act_gt
from data.annotations import UCF_FRAME_SIZE, load_pickle, load_pyannot, read_video_list
from data.matlab_annots import load_final_annots
from utils.io import atomic_path

from . import act
from .detections import detection_path, frame_detections, frame_map_path, read_road_mat_video, read_video_detections
from .frame_map import FrameAP, video_frame_ap
from .fusion import FUSE_IOU, MATLAB_NAMES, first_unaligned, fusion_name, link_fused
from .linking import FRAME_AP_FILTER, LINKING_FILTER, check_jumpgap, filter_rows, link_frames, linking_filter
from .micro import link_micro_tubes, no_windows
from .trimming import trim_video
from .tube_files import load_any_tubes
from .video_map import VIDEO_IOU_THRESHOLDS, VideoGT, gt_from_annotation, video_ap

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"


def results_path(out_dir: Path) -> Path:
    """build_tubes.py's and eval_video_ap.py's results in ``out_dir`` (``results.json``; see ``evaluate``)."""
    return Path(out_dir) / RESULTS_FILE


@dataclass
class TubeConfig:
    det_dir: Path
    det_format: str = "road_mat"
    alphas: tuple = (3.0, 5.0)
    link_iou: float = 0.1  # linking IoU threshold (build_tubes.py --link_iou)
    link_score: float = LINKING_FILTER.score_thresh  # linking's minimum class score (--link_score)
    jumpgap: int = 3
    frame_size: tuple = UCF_FRAME_SIZE
    workers: int = 1
    frame_ap_any_class: bool = False  # frameAp.m's matching of any GT class (see FrameAP)
    strict: bool = False  # a video with unreadable or malformed detections stops the run (else: no detections)
    protocols: tuple = ("road",)  # evaluation protocols (PROTOCOLS), build_tubes.py --protocol
    # late fusion (tubes/fusion.py): det_dir is the base stream (rgb), fuse_det_dir the other (flow)
    fuse_det_dir: Path | None = None
    fusion: str | None = None  # boost, union or mean (or the Matlab's nwsum-plus, cat, mean)
    fuse_iou: float = FUSE_IOU  # boost's minimum overlap
    fuse_fixed: bool = False  # boost without the original's covered-box bug (see tubes/fusion.py)
    link: str = "frame"  # LINK_MODES: per-frame detections (ROAD) or whole micro-tubes (tubes/micro.py)
    prefused: bool = field(default=False, init=False)  # set for mean fusion of a det_dir that test.py --fuse_weights fused (``prefused_mean``)

    def __post_init__(self):
        if self.fusion is not None:
            self.fusion = fusion_name(self.fusion)
        self.prefused = self.fusion == "mean" and self.fuse_det_dir is None and prefused_mean(self.det_dir)
        if (self.fusion is None) != (self.fuse_det_dir is None) and not self.prefused:
            raise ValueError("late fusion needs both a fusion type and a second stream's detections "
                             f"(got fusion={self.fusion!r}, fuse_det_dir={self.fuse_det_dir!r}; mean fusion "
                             "also takes the mean/ folder of test.py --fuse_weights alone)")
        if not 0 <= self.fuse_iou <= 1:
            raise ValueError(f"fuse_iou must be in [0, 1], got {self.fuse_iou!r}")
        check_jumpgap(self.jumpgap)
        linking_filter(self.link_score)
        if self.link not in LINK_MODES:
            raise ValueError(f"link must be one of {LINK_MODES}, got {self.link!r}")
        if self.link == "micro" and (self.det_format != "npz" or (self.fusion and not self.prefused)):
            raise ValueError("micro-tube linking (link 'micro') reads micro-tubes: test.py's npz detections "
                             f"(det_format npz, got {self.det_format!r}), one stream (no late fusion)")
        if int(self.workers) < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers!r}")
        if not self.alphas or any(not a >= 0 for a in self.alphas):
            raise ValueError(f"alphas must be one or more numbers >= 0, got {self.alphas!r}")
        check_protocols(self.protocols)


# frame: ROAD's linking of per-frame detections; micro: AMTNet's linking of micro-tubes (tubes/micro.py)
LINK_MODES = ("frame", "micro")

# road: ROAD's Matlab (get_PR_curve.m, frameAp.m); act: ACT / MOC-Detector's ACT.py (tubes/act.py)
PROTOCOLS = ("road", "act")


def check_protocols(protocols: tuple) -> tuple:
    if not protocols or any(p not in PROTOCOLS for p in protocols) or len(set(protocols)) != len(protocols):
        raise ValueError(f"protocols must be distinct names of {PROTOCOLS}, got {protocols!r}")
    return tuple(protocols)


def prefused_mean(det_dir: Path) -> bool:
    """Whether ``det_dir`` holds mean-fused scores: test.py --fuse_weights's ``DET_DIR/mean``, whose
    summary (``frame_map_path``) says ``"fusion": "mean"``."""
    try:
        return json.loads(frame_map_path(det_dir).read_text()).get("fusion") == "mean"
    except (OSError, ValueError, AttributeError):
        return False


def load_annotations(path: Path) -> dict:
    """``finalAnnots.mat``, ``pyannot.pkl`` or an ACT ground-truth pickle (``UCF101v2-GT.pkl``) ->
    ``{name: VideoAnnotation}`` (identical on UCF101-24)."""
    path = Path(path)
    if path.suffix == ".mat":
        return load_final_annots(path)
    content = load_pickle(path)
    # ACT ground truth as the file has it (ACT.py does not clip boxes to the frame)
    return parse_act_gt(content, path, clip=False).videos if is_act_file(content) else load_pyannot(path)


def class_names_from(annotations: dict, num_classes: int, classes_file: Path | None = None) -> list:
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


def resolve_videos(cfg: TubeConfig, annotations: dict, annot_path: Path, video_list: Path | None = None) -> list:
    """The listed videos, or the test split beside the annotations (else all annotated) with detections."""
    if video_list:
        return check_videos(read_video_list(video_list), annotations, annot_path, video_list)
    split = Path(annot_path).with_name("testlist01.txt")
    names = read_video_list(split) if split.is_file() else sorted(annotations)
    videos = [v for v in names if detection_path(cfg.det_dir, v, cfg.det_format).exists()]
    if not videos:
        raise FileNotFoundError(f"{cfg.det_dir}: no detections for any video of the test split")
    return check_videos(videos, annotations, annot_path, split if split.is_file() else annot_path)


def check_videos(videos: list, annotations: dict, annot_path: Path, source: Path) -> list:
    """``videos`` (from ``source``, named in the errors) if each is annotated and listed once."""
    repeated = sorted(v for v, n in Counter(videos).items() if n > 1)
    if repeated:
        raise ValueError(f"{source}: {len(repeated)} videos listed more than once (first: {repeated[0]})")
    missing = [v for v in videos if v not in annotations]
    if missing:
        raise ValueError(f"{source}: {len(missing)} videos not in the annotations {annot_path} "
                         f"(first: {', '.join(missing[:3])})")
    return videos


def evaluation_inputs(annot: Path, tube_paths: list, video_list: Path | None = None, num_classes: int | None = None,
                      classes: Path | None = None) -> tuple:
    """eval_video_ap.py's and analyze.py's inputs: ``(annotations, {label: {video: [ActionTube]}}, videos,
    num_classes, class names)``. The videos are ``video_list``'s, else those stored in the first tube file;
    ``num_classes`` defaults to the annotations' (largest video class + 1)."""
    annotations = load_annotations(annot)
    loaded = dict(load_any_tubes(path) for path in tube_paths)
    first = next(iter(loaded.values()))
    videos = check_videos(read_video_list(video_list) if video_list else list(first), annotations, annot,
                          video_list or tube_paths[0])
    num_classes = num_classes or max(v.class_id for v in annotations.values()) + 1
    return annotations, loaded, videos, num_classes, class_names_from(annotations, num_classes, classes)


def read_frames(cfg: TubeConfig, video: str, det_dir: Path | None = None, micro: bool = False) -> tuple:
    """Per-frame ``(loc, scores)`` of a video (in ``det_dir``, default ``cfg.det_dir``) and its frame
    size; ``[]`` (with a warning) when it has no detections. ``micro``: its micro-tubes instead
    (npz, a ``VideoDetections``; one without windows when it has none)."""
    path = detection_path(det_dir or cfg.det_dir, video, cfg.det_format)
    if not path.exists():
        log.warning("%s: no detections for video %s; counted as no detections", path, video)
        return (no_windows(cfg.frame_size) if micro else []), cfg.frame_size
    if cfg.det_format == "npz":
        det = read_video_detections(path)
        return (det if micro else frame_detections(det)), det.frame_size
    frames = read_road_mat_video(path)
    if not frames:
        log.warning("%s: no .mat frame files for video %s; counted as no detections", path, video)
    return frames, cfg.frame_size


def read_fuse_stream(cfg: TubeConfig, video: str, base: list, size: tuple) -> list:
    """The second stream's per-frame ``(loc, scores)`` of a video, checked against the base stream's
    (``base``, frame ``size``): the same frame size and count and, for mean fusion, the same rows."""
    top, top_size = read_frames(cfg, video, cfg.fuse_det_dir)
    paths = [detection_path(d, video, cfg.det_format) for d in (cfg.det_dir, cfg.fuse_det_dir)]
    if tuple(size) != tuple(top_size):
        raise ValueError(f"{paths[0]} and {paths[1]}: frame sizes {tuple(size)} and {tuple(top_size)} differ")
    if len(base) != len(top):
        raise ValueError(f"{paths[0]} has {len(base)} frames, {paths[1]} has {len(top)}")
    widths = [{s.shape[1] for loc, s in frames if len(loc)} for frames in (base, top)]
    if widths[0] and widths[1] and widths[0] != widths[1]:
        raise ValueError(f"{paths[1]}: scores have {widths[1].pop()} columns, {paths[0]} {widths[0].pop()}")
    if cfg.fusion == "mean" and (f := first_unaligned(base, top)) is not None:
        where = ([p / f"{f + 1:05d}.mat" for p in paths] if cfg.det_format == "road_mat"
                 else [f"{p} frame {f + 1}" for p in paths])
        raise ValueError(f"mean fusion needs the same priors in both streams: {where[1]} has {len(top[f][0])} "
                         f"detections, {where[0]} has {len(base[f][0])}")
    return top


def process_video(cfg: TubeConfig, video: str, num_classes: int, gt: VideoGT | None = None) -> tuple:
    """Worker: read, link + trim one video and, given its ``VideoGT``, its frame-AP matching.

    With ``cfg.fusion``, the two streams are fused frame by frame before the linking, and the
    frame-AP takes the fused detections the linking consumed (``link_fused``; for a stream that
    test.py fused, ``cfg.prefused``, the linking's filtering of it).
    Returns ``(video, {alpha: tubes}, FrameAP of the video or None, CPU seconds per stage, error)``:
    without ``cfg.strict``, a video whose detections cannot be read or linked is counted as a
    video without detections and its error message returned (else None).
    """
    def link(frames, frame_size, top=None):
        if fused:
            return link_fused(frames, top, num_classes, cfg.fusion, frame_size, cfg.fuse_iou, cfg.link_iou,
                              cfg.jumpgap, cfg.link_score, cfg.fuse_fixed)
        # a fused stream's frame-AP takes what the linking consumed, a stream's frameAp.m's filtering
        frame_ap_filter = linking_filter(cfg.link_score) if cfg.prefused else FRAME_AP_FILTER
        if cfg.link == "micro":  # frames: the video's micro-tubes (VideoDetections)
            paths = link_micro_tubes(frames, num_classes, cfg.link_iou, cfg.jumpgap, cfg.link_score)
            return paths, None if gt is None else filter_rows(frame_detections(frames), num_classes, frame_size,
                                                              frame_ap_filter)
        return link_frames(frames, num_classes, frame_size, cfg.link_iou, cfg.jumpgap,
                           None if gt is None else frame_ap_filter, cfg.link_score)

    fused = cfg.fusion and not cfg.prefused

    t0 = t1 = time.process_time()
    error = None
    try:
        frames, frame_size = read_frames(cfg, video, micro=cfg.link == "micro")
        top = read_fuse_stream(cfg, video, frames, frame_size) if fused else None
        t1 = time.process_time()
        try:
            paths, frame_dets = link(frames, frame_size, top)
        except ValueError as e:
            raise ValueError(f"{video}: {e}") from e
    except ValueError as e:  # DetectionError included
        if cfg.strict:
            raise
        t1 = time.process_time() if t1 == t0 else t1  # a failed read's time counts as reading
        error = str(e)
        paths, frame_dets = link_frames([], num_classes, cfg.frame_size, extra_filter=None if gt is None else FRAME_AP_FILTER)
    t2 = time.process_time()
    tubes = trim_video(paths, cfg.alphas)
    t3 = time.process_time()
    frame_ap = None if gt is None else video_frame_aps(gt, frame_dets, num_classes, cfg.protocols, cfg.frame_ap_any_class)
    t4 = time.process_time()
    times = {"read": t1 - t0, "link+filter": t2 - t1, "trim": t3 - t2, "frame-AP matching": t4 - t3}
    return video, tubes, frame_ap, times, error


def video_frame_aps(gt: VideoGT, frame_dets, num_classes: int, protocols: tuple = ("road",),
                    any_class: bool = False) -> dict:
    """``{protocol: FrameAP}`` of one video's frame-AP rows: frameAp.m's matching (road) and ACT.py
    ``frameAP``'s (act: each class's detections in descending score, its own GT only)."""
    out = {}
    if "road" in protocols:
        out["road"] = video_frame_ap(gt, frame_dets, num_classes, any_class=any_class)
    if "act" in protocols:
        out["act"] = video_frame_ap(gt, act.sort_frame_rows(frame_dets), num_classes)
    return out


def num_classes_of(cfg: TubeConfig, videos: list, annotations: dict | None = None) -> int:
    """Score columns minus background, from the first video with readable detections; with
    ``annotations``, an error if they are fewer than the annotated classes (a detector scores them all)."""
    first_error = None
    for video in videos:
        try:
            frames, _ = read_frames(cfg, video)
        except ValueError as e:
            if cfg.strict:
                raise
            first_error = first_error or e
            continue  # reported when the video is processed
        if frames and frames[0][1].shape[1]:  # all frames of a video share the score width
            num_classes = frames[0][1].shape[1] - 1
            if annotations is not None:
                need = 1 + max(max([a.class_id] + [t.class_id for t in a.tubes]) for a in annotations.values())
                if num_classes < need:
                    raise ValueError(f"{detection_path(cfg.det_dir, video, cfg.det_format)}: scores have "
                                     f"{num_classes + 1} columns (background first), but the annotations have "
                                     f"{need} classes")
            return num_classes
    raise ValueError(f"{cfg.det_dir}: no readable detections in any listed video"
                     + (f" (first error: {first_error})" if first_error else ""))


def build_all(cfg: TubeConfig, videos: list, num_classes: int, gts: list | None = None) -> tuple:
    """``{video: {alpha: [ActionTube]}}``, ``{video: FrameAP}`` (empty without ``gts``), summed stage
    times and ``{video: error}`` of the videos counted as without detections (see ``process_video``).

    ``gts``: the videos' ``VideoGT`` in the same order, for frame-mAP; each worker matches its
    video's frame-AP detections, so only scores and hit flags come back to this process.
    """
    tubes, frame_aps, times, failed = {}, {}, {}, {}
    args = [(cfg, v, num_classes, None if gts is None else g) for v, g in zip(videos, gts or [None] * len(videos))]
    with ProcessPoolExecutor(cfg.workers) if cfg.workers > 1 else nullcontext() as pool:
        results = pool.map(process_video, *zip(*args), chunksize=4) if pool else (process_video(*a) for a in args)
        for video, t, fa, tm, error in tqdm(results, total=len(videos), desc="videos", leave=False):
            tubes[video] = t
            if error is not None:
                log.error("%s; counted as a video without detections (--strict stops instead)", error)
                failed[video] = error
            if fa is not None:
                frame_aps[video] = fa
            for k, v in tm.items():
                times[k] = times.get(k, 0.0) + v
    return tubes, frame_aps, times, failed


# results.json keys of each protocol's video-mAP and frame-mAP
VIDEO_MAP_KEY = {"road": "video_map", "act": "video_map_act"}
FRAME_MAP_KEY = {"road": "frame_map_frameap", "act": "frame_map_act"}
FRAME_MAP_NAME = {"road": "frameAp.m", "act": "ACT.py frameAP"}


def alpha_label(alpha):
    """An alpha as results.json and file names show it (3, 0.5), or a foreign tube file's name."""
    if isinstance(alpha, str):
        return alpha
    return int(alpha) if float(alpha).is_integer() else float(alpha)


def evaluate(annotations: dict, videos: list, tubes_by_alpha: dict, num_classes: int, class_names: list,
             frame_aps: dict | None = None, protocols: tuple = ("road",)) -> tuple:
    """results.json content (values as fractions) and the PR curves ``{protocol: {alpha: [result per IoU]}}``.

    ``tubes_by_alpha``: ``{alpha (or a tube file's name): {video: [ActionTube]}}``. ``frame_aps``:
    ``{video: {protocol: FrameAP}}`` from ``build_all``, merged in the videos' order. Each protocol
    has its own keys (``VIDEO_MAP_KEY``, ``FRAME_MAP_KEY``) and every entry names its protocol.
    """
    protocols = check_protocols(protocols)
    out = {"protocol": "+".join(protocols)}
    curves = {p: {} for p in protocols}
    if "road" in protocols:
        gts = [gt_from_annotation(annotations[v]) for v in videos]
        out["video_map"] = []
        for alpha, tubes in tubes_by_alpha.items():
            curves["road"][alpha] = res = video_ap(gts, tubes, num_classes, VIDEO_IOU_THRESHOLDS)
            out["video_map"] += [{"protocol": "road", "alpha": alpha_label(alpha), "iou": round(r.iou, 4), "mAP": r.mAP,
                                  "mean_iou": r.mean_iou, "accuracy": r.accuracy, "ap": dict(zip(class_names, r.ap.tolist()))}
                                 for r in res]
    if "act" in protocols:
        out["video_map_act"] = []
        for alpha, tubes in tubes_by_alpha.items():
            res = act.video_ap([annotations[v] for v in videos], tubes, num_classes, VIDEO_IOU_THRESHOLDS, class_names)
            curves["act"][alpha] = res
            out["video_map_act"] += [{"protocol": "act", "alpha": alpha_label(alpha), "iou": round(r.iou, 4), "mAP": r.mAP,
                                      "ap": dict(zip(class_names, r.ap.tolist()))} for r in res]
    if frame_aps is not None:
        for p in protocols:
            merged = FrameAP.merge([frame_aps[v][p] for v in videos])
            fmap, fap = merged.compute()[:2] if p == "road" else act.frame_ap(merged, class_names)
            out[FRAME_MAP_KEY[p]] = {"protocol": p, "iou": 0.5, "mAP": fmap, "ap": dict(zip(class_names, fap.tolist()))}
    return out, curves


def fusion_summary(cfg: TubeConfig) -> dict | None:
    """results.json's ``fusion``: the type (ours and the Matlab's name), the streams and boost's settings."""
    if not cfg.fusion:
        return None
    matlab = {v: k for k, v in MATLAB_NAMES.items()}[cfg.fusion]
    return {"type": cfg.fusion, "matlab_name": matlab, "base_det_dir": str(cfg.det_dir),
            "fuse_det_dir": None if cfg.prefused else str(cfg.fuse_det_dir), "prefused_by_test_py": cfg.prefused,
            "fuse_iou": cfg.fuse_iou if cfg.fusion == "boost" else None,
            "fixed": cfg.fuse_fixed if cfg.fusion == "boost" else None}

def _alpha_row(entries: list, alpha) -> list:
    """Percentages at one alpha of a results.json video-mAP list: mAP at 0.2, 0.5, 0.75, the mean
    over 0.5:0.95, and the accuracy (None where the protocol has none)."""
    rows = {round(r["iou"], 2): r for r in entries if r["alpha"] == alpha}
    if not rows:
        raise ValueError(f"no video-mAP at alpha {alpha} (alphas: {sorted({str(r['alpha']) for r in entries})})")
    avg = np.mean([rows[t]["mAP"] for t in rows if t >= 0.5])
    acc = 100 * rows[0.2]["accuracy"] if "accuracy" in rows[0.2] else None
    return [100 * rows[0.2]["mAP"], 100 * rows[0.5]["mAP"], 100 * rows[0.75]["mAP"], 100 * avg, acc]


def table(results: dict) -> str:
    """The seed's layout: mAP at 0.2, 0.5, 0.75, mean over 0.5:0.95, accuracy, per alpha (percent),
    under a line naming the protocol, for each protocol in ``results`` (after a line naming the late fusion)."""
    lines = []
    fusion = results.get("fusion")
    if fusion:
        boost = f", fuse_iou {fusion['fuse_iou']:g}{', fixed' if fusion['fixed'] else ''}" if fusion["type"] == "boost" else ""
        streams = (f"the streams fused by test.py in {fusion['base_det_dir']}" if fusion.get("prefused_by_test_py")
                   else f"{fusion['base_det_dir']} and {fusion['fuse_det_dir']}")
        lines.append(f"late fusion: {fusion['type']} ({fusion['matlab_name']}{boost}) of {streams}")
    for protocol in results.get("protocol", "road").split("+"):
        entries = results.get(VIDEO_MAP_KEY[protocol], [])
        lines += [f"protocol {protocol}: " + ("ROAD (get_PR_curve.m: VOC AP, ST-IoU > t)" if protocol == "road" else
                                              "ACT/MOC (ACT.py videoAP: tube NMS 0.3, trapezoid AP, ST-IoU >= t)"),
                  "alpha  mAP@0.2  mAP@0.5  mAP@0.75  mAP@0.5:0.95  accuracy"]
        alphas = list(dict.fromkeys(r["alpha"] for r in entries))
        for a in alphas if any(isinstance(a, str) for a in alphas) else sorted(alphas):
            m02, m05, m075, avg, acc = _alpha_row(entries, a)
            acc = f"{'-':>8}" if acc is None else f"{acc:8.2f}"
            lines.append(f"{a!s:<6} {m02:7.2f}  {m05:7.2f}  {m075:8.2f}  {avg:12.2f}  {acc}")
        if FRAME_MAP_KEY[protocol] in results:
            what = " of the fused detections" if fusion else ""
            lines.append(f"{FRAME_MAP_NAME[protocol]} frame-mAP@0.5{what}: {100 * results[FRAME_MAP_KEY[protocol]]['mAP']:.2f}")
    return "\n".join(lines)


def summary_row(results: dict, alpha) -> dict:
    """One row of the results table (percent): video-mAP at 0.2, 0.5, 0.75 and 0.5:0.95 at ``alpha``,
    frameAp.m's frame-mAP@0.5 of the per-frame detections the linking took, the accuracy."""
    m02, m05, m075, avg, acc = _alpha_row(results["video_map"], alpha)
    fmap = results.get("frame_map_frameap", {}).get("mAP")
    return {"alpha": alpha, "mAP@0.2": m02, "mAP@0.5": m05, "mAP@0.75": m075, "mAP@0.5:0.95": avg,
            "frame-mAP": None if fmap is None else 100 * fmap, "accuracy": acc}


def rows_table(rows: dict) -> str:
    """The original's results table: a line per model or fusion (``{name: summary_row(...)}``)."""
    cols = ("mAP@0.2", "mAP@0.5", "mAP@0.75", "mAP@0.5:0.95", "frame-mAP", "accuracy")
    width = max([len("model")] + [len(n) for n in rows])
    lines = [f"{'model':<{width}}  " + "  ".join(cols)]
    for name, row in rows.items():
        cells = ["-" if row[c] is None else f"{row[c]:.2f}" for c in cols]
        lines.append(f"{name:<{width}}  " + "  ".join(f"{v:>{len(c)}}" for v, c in zip(cells, cols)))
    return "\n".join(lines)


def write_json(path: Path, obj: dict) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=1))
