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


def _video_candidates(annotation, tubes, num_classes):
    """Per class: the video's tubes after ``tube_nms`` (kept order), their scores, and their ``[K, N]``
    ST-IoU with the class's GT tubes (threshold-independent, computed once)."""
    out = []
    for c in range(num_classes):
        kept, rows = class_tubes(tubes, c)
        out.append((np.array([tubes[i].score for i in kept], np.float64), st_iou_matrix(rows, _gt_rows(annotation, c))))
    return out


def video_ap(annotations: list, detections: dict, num_classes: int, iou_thresholds: tuple,
             class_names: list | None = None) -> list:
    """``videoAP`` at each threshold: one ``ActAPResult`` each (APs as fractions, not percent).

    annotations: the test videos' ``VideoAnnotation`` in the list's order; detections:
    ``{video: [ActionTube]}`` (a missing video has no tubes; ACT.py stops at it instead).
    """
    names = class_names or [str(c) for c in range(num_classes)]
    per_video = [_video_candidates(a, detections.get(a.name, []), num_classes) for a in annotations]
    num_gt = np.bincount([t.class_id for a in annotations for t in a.tubes], minlength=num_classes)
    ranked = []  # per class, in rank order: each tube's video, its row there and its best ST-IoU with any GT
    for c in range(num_classes):
        scores = np.concatenate([np.zeros(0)] + [v[c][0] for v in per_video])
        owner = np.repeat(np.arange(len(per_video)), [len(v[c][0]) for v in per_video])
        row = np.concatenate([np.zeros(0, np.int64)] + [np.arange(len(v[c][0])) for v in per_video])
        best = np.concatenate([np.zeros(0)] + [v[c][1].max(1) if v[c][1].shape[1] else np.full(len(v[c][1]), -np.inf)
                                               for v in per_video])
        order = np.argsort(-scores, kind="stable")
        ranked.append((owner[order], row[order], best[order]))
    results = []
    for th in iou_thresholds:
        ap, curves = np.zeros(num_classes), []
        for c, (owner, row, best) in enumerate(ranked):
            hits = np.zeros(len(owner), bool)
            ranks = np.flatnonzero(best >= th)  # the others match no GT tube at all: false positives
            # ACT.py walks the ranks over all videos; a video's tubes come in its kept order (by score), and
            # videos do not interact, so matching each video on its own gives the same true positives.
            for k in np.unique(owner[ranks]):
                mine = ranks[owner[ranks] == k]
                hits[mine] = greedy_match(per_video[k][c][1], th, inclusive=True)[row[mine]] >= 0
            ap[c], recall, precision = pr_to_ap(hits, int(num_gt[c]), names[c])
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
