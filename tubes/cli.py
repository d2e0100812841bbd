"""The tube flags (build_tubes.py, eval_video_ap.py, demo.py, pipeline.py), each defined once in an
argument group that the scripts compose through ``parents=[...]``. Imports no torch, so
build_tubes.py starts in well under a second.
"""
import argparse
import dataclasses
from pathlib import Path

from data.layout import annotation_path

from .detections import DET_FORMATS
from .errors import BACKGROUND_IOU
from .fusion import FUSE_IOU, LATE_FUSIONS, fusion_choices, fusion_name
from .linking import LINKING_FILTER
from .protocols import DEFAULT_PROTOCOL, PROTOCOLS, check_protocols
from .runner import LINK_MODES, TubeConfig


def positive_int(text: str) -> int:
    """An integer >= 1 (``--jumpgap``, ``--workers``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def alpha_list(text: str) -> tuple:
    """``--alphas 3,5``: the trimming's label-change penalties, non-negative numbers."""
    try:
        alphas = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if any(not a >= 0 for a in alphas):
        raise argparse.ArgumentTypeError(f"label-change penalties must be >= 0, got {text!r}")
    return alphas


def tube_args(alphas: str = "3,5") -> argparse.ArgumentParser:
    """The temporal trimming's flag (``--alphas``), the linking's minimum class score (``--link_score``) and its
    mode (``--link``)."""
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("tubes")
    group.add_argument("--alphas", default=alphas, type=alpha_list, help="label-change penalties of the temporal trimming")
    group.add_argument("--link_score", default=LINKING_FILTER.score_thresh, type=float,
                       help="minimum class score of a detection the linking takes (actionPaths.m: 0.001)")
    group.add_argument("--link", default="frame", choices=LINK_MODES,
                       help="frame: ROAD's linking of per-frame detections; micro: AMTNet's linking of whole "
                            "micro-tubes, one step per window (test.py's npz detections, one stream or test.py's mean "
                            "fusion; README 'Micro-tubes')")
    return parser


def class_args(num_classes: bool = False) -> argparse.ArgumentParser:
    """``--classes`` (a file of class names) and, with ``num_classes``, ``--num_classes``."""
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("classes")
    group.add_argument("--classes", type=Path, default=None,
                       help="class names in label order, one per line (default: from the annotations or the checkpoint)")
    if num_classes:
        group.add_argument("--num_classes", type=int, default=None,
                           help="action classes, without the background (default: from the annotations or the "
                                "checkpoint; needed for an original AMTNet checkpoint without --classes)")
    return parser


def annotation_args(required: bool = True, video_list: bool = True, what: str = "") -> argparse.ArgumentParser:
    """``--annot`` (``required`` or not, ``what`` said after its help) and, with ``video_list``, ``--video_list``."""
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("annotations")
    group.add_argument("--annot", required=required, type=annotation_path, default=None,
                       help=f"finalAnnots.mat or pyannot.pkl, or ucf24: the shipped UCF101-24 annotations{what}")
    if video_list:
        group.add_argument("--video_list", type=Path, default=None, help="videos to evaluate, one Class/video per line")
    return parser


def late_fusion_list(text: str) -> tuple:
    """``--late_fusion boost,mean`` (pipeline.py): distinct fusion types, ours or the original's names, any case."""
    try:
        names = tuple(dict.fromkeys(fusion_name(v.strip()) for v in str(text).split(",") if v.strip()))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return names


def _fusion_help() -> str:
    return "; ".join(f"{f.name}{f' ({f.alias})' if f.alias != f.name else ''}: {f.help}" for f in LATE_FUSIONS.values())


def _add_fusion_flags(group) -> None:
    """How two streams' per-frame detections are fused before the linking: build_tubes.py's and demo.py's.
    ``--fusion``: the former spelling of ``--late_fusion``."""
    group.add_argument("--late_fusion", "--fusion", dest="late_fusion", default=None, type=str.lower,
                       choices=fusion_choices(), help=f"the late fusion type: {_fusion_help()}")
    group.add_argument("--fuse_iou", default=FUSE_IOU, type=float,
                       help="boost: the minimum IoU of a base box and a flow box (I02genFusedTubes.m: 0.25)")
    group.add_argument("--fuse_fixed", action=argparse.BooleanOptionalAction, default=False,
                       help="boost every base box whose best flow box is still free and append every flow box left "
                            "(the original boosts only the first base box per frame and class, and appends no flow "
                            "box when none was boosted; see README)")


def _add_strict_flag(group) -> None:
    """``--strict``: build_tubes.py's, eval_online.py's and eval_video_ap.py's."""
    group.add_argument("--strict", action=argparse.BooleanOptionalAction, default=False,
                       help="refuse a video of the evaluation without detections: no detection file, an unreadable or "
                            "malformed one, or no entry in a tube file (default: count it as a video without "
                            "detections, its ground truth as missed, list it in the results and go on)")


def strict_args() -> argparse.ArgumentParser:
    """``--strict`` alone (eval_video_ap.py; build_tubes.py has it in ``build_args``)."""
    parser = argparse.ArgumentParser(add_help=False)
    _add_strict_flag(parser.add_argument_group("run"))
    return parser


def fusion_args(title: str = "late fusion (fusedActionPaths.m)") -> argparse.ArgumentParser:
    """The late fusion's flags alone (demo.py; build_tubes.py has them in ``build_args``)."""
    parser = argparse.ArgumentParser(add_help=False)
    _add_fusion_flags(parser.add_argument_group(title))
    return parser


def build_args() -> argparse.ArgumentParser:
    """build_tubes.py's inputs, linking and run flags (beside ``annotation_args``, ``class_args`` and ``tube_args``)."""
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("detections and outputs")
    group.add_argument("--det_dir", required=True, type=Path,
                       help="detections: DIR/<Class>/<video>/00001.mat or DIR/<Class>/<video>.npz")
    group.add_argument("--out_dir", required=True, type=Path)
    group.add_argument("--det_format", default="road_mat", type=str.lower, choices=DET_FORMATS)
    group = parser.add_argument_group("linking")
    # --iou_thresh: the old spelling (test.py's --iou_thresh is the frame-mAP threshold).
    group.add_argument("--link_iou", "--iou_thresh", dest="link_iou", default=0.1, type=float,
                       help="linking IoU threshold")
    group.add_argument("--jumpgap", default=3, type=positive_int,
                       help="frames (with --link micro: micro-tubes) a path may go unmatched")
    group = parser.add_argument_group("late fusion (fusedActionPaths.m; --det_dir is the base stream, e.g. rgb)")
    group.add_argument("--fuse_det_dir", default=None, type=Path,
                       help="the second stream's detections (e.g. flow), in --det_format, the same videos and frames "
                            "(mean: their files must align row by row)")
    _add_fusion_flags(group)
    group = parser.add_argument_group("run")
    group.add_argument("--workers", default=1, type=positive_int)
    group.add_argument("--no_frame_map", action="store_true", help="skip frame-mAP")
    _add_strict_flag(group)
    group.add_argument("--frame_ap_any_class", action=argparse.BooleanOptionalAction, default=False,
                       help="frameAp.m's matching: a detection may take a GT box of another class in a frame that has one "
                            "of its own (differs only where frames have GT of two classes; can give AP > 1)")
    return parser


def tube_config(args: argparse.Namespace) -> TubeConfig:
    """The ``TubeConfig`` that build_tubes.py's flags describe."""
    return TubeConfig(args.det_dir, args.det_format, args.alphas, args.link_iou, args.link_score, args.jumpgap,
                      workers=args.workers,
                      frame_ap_any_class=args.frame_ap_any_class, strict=args.strict,
                      fuse_det_dir=args.fuse_det_dir, fusion=args.late_fusion, fuse_iou=args.fuse_iou,
                      fuse_fixed=args.fuse_fixed, link=args.link)


def protocol_list(text: str) -> tuple:
    """``--protocol road``, ``act`` or ``road,act`` (any case): the evaluation protocols, in order."""
    names = tuple(t.strip().lower() for t in str(text).split(","))
    try:
        return check_protocols(names)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected distinct names of {', '.join(PROTOCOLS)}, comma-separated, "
                                         f"got {text!r}") from None


def protocol_args() -> argparse.ArgumentParser:
    """``--protocol``: whose video-mAP / frame-mAP to compute (README, "Protocols")."""
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("evaluation protocol")
    group.add_argument("--protocol", default=(DEFAULT_PROTOCOL,), type=protocol_list, metavar="|".join(PROTOCOLS),
                       help="; ".join(f"{p.name}: {p.label}" for p in PROTOCOLS.values())
                            + f" (default {DEFAULT_PROTOCOL}; several, comma-separated: each)")
    return parser


def with_protocols(cfg: TubeConfig, args: argparse.Namespace) -> TubeConfig:
    """``cfg`` with ``--protocol``'s protocols."""
    return dataclasses.replace(cfg, protocols=args.protocol)


def unit_interval(text: str) -> float:
    """A number in [0, 1] (an IoU threshold)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def error_args() -> argparse.ArgumentParser:
    """analyze.py's thresholds (docs/error-analysis.md)."""
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("error analysis")
    group.add_argument("--iou", default=0.5, type=unit_interval,
                       help="ST-IoU threshold of a match (road: ST-IoU > iou, act: >= iou)")
    group.add_argument("--background_iou", default=BACKGROUND_IOU, type=unit_interval,
                       help="a false positive with a lower ST-IoU with every GT tube of its class is background (TIDE: 0.1)")
    return parser
