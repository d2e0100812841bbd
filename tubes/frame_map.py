"""Frame-mAP: ``frameAp.m``'s (gurkirt/realtime-action-detection ``online-tubes/frameAp.m``), over the
linking's per-frame detections (build_tubes.py), and the VOC-style one of the original Python
evaluation (AMTNet ``utils/evaluation.py``), over each micro-tube's first frame (test.py and the
validation during training). One accumulator, ``FrameAP``, serves both (``inclusive``).
"""
import numpy as np

from .ap import hits_ap, pr_curve, voc_ap
from .boxes import box_iou_np, spatial_iou_inclusive
from .linking import segment_starts
from .video_map import VideoGT


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

    def __init__(self, num_classes: int, iou_thresh: float = 0.5, inclusive: bool = True, any_class: bool = False):
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

    def add_frame(self, det_boxes: np.ndarray, det_scores: np.ndarray, det_labels: np.ndarray, gt_boxes: np.ndarray,
                  gt_labels: np.ndarray) -> None:
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

    def add_frames(self, det_frame: np.ndarray, det_boxes: np.ndarray, det_scores: np.ndarray,
                   det_labels: np.ndarray, gt_frame: np.ndarray, gt_boxes: np.ndarray, gt_labels: np.ndarray) -> None:
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

    def class_arrays(self, c: int) -> tuple:
        """Class ``c``'s detections so far: ``(scores float32 [K], hits bool [K])`` in the order added."""
        if not self.scores[c]:
            return np.zeros(0, np.float32), np.zeros(0, bool)
        return np.concatenate(self.scores[c]), np.concatenate(self.tp[c])

    def arrays(self) -> dict:
        """The matches so far as plain arrays (``from_arrays`` rebuilds the accumulator): ``scores`` float32,
        ``hits`` bool and ``labels`` of every detection, class by class in the order added, and ``num_gt [C]``."""
        parts = [self.class_arrays(c) for c in range(self.num_classes)]
        return {"scores": np.concatenate([s for s, _ in parts]), "hits": np.concatenate([h for _, h in parts]),
                "labels": np.repeat(np.arange(self.num_classes, dtype=np.int32), [len(s) for s, _ in parts]),
                "num_gt": self.num_gt}

    @classmethod
    def from_arrays(cls, arrays: dict, num_classes: int, iou_thresh: float = 0.5, inclusive: bool = True,
                    any_class: bool = False) -> "FrameAP":
        """The accumulator whose ``arrays()`` these are (the same ``compute`` and ``merge``)."""
        acc = cls(num_classes, iou_thresh, inclusive, any_class)
        labels = np.asarray(arrays["labels"])
        for c in range(num_classes):
            acc.scores[c].append(np.asarray(arrays["scores"], np.float32)[labels == c])
            acc.tp[c].append(np.asarray(arrays["hits"], bool)[labels == c])
        acc.num_gt = np.array(arrays["num_gt"], np.float64)
        return acc

    @classmethod
    def merge(cls, parts: list) -> "FrameAP":
        """One accumulator from several (e.g. one per process, each over its share of videos)."""
        merged = cls(parts[0].num_classes, parts[0].iou_thresh, parts[0].inclusive, parts[0].any_class)
        for part in parts:
            for c in range(merged.num_classes):
                merged.scores[c].extend(part.scores[c])
                merged.tp[c].extend(part.tp[c])
            merged.num_gt += part.num_gt
        return merged

    def compute(self, curves: bool = True) -> tuple:
        """Returns ``(mAP, ap [C], curves)``; a class without GT has AP 0 (NaN -> 0). Without ``curves`` (None
        then), the same APs from the ranks of the hits alone (``hits_ap``), without the curves' arrays."""
        ap, out = np.zeros(self.num_classes), []
        for c in range(self.num_classes):
            if curves:
                recall, precision = pr_curve(*self.class_arrays(c), self.num_gt[c])
                a = voc_ap(recall, precision)
                out.append((recall, precision))
            else:
                a = hits_ap(*self.class_arrays(c), self.num_gt[c])
            ap[c] = 0.0 if np.isnan(a) else a
        return float(ap.mean()), ap, out if curves else None


def video_frame_ap(gt: VideoGT, rows: np.ndarray | None, num_classes: int, iou_thresh: float = 0.5,
                   any_class: bool = False) -> FrameAP:
    """frameAp.m's matching for one video: ``FrameAP`` of its frames 1..num_frames of the annotation.

    ``rows``: ``link_frames``'s frame-AP rows ``[frame, class, score, x1, y1, x2, y2]``.
    """
    acc = FrameAP(num_classes, iou_thresh, any_class=any_class)
    rows = np.zeros((0, 7)) if rows is None else rows[rows[:, 0] < gt.num_frames]
    gt_parts = []
    for t in gt.tubes:
        f = np.arange(t.sf - 1, min(t.ef, gt.num_frames))
        if len(f):
            x, y, w, h = t.boxes[f + 1 - t.sf].T
            gt_parts.append((f, np.stack([x, y, x + w - 1, y + h - 1], 1), np.full(len(f), t.class_id)))
    gt_frame, gt_boxes, gt_labels = ((np.concatenate(a) for a in zip(*gt_parts)) if gt_parts
                                     else (np.zeros(0), np.zeros((0, 4)), np.zeros(0)))
    order = np.argsort(gt_frame, kind="stable")  # per frame, GT boxes in tube order
    acc.add_frames(rows[:, 0].astype(np.int64), rows[:, 3:], rows[:, 2], rows[:, 1].astype(np.int64),
                   gt_frame[order], gt_boxes[order], gt_labels[order])
    return acc


def frame_map_of(gts: list, frame_dets: dict, num_classes: int, iou_thresh: float = 0.5, any_class: bool = False) -> tuple:
    """frameAp.m over the listed videos from their frame-AP rows (``{video: rows}``)."""
    return FrameAP.merge([video_frame_ap(g, frame_dets.get(g.name), num_classes, iou_thresh, any_class)
                          for g in gts]).compute()
