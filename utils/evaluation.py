"""Video-mAP and frame-mAP as the original Matlab computes them.

Originals: gurkirt/realtime-action-detection ``online-tubes/eval/`` (``get_PR_curve.m``,
``compute_spatio_temporal_iou.m``, ``xVOCap.m``) and ``online-tubes/frameAp.m``; the
same evaluation is in gurkirt/corrected-UCF101-Annots ``evaluation/``.

Ground truth here is in the Matlab's form (``GTTube``: 1-based inclusive frames,
boxes ``x y w h`` in 1-based pixels); ``gt_from_annotation`` converts this project's
``VideoAnnotation`` exactly. Detected tubes are ``utils.tubes.ActionTube`` with link
boxes.
"""
from dataclasses import dataclass, field

import numpy as np

from .linking import EPS, rect_iou, rectint, segment_starts

# I01onlineTubes.m: [0.2, 0.5:0.05:0.95]; Matlab's range gives 0.5 + k * 0.05 (0.8500000000000001).
VIDEO_IOU_THRESHOLDS = (0.2,) + tuple(0.5 + k * 0.05 for k in range(10))


def voc_ap(recall, precision):
    """``xVOCap.m`` (PASCAL VOC 2011): all-point interpolated AP.

    The precision envelope uses Matlab's ``max``, which ignores NaN (``np.fmax``).
    A NaN result (a class without ground truth) is returned as NaN; callers map it to 0.
    """
    mrec = np.concatenate([[0.0], np.asarray(recall, np.float64), [1.0]])
    mpre = np.concatenate([[0.0], np.asarray(precision, np.float64), [0.0]])
    mpre = np.fmax.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    terms = (mrec[i] - mrec[i - 1]) * mpre[i]
    return float(np.cumsum(terms)[-1]) if len(terms) else 0.0


def descending_order(scores):
    """``np.argsort(-scores, kind="stable")`` of float32 scores, about twice as fast.

    Each score's bits become an unsigned key that sorts in descending score order, with
    the index in the low 32 bits (ties keep index order): one plain sort of the keys.
    """
    scores = np.ascontiguousarray(scores, np.float32) + np.float32(0)  # -0.0 -> +0.0, equal as floats
    if len(scores) >= 1 << 32 or np.isnan(scores).any():
        return np.argsort(-scores, kind="stable")
    bits = scores.view(np.uint32)
    ascending = np.where(bits >> 31, ~bits, bits | np.uint32(1 << 31))  # IEEE order as unsigned
    keys = (~ascending).astype(np.uint64) << np.uint64(32) | np.arange(len(bits), dtype=np.uint64)
    return (np.sort(keys) & np.uint64(0xFFFFFFFF)).astype(np.int64)


def pr_curve(scores, is_tp, num_gt):
    """Recall and precision as get_PR_curve.m: scores as single, stable descending sort."""
    return pr_curve_ranked(np.asarray(is_tp, bool)[descending_order(np.asarray(scores, np.float32))], num_gt)


def pr_curve_ranked(labels, num_gt):
    """Recall and precision of TP flags already in rank order."""
    tp = np.cumsum(labels).astype(np.float64)
    fp = np.cumsum(~labels).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = tp / num_gt
        precision = tp / (fp + tp)
    return recall, precision


def average_precision(scores, is_tp, num_gt):
    """VOC AP of one class from per-detection scores and TP flags; NaN -> 0 as the Matlab."""
    ap = voc_ap(*pr_curve(scores, is_tp, num_gt))
    return 0.0 if np.isnan(ap) else ap


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


def gt_from_annotation(video):
    """``VideoAnnotation`` -> ``VideoGT`` (exact inverse of the readers' conversion)."""
    from data.annotations import xyxy0_to_xywh1
    tubes = [GTTube(t.class_id, t.start + 1, t.end, xyxy0_to_xywh1(t.boxes)) for t in video.tubes]
    return VideoGT(video.name, video.class_id, video.num_frames, tubes)


def spatio_temporal_iou(gt, start1, eval_boxes):
    """``compute_spatio_temporal_iou.m`` of one GT tube and one detection.

    start1: the detection's 1-based first frame; eval_boxes ``[n, 4]`` the
    ``convert2eval.m`` boxes ``[x1 y1 x2-x1 y2-y1]``, which get ``+1`` on all four here.
    A temporal overlap of exactly one frame counts as zero (``T_i > 0`` before ``+1``).
    """
    tgb, tge = gt.sf, gt.ef
    tdb, tde = start1, start1 + len(eval_boxes) - 1
    t_i = max(0, min(tge, tde) - max(tgb, tdb))
    if t_i <= 0:
        return 0.0
    t_iou = (t_i + 1) / (max(tge, tde) - min(tgb, tdb) + 1)
    lo, hi = max(tgb, tdb), min(tge, tde)
    g = gt.boxes[lo - tgb:hi - tgb + 1].astype(np.float64)
    d = (eval_boxes[lo - tdb:hi - tdb + 1] + 1).astype(np.float64)  # + 1 in the boxes' precision, then double()
    inter = np.minimum(g[:, :2] + g[:, 2:], d[:, :2] + d[:, 2:]) - np.maximum(g[:, :2], d[:, :2])
    inter[inter < 0] = 0
    inter = inter[:, 0] * inter[:, 1]
    iou = inter / ((g[:, 2] * g[:, 3] + d[:, 2] * d[:, 3]) - inter + EPS)
    return t_iou * (np.cumsum(iou)[-1] / len(iou))


def eval_boxes(tube):
    """convert2eval.m: link boxes -> ``[x1 y1 x2-x1 y2-y1]`` (in the boxes' precision, as the Matlab)."""
    b = tube.boxes
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1)


@dataclass
class VideoAPResult:
    iou: float
    mAP: float
    mean_iou: float
    accuracy: float
    ap: np.ndarray
    class_iou: np.ndarray
    curves: list  # per class (recall, precision)


def _video_st_iou(video, tubes):
    """``[K, N]`` ``compute_spatio_temporal_iou.m`` of every tube against every GT tube of its class (else -inf).

    Vectorised over the pairs; the per-frame IoU mean is a left-to-right sum (a row-wise
    cumsum over a zero-padded table) over the count, as ``spatio_temporal_iou``.
    """
    iou = np.full((len(tubes), len(video.tubes)), -np.inf)
    if not len(tubes) or not video.tubes:
        return iou
    tcls = np.array([t.class_id for t in tubes])
    gcls = np.array([g.class_id for g in video.tubes])
    ti, gi = np.nonzero(tcls[:, None] == gcls[None])
    if not len(ti):
        return iou
    tdb = np.array([t.start + 1 for t in tubes])[ti]
    tde = tdb + np.array([len(t.boxes) for t in tubes])[ti] - 1
    tgb, tge = np.array([g.sf for g in video.tubes])[gi], np.array([g.ef for g in video.tubes])[gi]
    t_i = np.maximum(0, np.minimum(tge, tde) - np.maximum(tgb, tdb))
    iou[ti, gi] = 0.0
    ok = t_i > 0  # compute_spatio_temporal_iou.m: one common frame counts as no overlap
    ti, gi, tdb, tde, tgb, tge, t_i = (x[ok] for x in (ti, gi, tdb, tde, tgb, tge, t_i))
    if not len(ti):
        return iou
    t_iou = (t_i + 1) / (np.maximum(tge, tde) - np.minimum(tgb, tdb) + 1)
    lo, n = np.maximum(tgb, tdb), t_i + 1
    pair = np.repeat(np.arange(len(ti)), n)
    off = np.arange(n.sum()) - np.repeat(segment_starts(n), n)
    det_boxes = np.concatenate([t.boxes for t in tubes])  # a video's tubes share one precision
    det_rows = np.repeat(segment_starts(np.array([len(t.boxes) for t in tubes]))[ti] + lo - tdb, n) + off
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
    iou[ti, gi] = t_iou * (np.cumsum(table, 1)[:, -1] / n)
    return iou


def video_ap(gts, detections, num_classes, iou_thresholds=VIDEO_IOU_THRESHOLDS):
    """``get_PR_curve.m`` at several thresholds; one ``VideoAPResult`` per threshold.

    gts: list of ``VideoGT`` in the test list's order; detections: ``{name: [ActionTube]}``
    (a missing video has no detections). Per video, tubes in descending score (stable),
    each to the best uncovered GT tube of its class; a match needs IoU > threshold.
    The ST-IoUs do not depend on the threshold and are computed once; at each threshold
    only the tubes with some IoU above it can match, and only those are walked in order.
    """
    total_gt = np.zeros(num_classes)
    preds, labels, per_video = [], [], []
    all_scores, all_classes = [], []
    for video in gts:
        tubes = detections.get(video.name, [])
        scores = np.array([t.score for t in tubes], np.float64)
        order = np.argsort(-scores, kind="stable")
        tubes = [tubes[i] for i in order]
        for g in video.tubes:
            total_gt[g.class_id] += 1
        # get_PR_curve.m: gts(vid) is the class of the last GT tube (the video's class without tubes).
        labels.append(video.tubes[-1].class_id if video.tubes else video.class_id)
        preds.append(tubes[0].class_id if tubes else -1)
        per_video.append(_video_st_iou(video, tubes))
        all_scores.append(scores[order])
        all_classes.append(np.array([t.class_id for t in tubes], np.int64))
    accuracy = float(np.mean(np.asarray(preds) == np.asarray(labels))) if gts else 0.0
    offsets = segment_starts(np.array([len(s) for s in all_scores], np.int64))
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
    classes = np.concatenate(all_classes) if all_classes else np.zeros(0, np.int64)
    best = np.concatenate([iou.max(1) if iou.shape[1] else np.full(len(iou), -np.inf) for iou in per_video]) \
        if per_video else np.zeros(0)
    # Each class's tubes in rank order (scores as single, stable), once for all thresholds.
    ranked = [np.flatnonzero(classes == c) for c in range(num_classes)]
    ranked = [idx[descending_order(scores[idx].astype(np.float32))] for idx in ranked]
    results = []
    for th in iou_thresholds:
        hit = np.zeros(len(scores), bool)
        iou_sum = np.zeros(num_classes)
        for k in np.unique(np.searchsorted(offsets, np.flatnonzero(best > th), side="right") - 1):
            iou = per_video[k]
            covered = np.zeros(iou.shape[1], bool)
            for i in np.flatnonzero(best[offsets[k]:offsets[k] + len(iou)] > th):
                row = np.where(covered, -np.inf, iou[i])
                j = int(row.argmax())
                if row[j] > th:
                    covered[j] = True
                    hit[offsets[k] + i] = True
                    iou_sum[classes[offsets[k] + i]] += row[j]
        ap, class_iou, curves = np.zeros(num_classes), np.zeros(num_classes), []
        for c, idx in enumerate(ranked):
            if not len(idx):  # no tubes: AP 0, as voc_ap of an empty curve
                curves.append((np.zeros(0), np.zeros(0)))
                continue
            recall, precision = pr_curve_ranked(hit[idx], total_gt[c])
            a = voc_ap(recall, precision)
            ap[c] = 0.0 if np.isnan(a) else a
            class_iou[c] = (iou_sum[c] + 0.000001) / (hit[idx].sum() + 0.00001)
            curves.append((recall, precision))
        results.append(VideoAPResult(th, float(ap.mean()), float(class_iou.mean()), accuracy, ap, class_iou, curves))
    return results


def spatial_iou_inclusive(det_boxes, gt_boxes):
    """``frameAp.m`` ``compute_spatial_iou``: x1 y1 x2 y2 boxes with width ``x2-x1+1``, no eps."""
    def xywh(b):
        return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2] + 1], 1)
    gt, dt = xywh(gt_boxes), xywh(det_boxes)
    inter = rectint(dt, gt)
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / ((gt[:, 2] * gt[:, 3])[None] + (dt[:, 2] * dt[:, 3])[:, None] - inter)


def box_iou_np(det_boxes, gt_boxes):
    """IoU of x1 y1 x2 y2 boxes with continuous areas (no +1), ``[K, N]``."""
    x1 = np.maximum(det_boxes[:, None, 0], gt_boxes[None, :, 0])
    y1 = np.maximum(det_boxes[:, None, 1], gt_boxes[None, :, 1])
    x2 = np.minimum(det_boxes[:, None, 2], gt_boxes[None, :, 2])
    y2 = np.minimum(det_boxes[:, None, 3], gt_boxes[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_d = (det_boxes[:, 2] - det_boxes[:, 0]) * (det_boxes[:, 3] - det_boxes[:, 1])
    area_g = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / (area_d[:, None] + area_g[None] - inter)


class FrameAP:
    """Frame-mAP (``frameAp.m``), accumulated frame by frame.

    ``add_frame`` takes one frame's detections (boxes ``[K, 4]`` x1 y1 x2 y2 pixels,
    scores ``[K]``, labels ``[K]`` 0-based) in the order they should be matched, and its
    ground truth (boxes ``[N, 4]`` in the same pixel convention, labels ``[N]``). Each
    detection goes to the best uncovered GT box (IoU >= threshold, ``>=`` as frameAp.m).

    Candidates are the GT boxes of the detection's class. ``any_class=True`` is frameAp.m's
    rule: once the frame has a GT box of the detection's class, every uncovered GT box of
    the frame is a candidate, whatever its class (``if num_gt_boxes>0 && any(gt_boxes(:,5)
    == dt_label)`` then a loop over all ``g``), so a class can take another's boxes and
    have more true positives than GT boxes (AP above 1). The two are the same where no
    frame has GT of two classes, as on UCF101-24 and J-HMDB-21 (one class per video).
    """

    def __init__(self, num_classes, iou_thresh=0.5, inclusive=True, any_class=False):
        self.num_classes = num_classes
        self.iou_thresh = iou_thresh
        # inclusive: frameAp.m's pixel areas (x2 - x1 + 1); otherwise the continuous areas
        # of the original Python evaluation (AMTNet utils/evaluation.py compute_iou), which
        # train.py's validation and evaluate.py use.
        self.inclusive = inclusive
        self.any_class = any_class
        self.scores = [[] for _ in range(num_classes)]  # per class, arrays in the order added
        self.tp = [[] for _ in range(num_classes)]
        self.num_gt = np.zeros(num_classes)

    def _append(self, det_scores, det_labels, hits):
        for c in np.unique(det_labels):
            m = det_labels == c
            self.scores[c].append(np.asarray(det_scores[m], np.float32))  # single, as get_PR_curve.m
            self.tp[c].append(hits[m])

    def _boxes(self, det_boxes, gt_boxes):
        """frameAp.m's IoU runs in single for single detections (GT boxes, whole pixels, convert
        exactly); the continuous IoU of the Python evaluation in double."""
        det_boxes = np.asarray(det_boxes)
        dtype = np.float32 if self.inclusive and det_boxes.dtype == np.float32 else np.float64
        return det_boxes.astype(dtype, copy=False).reshape(-1, 4), np.asarray(gt_boxes, dtype).reshape(-1, 4)

    def add_frame(self, det_boxes, det_scores, det_labels, gt_boxes, gt_labels):
        det_boxes, gt_boxes = self._boxes(det_boxes, gt_boxes)
        det_labels = np.asarray(det_labels, np.int64).reshape(-1)
        gt_labels = np.asarray(gt_labels, np.int64).reshape(-1)
        det_scores = np.asarray(det_scores).reshape(-1)
        np.add.at(self.num_gt, gt_labels, 1)
        hits = np.zeros(len(det_boxes), bool)
        matchable = np.isin(det_labels, gt_labels)
        if matchable.any():
            iou = spatial_iou_inclusive(det_boxes, gt_boxes) if self.inclusive else box_iou_np(det_boxes, gt_boxes)
            if not self.any_class:
                iou[det_labels[:, None] != gt_labels[None]] = -np.inf
            covered = np.zeros(len(gt_boxes), bool)
            for d in np.flatnonzero(matchable):
                row = np.where(covered, -np.inf, iou[d])
                j = int(row.argmax())
                if row[j] >= self.iou_thresh:
                    covered[j] = True
                    hits[d] = True
        self._append(det_scores, det_labels, hits)

    def add_frames(self, det_frame, det_boxes, det_scores, det_labels, gt_frame, gt_boxes, gt_labels):
        """Many frames at once: the same as ``add_frame`` per frame in increasing frame id.

        det_frame ``[K]`` and gt_frame ``[N]`` are integer frame ids, non-decreasing; within
        a frame, rows are in the order ``add_frame`` would get them. The greedy matching
        walks the k-th matchable detection of every frame together.
        """
        det_frame, gt_frame = np.asarray(det_frame, np.int64), np.asarray(gt_frame, np.int64)
        det_boxes, gt_boxes = self._boxes(det_boxes, gt_boxes)
        det_labels, gt_labels = np.asarray(det_labels, np.int64), np.asarray(gt_labels, np.int64)
        det_scores = np.asarray(det_scores).reshape(-1)
        self.num_gt += np.bincount(gt_labels, minlength=self.num_classes)[:self.num_classes]
        hits = np.zeros(len(det_boxes), bool)
        if len(gt_frame) and len(det_frame):
            key = self.num_classes
            matchable = np.flatnonzero(np.isin(det_frame * key + det_labels, gt_frame * key + gt_labels))
            frames, gt_start, gt_count = np.unique(gt_frame, return_index=True, return_counts=True)
            slot = np.searchsorted(frames, det_frame[matchable])
            width = int(gt_count.max())
            gt_idx = gt_start[slot, None] + np.arange(width)[None]  # [M, G]
            present = np.arange(width)[None] < gt_count[slot, None]
            gt_idx = np.where(present, gt_idx, 0)
            d = det_boxes[matchable][:, None]
            g = gt_boxes[gt_idx]
            if self.inclusive:  # spatial_iou_inclusive, elementwise
                dw, gw = d[..., 2:] - d[..., :2] + 1, g[..., 2:] - g[..., :2] + 1
                wh = np.minimum(d[..., :2] + dw, g[..., :2] + gw) - np.maximum(d[..., :2], g[..., :2])
                wh[wh < 0] = 0
                inter = wh[..., 0] * wh[..., 1]
                union = gw[..., 0] * gw[..., 1] + dw[..., 0] * dw[..., 1] - inter
            else:  # box_iou_np, elementwise
                x1, y1 = np.maximum(d[..., 0], g[..., 0]), np.maximum(d[..., 1], g[..., 1])
                x2, y2 = np.minimum(d[..., 2], g[..., 2]), np.minimum(d[..., 3], g[..., 3])
                inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
                union = (d[..., 2] - d[..., 0]) * (d[..., 3] - d[..., 1]) + (g[..., 2] - g[..., 0]) * (g[..., 3] - g[..., 1]) - inter
            with np.errstate(divide="ignore", invalid="ignore"):
                iou = inter / union
            iou[~present if self.any_class else ~present | (gt_labels[gt_idx] != det_labels[matchable][:, None])] = -np.inf
            rank = np.arange(len(matchable)) - segment_starts(np.bincount(slot, minlength=len(frames)))[slot]
            covered = np.zeros((len(frames), width), bool)
            for r in range(int(rank.max()) + 1 if len(rank) else 0):
                m = np.flatnonzero(rank == r)
                row = np.where(covered[slot[m]], -np.inf, iou[m])
                j = row.argmax(1)
                ok = row[np.arange(len(m)), j] >= self.iou_thresh
                covered[slot[m[ok]], j[ok]] = True
                hits[matchable[m[ok]]] = True
        self._append(det_scores, det_labels, hits)

    def class_arrays(self, c):
        """Class ``c``'s detections so far: ``(scores float32 [K], hits bool [K])`` in the order added."""
        if not self.scores[c]:
            return np.zeros(0, np.float32), np.zeros(0, bool)
        return np.concatenate(self.scores[c]), np.concatenate(self.tp[c])

    @classmethod
    def merge(cls, parts):
        """One accumulator from several (e.g. one per process, each over its share of videos)."""
        merged = cls(parts[0].num_classes, parts[0].iou_thresh, parts[0].inclusive, parts[0].any_class)
        for part in parts:
            for c in range(merged.num_classes):
                merged.scores[c].extend(part.scores[c])
                merged.tp[c].extend(part.tp[c])
            merged.num_gt += part.num_gt
        return merged

    def compute(self):
        """Returns ``(mAP, ap [C], curves)``; a class without GT has AP 0 (NaN -> 0)."""
        ap, curves = np.zeros(self.num_classes), []
        for c in range(self.num_classes):
            recall, precision = pr_curve(*self.class_arrays(c), self.num_gt[c])
            a = voc_ap(recall, precision)
            ap[c] = 0.0 if np.isnan(a) else a
            curves.append((recall, precision))
        return float(ap.mean()), ap, curves


def frame_map(frames, num_classes, iou_thresh=0.5):
    """Frame-mAP over an iterable of ``(det_boxes, det_scores, det_labels, gt_boxes, gt_labels)``."""
    acc = FrameAP(num_classes, iou_thresh)
    for frame in frames:
        acc.add_frame(*frame)
    return acc.compute()
