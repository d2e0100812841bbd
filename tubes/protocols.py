"""The evaluation protocols (``--protocol``): one record each, which the runner, the scripts' tables and
plots and the flags read. A new protocol is one ``Protocol`` entry in ``PROTOCOLS`` and its functions.

road: ROAD's Matlab (``get_PR_curve.m``, ``frameAp.m``; ``tubes/video_map.py``, ``tubes/frame_map.py``);
act: ACT / MOC-Detector's ``ACT.py`` (``videoAP``, ``frameAP``; ``tubes/act.py``).
"""
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import act
from .frame_map import FrameAP, video_frame_ap
from .video_map import VideoGT, gt_from_annotation
from .video_map import video_ap as road_video_ap


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol.

    ``video_ap(annotations, tubes, num_classes, iou_thresholds, class_names)``: ``annotations`` the
    videos' ``VideoAnnotation`` in order, ``tubes`` ``{video: [ActionTube]}``; one result per threshold
    with ``iou``, ``mAP``, ``ap [C]`` and ``curves`` (and the ``entry_fields`` it also reports).
    ``frame_match(gt: VideoGT, rows, num_classes, any_class) -> FrameAP``: one video's frame-AP matching
    of the frame-AP rows ``[frame, class, score, x1, y1, x2, y2]``; ``frame_ap(merged FrameAP,
    class_names) -> (mAP, ap [C])``. ``video_key``, ``frame_key``: its results.json keys."""
    name: str
    label: str             # the tables' heading
    frame_label: str       # whose frame-mAP, in the tables
    video_key: str
    frame_key: str
    match: str             # the ST-IoU a match needs, in plot titles: ">" or ">="
    file_prefix: str       # of its PR plots (eval_video_ap.py)
    line_style: str        # of its lines in the mAP-against-IoU plot
    video_ap: Callable
    frame_match: Callable
    frame_ap: Callable
    entry_fields: tuple = ()  # result attributes its results.json video-mAP entries add


def _road_video_ap(annotations: list, tubes: dict, num_classes: int, iou_thresholds: tuple, class_names: list) -> list:
    return road_video_ap([gt_from_annotation(a) for a in annotations], tubes, num_classes, iou_thresholds)


def _road_frame_match(gt: VideoGT, rows: np.ndarray | None, num_classes: int, any_class: bool = False) -> FrameAP:
    return video_frame_ap(gt, rows, num_classes, any_class=any_class)


def _road_frame_ap(merged: FrameAP, class_names: list) -> tuple:
    return merged.compute(curves=False)[:2]


def _act_frame_match(gt: VideoGT, rows: np.ndarray | None, num_classes: int, any_class: bool = False) -> FrameAP:
    """ACT.py ``frameAP``'s matching: each class's detections in descending score, its own GT only."""
    return video_frame_ap(gt, act.sort_frame_rows(rows), num_classes)


PROTOCOLS = {p.name: p for p in (
    Protocol("road", "ROAD (get_PR_curve.m: VOC AP, ST-IoU > t)", "frameAp.m", "video_map", "frame_map_frameap",
             ">", "", "-", _road_video_ap, _road_frame_match, _road_frame_ap, entry_fields=("mean_iou", "accuracy")),
    Protocol("act", "ACT/MOC (ACT.py videoAP: tube NMS 0.3, trapezoid AP, ST-IoU >= t)", "ACT.py frameAP",
             "video_map_act", "frame_map_act", ">=", "act_", "--", act.video_ap, _act_frame_match, act.frame_ap),
)}
DEFAULT_PROTOCOL = "road"  # the results table's rows and pipeline.py's summary are its numbers


def check_protocols(protocols: tuple) -> tuple:
    """``protocols`` as a tuple if they are distinct names of ``PROTOCOLS`` (ValueError naming them otherwise)."""
    if not protocols or any(p not in PROTOCOLS for p in protocols) or len(set(protocols)) != len(protocols):
        raise ValueError(f"protocols must be distinct names of {tuple(PROTOCOLS)}, got {protocols!r}")
    return tuple(protocols)
