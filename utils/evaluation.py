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

from .linking import EPS, rect_iou, rectint

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


def pr_curve(scores, is_tp, num_gt):
    """Recall and precision as get_PR_curve.m: scores as single, stable descending sort."""
    scores = np.asarray(scores, np.float32)
    labels = np.asarray(is_tp, bool)[np.argsort(-scores, kind="stable")]
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
    d = eval_boxes[lo - tdb:hi - tdb + 1] + 1
    inter = np.minimum(g[:, :2] + g[:, 2:], d[:, :2] + d[:, 2:]) - np.maximum(g[:, :2], d[:, :2])
    inter[inter < 0] = 0
    inter = inter[:, 0] * inter[:, 1]
    iou = inter / ((g[:, 2] * g[:, 3] + d[:, 2] * d[:, 3]) - inter + EPS)
    return t_iou * (np.cumsum(iou)[-1] / len(iou))


def eval_boxes(tube):
    """convert2eval.m: link boxes -> ``[x1 y1 x2-x1 y2-y1]``."""
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


def video_ap(gts, detections, num_classes, iou_thresholds=VIDEO_IOU_THRESHOLDS):
    """``get_PR_curve.m`` at several thresholds; one ``VideoAPResult`` per threshold.

    gts: list of ``VideoGT`` in the test list's order; detections: ``{name: [ActionTube]}``
    (a missing video has no detections). Per video, tubes in descending score (stable),
    each to the best uncovered GT tube of its class; a match needs IoU > threshold.
    The ST-IoUs do not depend on the threshold and are computed once.
    """
    total_gt = np.zeros(num_classes)
    preds, labels, per_video = [], [], []
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
        iou = np.full((len(tubes), len(video.tubes)), -np.inf)
        for i, tube in enumerate(tubes):
            ebox = eval_boxes(tube)
            for j, g in enumerate(video.tubes):
                if g.class_id == tube.class_id:
                    iou[i, j] = spatio_temporal_iou(g, tube.start + 1, ebox)
        per_video.append((tubes, iou))
    accuracy = float(np.mean(np.asarray(preds) == np.asarray(labels))) if gts else 0.0
    results = []
    for th in iou_thresholds:
        cls_scores = [[] for _ in range(num_classes)]
        cls_tp = [[] for _ in range(num_classes)]
        iou_sum = np.zeros(num_classes)
        for tubes, iou in per_video:
            covered = np.zeros(iou.shape[1], bool)
            for i, tube in enumerate(tubes):
                row = np.where(covered, -np.inf, iou[i])
                j = int(row.argmax()) if len(row) else -1
                hit = j >= 0 and row[j] > th
                if hit:
                    covered[j] = True
                    iou_sum[tube.class_id] += row[j]
                cls_scores[tube.class_id].append(tube.score)
                cls_tp[tube.class_id].append(hit)
        ap, class_iou, curves = np.zeros(num_classes), np.zeros(num_classes), []
        for c in range(num_classes):
            recall, precision = pr_curve(cls_scores[c], cls_tp[c], total_gt[c])
            a = voc_ap(recall, precision)
            ap[c] = 0.0 if np.isnan(a) else a
            if cls_tp[c]:
                class_iou[c] = (iou_sum[c] + 0.000001) / (sum(cls_tp[c]) + 0.00001)
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
    Unlike frameAp.m, only GT boxes of the detection's class are candidates (the
    original checks that the frame has some GT of that class, then matches any); on
    UCF101-24, where a video has one class, the two are the same.
    """

    def __init__(self, num_classes, iou_thresh=0.5, inclusive=True):
        self.num_classes = num_classes
        self.iou_thresh = iou_thresh
        # inclusive: frameAp.m's pixel areas (x2 - x1 + 1); otherwise the continuous areas
        # of the original Python evaluation (AMTNet utils/evaluation.py compute_iou), which
        # train.py's validation and evaluate.py use.
        self.inclusive = inclusive
        self.scores = [[] for _ in range(num_classes)]
        self.tp = [[] for _ in range(num_classes)]
        self.num_gt = np.zeros(num_classes)

    def add_frame(self, det_boxes, det_scores, det_labels, gt_boxes, gt_labels):
        det_boxes = np.asarray(det_boxes, np.float64).reshape(-1, 4)
        gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
        det_labels = np.asarray(det_labels, np.int64).reshape(-1)
        gt_labels = np.asarray(gt_labels, np.int64).reshape(-1)
        det_scores = np.asarray(det_scores).reshape(-1)
        np.add.at(self.num_gt, gt_labels, 1)
        hits = np.zeros(len(det_boxes), bool)
        matchable = np.isin(det_labels, gt_labels)
        if matchable.any():
            iou = spatial_iou_inclusive(det_boxes, gt_boxes) if self.inclusive else box_iou_np(det_boxes, gt_boxes)
            iou[det_labels[:, None] != gt_labels[None]] = -np.inf
            covered = np.zeros(len(gt_boxes), bool)
            for d in np.flatnonzero(matchable):
                row = np.where(covered, -np.inf, iou[d])
                j = int(row.argmax())
                if row[j] >= self.iou_thresh:
                    covered[j] = True
                    hits[d] = True
        for c in np.unique(det_labels):
            m = det_labels == c
            self.scores[c].extend(det_scores[m].tolist())
            self.tp[c].extend(hits[m].tolist())

    @classmethod
    def merge(cls, parts):
        """One accumulator from several (e.g. one per process, each over its share of videos)."""
        merged = cls(parts[0].num_classes, parts[0].iou_thresh, parts[0].inclusive)
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
            recall, precision = pr_curve(self.scores[c], self.tp[c], self.num_gt[c])
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
