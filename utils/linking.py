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


def _overlap_bits(boxes, thresh):
    """``nms.m``'s suppression test between every two of ``[U, 4]`` boxes, as ``[U, W]`` uint64 bit rows.

    Bit ``j`` of row ``i`` is set when the intersection has ``w > 0 and h > 0`` and
    ``inter / (area_j + area_i - inter) > thresh``, areas ``(x2-x1)*(y2-y1)`` without +1.
    """
    x1, y1, x2, y2 = boxes.T
    area = (x2 - x1) * (y2 - y1)
    w = np.minimum(x2[:, None], x2[None]) - np.maximum(x1[:, None], x1[None])
    h = np.minimum(y2[:, None], y2[None]) - np.maximum(y1[:, None], y1[None])
    inter = w * h
    with np.errstate(divide="ignore", invalid="ignore"):
        overlap = inter / (area[None, :] + area[:, None] - inter)
    s = (w > 0) & (h > 0) & (overlap > thresh)
    words = (len(boxes) + 63) // 64
    packed = np.zeros((len(boxes), 8 * words), np.uint8)
    packed[:, :(len(boxes) + 7) // 8] = np.packbits(s, axis=1, bitorder="little")
    return packed.view("<u8")


def _nms_keep(boxes, order, valid, thresh):
    """Greedy ``nms.m`` of every class's candidate list at once.

    order ``[C, K]`` box indices in processing order, valid ``[C, K]`` (a prefix).
    Returns ``[C, K]`` True where the box is kept. Instead of the one-by-one loop, this
    iterates ``keep_i = valid_i and no kept j < i suppresses i`` to its fixed point:
    position i depends only on earlier positions, so the fixed point is unique and is
    the greedy result (reached in at most K rounds, in practice a few). Sets of boxes
    are bit masks over the boxes that some list holds.
    """
    used = np.unique(order[valid])
    if len(used) == 0:
        return valid.copy()
    local = np.where(valid, np.searchsorted(used, order).clip(max=len(used) - 1), 0)
    rows = _overlap_bits(boxes[used], thresh)  # [U, W]
    bit = np.zeros((len(used), rows.shape[1]), np.uint64)
    ids = np.arange(len(used))
    bit[ids, ids // 64] = np.left_shift(np.uint64(1), (ids % 64).astype(np.uint64))
    onehot = np.where(valid[..., None], bit[local], np.uint64(0))  # [C, K, W]
    before = np.zeros_like(onehot)
    before[:, 1:] = np.bitwise_or.accumulate(onehot, axis=1)[:, :-1]
    earlier_overlaps = rows[local] & before  # [C, K, W]
    keep = valid.copy()
    while True:
        kept = np.bitwise_or.reduce(np.where(keep[..., None], onehot, np.uint64(0)), axis=1)  # [C, W]
        new = valid & ~(earlier_overlaps & kept[:, None]).any(2)
        if np.array_equal(new, keep):
            return keep
        keep = new


def filter_frame_padded(boxes, class_scores, cfgs=(LINKING_FILTER,)):
    """Per-class ``dofilter`` of one frame, all classes at once, for one or more configs.

    boxes: ``[N, 4]``; class_scores: ``[N, C]``. Returns, per config, ``[C, post_nms_topk]``
    indices into the frame's boxes, padded with -1, in the order the Matlab keeps them:
    score > thresh, stable descending sort, top ``pre_nms_topk``, ``nms.m`` (which, among
    equal scores, picks the later one of the sorted list first), top ``post_nms_topk``.
    Configs with the same ``pre_nms_topk`` and ``nms_thresh`` share one NMS: the sorted
    list of a higher score threshold is a prefix of the lower one's (whole score groups,
    or the same 50), and greedy NMS of a prefix keeps the kept boxes of that prefix.
    """
    n, num_classes = class_scores.shape
    cfgs = list(cfgs)
    groups = {}
    for i, cfg in enumerate(cfgs):
        groups.setdefault((cfg.pre_nms_topk, cfg.nms_thresh), []).append(i)
    out = [np.full((num_classes, cfg.post_nms_topk), -1, np.int64) for cfg in cfgs]
    if n == 0:
        return out
    s = class_scores.T  # [C, N]
    rows = np.arange(num_classes)[:, None]
    for (pre_topk, nms_thresh), members in groups.items():
        passed = s > min(cfgs[i].score_thresh for i in members)
        order = np.argsort(np.where(passed, -s, np.inf), axis=1, kind="stable")[:, :pre_topk]
        # nms.m sorts ascending (stable) and takes the last: score descending, position descending.
        rev = order[:, ::-1]
        rev_valid = passed[rows, rev]
        perm = np.argsort(np.where(rev_valid, -s[rows, rev], np.inf), axis=1, kind="stable")
        nms_order = rev[rows, perm]
        keep = _nms_keep(boxes, nms_order, rev_valid[rows, perm], nms_thresh)
        kept_scores = s[rows, nms_order]
        for i in members:
            cfg = cfgs[i]
            sel = keep & (kept_scores > cfg.score_thresh)
            rank = np.cumsum(sel, 1) - 1
            sel &= rank < cfg.post_nms_topk
            c, pos = np.nonzero(sel)
            out[i][c, rank[c, pos]] = nms_order[c, pos]
    return out


def filter_frame(boxes, class_scores, cfg=LINKING_FILTER):
    """``filter_frame_padded`` for one config as a list of C index arrays."""
    picks = filter_frame_padded(boxes, class_scores, (cfg,))[0]
    return [row[row >= 0] for row in picks]


def link_iou(boxes_a, boxes_b):
    """``[..., A, B]`` IoU as ``incremental_linking.m`` ``inters_union``, over leading batch dims.

    Boxes become ``[x1 y1 x2-x1+1 y2-y1+1]``; Matlab's ``rectint``; union + eps.
    """
    xa, xb = boxes_a[..., :2], boxes_b[..., :2]
    wa = boxes_a[..., 2:] - xa + 1
    wb = boxes_b[..., 2:] - xb + 1
    d = np.minimum((xa + wa)[..., :, None, :], (xb + wb)[..., None, :, :]) - np.maximum(xa[..., :, None, :], xb[..., None, :, :])
    d[d < 0] = 0
    inter = d[..., 0] * d[..., 1]
    union = (wa[..., 0] * wa[..., 1])[..., :, None] + (wb[..., 0] * wb[..., 1])[..., None, :] - inter
    return inter / (union + EPS)


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


def segment_starts(lengths):
    """First index of each of the consecutive segments of ``lengths``."""
    return np.cumsum(lengths) - lengths


def topk_means(values, lengths, k):
    """Per segment of ``values`` (consecutive, ``lengths`` long, all > 0): the mean of its k highest.

    As the Matlab's ``mean(sorted(1:min(k, n)))`` in the ports (a left-to-right sum, in
    descending order, divided by the count): a row-wise ``cumsum`` over the padded
    ``[S, k]`` table is that same left-to-right sum (trailing zeros add nothing).
    """
    lengths = np.asarray(lengths, np.int64)
    n = len(lengths)
    if n == 0:
        return np.zeros(0)
    seg = np.repeat(np.arange(n), lengths)
    desc = values[np.lexsort((-values, seg))]
    rank = np.arange(len(values)) - np.repeat(segment_starts(lengths), lengths)
    top = rank < k
    table = np.zeros((n, k))
    table[seg[top], rank[top]] = desc[top]
    return np.cumsum(table, 1)[:, -1] / np.minimum(lengths, k)


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


class OnlineLinker:
    """Incremental linking of one video, all classes (``incremental_linking.m``, cost 'score').

    ``update(boxes, scores)`` with one frame's detections (boxes ``[N, 4]`` link boxes,
    scores ``[N, C+1]`` background first) filters them per class (``dofilter``) and
    extends the live paths (``link`` does the same with the filtered picks given);
    ``paths(c)`` gives the live paths of class ``c`` (0-based) with gaps filled;
    ``finish()`` gives every class's final, sorted paths.

    All classes are linked at once: the live paths are rows of ``[C, P, F]`` arrays (last
    box, the ``jumpgap + 1`` best scores ascending with zeros in front, their count,
    frames since last found, path id) in the Matlab's ``live_paths`` order, and every
    linked detection is a record (path id, frame, row of the video's boxes); ``finish``
    gathers the records into paths.
    """

    def __init__(self, num_classes, iou_thresh=0.1, jumpgap=3, filter_cfg=LINKING_FILTER):
        self.num_classes = num_classes
        self.iou_thresh = iou_thresh
        self.jumpgap = jumpgap
        self.filter_cfg = filter_cfg
        self.t = 0
        keep = jumpgap + 1
        self._top = slice(4, 4 + keep)
        self._ntop, self._last, self._pid = 4 + keep, 5 + keep, 6 + keep
        self.state = np.zeros((num_classes, 0, 7 + keep))
        self.n_live = np.zeros(num_classes, np.int64)
        self._num_paths = 0
        self._path_class, self._dead = [], []
        self._rec_pid, self._rec_t, self._rec_row = [], [], []
        self._boxes, self._class_scores = [], []
        self._offset = 0

    def update(self, boxes, scores):
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64)
        if scores.ndim != 2 or scores.shape != (len(boxes), self.num_classes + 1):
            raise ValueError(f"frame {self.t}: scores have shape {scores.shape}, expected "
                             f"({len(boxes)}, {self.num_classes + 1}) (background first)")
        class_scores = scores[:, 1:]
        self.link(boxes, class_scores, filter_frame_padded(boxes, class_scores, (self.filter_cfg,))[0])

    def link(self, boxes, class_scores, picks):
        """One frame: boxes ``[N, 4]`` float64, class_scores ``[N, C]`` float64, picks ``[C, k]`` (-1 padded)."""
        num_classes, k = picks.shape
        st = self.state
        p = st.shape[1]
        crow = np.arange(num_classes)[:, None]
        valid_pick = picks >= 0
        safe = np.where(valid_pick, picks, 0)
        if len(boxes):
            pick_boxes, own = boxes[safe], class_scores[safe, crow]
        else:
            pick_boxes, own = np.zeros((num_classes, k, 4)), np.zeros((num_classes, k))
        live = np.arange(p) < self.n_live[:, None]
        match = self._match(st[:, :, :4], pick_boxes, live, valid_pick) if p else np.full((num_classes, 0), -1)
        matched = match >= 0
        covered = np.zeros((num_classes, k), bool)
        cm, pm = np.nonzero(matched)
        if len(cm):
            j = match[cm, pm]
            covered[cm, j] = True
            score = own[cm, j]
            top = np.sort(np.concatenate([st[cm, pm, self._top], score[:, None]], 1), 1)[:, 1:]
            st[cm, pm, :4] = pick_boxes[cm, j]
            st[cm, pm, self._top] = top
            st[cm, pm, self._ntop] = np.minimum(st[cm, pm, self._ntop] + 1, top.shape[1])
            self._record(st[cm, pm, self._pid].astype(np.int64), picks[cm, j])
        st[:, :, self._last] = np.where(matched, 0, st[:, :, self._last] + 1)
        # incremental_linking.m: order by the mean of the jumpgap + 1 best scores, then drop the dead.
        top = st[:, :, self._top]
        total = top[:, :, 0].copy()
        for i in range(1, top.shape[2]):
            total += top[:, :, i]
        with np.errstate(divide="ignore", invalid="ignore"):
            order_score = total / st[:, :, self._ntop]
        survive = live & (st[:, :, self._last] < self.jumpgap)
        order = np.argsort(np.where(live, -order_score, np.inf), axis=1, kind="stable")
        survive_sorted = np.take_along_axis(survive, order, 1)
        dead_sorted = np.take_along_axis(live & ~survive, order, 1)
        if dead_sorted.any():
            self._dead.append(np.take_along_axis(st[:, :, self._pid], order, 1)[dead_sorted].astype(np.int64))
        perm = np.take_along_axis(order, np.argsort(~survive_sorted, axis=1, kind="stable"), 1)
        n_survive = survive.sum(1)
        # New paths from the boxes no path took, in pick order.
        uncovered = valid_pick & ~covered
        cn, jn = np.nonzero(uncovered)
        new = np.zeros((num_classes, k, st.shape[2]))
        new[:, :, :4] = pick_boxes
        new[:, :, self._top.stop - 1] = own
        new[:, :, self._ntop] = 1
        if len(cn):
            ids = np.arange(self._num_paths, self._num_paths + len(cn))
            new[cn, jn, self._pid] = ids
            self._num_paths += len(cn)
            self._path_class.append(cn)
            self._record(ids, picks[cn, jn])
        n_new = uncovered.sum(1)
        newj = np.argsort(~uncovered, axis=1, kind="stable")
        width = int((n_survive + n_new).max()) if num_classes else 0
        slot = np.arange(width)[None]
        from_old = slot < n_survive[:, None]
        src = p + np.take_along_axis(newj, np.clip(slot - n_survive[:, None], 0, max(k - 1, 0)), 1) if k else \
            np.zeros((num_classes, width), np.int64)
        if p:
            src = np.where(from_old, np.take_along_axis(perm, np.minimum(slot, p - 1), 1), src)
        self.state = np.concatenate([st, new], 1)[crow, src]
        self.n_live = n_survive + n_new
        self._boxes.append(boxes)
        self._class_scores.append(class_scores)
        self._offset += len(boxes)
        self.t += 1

    def _match(self, last_boxes, pick_boxes, live, valid_pick):
        """``[C, P]`` the pick each live path takes (-1: none), ``incremental_linking.m``'s greedy.

        In path order, each path takes the uncovered box of highest class score among those
        with IoU >= iou_thresh, the first on ties. Picks are in descending score order, so
        that is the first uncovered candidate; hence box j goes to the first path that has it
        as a candidate and took none of boxes 0..j-1. When no two paths share a first
        candidate, each simply takes its first one.
        """
        cand = (link_iou(last_boxes, pick_boxes) >= self.iou_thresh) & live[:, :, None] & valid_pick[:, None, :]
        has = cand.any(2)
        first = np.where(has, cand.argmax(2), -1)
        c, p = np.nonzero(has)
        key = c * cand.shape[2] + first[c, p]
        if len(np.unique(key)) == len(key):
            return first
        match = np.full(has.shape, -1)
        taken = np.zeros(has.shape, bool)
        cls = np.arange(len(has))
        for j in np.flatnonzero(cand.any((0, 1))):
            m = cand[:, :, j] & ~taken
            path = m.argmax(1)
            hit = np.flatnonzero(m[cls, path])
            match[hit, path[hit]] = j
            taken[hit, path[hit]] = True
        return match

    def _record(self, pids, box_idx):
        self._rec_pid.append(pids)
        self._rec_t.append(np.full(len(pids), self.t))
        self._rec_row.append(self._offset + box_idx)

    def num_live(self, class_id):
        return int(self.n_live[class_id])

    def num_dead(self, class_id):
        dead = np.concatenate(self._dead) if self._dead else np.zeros(0, np.int64)
        return int((np.concatenate(self._path_class)[dead] == class_id).sum()) if len(dead) else 0

    def _live_pids(self, class_id):
        return self.state[class_id, :self.n_live[class_id], self._pid].astype(np.int64)

    def _gather(self, pids, min_found):
        """Gap-filled ``ActionPath`` of the given path ids with more than ``min_found`` detections, and their classes."""
        rec_pid = np.concatenate(self._rec_pid) if self._rec_pid else np.zeros(0, np.int64)
        counts = np.bincount(rec_pid, minlength=self._num_paths)
        pids = pids[counts[pids] > min_found]
        if len(pids) == 0:
            return [], np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64)
        by_path = np.argsort(rec_pid, kind="stable")  # records are in frame order within a path
        n = counts[pids]
        first_rec = segment_starts(counts)[pids]
        recs = by_path[np.repeat(first_rec - segment_starts(n), n) + np.arange(n.sum())]
        t = np.concatenate(self._rec_t)[recs]
        rows = np.concatenate(self._rec_row)[recs]
        # fill_gaps: a gap repeats the next detection.
        repeat = np.diff(t, prepend=t[0] - 1)
        repeat[segment_starts(n)] = 1
        rows = np.repeat(rows, repeat)
        classes = np.concatenate(self._path_class)[pids]
        lengths = np.add.reduceat(repeat, segment_starts(n))
        all_scores = np.concatenate(self._class_scores)[rows]
        boxes = np.concatenate(self._boxes)[rows]
        scores = all_scores[np.arange(len(rows)), np.repeat(classes, lengths)]
        ends = np.cumsum(lengths)
        found_ends = np.cumsum(n)
        paths = [ActionPath(int(t[fe - m]), boxes[e - ln:e], scores[e - ln:e], all_scores[e - ln:e], t[fe - m:fe])
                 for e, ln, fe, m in zip(ends.tolist(), lengths.tolist(), found_ends.tolist(), n.tolist())]
        return paths, classes, scores, lengths

    def paths(self, class_id):
        """Live paths of one class, gaps filled (short paths included)."""
        return self._gather(self._live_pids(class_id), 0)[0]

    def finish(self):
        """Final paths per class: live then dead, gaps filled, sorted (``incremental_linking.m``).

        sort_paths: stable descending sort by the mean of each path's 20 highest scores.
        """
        dead = np.concatenate(self._dead) if self._dead else np.zeros(0, np.int64)
        path_class = np.concatenate(self._path_class) if self._path_class else np.zeros(0, np.int64)
        dead_class = path_class[dead]
        pids = np.concatenate([np.concatenate([self._live_pids(c), dead[dead_class == c]]) for c in range(self.num_classes)])
        out = [[] for _ in range(self.num_classes)]
        gathered = self._gather(pids, self.jumpgap)
        if not gathered[0]:
            return out
        paths, classes, scores, lengths = gathered
        key = topk_means(scores, lengths, 20)
        for i in np.lexsort((-key, classes)):  # stable: class, then key, then live-then-dead order
            out[classes[i]].append(paths[i])
        return out


def link_video(frames, num_classes, iou_thresh=0.1, jumpgap=3):
    """Run ``OnlineLinker`` over an iterable of ``(boxes, scores)`` frames; return ``finish()``."""
    linker = OnlineLinker(num_classes, iou_thresh, jumpgap)
    for boxes, scores in frames:
        linker.update(boxes, scores)
    return linker.finish()
