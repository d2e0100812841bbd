"""Online linking of per-frame detections into action paths, ported from ROAD.

The original is gurkirt/realtime-action-detection ``online-tubes/actionpath/``
(``actionPaths.m``: ``readDetections``, ``dofilter``; ``nms.m``;
``incremental_linking.m``). ``OnlineLinker`` is fed one frame at a time and keeps
the live paths of every class; ``finish`` gives what the Matlab saves as
``allpaths``. The offline tool (build_tubes.py) and the online demo run this same
code.

Boxes here are in the Matlab's pixel convention ("link boxes"): ``loc * [W H W H]``,
clipped, then ``+1`` (see ``loc_to_link_boxes``). The conversion is kept so that every
floating-point operation matches the original; subtract 1 for this project's
0-based pixels. Scores given to ``update`` are ``[N, C+1]`` with the background in
column 0 (the model's layout); the linking uses the C class columns only, as the
Matlab does (``allScores(:, 1:num_action)``).
"""
import bisect
from dataclasses import dataclass

import numpy as np

EPS = np.finfo(np.float64).eps  # Matlab's eps in inters_union


@dataclass
class FilterConfig:
    """Per-class filtering of one frame's detections (``dofilter``)."""
    score_thresh: float = 0.001
    pre_nms_topk: int = 50
    nms_thresh: float = 0.45
    post_nms_topk: int = 10


LINKING_FILTER = FilterConfig()  # actionPaths.m dofilter
FRAME_AP_FILTER = FilterConfig(score_thresh=0.01, post_nms_topk=20)  # frameAp.m dofilter


def loc_to_link_boxes(loc, frame_size=(320, 240)):
    """Normalised x1, y1, x2, y2 -> link boxes, as ``actionPaths.m`` ``readDetections``.

    ``loc .* [320 240 320 240]``; only x1, y1 < 0 and x2 > 319, y2 > 239 are clipped;
    then ``+1`` on all four. Computed in the input's precision (Matlab keeps single
    data single), returned as float64.
    """
    loc = np.asarray(loc)
    if loc.dtype not in (np.float32, np.float64):
        loc = loc.astype(np.float64)
    width, height = frame_size
    b = loc * np.array([width, height, width, height], dtype=loc.dtype)
    b[:, 0] = np.where(b[:, 0] < 0, 0, b[:, 0])
    b[:, 1] = np.where(b[:, 1] < 0, 0, b[:, 1])
    b[:, 2] = np.where(b[:, 2] > width - 1, width - 1, b[:, 2])
    b[:, 3] = np.where(b[:, 3] > height - 1, height - 1, b[:, 3])
    return (b + loc.dtype.type(1)).astype(np.float64)


def nms_suppression_matrix(boxes, thresh):
    """``[N, N]`` True where two boxes overlap by more than ``thresh`` as ``nms.m`` measures it.

    nms.m: area ``(x2-x1)*(y2-y1)`` without +1, overlap only when the intersection
    has ``w > 0 && h > 0``, suppression when ``inter / (area_j + area_i - inter) > thresh``.
    """
    x1, y1, x2, y2 = boxes.T
    area = (x2 - x1) * (y2 - y1)
    w = np.minimum(x2[:, None], x2[None]) - np.maximum(x1[:, None], x1[None])
    h = np.minimum(y2[:, None], y2[None]) - np.maximum(y1[:, None], y1[None])
    inter = w * h
    with np.errstate(divide="ignore", invalid="ignore"):
        overlap = inter / (area[None, :] + area[:, None] - inter)
    return (w > 0) & (h > 0) & (overlap > thresh)


def filter_frame(boxes, class_scores, cfg=LINKING_FILTER):
    """Per-class ``dofilter`` of one frame, all classes at once.

    boxes: ``[N, 4]``; class_scores: ``[N, C]``. Returns a list of C index arrays into
    the frame's boxes, in the order the Matlab keeps them: score > thresh, stable
    descending sort, top ``pre_nms_topk``, ``nms.m`` (which, among equal scores, picks
    the later one of the sorted list first), top ``post_nms_topk``.
    """
    n, num_classes = class_scores.shape
    if n == 0:
        return [np.zeros(0, np.int64) for _ in range(num_classes)]
    s = class_scores.T  # [C, N]
    passed = s > cfg.score_thresh
    key = np.where(passed, -s, np.inf)
    order = np.argsort(key, axis=1, kind="stable")[:, :cfg.pre_nms_topk]  # [C, K]
    valid = np.take_along_axis(passed, order, 1)
    sorted_scores = np.take_along_axis(s, order, 1)
    # nms.m sorts ascending (stable) and takes the last: score descending, position descending.
    k = order.shape[1]
    rev = order[:, ::-1]
    rev_key = np.where(valid[:, ::-1], -sorted_scores[:, ::-1], np.inf)
    nms_order = np.take_along_axis(rev, np.argsort(rev_key, axis=1, kind="stable"), 1)
    alive = np.take_along_axis(valid[:, ::-1], np.argsort(rev_key, axis=1, kind="stable"), 1)
    suppress = nms_suppression_matrix(boxes, cfg.nms_thresh)
    picks = np.full((num_classes, cfg.post_nms_topk), -1, np.int64)
    rows = np.arange(num_classes)
    for p in range(min(cfg.post_nms_topk, k)):
        first = alive.argmax(1)
        has = alive[rows, first]
        if not has.any():
            break
        chosen = nms_order[rows, first]
        picks[has, p] = chosen[has]
        alive &= ~suppress[chosen[:, None], nms_order]
        alive[rows, first] = False
    return [row[row >= 0] for row in picks]


def link_iou(boxes_a, boxes_b):
    """``[A, B]`` IoU as ``incremental_linking.m`` ``inters_union``.

    Boxes become ``[x1 y1 x2-x1+1 y2-y1+1]``; Matlab's ``rectint``; union + eps.
    """
    wa = boxes_a[:, 2:] - boxes_a[:, :2] + 1
    wb = boxes_b[:, 2:] - boxes_b[:, :2] + 1
    return rect_iou(np.concatenate([boxes_a[:, :2], wa], 1), np.concatenate([boxes_b[:, :2], wb], 1), EPS)


def rectint(a, b):
    """Matlab/Octave ``rectint`` of ``[A, 4]`` and ``[B, 4]`` x, y, w, h rectangles."""
    ea = a[:, :2] + a[:, 2:]
    eb = b[:, :2] + b[:, 2:]
    d = np.minimum(ea[:, None], eb[None]) - np.maximum(a[:, None, :2], b[None, :, :2])
    d[d < 0] = 0
    return d[..., 0] * d[..., 1]


def rect_iou(a, b, eps):
    """``inters ./ (ar1 + ar2' - inters + eps)`` over x, y, w, h rectangles."""
    inter = rectint(a, b)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return inter / (union + eps)


def seq_mean(values):
    """Matlab's ``mean``: a left-to-right sum divided by the count."""
    total = 0.0
    for v in values:
        total += v
    return total / len(values)


@dataclass
class ActionPath:
    """A linked path of one class.

    start: 0-based first frame; boxes ``[L, 4]`` link boxes, one per frame from
    ``start`` (gaps filled); scores ``[L]`` the path's class score; all_scores ``[L, C]``;
    found ``[F]`` 0-based frames where a detection was linked.
    """
    start: int
    boxes: np.ndarray
    scores: np.ndarray
    all_scores: np.ndarray
    found: np.ndarray

    @property
    def end(self):
        return self.start + len(self.boxes)


class _LivePath:
    __slots__ = ("boxes", "scores", "all_scores", "found", "lastfound", "top")

    def __init__(self, box, score, all_scores, t):
        self.boxes, self.scores, self.all_scores, self.found = [box], [score], [all_scores], [t]
        self.lastfound = 0
        self.top = [score]

    def extend(self, box, score, all_scores, t, keep):
        self.boxes.append(box)
        self.scores.append(score)
        self.all_scores.append(all_scores)
        self.found.append(t)
        self.lastfound = 0
        bisect.insort(self.top, score)
        if len(self.top) > keep:
            del self.top[0]


def fill_gaps(path, min_found):
    """``fill_gaps``: drop paths with ``min_found`` or fewer detections; a gap repeats the next detection."""
    if len(path.found) <= min_found:
        return None
    found = np.asarray(path.found)
    repeat = np.diff(found, prepend=found[0] - 1)
    return ActionPath(int(found[0]), np.repeat(np.asarray(path.boxes), repeat, 0),
                      np.repeat(np.asarray(path.scores, np.float64), repeat),
                      np.repeat(np.asarray(path.all_scores), repeat, 0), found)


def sort_paths(paths):
    """``sort_paths``: stable descending sort by the mean of each path's 20 highest scores."""
    key = [seq_mean(np.sort(p.scores)[::-1][:20]) for p in paths]
    return [paths[i] for i in np.argsort(-np.asarray(key), kind="stable")]


class OnlineLinker:
    """Incremental linking of one video, all classes (``incremental_linking.m``, cost 'score').

    ``update(boxes, scores)`` with one frame's detections (boxes ``[N, 4]`` link boxes,
    scores ``[N, C+1]`` background first) filters them per class (``dofilter``) and
    extends the live paths; ``paths(c)`` gives the live paths of class ``c`` (0-based)
    with gaps filled; ``finish()`` gives every class's final, sorted paths.
    """

    def __init__(self, num_classes, iou_thresh=0.1, jumpgap=3, filter_cfg=LINKING_FILTER):
        self.num_classes = num_classes
        self.iou_thresh = iou_thresh
        self.jumpgap = jumpgap
        self.filter_cfg = filter_cfg
        self.t = 0
        self.live = [[] for _ in range(num_classes)]
        self.dead = [[] for _ in range(num_classes)]

    def update(self, boxes, scores):
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64)
        if scores.ndim != 2 or scores.shape != (len(boxes), self.num_classes + 1):
            raise ValueError(f"frame {self.t}: scores have shape {scores.shape}, expected "
                             f"({len(boxes)}, {self.num_classes + 1}) (background first)")
        class_scores = scores[:, 1:]
        picks = filter_frame(boxes, class_scores, self.filter_cfg)
        # IoU of every live path's last box against every box of the frame, all classes at once.
        last = [p.boxes[-1] for c in range(self.num_classes) for p in self.live[c]]
        iou = link_iou(np.asarray(last), boxes) if last and len(boxes) else None
        row = 0
        for c in range(self.num_classes):
            n_live = len(self.live[c])
            self._link_class(c, picks[c], boxes, class_scores, iou[row:row + n_live] if n_live and iou is not None else None)
            row += n_live
        self.t += 1

    def _link_class(self, c, pick, boxes, class_scores, iou):
        t, keep = self.t, self.jumpgap + 1
        own = class_scores[pick, c].tolist()
        covered = [False] * len(pick)
        live = self.live[c]
        if live:
            order_score = []
            cand = (iou[:, pick] >= self.iou_thresh).tolist() if iou is not None else [[False] * len(pick)] * len(live)
            for lp, path in enumerate(live):
                best, best_j = 0.0, -1
                for j, ok in enumerate(cand[lp]):
                    if ok and not covered[j] and own[j] > best:
                        best, best_j = own[j], j
                if best_j >= 0:
                    b = pick[best_j]
                    path.extend(boxes[b], own[best_j], class_scores[b], t, keep)
                    covered[best_j] = True
                else:
                    path.lastfound += 1
                order_score.append(seq_mean(path.top))
            survivors = []
            for i in np.argsort(-np.asarray(order_score), kind="stable"):
                path = live[i]
                (survivors if path.lastfound < self.jumpgap else self.dead[c]).append(path)
            live = survivors
        for j, b in enumerate(pick):
            if not covered[j]:
                live.append(_LivePath(boxes[b], own[j], class_scores[b], t))
        self.live[c] = live

    def paths(self, class_id):
        """Live paths of one class, gaps filled (short paths included)."""
        return [fill_gaps(p, 0) for p in self.live[class_id]]

    def finish(self):
        """Final paths per class: live then dead, gaps filled, sorted (``incremental_linking.m``)."""
        out = []
        for c in range(self.num_classes):
            filled = [fill_gaps(p, self.jumpgap) for p in self.live[c] + self.dead[c]]
            out.append(sort_paths([p for p in filled if p is not None]))
        return out


def link_video(frames, num_classes, iou_thresh=0.1, jumpgap=3):
    """Run ``OnlineLinker`` over an iterable of ``(boxes, scores)`` frames; return ``finish()``."""
    linker = OnlineLinker(num_classes, iou_thresh, jumpgap)
    for boxes, scores in frames:
        linker.update(boxes, scores)
    return linker.finish()
