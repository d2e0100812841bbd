"""The evaluation protocols (``--protocol``): one record each, which the runner, the scripts' tables and
plots and the flags read. A new protocol is one ``Protocol`` entry in ``PROTOCOLS`` and its functions.

road: ROAD's Matlab (``get_PR_curve.m``, ``frameAp.m``; ``tubes/video_map.py``, ``tubes/frame_map.py``);
act: ACT / MOC-Detector's ``ACT.py`` (``videoAP``, ``frameAP``; ``tubes/act.py``).
"""
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import act
from .ap import descending_order
from .frame_map import FrameAP, video_frame_ap
from .video_map import RoadVideoParts, VideoGT, gt_from_annotation, ranked_ap, road_video_parts, video_iou_parts
from .video_map import combine_video_ap as road_combine


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol.

    The video-mAP in two steps, so that an evaluation keeps a few numbers per tube, not the tubes:
    ``video_parts(annotation, tubes, num_classes, iou_thresholds)`` matches one video's ``[ActionTube]``
    against its ``VideoAnnotation`` at each threshold; ``combine(parts in the videos' order, num_classes,
    iou_thresholds, class_names)`` ranks and averages them: one result per threshold with ``iou``, ``mAP``,
    ``ap [C]`` and ``curves`` (and the ``entry_fields`` it also reports). ``video_ap`` does both.
    ``frame_match(gt: VideoGT, rows, num_classes, any_class) -> FrameAP``: one video's frame-AP matching
    of the frame-AP rows ``[frame, class, score, x1, y1, x2, y2]``; ``frame_ap(merged FrameAP,
    class_names) -> (mAP, ap [C])``. ``video_key``, ``frame_key``: its results.json keys.
    The error analysis (``tubes/errors.py``) reads how the evaluator ranks, matches and averages:
    ``error_tubes(annotation, tubes)`` the tubes it evaluates (indices, its order) and their ``[K, N]`` temporal
    and spatial IoU with the video's GT tubes; ``rank(scores)`` a class's rank order; ``class_ap(hits in rank
    order, num_gt)`` a class's AP (None: no error analysis)."""
    name: str
    label: str             # the tables' heading
    frame_label: str       # whose frame-mAP, in the tables
    video_key: str
    frame_key: str
    match: str             # the ST-IoU a match needs, in plot titles: ">" or ">="
    file_prefix: str       # of its PR plots (eval_video_ap.py)
    line_style: str        # of its lines in the mAP-against-IoU plot
    video_parts: Callable
    combine: Callable
    frame_match: Callable
    frame_ap: Callable
    entry_fields: tuple = ()  # result attributes its results.json video-mAP entries add
    error_tubes: Callable | None = None
    rank: Callable | None = None
    class_ap: Callable | None = None

    @property
    def inclusive(self) -> bool:
        """Whether a match needs ST-IoU >= the threshold (else >)."""
        return self.match == ">="

    def passes(self, x, iou: float):
        return x >= iou if self.inclusive else x > iou

    def video_ap(self, annotations: list, tubes: dict, num_classes: int, iou_thresholds: tuple,
                 class_names: list | None = None) -> list:
        """The video-mAP of ``tubes`` ``{video: [ActionTube]}`` (a missing video has none) on ``annotations``
        (``VideoAnnotation`` in the videos' order) at each threshold."""
        parts = [self.video_parts(a, tubes.get(a.name, []), num_classes, iou_thresholds) for a in annotations]
        return self.combine(parts, num_classes, iou_thresholds, class_names)


def _road_video_parts(annotation, tubes: list, num_classes: int, iou_thresholds: tuple) -> RoadVideoParts:
    return road_video_parts(gt_from_annotation(annotation), tubes, num_classes, iou_thresholds)


def _road_combine(parts: list, num_classes: int, iou_thresholds: tuple, class_names: list | None = None) -> list:
    return road_combine(parts, num_classes, iou_thresholds)


def _road_frame_match(gt: VideoGT, rows: np.ndarray | None, num_classes: int, any_class: bool = False) -> FrameAP:
    return video_frame_ap(gt, rows, num_classes, any_class=any_class)


def _road_frame_ap(merged: FrameAP, class_names: list) -> tuple:
    return merged.compute(curves=False)[:2]


def _act_frame_match(gt: VideoGT, rows: np.ndarray | None, num_classes: int, any_class: bool = False) -> FrameAP:
    """ACT.py ``frameAP``'s matching: each class's detections in descending score, its own GT only."""
    return video_frame_ap(gt, act.sort_frame_rows(rows), num_classes)


def _road_error_tubes(annotation, tubes):
    """get_PR_curve.m's tubes of a video: all, by descending score (stable); their ST-IoU factors with every GT tube."""
    order = np.argsort(-np.array([t.score for t in tubes], np.float64), kind="stable")
    t_iou, s_iou = video_iou_parts(gt_from_annotation(annotation), [tubes[i] for i in order], same_class=False)
    return order, t_iou, s_iou


def _act_error_tubes(annotation, tubes):
    """ACT.py's tubes of a video: each class's after tube NMS, in its order; their ST-IoU factors with every GT tube."""
    kept, rows = [np.zeros(0, np.int64)], []
    for c in sorted({t.class_id for t in tubes}):
        k, r = act.class_tubes(tubes, c)
        kept.append(k)
        rows += r
    t_iou, s_iou = act.st_iou_parts(rows, [act.tube_rows(g.start, g.boxes) for g in annotation.tubes])
    return np.concatenate(kept), t_iou, s_iou


def _act_ap(hits, num_gt):
    return act.pr_to_ap(hits, int(num_gt))[0] if num_gt > 0 else 0.0  # ACT.py: 0 / 0 (here 0, as act.video_ap)


PROTOCOLS = {p.name: p for p in (
    Protocol("road", "ROAD (get_PR_curve.m: VOC AP, ST-IoU > t)", "frameAp.m", "video_map", "frame_map_frameap",
             ">", "", "-", _road_video_parts, _road_combine, _road_frame_match, _road_frame_ap,
             entry_fields=("mean_iou", "accuracy"),
             error_tubes=_road_error_tubes, rank=lambda s: descending_order(np.asarray(s, np.float32)),
             class_ap=lambda hits, n: ranked_ap(hits, n)[0]),
    Protocol("act", "ACT/MOC (ACT.py videoAP: tube NMS 0.3, trapezoid AP, ST-IoU >= t)", "ACT.py frameAP",
             "video_map_act", "frame_map_act", ">=", "act_", "--", act.video_parts, act.combine_video_ap,
             _act_frame_match, act.frame_ap,
             error_tubes=_act_error_tubes, rank=lambda s: np.argsort(-np.asarray(s, np.float64), kind="stable"),
             class_ap=_act_ap),
)}
DEFAULT_PROTOCOL = "road"  # the results table's rows and pipeline.py's summary are its numbers


def check_protocols(protocols: tuple) -> tuple:
    """``protocols`` as a tuple if they are distinct names of ``PROTOCOLS`` (ValueError naming them otherwise)."""
    if not protocols or any(p not in PROTOCOLS for p in protocols) or len(set(protocols)) != len(protocols):
        raise ValueError(f"protocols must be distinct names of {tuple(PROTOCOLS)}, got {protocols!r}")
    return tuple(protocols)
