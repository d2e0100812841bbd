"""Video-mAP as the original Matlab computes it.

Originals: gurkirt/realtime-action-detection ``online-tubes/eval/`` (``get_PR_curve.m``,
``compute_spatio_temporal_iou.m``, ``xVOCap.m``); the same evaluation is in
gurkirt/corrected-UCF101-Annots ``evaluation/``.

Ground truth here is in the Matlab's form (``GTTube``: 1-based inclusive frames,
boxes ``x y w h`` in 1-based pixels); ``gt_from_annotation`` converts this project's
``VideoAnnotation`` exactly. Detected tubes are ``tubes.trimming.ActionTube`` with link
boxes.
"""
from dataclasses import dataclass, field

import numpy as np

from data.annotations import VideoAnnotation, xyxy0_to_xywh1

from .ap import descending_order, pr_curve_ranked, voc_ap
from .boxes import EPS
from .linking import segment_starts

# I01onlineTubes.m: [0.2, 0.5:0.05:0.95]; Matlab's range gives 0.5 + k * 0.05 (0.8500000000000001).
VIDEO_IOU_THRESHOLDS = (0.2,) + tuple(0.5 + k * 0.05 for k in range(10))


@dataclass
class GTTube:
    """Matlab ground truth: class_id 0-based, sf/ef 1-based inclusive, boxes ``[n, 4]`` x y w h 1-based."""
    class_id: int
    sf: int
    ef: int
    boxes: np.ndarray


@dataclass
class VideoGT:
    name: str
    class_id: int
    num_frames: int
    tubes: list = field(default_factory=list)


def gt_from_annotation(video: VideoAnnotation) -> VideoGT:
    """``VideoAnnotation`` -> ``VideoGT`` (exact inverse of the readers' conversion)."""
    tubes = [GTTube(t.class_id, t.start + 1, t.end, xyxy0_to_xywh1(t.boxes)) for t in video.tubes]
    return VideoGT(video.name, video.class_id, video.num_frames, tubes)


@dataclass
class VideoAPResult:
    iou: float
    mAP: float
    mean_iou: float
    accuracy: float
    ap: np.ndarray
    class_iou: np.ndarray
    curves: list  # per class (recall, precision)


def video_iou_parts(video: VideoGT, tubes: list, same_class: bool = True) -> tuple:
    """``compute_spatio_temporal_iou.m``'s two factors, ``[K, N]`` each, of every tube against every GT tube:
    the temporal IoU and the mean spatial IoU over the common frames (their product is the ST-IoU).

    Pairs not compared (a GT tube of another class, with ``same_class``) are -inf in both; pairs with
    no overlap (one common frame counts as none) are 0 in both. Vectorised over the pairs; the
    per-frame IoU mean is a left-to-right sum (a row-wise cumsum over a zero-padded table) over the
    count, as ``spatio_temporal_iou`` (tests/reference.py).
    """
    t_out = np.full((len(tubes), len(video.tubes)), -np.inf)
    s_out = t_out.copy()
    if not len(tubes) or not video.tubes:
        return t_out, s_out
    tcls = np.array([t.class_id for t in tubes])
    gcls = np.array([g.class_id for g in video.tubes])
    ti, gi = np.nonzero(tcls[:, None] == gcls[None] if same_class else np.ones((len(tcls), len(gcls)), bool))
    if not len(ti):
        return t_out, s_out
    used, slot = np.unique(ti, return_inverse=True)  # the tubes compared (often few of a video's)
    used_len = np.array([len(tubes[i].boxes) for i in used.tolist()])
    tdb = np.array([tubes[i].start + 1 for i in used.tolist()])[slot]
    tde = tdb + used_len[slot] - 1
    tgb, tge = np.array([g.sf for g in video.tubes])[gi], np.array([g.ef for g in video.tubes])[gi]
    t_i = np.maximum(0, np.minimum(tge, tde) - np.maximum(tgb, tdb))
    t_out[ti, gi] = s_out[ti, gi] = 0.0
    ok = t_i > 0  # compute_spatio_temporal_iou.m: one common frame counts as no overlap
    ti, gi, slot, tdb, tde, tgb, tge, t_i = (x[ok] for x in (ti, gi, slot, tdb, tde, tgb, tge, t_i))
    if not len(ti):
        return t_out, s_out
    t_iou = (t_i + 1) / (np.maximum(tge, tde) - np.minimum(tgb, tdb) + 1)
    lo, n = np.maximum(tgb, tdb), t_i + 1
    pair = np.repeat(np.arange(len(ti)), n)
    off = np.arange(n.sum()) - np.repeat(segment_starts(n), n)
    det_boxes = np.concatenate([tubes[i].boxes for i in used.tolist()])  # a video's tubes share one precision
    det_rows = np.repeat(segment_starts(used_len)[slot] + lo - tdb, n) + off
    gt_boxes = np.concatenate([g.boxes for g in video.tubes]).astype(np.float64)
    gt_rows = np.repeat(segment_starts(np.array([len(g.boxes) for g in video.tubes]))[gi] + lo - tgb, n) + off
    g = gt_boxes[gt_rows]
    b = det_boxes[det_rows]
    # convert2eval.m, then +1, in the boxes' precision; compute_spatio_temporal_iou.m's IoU is double
    d = (np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1) + 1).astype(np.float64)
    inter = np.minimum(g[:, :2] + g[:, 2:], d[:, :2] + d[:, 2:]) - np.maximum(g[:, :2], d[:, :2])
    inter[inter < 0] = 0
    inter = inter[:, 0] * inter[:, 1]
    frame_iou = inter / ((g[:, 2] * g[:, 3] + d[:, 2] * d[:, 3]) - inter + EPS)
    table = np.zeros((len(ti), int(n.max())))
    table[pair, off] = frame_iou
    t_out[ti, gi] = t_iou
    s_out[ti, gi] = np.cumsum(table, 1)[:, -1] / n
    return t_out, s_out


def _video_st_iou(video, tubes):
    """``[K, N]`` ``compute_spatio_temporal_iou.m`` of every tube against every GT tube of its class (else -inf)."""
    t_iou, s_iou = video_iou_parts(video, tubes)
    return np.where(np.isneginf(t_iou), -np.inf, t_iou * s_iou)


def greedy_match(iou: np.ndarray, th: float, inclusive: bool = False) -> np.ndarray:
    """One video's matching, ``[K]`` the GT tube each tube takes (-1: none), for ``[K, N]`` ST-IoUs of
    tubes in rank order (-inf where a pair may not match): each takes the first best GT tube not yet
    taken, if its ST-IoU is above ``th`` (``get_PR_curve.m``: ``>``; ACT.py, ``inclusive``: ``>=``)."""
    matched = np.full(len(iou), -1, np.int64)
    if not iou.shape[1]:
        return matched
    passes = iou >= th if inclusive else iou > th
    if iou.shape[1] == 1:  # one GT tube (the common case): the first tube that passes takes it
        first = np.flatnonzero(passes[:, 0])[:1]
        matched[first] = 0
        return matched
    covered = np.zeros(iou.shape[1], bool)
    for i in np.flatnonzero(passes.any(1)):
        j = int(np.where(covered, -np.inf, iou[i]).argmax())
        if passes[i, j] and not covered[j]:
            covered[j] = True
            matched[i] = j
    return matched


def ranked_ap(hits: np.ndarray, num_gt: float) -> tuple:
    """A class's ``(AP, recall, precision)`` as ``get_PR_curve.m`` and ``xVOCap.m`` from its TP flags in rank
    order: AP 0 without tubes or without ground truth (``xVOCap.m``'s NaN)."""
    if not len(hits):
        return 0.0, np.zeros(0), np.zeros(0)
    recall, precision = pr_curve_ranked(np.asarray(hits, bool), num_gt)
    ap = voc_ap(recall, precision)
    return (0.0 if np.isnan(ap) else ap), recall, precision


@dataclass
class RoadVideoParts:
    """What ``get_PR_curve.m`` needs of one video, for ``combine_video_ap``: its label (the class of its last GT
    tube, else the video's) and prediction (the class of its best tube, -1 without tubes), its GT tubes per class
    ``num_gt [C]``, its tubes' ``scores`` (descending, stable) and ``classes``, and per threshold the tubes that
    match (``matches[t]``: their indices and ST-IoUs). A few numbers per tube, not its boxes."""
    label: int
    pred: int
    num_gt: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    matches: list


def road_video_parts(video: VideoGT, tubes: list, num_classes: int,
                     iou_thresholds: tuple = VIDEO_IOU_THRESHOLDS) -> RoadVideoParts:
    """One video's ``RoadVideoParts``: its tubes in descending score (stable), each to the best uncovered GT
    tube of its class (``greedy_match``, IoU > threshold). The ST-IoUs do not depend on the threshold and are
    computed once; a threshold that no tube's best IoU passes has no matches."""
    scores = np.array([t.score for t in tubes], np.float64)
    order = np.argsort(-scores, kind="stable")
    tubes = [tubes[i] for i in order]
    iou = _video_st_iou(video, tubes)
    best = iou.max(1) if iou.shape[1] else np.full(len(iou), -np.inf)
    matches = []
    for th in iou_thresholds:
        matched = greedy_match(iou, th) if (best > th).any() else np.full(len(tubes), -1)
        i = np.flatnonzero(matched >= 0)
        matches.append((i, iou[i, matched[i]]))
    # get_PR_curve.m: gts(vid) is the class of the last GT tube (the video's class without tubes).
    return RoadVideoParts(video.tubes[-1].class_id if video.tubes else video.class_id,
                          tubes[0].class_id if tubes else -1,
                          np.bincount(np.array([g.class_id for g in video.tubes], np.int64), minlength=num_classes),
                          scores[order], np.array([t.class_id for t in tubes], np.int64), matches)


def video_ap(gts: list, detections: dict, num_classes: int, iou_thresholds: tuple = VIDEO_IOU_THRESHOLDS) -> list:
    """``get_PR_curve.m`` at several thresholds; one ``VideoAPResult`` per threshold.

    gts: list of ``VideoGT`` in the test list's order; detections: ``{name: [ActionTube]}``
    (a missing video has no detections). Each video is matched on its own (``road_video_parts``),
    then ranked and averaged over all (``combine_video_ap``).
    """
    return combine_video_ap([road_video_parts(v, detections.get(v.name, []), num_classes, iou_thresholds) for v in gts],
                            num_classes, iou_thresholds)


def combine_video_ap(parts: list, num_classes: int, iou_thresholds: tuple = VIDEO_IOU_THRESHOLDS) -> list:
    """``get_PR_curve.m``'s results from the videos' ``RoadVideoParts`` in the test list's order: each class's tubes
    of all videos ranked (scores as single, stable), VOC AP of the match flags; the mean ST-IoU of the matches
    summed video after video, as the Matlab. A tube's match depends only on the higher-scored tubes of its video, so
    matching each video on its own gives the Matlab's flags."""
    total_gt = np.zeros(num_classes)
    for part in parts:
        total_gt += part.num_gt
    accuracy = float(np.mean([p.pred == p.label for p in parts])) if parts else 0.0
    offsets = segment_starts(np.array([len(p.scores) for p in parts], np.int64))
    scores = np.concatenate([np.zeros(0)] + [p.scores for p in parts])
    classes = np.concatenate([np.zeros(0, np.int64)] + [p.classes for p in parts])
    # Each class's tubes in rank order (scores as single, stable), once for all thresholds.
    ranked = [np.flatnonzero(classes == c) for c in range(num_classes)]
    ranked = [idx[descending_order(scores[idx].astype(np.float32))] for idx in ranked]
    results = []
    for t, th in enumerate(iou_thresholds):
        hit = np.zeros(len(scores), bool)
        iou_sum = np.zeros(num_classes)
        for k, part in enumerate(parts):
            i, iou = part.matches[t]
            hit[offsets[k] + i] = True
            np.add.at(iou_sum, part.classes[i], iou)
        ap, class_iou, curves = np.zeros(num_classes), np.zeros(num_classes), []
        for c, idx in enumerate(ranked):
            ap[c], recall, precision = ranked_ap(hit[idx], total_gt[c])
            if len(idx):  # no tubes: AP 0, as voc_ap of an empty curve
                class_iou[c] = (iou_sum[c] + 0.000001) / (hit[idx].sum() + 0.00001)
            curves.append((recall, precision))
        results.append(VideoAPResult(th, float(ap.mean()), float(class_iou.mean()), accuracy, ap, class_iou, curves))
    return results
