"""The ACT / MOC-Detector evaluation protocol (``--protocol act``), beside ROAD's (``road``).

Reproduces ``videoAP`` and ``frameAP`` of ``src/ACT.py`` and the helpers of ``src/ACT_utils/ACT_utils.py``
in MCG-NJU/MOC-Detector (from Kalogeiton et al.'s ACT detector), which produced the published ACT,
MOC and many later numbers. What differs from ROAD's ``get_PR_curve.m`` (``tubes/video_map.py``):

- AP: the trapezoid rule over (precision, recall) points starting at (1, 0), stored in single
  (``pr_to_ap``; ``pr = np.empty(..., dtype=np.float32)``), not VOC's all-point envelope;
- a match needs ST-IoU ``>=`` the threshold (ROAD: ``>``);
- per video and class, the tubes first go through tube NMS at 0.3 (``nms3dt(ltubes, 0.3)``);
- temporal overlap counts frames inclusively, so one common frame is an overlap of 1 (``iou3dt``:
  ``if tmax < tmin: return 0.0``; ROAD counts it as no overlap);
- spatial IoU with ``+1`` pixel widths on 0-based boxes (``area2d``), no ``+1`` shift of the detections;
- a class with detections but no ground truth: ACT.py divides by zero (``float(tp) / float(tp + fn)``,
  a ``ZeroDivisionError``); here its AP is 0 and a warning names the class (ROAD: 0 too).

Tubes are this project's ``ActionTube`` (link boxes, 0-based pixels + 1); ACT's rows are
``[frame (1-based), x1, y1, x2, y2]`` in 0-based pixels, built here with ``tube_rows``.
Computed in double. Ties of equal scores go in the input order (stable sorts), as numpy's
default sort does for the short arrays of ACT.py's own runs; ACT.py's ``np.argsort`` is not
stable in general, so on ties its order is numpy's choice.
"""
import logging
from dataclasses import dataclass

import numpy as np

from .ap import descending_order
from .video_map import greedy_match

log = logging.getLogger(__name__)

TUBE_NMS = 0.3  # ACT.py videoAP: nms3dt(ltubes, 0.3)


def tube_rows(start: int, boxes: np.ndarray) -> np.ndarray:
    """A tube starting at 0-based frame ``start`` with 0-based pixel boxes -> ACT rows ``[n, 5]``."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.column_stack([np.arange(start + 1, start + 1 + len(boxes)), boxes])


def spatial_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``iou2d`` row by row: x1 y1 x2 y2 boxes, widths ``x2 - x1 + 1`` (``area2d``, ``overlap2d``)."""
    w = np.maximum(0, np.minimum(a[..., 2] + 1, b[..., 2] + 1) - np.maximum(a[..., 0], b[..., 0]))
    h = np.maximum(0, np.minimum(a[..., 3] + 1, b[..., 3] + 1) - np.maximum(a[..., 1], b[..., 1]))
    inter = w * h

    def area(x):
        return (x[..., 2] - x[..., 0] + 1) * (x[..., 3] - x[..., 1] + 1)
    return inter / (area(a) + area(b) - inter)


def st_iou(a: np.ndarray, b: np.ndarray) -> float:
    """``iou3dt`` of two tubes of contiguous frames (rows ``[frame, x1, y1, x2, y2]``)."""
    tmin, tmax = max(a[0, 0], b[0, 0]), min(a[-1, 0], b[-1, 0])
    if tmax < tmin:  # ACT_utils.py: one common frame (tmax == tmin) is an overlap
        return 0.0
    inter = tmax - tmin + 1
    union = max(a[-1, 0], b[-1, 0]) - min(a[0, 0], b[0, 0]) + 1
    sa = a[int(tmin - a[0, 0]):int(tmax - a[0, 0]) + 1, 1:5]
    sb = b[int(tmin - b[0, 0]):int(tmax - b[0, 0]) + 1, 1:5]
    return float(np.mean(spatial_iou(sa, sb)) * (inter / union))


def st_iou_parts(tubes_a: list, tubes_b: list) -> tuple:
    """``iou3dt``'s two factors, ``[A, B]`` each, of every pair: the temporal IoU and the mean spatial IoU over
    the common frames (0 in both without a common frame). Vectorised: the common frames of all overlapping
    pairs at once, each pair's spatial IoUs averaged by a sum over its frames."""
    t_out, s_out = np.zeros((len(tubes_a), len(tubes_b))), np.zeros((len(tubes_a), len(tubes_b)))
    if not len(tubes_a) or not len(tubes_b):
        return t_out, s_out

    def spans(tubes):
        lengths = np.array([len(t) for t in tubes])
        return (np.array([t[0, 0] for t in tubes], np.int64), np.array([t[-1, 0] for t in tubes], np.int64),
                np.concatenate([[0], np.cumsum(lengths)[:-1]]), np.concatenate([t[:, 1:5] for t in tubes]))
    sa, ea, oa, ba = spans(tubes_a)
    sb, eb, ob, bb = spans(tubes_b)
    i, j = (x.ravel() for x in np.meshgrid(np.arange(len(tubes_a)), np.arange(len(tubes_b)), indexing="ij"))
    tmin, tmax = np.maximum(sa[i], sb[j]), np.minimum(ea[i], eb[j])
    ok = tmax >= tmin  # one common frame is an overlap
    i, j, tmin, tmax = i[ok], j[ok], tmin[ok], tmax[ok]
    if not len(i):
        return t_out, s_out
    n = tmax - tmin + 1
    first = np.concatenate([[0], np.cumsum(n)[:-1]])
    step = np.arange(n.sum()) - np.repeat(first, n)
    iou = spatial_iou(ba[np.repeat(oa[i] + tmin - sa[i], n) + step], bb[np.repeat(ob[j] + tmin - sb[j], n) + step])
    union = np.maximum(ea[i], eb[j]) - np.minimum(sa[i], sb[j]) + 1
    s_out[i, j] = np.add.reduceat(iou, first) / n
    t_out[i, j] = n / union
    return t_out, s_out


def st_iou_matrix(tubes_a: list, tubes_b: list) -> np.ndarray:
    """``[A, B]`` ``st_iou`` of every pair (``st_iou_parts``' product)."""
    if not len(tubes_a) or not len(tubes_b):
        return np.zeros((len(tubes_a), len(tubes_b)))
    t_iou, s_iou = st_iou_parts(tubes_a, tubes_b)
    return s_iou * t_iou


def tube_nms(tubes: list, scores: np.ndarray, overlap: float = TUBE_NMS) -> np.ndarray:
    """``nms3dt``: indices kept, best first; a tube is dropped at ST-IoU ``> overlap`` with a kept one.

    ``nms3dt`` walks ``np.argsort(scores)`` from its end, so of equal scores the later tube goes first.
    """
    order = np.argsort(np.asarray(scores, np.float64), kind="stable")
    iou = st_iou_matrix(tubes, tubes)
    keep = []
    while len(order):
        i = order[-1]
        keep.append(int(i))
        order = order[:-1][iou[order[:-1], i] <= overlap]
    return np.array(keep, np.int64)


def pr_to_ap(hits: np.ndarray, num_gt: int, name: str = "") -> tuple:
    """ACT.py's precision/recall table and ``pr_to_ap`` for TP flags in rank order.

    Returns ``(ap, recall, precision)``, the table in single as ACT.py stores it; the AP is the
    trapezoid sum from (precision 1, recall 0), summed in single as numpy does for ACT.py.
    Without ground truth but with detections, ACT.py divides by zero: AP 0 and a warning here.
    """
    hits = np.asarray(hits, bool)
    if num_gt == 0 and len(hits):
        log.warning("class %s has %d detections and no ground truth: ACT.py divides by zero there "
                    "(ZeroDivisionError); its AP is counted as 0", name, len(hits))
        return 0.0, np.zeros(len(hits), np.float32), np.zeros(len(hits), np.float32)
    tp = np.cumsum(hits)
    pr = np.empty((len(hits) + 1, 2), np.float32)
    pr[0] = 1.0, 0.0
    pr[1:, 0] = tp / np.arange(1, len(hits) + 1)
    pr[1:, 1] = tp / float(num_gt) if len(hits) else 0.0
    ap = np.sum((pr[1:, 1] - pr[:-1, 1]) * (pr[1:, 0] + pr[:-1, 0]) * 0.5)
    return float(ap), pr[1:, 1], pr[1:, 0]


@dataclass
class ActAPResult:
    iou: float
    mAP: float
    ap: np.ndarray
    curves: list  # per class (recall, precision)


def _gt_rows(annotation, class_id):
    return [tube_rows(t.start, t.boxes) for t in annotation.tubes if t.class_id == class_id]


def class_tubes(tubes: list, class_id: int) -> tuple:
    """A video's tubes of one class that ACT.py evaluates: their indices in ``tubes`` after ``tube_nms``
    (its order: best first) and their ACT rows."""
    mine = [i for i, t in enumerate(tubes) if t.class_id == class_id]
    if not mine:
        return np.zeros(0, np.int64), []
    rows = [tube_rows(tubes[i].start, np.asarray(tubes[i].boxes, np.float64) - 1) for i in mine]
    keep = tube_nms(rows, np.array([tubes[i].score for i in mine], np.float64))
    return np.array(mine, np.int64)[keep], [rows[i] for i in keep]


@dataclass
class ActVideoParts:
    """What ``videoAP`` needs of one video, for ``combine_video_ap``: its GT tubes per class ``num_gt [C]`` and, per
    class, the tubes it evaluates after ``tube_nms`` (their scores, kept order) and per threshold which of them
    match (``hits [T, K]``). A few numbers per tube, not its boxes."""
    num_gt: np.ndarray
    classes: list  # per class: (scores [K], hits [T, K])


def video_parts(annotation, tubes: list, num_classes: int, iou_thresholds: tuple) -> ActVideoParts:
    """One video's ``ActVideoParts``: per class, its tubes after ``tube_nms``, each (in the kept order, by score)
    to the best GT tube of its class not yet taken, at ST-IoU ``>=`` the threshold (``greedy_match``)."""
    out = []
    for c in range(num_classes):
        kept, rows = class_tubes(tubes, c)
        iou = st_iou_matrix(rows, _gt_rows(annotation, c))
        hits = np.zeros((len(iou_thresholds), len(kept)), bool)
        for t, th in enumerate(iou_thresholds):
            hits[t] = greedy_match(iou, th, inclusive=True) >= 0
        out.append((np.array([tubes[i].score for i in kept], np.float64), hits))
    return ActVideoParts(np.bincount(np.array([t.class_id for t in annotation.tubes], np.int64), minlength=num_classes),
                         out)


def video_ap(annotations: list, detections: dict, num_classes: int, iou_thresholds: tuple,
             class_names: list | None = None) -> list:
    """``videoAP`` at each threshold: one ``ActAPResult`` each (APs as fractions, not percent).

    annotations: the test videos' ``VideoAnnotation`` in the list's order; detections:
    ``{video: [ActionTube]}`` (a missing video has no tubes; ACT.py stops at it instead).
    """
    parts = [video_parts(a, detections.get(a.name, []), num_classes, iou_thresholds) for a in annotations]
    return combine_video_ap(parts, num_classes, iou_thresholds, class_names)


def combine_video_ap(parts: list, num_classes: int, iou_thresholds: tuple, class_names: list | None = None) -> list:
    """``videoAP``'s results from the videos' ``ActVideoParts`` in the list's order. ACT.py ranks each class's tubes
    of all videos by score (stable here) and walks them; a video's tubes come in its kept order (by score), and
    videos do not interact, so matching each video on its own (``video_parts``) gives the same true positives."""
    names = class_names or [str(c) for c in range(num_classes)]
    num_gt = np.zeros(num_classes, np.int64)
    for part in parts:
        num_gt += part.num_gt
    ranked = []  # per class: the match flags [T, K] of all videos' tubes in rank order
    for c in range(num_classes):
        scores = np.concatenate([np.zeros(0)] + [p.classes[c][0] for p in parts])
        hits = np.concatenate([np.zeros((len(iou_thresholds), 0), bool)] + [p.classes[c][1] for p in parts], 1)
        ranked.append(hits[:, np.argsort(-scores, kind="stable")])
    results = []
    for t, th in enumerate(iou_thresholds):
        ap, curves = np.zeros(num_classes), []
        for c, hits in enumerate(ranked):
            ap[c], recall, precision = pr_to_ap(hits[t], int(num_gt[c]), names[c])
            curves.append((recall, precision))
        results.append(ActAPResult(th, float(ap.mean()), ap, curves))
    return results


def sort_frame_rows(rows: np.ndarray) -> np.ndarray:
    """Frame-AP rows ``[frame, class, score, ...]`` by frame, class, then descending score (stable).

    ``frameAP`` matches each class's detections in descending score over all frames; frames do not
    interact, so ``FrameAP`` (``tubes/frame_map.py``; class's own GT, ``>=``, inclusive IoU) matching
    the rows in this order gives its true positives.
    """
    if rows is None or not len(rows):
        return rows
    return rows[np.lexsort((-rows[:, 2].astype(np.float64), rows[:, 1], rows[:, 0]))]


def frame_ap(frame_ap_acc, class_names: list | None = None) -> tuple:
    """``frameAP``'s AP from a ``FrameAP`` accumulator filled with ``sort_frame_rows``' order.

    Each class's detections are ranked by score in single (``alldets`` is float32), stable.
    Returns ``(mAP, ap [C])`` as fractions.
    """
    num_classes = frame_ap_acc.num_classes
    names = class_names or [str(c) for c in range(num_classes)]
    ap = np.zeros(num_classes)
    for c in range(num_classes):
        scores, hits = frame_ap_acc.class_arrays(c)
        ap[c] = pr_to_ap(hits[descending_order(scores)], int(frame_ap_acc.num_gt[c]), names[c])[0]
    return float(ap.mean()), ap
