"""What build_tubes.py and eval_video_ap.py run: detections -> tubes -> video/frame mAP.

Videos are processed in parallel (each worker reads one video's detections once, links,
trims, filters its frames for frame-mAP and matches its tubes and frames with the ground
truth); the main process writes each video's tubes as they come and keeps only the matching
(a few numbers per tube), then ranks and averages over the video list, as the Matlab does.
"""
import json
import logging
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from data.act_annots import is_act_file, parse_act_gt
from data.annotations import UCF_FRAME_SIZE, VideoAnnotation, load_pickle, load_pyannot, read_video_list
from data.matlab_annots import load_final_annots
from utils.io import atomic_path, release_free_memory

from .detections import (DET_FORMATS, detection_path, frame_detections, frame_map_path, has_detections,
                         read_road_mat_video, read_video_detections)
from .frame_map import FrameAP
from .fusion import FUSE_IOU, check_link, first_unaligned, fusion_streams, late_fusion, link_fused, prefused
from .linking import FRAME_AP_FILTER, LINKING_FILTER, check_jumpgap, filter_rows, link_video, linking_filter
from .micro import link_micro_tubes, no_windows
from .protocols import PROTOCOLS, check_protocols
from .trimming import trim_arrays
from .tube_files import TubeFileWriter, load_any_tubes, tube_file
from .video_map import VIDEO_IOU_THRESHOLDS, VideoGT, gt_from_annotation

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
    protocols: tuple = ("road",)  # evaluation protocols (tubes/protocols.py), build_tubes.py --protocol
    # late fusion (tubes/fusion.py): det_dir is the base stream (rgb), fuse_det_dir the other (flow)
    fuse_det_dir: Path | None = None
    fusion: str | None = None  # a LATE_FUSIONS name or alias (boost, union, mean; nwsum-plus, cat)
    fuse_iou: float = FUSE_IOU  # boost's minimum overlap
    fuse_fixed: bool = False  # boost without the original's covered-box bug (see tubes/fusion.py)
    link: str = "frame"  # LINK_MODES: per-frame detections (ROAD) or whole micro-tubes (tubes/micro.py)
    # set for a prior-by-prior fusion (mean) of a det_dir that test.py --fuse_weights fused (``prefused_by``)
    prefused: bool = field(default=False, init=False)

    def __post_init__(self):
        record = None if self.fusion is None else late_fusion(self.fusion)
        self.fusion = record and record.name
        self.prefused = bool(record and not record.per_frame and self.fuse_det_dir is None
                             and prefused_by(self.det_dir) == record.name)
        if (self.fusion is None) != (self.fuse_det_dir is None) and not self.prefused:
            alone = [f"the {s}/ folder" for s in fusion_streams()[2:]]
            raise ValueError("late fusion needs both a fusion type and a second stream's detections "
                             f"(got fusion={self.fusion!r}, fuse_det_dir={self.fuse_det_dir!r}; a prior-by-prior "
                             f"fusion also takes {' or '.join(alone) or 'its folder'} of test.py --fuse_weights alone)")
        if not 0 <= self.fuse_iou <= 1:
            raise ValueError(f"fuse_iou must be in [0, 1], got {self.fuse_iou!r}")
        check_jumpgap(self.jumpgap)
        linking_filter(self.link_score)
        if self.link not in LINK_MODES:
            raise ValueError(f"link must be one of {LINK_MODES}, got {self.link!r}")
        if self.link == "micro" and (self.det_format != "npz" or (self.fusion and not self.prefused)):
            raise ValueError("micro-tube linking (link 'micro') reads micro-tubes: test.py's npz detections "
                             f"(det_format npz, got {self.det_format!r}), one stream (no late fusion)")
        if self.fusion:
            check_link(self.fusion, self.link)
        if int(self.workers) < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers!r}")
        if not self.alphas or any(not a >= 0 for a in self.alphas):
            raise ValueError(f"alphas must be one or more numbers >= 0, got {self.alphas!r}")
        check_protocols(self.protocols)

    def linking(self) -> dict:
        """The linking's settings as the results files record them (``results.json``, ``online.json``)."""
        return {"mode": self.link, "iou": self.link_iou, "jumpgap": self.jumpgap, "min_score": self.link_score}


# frame: ROAD's linking of per-frame detections; micro: AMTNet's linking of micro-tubes (tubes/micro.py)
LINK_MODES = ("frame", "micro")



def prefused_by(det_dir: Path) -> str | None:
    """The fusion whose scores ``det_dir`` holds, as its summary (``frame_map_path``) says: ``mean`` for test.py
    --fuse_weights's ``DET_DIR/mean``; None for one model's detections (or no summary)."""
    try:
        return prefused(json.loads(frame_map_path(det_dir).read_text()).get("fusion"))
    except (OSError, ValueError, AttributeError):
        return None


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


class MissingVideosError(ValueError):
    """Videos of the evaluation without detections (or tubes) where that is refused (``strict``), or all of them."""


def split_videos(annotations: dict, annot_path: Path) -> tuple:
    """The test split that the videos default to, ``(names, source)``: ``testlist01.txt`` beside the
    annotations, else an ACT ground-truth file's first test list (its annotated videos); ``(None, None)``
    when neither is there."""
    split = Path(annot_path).with_name("testlist01.txt")
    if split.is_file():
        return read_video_list(split), split
    if Path(annot_path).suffix != ".mat":
        content = load_pickle(annot_path)
        if is_act_file(content) and content.get("test_videos"):
            return list(dict.fromkeys(v for v in content["test_videos"][0] if v in annotations)), Path(annot_path)
    return None, None


def resolve_videos(cfg: TubeConfig, annotations: dict, annot_path: Path, video_list: Path | None = None) -> list:
    """The listed videos, or the test split (``split_videos``; else every annotated video), all of them:
    a video without detections counts as one with none (``check_missing``: logged; ``cfg.strict`` refuses)."""
    if video_list:
        names, source = read_video_list(video_list), Path(video_list)
    else:
        names, source = split_videos(annotations, annot_path)
        names, source = (sorted(annotations), Path(annot_path)) if names is None else (names, source)
    videos = check_videos(names, annotations, annot_path, source)
    for det_dir in det_dirs(cfg):
        if videos and not any(has_detections(det_dir, v, cfg.det_format) for v in videos):
            raise MissingVideosError(f"{det_dir}: no detections for any of the {len(videos)} videos of {source}: "
                                     + looked_for(det_dir, videos, cfg.det_format))
    check_missing(videos_without_detections(cfg, videos), videos,
                  f"{' or '.join(map(str, det_dirs(cfg)))}: no detections", source, cfg.strict)
    return videos


def det_dirs(cfg: TubeConfig) -> list:
    """The folders of detections that ``cfg`` reads: ``det_dir`` and, for late fusion, ``fuse_det_dir``."""
    return [cfg.det_dir] + ([cfg.fuse_det_dir] if cfg.fuse_det_dir else [])


def looked_for(det_dir: Path, videos: list, det_format: str) -> str:
    """What ``resolve_videos`` looked for in ``det_dir`` and what is there instead, in a few words."""
    where = detection_path(det_dir, videos[0], det_format)
    said = f"looked for {where}{'/00001.mat ...' if det_format == 'road_mat' else ''} (--det_format {det_format})"
    if not Path(det_dir).is_dir():
        return f"{said}, but {det_dir} is not a folder"
    other = next(f for f in DET_FORMATS if f != det_format)
    found = next((v for v in videos if has_detections(det_dir, v, other)), None)
    if found is not None:
        return f"{said}; it holds {other} detections ({detection_path(det_dir, found, other)}): --det_format {other}?"
    entries = sorted(p.name for p in Path(det_dir).iterdir())
    return f"{said}; the folder is empty" if not entries else f"{said}; the folder holds {', '.join(entries[:3])}" \
        + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")


def check_missing(missing: list, videos: list, what: str, source: Path, strict: bool) -> None:
    """Log that ``missing`` videos of ``videos`` (from ``source``) have ``what`` (say, ``DIR: no detections``):
    each counts as a video without detections, its ground truth as missed; ``strict`` refuses instead."""
    if not missing:
        return
    names = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    if strict:
        raise MissingVideosError(f"{what} for {len(missing)} of the {len(videos)} videos of {source} ({names}); "
                                 "without --strict each counts as a video without detections")
    log.warning("%s for %d of the %d videos of %s (%s): each counts as a video without detections, its ground "
                "truth as missed (listed in the results; --strict refuses)",
                what, len(missing), len(videos), source, names)


def videos_without_detections(cfg: TubeConfig, videos: list, failed=()) -> list:
    """The ``videos`` (in order) counted as without detections: none found (in either stream) or unreadable
    (``failed``, the videos ``build_all`` reports)."""
    return [v for v in videos if v in failed or not all(has_detections(d, v, cfg.det_format) for d in det_dirs(cfg))]


def without_detections_line(results: dict, num_videos: int, path: Path) -> str | None:
    """The scripts' last line on the videos counted as without detections (``results``' lists, written to ``path``)."""
    without, failed = results["videos_without_detections"], results["failed_videos"]
    if not without:
        return None
    return (f"{len(without)} of {num_videos} videos counted as without detections, {len(failed)} of them unreadable "
            f"(see 'videos_without_detections' and 'failed_videos' in {path}): "
            f"{', '.join(without[:3])}{' ...' if len(without) > 3 else ''}")


def select_tube_videos(tube_files: list, annotations: dict, annot_path: Path, video_list: Path | None = None,
                       strict: bool = False) -> tuple:
    """eval_video_ap.py's videos and ``{tube file: [videos of the evaluation it lacks]}``: the listed videos, else
    the test split (``split_videos``), else the first tube file's videos. ``tube_files``: ``[(path, {video:
    tubes})]``. A video that a file lacks counts as one without tubes (logged; ``strict`` refuses); a file
    without any of the videos is an error."""
    names, source = (read_video_list(video_list), Path(video_list)) if video_list else split_videos(annotations, annot_path)
    if names is None:
        names, source = list(tube_files[0][1]), Path(tube_files[0][0])
        log.warning("no test split beside %s (testlist01.txt): evaluating the %d videos of %s (--video_list chooses)",
                    annot_path, len(names), source)
    videos = check_videos(names, annotations, annot_path, source)
    lacking = {}
    for path, tubes in tube_files:
        missing = [v for v in videos if v not in tubes]
        if videos and len(missing) == len(videos):
            raise MissingVideosError(f"{path}: no tubes for any of the {len(videos)} videos of {source} (it holds "
                                     f"{len(tubes)} videos{', first: ' + next(iter(tubes)) if tubes else ''})")
        check_missing(missing, videos, f"{path}: no tubes", source, strict)
        if missing:
            lacking[str(path)] = missing
    return videos, lacking


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
                      classes: Path | None = None, strict: bool = False) -> tuple:
    """eval_video_ap.py's and analyze.py's inputs: ``(annotations, {label: {video: [ActionTube]}}, videos,
    num_classes, class names, {tube file: [videos it lacks]})``. The videos are ``select_tube_videos``'s (the list,
    else the test split, else the first tube file's; a video a file lacks counts as one without tubes, ``strict``
    refuses); ``num_classes`` defaults to the annotations' (largest video class + 1)."""
    annotations = load_annotations(annot)
    files = [(path, load_any_tubes(path)) for path in tube_paths]
    loaded = dict(labelled for _, labelled in files)
    videos, lacking = select_tube_videos([(path, tubes) for path, (_, tubes) in files], annotations, annot,
                                         video_list, strict)
    num_classes = num_classes or max(v.class_id for v in annotations.values()) + 1
    return annotations, loaded, videos, num_classes, class_names_from(annotations, num_classes, classes), lacking


def read_frames(cfg: TubeConfig, video: str, det_dir: Path | None = None, micro: bool = False) -> tuple:
    """Per-frame ``(loc, scores)`` of a video (in ``det_dir``, default ``cfg.det_dir``) and its frame
    size; ``[]`` (with a warning) when it has no detections. ``micro``: its micro-tubes instead
    (npz, a ``VideoDetections``; one without windows when it has none)."""
    path = detection_path(det_dir or cfg.det_dir, video, cfg.det_format)
    if not path.exists():  # resolve_videos has said which videos have none
        log.debug("%s: no detections for video %s; counted as no detections", path, video)
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
    if not late_fusion(cfg.fusion).per_frame and (f := first_unaligned(base, top)) is not None:
        where = ([p / f"{f + 1:05d}.mat" for p in paths] if cfg.det_format == "road_mat"
                 else [f"{p} frame {f + 1}" for p in paths])
        raise ValueError(f"{cfg.fusion} fusion needs the same priors in both streams: {where[1]} has {len(top[f][0])} "
                         f"detections, {where[0]} has {len(base[f][0])}")
    return top


def process_video(cfg: TubeConfig, video: str, num_classes: int, gt: VideoGT | None = None,
                  annotation: VideoAnnotation | None = None) -> tuple:
    """Worker: read, link + trim one video and, given its ``VideoGT``, its frame-AP matching; given its
    ``VideoAnnotation``, its tubes' video-AP matching too (``video_parts``).

    With ``cfg.fusion``, the two streams are fused frame by frame before the linking, and the
    frame-AP takes the fused detections the linking consumed (``link_fused``; for a stream that
    test.py fused, ``cfg.prefused``, the linking's filtering of it).
    Returns ``(video, {alpha: TubeArrays}, FrameAP of the video or None, CPU seconds per stage, error,
    {(protocol, alpha): parts} or None)``:
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
        return link_video(frames, num_classes, frame_size, cfg.link_iou, cfg.jumpgap,
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
        paths, frame_dets = link_video([], num_classes, cfg.frame_size, extra_filter=None if gt is None else FRAME_AP_FILTER)
    t2 = time.process_time()
    tubes = trim_arrays(paths, cfg.alphas)
    t3 = time.process_time()
    frame_ap = None if gt is None else video_frame_aps(gt, frame_dets, num_classes, cfg.protocols, cfg.frame_ap_any_class)
    t4 = time.process_time()
    parts = None if annotation is None else video_parts(annotation, {a: t.tubes() for a, t in tubes.items()},
                                                       num_classes, cfg.protocols)
    times = {"read": t1 - t0, "link+filter": t2 - t1, "trim": t3 - t2, "frame-AP matching": t4 - t3}
    if annotation is not None:
        times["video-AP matching"] = time.process_time() - t4
    release_free_memory(every=8)  # videos' arrays, freed: else a worker's memory grows with the videos it has seen
    return video, tubes, frame_ap, times, error, parts


def video_frame_aps(gt: VideoGT, frame_dets, num_classes: int, protocols: tuple = ("road",),
                    any_class: bool = False) -> dict:
    """``{protocol: FrameAP}`` of one video's frame-AP rows, each protocol's matching (``Protocol.frame_match``:
    frameAp.m's for road, ACT.py ``frameAP``'s for act)."""
    return {p: PROTOCOLS[p].frame_match(gt, frame_dets, num_classes, any_class) for p in protocols}


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


@dataclass
class VideoRun:
    """What ``run_videos`` gathers besides each video's output: the stage CPU seconds summed over the videos and
    ``{video: error}`` of those counted as without detections (``process_video``); ``build_and_evaluate``'s
    wall and CPU seconds of the evaluation after the last video (``evaluation``, ``evaluation_cpu``)."""
    times: dict = field(default_factory=dict)
    failed: dict = field(default_factory=dict)
    evaluation: float = 0.0
    evaluation_cpu: float = 0.0


def run_videos(cfg: TubeConfig, videos: list, num_classes: int, gts: list | None = None,
               annotations: list | None = None, run: VideoRun | None = None):
    """``process_video`` of each video, in ``cfg.workers`` processes: yields ``(video, {alpha: TubeArrays}, FrameAP or
    None, parts or None)`` in the videos' order, one video at a time. ``gts``, ``annotations``: the videos' ``VideoGT``
    (frame-AP) and ``VideoAnnotation`` (video-AP matching) in the same order, or None; ``run`` gathers the times and
    the failed videos (logged)."""
    run = run if run is not None else VideoRun()
    args = [(cfg, v, num_classes, g, a) for v, g, a in zip(videos, gts or [None] * len(videos),
                                                           annotations or [None] * len(videos))]
    with ProcessPoolExecutor(cfg.workers) if cfg.workers > 1 else nullcontext() as pool:
        results = pool.map(process_video, *zip(*args), chunksize=4) if pool and args else (process_video(*a) for a in args)
        try:
            for video, tubes, frame_ap, times, error, parts in tqdm(results, total=len(videos), desc="videos", leave=False):
                if error is not None:
                    log.error("%s; counted as a video without detections (--strict stops instead)", error)
                    run.failed[video] = error
                for k, v in times.items():
                    run.times[k] = run.times.get(k, 0.0) + v
                yield video, tubes, frame_ap, parts
                if pool:
                    release_free_memory(every=8)
        finally:  # an error while the caller handles a video: the videos not started are cancelled, not run
            results.close()


def build_all(cfg: TubeConfig, videos: list, num_classes: int, gts: list | None = None) -> tuple:
    """``{video: {alpha: [ActionTube]}}``, ``{video: FrameAP}`` (empty without ``gts``), summed stage
    times and ``{video: error}`` of the videos counted as without detections (see ``process_video``): every
    video's tubes in memory (``build_and_evaluate`` keeps a few numbers per tube instead).

    ``gts``: the videos' ``VideoGT`` in the same order, for frame-mAP; each worker matches its
    video's frame-AP detections, so only scores and hit flags come back to this process, and its
    tubes as a few arrays (``TubeArrays``).
    """
    tubes, frame_aps, run = {}, {}, VideoRun()
    for video, packed, frame_ap, _ in run_videos(cfg, videos, num_classes, gts, run=run):
        tubes[video] = {alpha: t.tubes() for alpha, t in packed.items()}
        if frame_ap is not None:
            frame_aps[video] = frame_ap
    return tubes, frame_aps, run.times, run.failed


def build_and_evaluate(cfg: TubeConfig, annotations: dict, videos: list, num_classes: int, class_names: list,
                       out_dir: Path, frame_map: bool = True) -> tuple:
    """build_tubes.py's work: each video linked, trimmed and matched in a worker; its tubes written to
    ``out_dir``'s tube files (``tube_file``, one per alpha) as it comes back, and only its matching kept
    (``VideoMaps``, the frame-AP's scores and flags), so memory does not grow with the tubes of all videos.
    Returns ``(results.json content, VideoRun)`` (``evaluate``'s content, the same numbers)."""
    ordered = [annotations[v] for v in videos]
    gts = [gt_from_annotation(a) for a in ordered] if frame_map else None
    maps, frame_aps, run = VideoMaps(cfg.protocols, cfg.alphas, num_classes), [], VideoRun()
    with ExitStack() as stack:
        writers = {a: stack.enter_context(TubeFileWriter(tube_file(out_dir, a), videos, a)) for a in cfg.alphas}
        for i, (_, tubes, frame_ap, parts) in enumerate(run_videos(cfg, videos, num_classes, gts, ordered, run)):
            for alpha, writer in writers.items():
                writer.add(i, tubes[alpha])
            maps.add(parts)
            frame_aps.append(frame_ap)
    start, cpu = time.perf_counter(), time.process_time()
    results = maps.results(class_names, frame_aps if frame_map else None)[0]
    run.evaluation, run.evaluation_cpu = time.perf_counter() - start, time.process_time() - cpu
    return results, run


def video_parts(annotation: VideoAnnotation, tubes_by_label: dict, num_classes: int, protocols: tuple,
                iou_thresholds: tuple = VIDEO_IOU_THRESHOLDS) -> dict:
    """One video's video-AP matching, ``{(protocol, label): parts}`` (``Protocol.video_parts``), of its tubes
    ``{label (alpha or a tube file's name): [ActionTube]}``."""
    return {(p, label): PROTOCOLS[p].video_parts(annotation, tubes, num_classes, iou_thresholds)
            for p in protocols for label, tubes in tubes_by_label.items()}


class VideoMaps:
    """Video-mAP of one or more tube sets (an alpha or a tube file's name each), for each protocol, from the videos'
    matching given one video at a time (``add``, in the videos' order): a few numbers per tube are kept, not the
    tubes (``Protocol.video_parts``, ``Protocol.combine``)."""

    def __init__(self, protocols: tuple, labels, num_classes: int, iou_thresholds: tuple = VIDEO_IOU_THRESHOLDS):
        self.protocols, self.labels = check_protocols(protocols), list(labels)
        self.num_classes, self.iou_thresholds = num_classes, tuple(iou_thresholds)
        self.parts = {(p, label): [] for p in self.protocols for label in self.labels}

    def add(self, parts: dict) -> None:
        """The next video's ``video_parts`` (with the same protocols, labels and thresholds)."""
        for key, found in self.parts.items():
            found.append(parts[key])

    def results(self, class_names: list, frame_aps: list | None = None) -> tuple:
        """results.json content (values as fractions) and the PR curves ``{protocol: {label: [result per IoU]}}``.

        ``frame_aps``: each video's ``{protocol: FrameAP}`` from ``process_video``, in the videos' order, merged.
        Each protocol has its own keys (``video_key``, ``frame_key``) and every entry names its protocol.
        """
        out = {"protocol": "+".join(self.protocols)}
        curves = {p: {} for p in self.protocols}
        for p in self.protocols:
            protocol = PROTOCOLS[p]
            out[protocol.video_key] = []
            for label in self.labels:
                curves[p][label] = res = protocol.combine(self.parts[p, label], self.num_classes, self.iou_thresholds,
                                                          class_names)
                out[protocol.video_key] += [{"protocol": p, "alpha": alpha_label(label), "iou": round(r.iou, 4),
                                             "mAP": r.mAP, **{k: getattr(r, k) for k in protocol.entry_fields},
                                             "ap": dict(zip(class_names, r.ap.tolist()))} for r in res]
        if frame_aps is not None:
            for p in self.protocols:
                fmap, fap = PROTOCOLS[p].frame_ap(FrameAP.merge([f[p] for f in frame_aps]), class_names)
                out[PROTOCOLS[p].frame_key] = {"protocol": p, "iou": 0.5, "mAP": fmap,
                                               "ap": dict(zip(class_names, fap.tolist()))}
        return out, curves


def alpha_label(alpha):
    """An alpha as results.json and file names show it (3, 0.5), or a foreign tube file's name."""
    if isinstance(alpha, str):
        return alpha
    return int(alpha) if float(alpha).is_integer() else float(alpha)


def evaluate(annotations: dict, videos: list, tubes_by_alpha: dict, num_classes: int, class_names: list,
             frame_aps: dict | None = None, protocols: tuple = ("road",),
             iou_thresholds: tuple = VIDEO_IOU_THRESHOLDS) -> tuple:
    """results.json content (values as fractions) and the PR curves ``{protocol: {alpha: [result per IoU]}}``
    (``VideoMaps.results``) of tubes in memory.

    ``tubes_by_alpha``: ``{alpha (or a tube file's name): {video: [ActionTube]}}``. ``frame_aps``:
    ``{video: {protocol: FrameAP}}`` from ``build_all``, merged in the videos' order.
    """
    maps = VideoMaps(protocols, tubes_by_alpha, num_classes, iou_thresholds)
    for v in videos:
        maps.add(video_parts(annotations[v], {a: t.get(v, []) for a, t in tubes_by_alpha.items()}, num_classes,
                             maps.protocols, iou_thresholds))
    return maps.results(class_names, None if frame_aps is None else [frame_aps[v] for v in videos])


def fusion_summary(cfg: TubeConfig) -> dict | None:
    """results.json's ``fusion``: the type (ours and the Matlab's name), the streams and the settings it
    reads (``LateFusion.options``: boost's ``fuse_iou`` and ``fixed``; None for the others)."""
    if not cfg.fusion:
        return None
    record = late_fusion(cfg.fusion)
    return {"type": record.name, "matlab_name": record.alias, "base_det_dir": str(cfg.det_dir),
            "fuse_det_dir": None if cfg.prefused else str(cfg.fuse_det_dir), "prefused_by_test_py": cfg.prefused,
            "fuse_iou": cfg.fuse_iou if "fuse_iou" in record.options else None,
            "fixed": cfg.fuse_fixed if "fuse_fixed" in record.options else None}


def write_json(path: Path, obj: dict) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=1))
