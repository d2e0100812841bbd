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

Precision: the Matlab computes in single precision when the detection files hold single
(as ROAD's and AMTNet's test scripts write them): ``loc .* [320 240 320 240]`` stays single,
and so does every box and score computation after it, with each double constant converted
to single first (Octave and Matlab do that for mixed operations). Here too: boxes keep the
precision of ``loc`` and scores that of ``scores`` (float32 or float64), NMS runs in single
when either is single (``nms.m`` gets ``[boxes scores]``, which is then single), and every
constant goes to the same precision before it is used (``work_dtype``).
"""
from dataclasses import dataclass, replace

import numba
import numpy as np

from data.annotations import UCF_FRAME_SIZE

from .boxes import EPS, loc_to_link_boxes
from .detections import FrameList
from .compiling import announce_compilation

announce_compilation()  # this module's, trimming.py's and fusion.py's loops (they import this module)


def work_dtype(*arrays: np.ndarray) -> np.dtype:
    """float32 if any of the arrays is single (Matlab's single-double arithmetic gives single), else float64."""
    return np.dtype(np.float32) if any(np.asarray(a).dtype == np.float32 for a in arrays) else np.dtype(np.float64)


@dataclass
class FilterConfig:
    """Per-class filtering of one frame's detections (``dofilter``)."""
    score_thresh: float = 0.001
    pre_nms_topk: int = 50
    nms_thresh: float = 0.45
    post_nms_topk: int = 10


LINKING_FILTER = FilterConfig()  # actionPaths.m dofilter


def linking_filter(score_thresh: float = LINKING_FILTER.score_thresh) -> FilterConfig:
    """actionPaths.m's ``dofilter`` with another minimum class score (``--link_score``; not in the
    original, whose 0.001 is the default): a detector trained for minutes gives background boxes
    class scores of a few percent, which keep paths alive for the whole video, where the trimming
    (over the class scores only) cannot end them."""
    if not 0 <= score_thresh < 1:
        raise ValueError(f"the linking's minimum class score must be in [0, 1), got {score_thresh}")
    return replace(LINKING_FILTER, score_thresh=score_thresh)
FRAME_AP_FILTER = FilterConfig(score_thresh=0.01, post_nms_topk=20)  # frameAp.m dofilter


# The pre-pass of ``_dofilter``: per frame and class, a histogram of the class scores over buckets of
# 1/16 octave (the float's exponent and 4 mantissa bits) from the threshold's, the top one taking
# everything above; only boxes in the bucket of the pre_topk-th best score or above are sorted.
NUM_BUCKETS = 256
MANTISSA_SHIFT = {np.dtype(np.float32): (np.uint32, 19), np.dtype(np.float64): (np.uint64, 48)}
MIN_BUCKET_SCORE = 1e-5  # the lowest bucket's edge for a threshold of 0


@numba.njit(cache=True, error_model="numpy")
def _dofilter(boxes, class_scores, score_bits, shift, base, offsets, score_threshs, pre_topk, nms_thresh, post_topks):
    """``dofilter`` + ``nms.m`` of each frame (rows ``offsets[f]:offsets[f + 1]``), class by class, for G
    configs sharing ``pre_topk`` and ``nms_thresh``.

    Returns ``[F, G, C, max(post_topks)]`` box indices within the frame, -1 padded. One NMS at
    the lowest threshold serves all: a higher threshold's sorted list is a prefix of it (whole
    score groups, or the same ``pre_topk``), and greedy NMS of a prefix keeps that prefix's kept boxes.
    ``score_bits``: the scores' bits as unsigned integers; ``base``: the first bucket's
    ``bits >> shift`` (-1: no pre-pass, for a negative threshold).
    """
    num_frames = len(offsets) - 1
    num_classes = class_scores.shape[1]
    post = post_topks.max()
    out = np.full((num_frames, len(post_topks), num_classes, post), -1, np.int64)
    thresh = score_threshs.min()
    max_boxes = 0
    for f in range(num_frames):
        max_boxes = max(max_boxes, offsets[f + 1] - offsets[f])
    hist = np.zeros((num_classes, NUM_BUCKETS), np.int32)
    low = np.empty(num_classes, np.int64)
    count = np.empty(num_classes, np.int64)
    candidates = np.empty((num_classes, max_boxes), np.int64)
    keys = np.empty(pre_topk, class_scores.dtype)
    order = np.empty(pre_topk, np.int64)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1) * (y2 - y1)
    kept_idx = np.empty(post, np.int64)
    kept_box = np.empty((5, post), boxes.dtype)  # x1, y1, x2, y2, area of the kept boxes
    for f in range(num_frames):
        start, stop = offsets[f], offsets[f + 1]
        low[:] = -1
        if base >= 0 and stop - start > pre_topk:
            hist[:] = 0
            for i in range(start, stop):
                for c in range(num_classes):  # branch-free: a box at or below the threshold adds 0
                    b = min(max(np.int64(score_bits[i, c] >> shift) - base, 0), NUM_BUCKETS - 1)
                    hist[c, b] += class_scores[i, c] > thresh
            for c in range(num_classes):
                total = 0
                for b in range(NUM_BUCKETS - 1, 0, -1):
                    total += hist[c, b]
                    if total >= pre_topk:
                        low[c] = b + base  # bucket 0 holds everything below: then no bound
                        break
        # Each class's candidates in box order (branch-free), then a stable insertion sort, score
        # descending, of the first pre_topk: a box goes after its equals.
        count[:] = 0
        for i in range(start, stop):
            for c in range(num_classes):
                candidates[c, count[c]] = i
                count[c] += (class_scores[i, c] > thresh) & (np.int64(score_bits[i, c] >> shift) >= low[c])
        for c in range(num_classes):
            m = 0
            for p in range(count[c]):
                i = candidates[c, p]
                v = class_scores[i, c]
                if m < pre_topk:
                    q = m
                    m += 1
                elif m > 0 and v > keys[m - 1]:
                    q = m - 1
                else:
                    continue
                while q > 0 and keys[q - 1] < v:
                    keys[q], order[q] = keys[q - 1], order[q - 1]
                    q -= 1
                keys[q], order[q] = v, i
            # nms.m sorts ascending (stable) and takes the last: each group of equal scores reversed.
            q = 0
            while q < m:
                e = q
                while e + 1 < m and keys[e + 1] == keys[q]:
                    e += 1
                for r in range((e - q + 1) // 2):
                    order[q + r], order[e - r] = order[e - r], order[q + r]
                q = e + 1
            kept = 0
            for q in range(m):
                if kept == post:  # later picks cannot change the earlier ones
                    break
                i = order[q]
                suppressed = False
                for r in range(kept):  # every kept box's test (branch-free), nms.m's arithmetic
                    w = min(x2[i], kept_box[2, r]) - max(x1[i], kept_box[0, r])
                    h = min(y2[i], kept_box[3, r]) - max(y1[i], kept_box[1, r])
                    suppressed |= (w > 0) & (h > 0) & (w * h / (kept_box[4, r] + area[i] - w * h) > nms_thresh)
                if not suppressed:
                    kept_idx[kept] = i
                    kept_box[0, kept], kept_box[1, kept], kept_box[2, kept] = x1[i], y1[i], x2[i]
                    kept_box[3, kept], kept_box[4, kept] = y2[i], area[i]
                    kept += 1
            for g in range(len(post_topks)):
                n = 0
                for r in range(kept):
                    if n < post_topks[g] and class_scores[kept_idx[r], c] > score_threshs[g]:
                        out[f, g, c, n] = kept_idx[r] - start
                        n += 1
    return out


def filter_frames_padded(boxes: np.ndarray, class_scores: np.ndarray, offsets: np.ndarray,
                         cfgs: tuple = (LINKING_FILTER,)) -> list:
    """Per-class ``dofilter`` of every frame of a video (frame f: rows ``offsets[f]:offsets[f + 1]``), for one
    or more configs, in one compiled pass.

    boxes: ``[M, 4]``; class_scores: ``[M, C]``; offsets ``[F + 1]``. Returns, per config, ``[F, C,
    post_nms_topk]`` indices into each frame's boxes, padded with -1, in the order the Matlab keeps
    them: score > thresh, stable descending sort, top ``pre_nms_topk``, ``nms.m`` (which, among
    equal scores, picks the later one of the sorted list first), top ``post_nms_topk``.
    The comparisons and the NMS arithmetic run in the inputs' precision (``work_dtype``).
    """
    score_dtype = work_dtype(class_scores)
    nms_dtype = work_dtype(boxes, class_scores)  # nms.m gets [boxes scores]
    boxes = np.ascontiguousarray(boxes, nms_dtype).reshape(-1, 4)
    class_scores = np.ascontiguousarray(class_scores, score_dtype)
    offsets = np.ascontiguousarray(offsets, np.int64)
    bits_type, shift = MANTISSA_SHIFT[score_dtype]
    score_bits = class_scores.view(bits_type)
    cfgs = list(cfgs)
    groups = {}
    for i, cfg in enumerate(cfgs):
        groups.setdefault((int(cfg.pre_nms_topk), float(cfg.nms_thresh)), []).append(i)
    out = [None] * len(cfgs)
    for (pre_topk, nms_thresh), members in groups.items():
        posts = np.array([cfgs[i].post_nms_topk for i in members], np.int64)
        threshs = np.array([cfgs[i].score_thresh for i in members], score_dtype)
        lowest = threshs.min()
        base = (int(np.asarray(max(lowest, score_dtype.type(MIN_BUCKET_SCORE)), score_dtype).view(bits_type) >> shift)
                if lowest >= 0 else -1)
        picks = _dofilter(boxes, class_scores, score_bits, bits_type(shift), base, offsets, threshs, pre_topk,
                          nms_dtype.type(nms_thresh), posts)
        for g, i in enumerate(members):
            out[i] = picks[:, g, :, :posts[g]]
    return out


def filter_frame_padded(boxes: np.ndarray, class_scores: np.ndarray, cfgs: tuple = (LINKING_FILTER,)) -> list:
    """``filter_frames_padded`` of one frame (boxes ``[N, 4]``, class_scores ``[N, C]``): per config ``[C,
    post_nms_topk]`` (a frame is tiny: a whole video at once is faster)."""
    boxes = np.asarray(boxes).reshape(-1, 4)
    return [p[0] for p in filter_frames_padded(boxes, class_scores, np.array([0, len(boxes)]), cfgs)]


def segment_starts(lengths: np.ndarray) -> np.ndarray:
    """First index of each of the consecutive segments of ``lengths``."""
    return np.cumsum(lengths) - lengths


@numba.njit(cache=True)
def _topk_means(values, starts, lengths, k):
    out = np.empty(len(lengths), values.dtype)
    count = np.empty(1, values.dtype)  # the divisor in the values' precision
    scratch = np.empty(lengths.max() if len(lengths) else 0, values.dtype)
    for i in range(len(lengths)):
        n = lengths[i]
        ascending = scratch[:n]
        ascending[:] = values[starts[i]:starts[i] + n]
        ascending.sort()
        total = ascending[n - 1]  # then the next k - 1 highest, in descending order
        for j in range(n - 2, max(n - k, 0) - 1, -1):
            total += ascending[j]
        count[0] = min(n, k)
        out[i] = total / count[0]
    return out


def topk_means(values: np.ndarray, lengths: np.ndarray, k: int) -> np.ndarray:
    """Per segment of ``values`` (consecutive, ``lengths`` long, all > 0): the mean of its k highest.

    As the Matlab's ``mean(sorted(1:min(k, n)))`` in the ports: a left-to-right sum, in
    descending order, divided by the count, in the values' precision (Octave's ``mean`` of
    single is ``sum(x) / n`` with a single accumulator: float32 in, float32 out).
    """
    lengths = np.asarray(lengths, np.int64)
    values = np.ascontiguousarray(values, work_dtype(values))
    return _topk_means(values, segment_starts(lengths), lengths, int(k))


def check_jumpgap(jumpgap: int) -> int:
    """``jumpgap`` as an int, or ValueError unless it is an integer >= 1."""
    if isinstance(jumpgap, bool) or int(jumpgap) != jumpgap or jumpgap < 1:
        # the compiled step keeps jumpgap + 1 scores per path (with 0 the original never extends a path)
        raise ValueError(f"jumpgap must be an integer >= 1, got {jumpgap!r}")
    return int(jumpgap)


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
    def end(self) -> int:
        return self.start + len(self.boxes)


@dataclass
class PathArrays:
    """A video's paths as flat arrays (``OnlineLinker.finish_arrays``; ``ActionPath`` lists, ``per_class``, cost a
    Python object per path). Path ``i`` is of class ``classes[i]`` and starts at frame ``starts[i]``; its
    ``lengths[i]`` frames are rows ``rows[i]:rows[i] + lengths[i]`` of ``boxes`` ``[R, 4]`` (link boxes),
    ``scores`` ``[R]`` (its class's) and ``all_scores`` ``[R, C]``; the frames where it found a detection are
    ``found[found_rows[i]:found_rows[i] + found_counts[i]]``.
    """
    num_classes: int
    classes: np.ndarray
    starts: np.ndarray
    rows: np.ndarray
    lengths: np.ndarray
    found_rows: np.ndarray
    found_counts: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    all_scores: np.ndarray
    found: np.ndarray

    PER_PATH = ("classes", "starts", "rows", "lengths", "found_rows", "found_counts")

    @classmethod
    def empty(cls, num_classes: int, box_dtype=np.float64, score_dtype=np.float64) -> "PathArrays":
        none = np.zeros(0, np.int64)
        return cls(num_classes, *[none] * len(cls.PER_PATH), np.zeros((0, 4), box_dtype), np.zeros(0, score_dtype),
                   np.zeros((0, num_classes), score_dtype), none)

    @classmethod
    def from_paths(cls, paths_per_class: list) -> "PathArrays":
        """The ``ActionPath`` lists of each class (``finish``'s result), in class then list order (a path's
        ``found`` may be None: the trimming does not read it)."""
        flat = [(c, p) for c, paths in enumerate(paths_per_class) for p in paths]
        if not flat:
            return cls.empty(len(paths_per_class))
        found = [np.zeros(0, np.int64) if p.found is None else np.asarray(p.found) for _, p in flat]
        lengths = np.array([len(p.boxes) for _, p in flat], np.int64)
        counts = np.array([len(f) for f in found], np.int64)
        return cls(len(paths_per_class), np.array([c for c, _ in flat], np.int64),
                   np.array([p.start for _, p in flat], np.int64), segment_starts(lengths), lengths,
                   segment_starts(counts), counts, *(np.concatenate([getattr(p, k) for _, p in flat])
                                                     for k in ("boxes", "scores", "all_scores")), np.concatenate(found))

    def take(self, order: np.ndarray) -> "PathArrays":
        """The paths ``order`` (indices), sharing the row arrays."""
        return replace(self, **{k: getattr(self, k)[order] for k in self.PER_PATH})

    def paths(self) -> list:
        """``ActionPath`` of each path, in order (views of the row arrays)."""
        return [ActionPath(s, self.boxes[r:r + n], self.scores[r:r + n], self.all_scores[r:r + n],
                           self.found[fr:fr + fc])
                for s, r, n, fr, fc in zip(*(getattr(self, k).tolist() for k in self.PER_PATH[1:]))]

    def per_class(self) -> list:
        """``ActionPath`` lists per class, each in order."""
        out = [[] for _ in range(self.num_classes)]
        for c, path in zip(self.classes.tolist(), self.paths()):
            out[c].append(path)
        return out


@numba.njit(cache=True, error_model="numpy")
def _link_step(sbox, stop, sint, n_live, boxes, last_boxes, class_scores, picks, bconst, jumpgap, next_pid):
    """One frame of ``incremental_linking.m`` for every class (``OnlineLinker``'s state layout).

    Per class, in the live order: each path takes the uncovered pick of highest class score
    with IoU >= iou_thresh (picks are in descending score order, so the first such one);
    paths are then ordered by the mean of their ``jumpgap + 1`` best scores (stable), the
    ones unseen for ``jumpgap`` frames die, and the uncovered picks start new paths.
    State per live path: ``sbox`` its last box (the boxes' precision), ``stop`` its
    ``jumpgap + 1`` best scores ascending, zeros in front (the scores' precision), ``sint``
    (number of those scores, frames since last found, path id). ``bconst``: 1, eps and
    iou_thresh in the boxes' precision, so that the IoU is computed in it.
    ``last_boxes``: the box a path keeps from a detection it takes (``boxes`` for frame-level
    linking; a micro-tube's last box, ``tubes.micro``, where ``boxes`` holds its first).
    Returns the new state and live counts, the records (path id, box row), the dead path
    ids and the new paths' classes (ids ``next_pid`` on, class then pick order).
    """
    num_classes, p, keep = stop.shape
    k = picks.shape[1]
    one, eps, iou_thresh = bconst[0], bconst[1], bconst[2]
    zero = one - one
    obox = np.zeros((num_classes, p + k, 4), sbox.dtype)
    otop = np.zeros((num_classes, p + k, keep), stop.dtype)
    oint = np.zeros((num_classes, p + k, 3), np.int64)
    out_live = np.zeros(num_classes, np.int64)
    count = np.empty(1, stop.dtype)  # the mean's divisor in the scores' precision
    # Records, dead ids and new classes, filled to n_rec, n_dead, n_new.
    rec_pid, rec_row = np.empty(num_classes * k, np.int64), np.empty(num_classes * k, np.int64)
    dead, new_class = np.empty(num_classes * p, np.int64), np.empty(num_classes * k, np.int64)
    n_rec = n_dead = n_new = 0
    for c in range(num_classes):
        nl = n_live[c]
        npick = 0
        while npick < k and picks[c, npick] >= 0:
            npick += 1
        covered = np.zeros(npick, np.bool_)
        for q in range(nl):
            a = sbox[c, q]
            # link_iou's arithmetic: x, y, w = x2 - x1 + 1, h; rectint; union + eps.
            wa0, wa1 = a[2] - a[0] + one, a[3] - a[1] + one
            taken = -1
            for j in range(npick):
                if covered[j]:
                    continue
                b = boxes[picks[c, j]]
                wb0, wb1 = b[2] - b[0] + one, b[3] - b[1] + one
                d0 = min(a[0] + wa0, b[0] + wb0) - max(a[0], b[0])
                d1 = min(a[1] + wa1, b[1] + wb1) - max(a[1], b[1])
                inter = max(d0, zero) * max(d1, zero)
                if inter / (wa0 * wa1 + wb0 * wb1 - inter + eps) >= iou_thresh:
                    taken = j
                    break
            if taken < 0:
                sint[c, q, 1] += 1
                continue
            covered[taken] = True
            row = picks[c, taken]
            # The jumpgap + 1 best, ascending: insert the score, drop the smallest.
            v = class_scores[row, c]
            top = stop[c, q]
            if v > top[0]:
                i = 0
                while i + 1 < keep and top[i + 1] < v:
                    top[i] = top[i + 1]
                    i += 1
                top[i] = v
            sbox[c, q] = last_boxes[row]
            sint[c, q, 0] = min(sint[c, q, 0] + 1, keep)
            sint[c, q, 1] = 0
            rec_pid[n_rec], rec_row[n_rec] = sint[c, q, 2], row
            n_rec += 1
        order_score = np.empty(nl, stop.dtype)
        for q in range(nl):
            total = stop[c, q, 0]
            for i in range(1, keep):
                total += stop[c, q, i]
            count[0] = sint[c, q, 0]
            order_score[q] = total / count[0]
        n = 0
        for q in np.argsort(-order_score, kind="mergesort"):
            if sint[c, q, 1] < jumpgap:
                obox[c, n], otop[c, n], oint[c, n] = sbox[c, q], stop[c, q], sint[c, q]
                n += 1
            else:
                dead[n_dead] = sint[c, q, 2]
                n_dead += 1
        for j in range(npick):
            if not covered[j]:
                row = picks[c, j]
                obox[c, n] = last_boxes[row]
                otop[c, n, keep - 1] = class_scores[row, c]
                oint[c, n, 0], oint[c, n, 2] = 1, next_pid
                rec_pid[n_rec], rec_row[n_rec], new_class[n_new] = next_pid, row, c
                n_rec += 1
                n_new += 1
                next_pid += 1
                n += 1
        out_live[c] = n
    w = out_live.max() if num_classes else 0
    return (obox[:, :w].copy(), otop[:, :w].copy(), oint[:, :w].copy(), out_live,
            rec_pid[:n_rec], rec_row[:n_rec], dead[:n_dead], new_class[:n_new])


@numba.njit(cache=True)
def _grown(a, need):
    """``a`` (1-D) with room for ``need`` entries (doubled when short), its content kept."""
    if need <= len(a):
        return a
    out = np.empty(max(need, 2 * len(a)), a.dtype)
    out[:len(a)] = a
    return out


@numba.njit(cache=True, error_model="numpy")
def _link_video(sbox, stop, sint, n_live, boxes, class_scores, offsets, picks, bconst, jumpgap, next_pid):
    """``_link_step`` of every frame (frame f: rows ``offsets[f]:offsets[f + 1]``, its ``picks[f]``) in one loop.

    Returns the final state and live counts, the records (path id, frame, row of ``boxes``) in frame
    order, the dead path ids and the new paths' classes (ids ``next_pid`` on)."""
    rec_pid, rec_t, rec_row = np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64)
    dead_all, class_all = np.empty(0, np.int64), np.empty(0, np.int64)
    n_rec = n_dead = n_new = 0
    for f in range(len(offsets) - 1):
        a, b = offsets[f], offsets[f + 1]
        sbox, stop, sint, n_live, pid, row, dead, new_class = _link_step(
            sbox, stop, sint, n_live, boxes[a:b], boxes[a:b], class_scores[a:b], picks[f], bconst, jumpgap, next_pid)
        rec_pid, rec_t, rec_row = (_grown(rec_pid, n_rec + len(pid)), _grown(rec_t, n_rec + len(pid)),
                                   _grown(rec_row, n_rec + len(pid)))
        rec_pid[n_rec:n_rec + len(pid)] = pid
        rec_t[n_rec:n_rec + len(pid)] = f
        rec_row[n_rec:n_rec + len(pid)] = row + a
        n_rec += len(pid)
        dead_all = _grown(dead_all, n_dead + len(dead))
        dead_all[n_dead:n_dead + len(dead)] = dead
        n_dead += len(dead)
        class_all = _grown(class_all, n_new + len(new_class))
        class_all[n_new:n_new + len(new_class)] = new_class
        n_new += len(new_class)
        next_pid += len(new_class)
    return (sbox, stop, sint, n_live, rec_pid[:n_rec], rec_t[:n_rec], rec_row[:n_rec], dead_all[:n_dead],
            class_all[:n_new])


class OnlineLinker:
    """Incremental linking of one video, all classes (``incremental_linking.m``, cost 'score').

    ``update(boxes, scores)`` with one frame's detections (boxes ``[N, 4]`` link boxes,
    scores ``[N, C+1]`` background first) filters them per class (``dofilter``) and
    extends the live paths (``link`` does the same with the filtered picks given);
    ``paths(c)`` gives the live paths of class ``c`` (0-based) with gaps filled;
    ``finish()`` gives every class's final, sorted paths.

    All classes are linked in one compiled step per frame (``_link_step``): the live paths
    are rows of ``[C, P, ...]`` arrays (last box; the ``jumpgap + 1`` best scores ascending
    with zeros in front; their count, frames since last found, path id) in the Matlab's
    ``live_paths`` order, and every linked detection is a record (path id, frame, row of the
    video's boxes); ``finish`` gathers the records into paths. The first frame fixes the
    precision of boxes and scores (float32 or float64, see the module's doc); later frames
    are converted to it.
    """

    def __init__(self, num_classes: int, iou_thresh: float = 0.1, jumpgap: int = 3, filter_cfg: FilterConfig = LINKING_FILTER):
        jumpgap = check_jumpgap(jumpgap)
        self.num_classes = num_classes
        self.iou_thresh = iou_thresh
        self.jumpgap = jumpgap
        self.filter_cfg = filter_cfg
        self.t = 0
        self.box_dtype = self.score_dtype = None
        self._sbox = np.zeros((num_classes, 0, 4))
        self._stop = np.zeros((num_classes, 0, jumpgap + 1))
        self._sint = np.zeros((num_classes, 0, 3), np.int64)
        self.n_live = np.zeros(num_classes, np.int64)
        self._num_paths = 0
        self._path_class, self._dead = [], []
        self._rec_pid, self._rec_t, self._rec_row = [], [], []
        self._boxes, self._class_scores = [], []
        self._whole = None  # link_all's arrays (see _joined)
        self._offset = 0
        # current()'s per-path running state, brought up to date lazily (offline linking never pays for it)
        self._run_frames = self._run_chunks = 0
        self._frame_start = []
        self._run = {"class": np.zeros(0, np.int64), "last_t": np.zeros(0, np.int64),
                     "sum": np.zeros(0), "length": np.zeros(0, np.int64)}

    def update(self, boxes: np.ndarray, scores: np.ndarray) -> None:
        """One frame: link boxes ``[N, 4]`` and scores ``[N, C+1]`` (background first), float32 or float64."""
        boxes = np.asarray(boxes).reshape(-1, 4)
        scores = np.asarray(scores)
        if scores.ndim != 2 or scores.shape != (len(boxes), self.num_classes + 1):
            raise ValueError(f"frame {self.t}: scores have shape {scores.shape}, expected "
                             f"({len(boxes)}, {self.num_classes + 1}) (background first)")
        class_scores = scores[:, 1:]
        self.link(boxes, class_scores, filter_frame_padded(boxes, class_scores, (self.filter_cfg,))[0])

    def link(self, boxes: np.ndarray, class_scores: np.ndarray, picks: np.ndarray, last_boxes=None) -> None:
        """One frame: boxes ``[N, 4]``, class_scores ``[N, C]``, picks ``[C, k]`` (-1 padded);
        ``last_boxes`` ``[N, 4]``: what a path keeps for the next frame's overlap (default ``boxes``)."""
        if self.box_dtype is None:
            self.box_dtype, self.score_dtype = work_dtype(boxes), work_dtype(class_scores)
            self._sbox, self._stop = self._sbox.astype(self.box_dtype), self._stop.astype(self.score_dtype)
        boxes = np.ascontiguousarray(boxes, self.box_dtype).reshape(-1, 4)
        last_boxes = boxes if last_boxes is None else np.ascontiguousarray(last_boxes, self.box_dtype).reshape(-1, 4)
        class_scores = np.ascontiguousarray(class_scores, self.score_dtype)
        bconst = np.array([1, EPS, self.iou_thresh], self.box_dtype)
        self._sbox, self._stop, self._sint, self.n_live, rec_pid, rec_row, dead, new_class = _link_step(
            self._sbox, self._stop, self._sint, self.n_live, boxes, last_boxes, class_scores,
            np.ascontiguousarray(picks, np.int64),
            bconst, int(self.jumpgap), self._num_paths)
        self._record(rec_pid, rec_row)
        if len(dead):
            self._dead.append(dead)
        if len(new_class):
            self._path_class.append(new_class)
            self._num_paths += len(new_class)
        self._boxes.append(boxes)
        self._class_scores.append(class_scores)
        self._frame_start.append(self._offset)
        self._offset += len(boxes)
        self.t += 1

    def link_all(self, boxes: np.ndarray, class_scores: np.ndarray, offsets: np.ndarray, picks: np.ndarray) -> None:
        """``link`` of a video's frames at once (frame f: rows ``offsets[f]:offsets[f + 1]`` of boxes ``[M, 4]`` and
        class_scores ``[M, C]``, its picks ``picks[f]`` ``[C, k]``), in one compiled loop; the same state after."""
        offsets = np.asarray(offsets, np.int64)
        if len(offsets) < 2:  # no frame
            return
        if self.box_dtype is None:
            self.box_dtype, self.score_dtype = work_dtype(boxes), work_dtype(class_scores)
            self._sbox, self._stop = self._sbox.astype(self.box_dtype), self._stop.astype(self.score_dtype)
        boxes = np.ascontiguousarray(boxes, self.box_dtype).reshape(-1, 4)
        class_scores = np.ascontiguousarray(class_scores, self.score_dtype)
        bconst = np.array([1, EPS, self.iou_thresh], self.box_dtype)
        whole = self.t == 0
        self._sbox, self._stop, self._sint, self.n_live, rec_pid, rec_t, rec_row, dead, new_class = _link_video(
            self._sbox, self._stop, self._sint, self.n_live, boxes, class_scores, offsets,
            np.ascontiguousarray(picks, np.int64), bconst, int(self.jumpgap), self._num_paths)
        # the per-frame layout that link() keeps (current() and _gather read it): a chunk per frame
        frames = len(offsets) - 1
        ends = np.searchsorted(rec_t, np.arange(1, frames)).tolist()
        self._rec_pid += np.split(rec_pid, ends)
        self._rec_t += np.split(rec_t + self.t, ends)
        self._rec_row += np.split(rec_row + self._offset, ends)
        if len(dead):
            self._dead.append(dead)
        if len(new_class):
            self._path_class.append(new_class)
            self._num_paths += len(new_class)
        bounds = offsets.tolist()
        self._boxes += [boxes[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        self._class_scores += [class_scores[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        self._frame_start += (self._offset + offsets[:-1]).tolist()
        self._offset += len(boxes)
        self.t += frames
        self._whole = (boxes, class_scores, self.t) if whole else None

    def _joined(self, k):
        """Every frame's boxes (``k`` 0) or class scores (1), concatenated: ``link_all``'s array when it linked them all."""
        if self._whole is not None and self._whole[2] == self.t:
            return self._whole[k]
        return np.concatenate((self._boxes, self._class_scores)[k])

    def _record(self, pids, box_idx):
        self._rec_pid.append(pids)
        self._rec_t.append(np.full(len(pids), self.t))
        self._rec_row.append(self._offset + box_idx)

    def num_live(self, class_id: int) -> int:
        return int(self.n_live[class_id])

    def num_dead(self, class_id: int) -> int:
        dead = np.concatenate(self._dead) if self._dead else np.zeros(0, np.int64)
        return int((np.concatenate(self._path_class)[dead] == class_id).sum()) if len(dead) else 0

    def _live_pids(self, class_id):
        return self._sint[class_id, :self.n_live[class_id], 2]

    def _gather(self, pids, min_found):
        """Gap-filled ``ActionPath`` of the given path ids with more than ``min_found`` records (linked
        detections), and their classes, per-frame scores and lengths (``_gather_arrays``)."""
        gathered = self._gather_arrays(pids, min_found)
        return gathered.paths(), gathered.classes, gathered.scores, gathered.lengths

    def _gather_arrays(self, pids, min_found):
        """``PathArrays`` of the given path ids with more than ``min_found`` records, in that order, rows
        consecutive; ``_path_frames`` lays out the frames."""
        rec_pid = np.concatenate(self._rec_pid) if self._rec_pid else np.zeros(0, np.int64)
        counts = np.bincount(rec_pid, minlength=self._num_paths)
        pids = pids[counts[pids] > min_found]
        if len(pids) == 0:
            return PathArrays.empty(self.num_classes, self.box_dtype or np.float64, self.score_dtype or np.float64)
        by_path = np.argsort(rec_pid, kind="stable")  # records are in step order within a path
        n = counts[pids]
        recs = by_path[np.repeat(segment_starts(counts)[pids] - segment_starts(n), n) + np.arange(n.sum())]
        found, rows, boxes, lengths = self._path_frames(n, np.concatenate(self._rec_t)[recs],
                                                        np.concatenate(self._rec_row)[recs])
        classes = np.concatenate(self._path_class)[pids]
        all_scores = self._joined(1)[rows]
        scores = all_scores[np.arange(len(rows)), np.repeat(classes, lengths)]
        found_rows = segment_starts(n)
        return PathArrays(self.num_classes, classes, found[found_rows], segment_starts(lengths), lengths, found_rows,
                          n, boxes, scores, all_scores, found)

    def _path_frames(self, n, t, rows):
        """Paths of ``n`` records each (frames ``t``, box rows ``rows``, in path then frame order) -> each
        record's frame, then per path frame its box row and link box, and each path's length. fill_gaps:
        a gap repeats the next detection."""
        repeat = np.diff(t, prepend=t[0] - 1)
        repeat[segment_starts(n)] = 1
        rows = np.repeat(rows, repeat)
        return t, rows, self._joined(0)[rows], np.add.reduceat(repeat, segment_starts(n))

    def paths(self, class_id: int) -> list:
        """Live paths of one class, gaps filled (short paths included); gathers from the whole video."""
        return self._gather(self._live_pids(class_id), 0)[0]

    def running(self) -> dict:
        """Per path id (arrays grown by doubling as paths appear): ``class``, and for the callers that keep
        a running mean of gap-filled scores (``current``, ``tubes.micro.OnlineMicroTubes``) ``sum``,
        ``length`` and ``last_t`` (its latest frame), all zero until they set them."""
        run = self._run
        if self._num_paths > len(run["class"]):
            grow = max(self._num_paths, 2 * len(run["class"])) - len(run["class"])
            for k, v in run.items():
                run[k] = np.concatenate([v, np.zeros(grow, v.dtype)])
        if self._run_chunks < len(self._path_class):
            new = np.concatenate(self._path_class[self._run_chunks:])
            run["class"][self._num_paths - len(new):self._num_paths] = new
            self._run_chunks = len(self._path_class)
        return run

    def current(self) -> tuple:
        """Paths extended at the latest frame, in class order: ``(class_ids, boxes [K, 4] link boxes,
        scores at that frame, mean gap-filled path scores)``.

        The same as reading the last box and score of every ``paths(c)`` (the mean accumulated
        in float64), but the cost per frame does not grow with the video: each path keeps a
        running sum of its gap-filled scores (a gap repeats the next detection, so a detection
        found ``g`` frames after the path's previous one counts ``g`` times).
        """
        run = self.running()
        for t in range(self._run_frames, self.t):  # one chunk of records per frame, one record per path
            pid, row = self._rec_pid[t], self._rec_row[t] - self._frame_start[t]
            gap = np.where(run["length"][pid] > 0, t - run["last_t"][pid], 1)
            run["sum"][pid] += gap * self._class_scores[t][row, run["class"][pid]]
            run["length"][pid] += gap
            run["last_t"][pid] = t
        self._run_frames = self.t
        if self.t == 0:
            return np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0), np.zeros(0)
        pid, row = self._rec_pid[-1], self._rec_row[-1] - self._frame_start[-1]
        order = np.argsort(run["class"][pid], kind="stable")
        pid, row = pid[order], row[order]
        cls = run["class"][pid]
        return cls, self._boxes[-1][row], self._class_scores[-1][row, cls], run["sum"][pid] / run["length"][pid]

    def finish(self) -> list:
        """Final paths per class: live then dead, gaps filled, sorted (``incremental_linking.m``).

        sort_paths: stable descending sort by the mean of each path's 20 highest scores.
        """
        return self.finish_arrays().per_class()

    def finish_arrays(self) -> PathArrays:
        """``finish``'s paths as ``PathArrays``, in class then sorted order."""
        dead = np.concatenate(self._dead) if self._dead else np.zeros(0, np.int64)
        path_class = np.concatenate(self._path_class) if self._path_class else np.zeros(0, np.int64)
        dead_class = path_class[dead]
        pids = np.concatenate([np.concatenate([self._live_pids(c), dead[dead_class == c]]) for c in range(self.num_classes)])
        gathered = self._gather_arrays(pids, self.jumpgap)
        if not len(gathered.classes):
            return gathered
        key = topk_means(gathered.scores, gathered.lengths, 20)
        return gathered.take(np.lexsort((-key, gathered.classes)))  # stable: class, then key, then live-then-dead


def _link_boxes_and_scores(frames, frame_size):
    """All frames' link boxes ``[M, 4]`` and scores ``[M, C+1]`` at once, and frame offsets ``[F+1]``.

    Boxes keep the precision of ``loc`` and scores that of ``scores`` (float32 when every frame's
    is single, else float64), as the Matlab computes in the precision its files hold. A frame
    of another precision is converted first (one precision per video). A ``FrameList`` gives its flat
    arrays as they are.
    """
    if isinstance(frames, FrameList):
        loc, scores, offsets = frames.flat
        return loc_to_link_boxes(loc, frame_size), scores, offsets
    offsets = np.cumsum([0] + [len(loc) for loc, _ in frames])
    locs = [np.asarray(loc) for loc, _ in frames]
    loc_dtype = np.float32 if all(loc.dtype == np.float32 for loc in locs) else np.float64
    boxes = loc_to_link_boxes(np.concatenate([loc.reshape(-1, 4).astype(loc_dtype, copy=False) for loc in locs]), frame_size)
    width = max((np.shape(s)[1] for _, s in frames if np.ndim(s) == 2), default=1)
    for f, (loc, s) in enumerate(frames):
        if len(loc) and np.shape(s) != (len(loc), width):
            raise ValueError(f"frame {f + 1}: scores have shape {np.shape(s)}, expected ({len(loc)}, {width}) as other frames")
    score_dtype = np.float32 if all(np.asarray(s).dtype == np.float32 for _, s in frames) else np.float64
    scores = np.concatenate([np.asarray(s, score_dtype).reshape(-1, width) for _, s in frames])
    return boxes, scores, offsets


def link_frames(frames: list, num_classes: int, frame_size: tuple = UCF_FRAME_SIZE, iou_thresh: float = 0.1,
                jumpgap: int = 3, extra_filter: FilterConfig | None = None,
                link_score: float = LINKING_FILTER.score_thresh) -> tuple:
    """One video's per-frame ``(loc, scores)`` -> ``(paths per class, extra rows)``: ``link_video``'s paths as
    ``ActionPath`` lists."""
    paths, rows = link_video(frames, num_classes, frame_size, iou_thresh, jumpgap, extra_filter, link_score)
    return paths.per_class(), rows


def link_video(frames: list, num_classes: int, frame_size: tuple = UCF_FRAME_SIZE, iou_thresh: float = 0.1,
               jumpgap: int = 3, extra_filter: FilterConfig | None = None,
               link_score: float = LINKING_FILTER.score_thresh) -> tuple:
    """One video's per-frame ``(loc, scores)`` -> ``(PathArrays, extra rows)``.

    ``loc`` normalised ``[N, 4]``, ``scores`` ``[N, C+1]`` background first (both formats'
    reader output). With ``extra_filter`` (e.g. frameAp.m's ``dofilter``), the same pass also
    gives that filter's picks as rows ``[frame, class, score, x1, y1, x2, y2]`` (link boxes),
    per frame in class then pick order, in the boxes' precision (frameAp.m's IoU is computed
    in it); otherwise ``None``.
    """
    linker = OnlineLinker(num_classes, iou_thresh, jumpgap, linking_filter(link_score))
    cfgs = (linker.filter_cfg,) if extra_filter is None else (linker.filter_cfg, extra_filter)
    if not any(len(loc) for loc, _ in frames):  # no video, or no detection in any frame: no paths
        return linker.finish_arrays(), (None if extra_filter is None else np.zeros((0, 7)))
    boxes, scores, offsets = _link_boxes_and_scores(frames, frame_size)
    if scores.shape[1] != num_classes + 1:
        raise ValueError(f"scores have {scores.shape[1]} columns, expected {num_classes + 1} (background first)")
    class_scores = np.ascontiguousarray(scores[:, 1:])
    picks = filter_frames_padded(boxes, class_scores, offsets, cfgs)
    linker.link_all(boxes, class_scores, offsets, picks[0])
    return linker.finish_arrays(), None if extra_filter is None else _pick_rows(picks[-1], offsets, boxes, class_scores)


def _pick_rows(picks, offsets, boxes, class_scores):
    """Rows ``[frame, class, score, x1, y1, x2, y2]`` of the frames' picks ``[F, C, k]`` (-1 padded), per frame
    in class then pick order, in the boxes' precision."""
    return _pick_rows_compiled(np.ascontiguousarray(picks, np.int64), np.asarray(offsets, np.int64), boxes, class_scores)


@numba.njit(cache=True)
def _pick_rows_compiled(picks, offsets, boxes, class_scores):
    out = np.empty(((picks >= 0).sum(), 7), boxes.dtype)
    n = 0
    for f in range(picks.shape[0]):
        for c in range(picks.shape[1]):
            for j in range(picks.shape[2]):
                if picks[f, c, j] >= 0:
                    row = offsets[f] + picks[f, c, j]
                    out[n, 0], out[n, 1], out[n, 2] = f, c, class_scores[row, c]
                    out[n, 3:] = boxes[row]
                    n += 1
    return out


def filter_rows(frames: list, num_classes: int, frame_size: tuple = UCF_FRAME_SIZE,
                cfg: FilterConfig = FRAME_AP_FILTER) -> np.ndarray:
    """``link_frames``' extra rows without the linking: ``cfg``'s ``dofilter`` picks of every frame of
    ``frames`` (per-frame ``(loc, scores)``) as rows ``[frame, class, score, x1, y1, x2, y2]`` (link boxes)."""
    if not any(len(loc) for loc, _ in frames):
        return np.zeros((0, 7))
    boxes, scores, offsets = _link_boxes_and_scores(frames, frame_size)
    if scores.shape[1] != num_classes + 1:
        raise ValueError(f"scores have {scores.shape[1]} columns, expected {num_classes + 1} (background first)")
    class_scores = scores[:, 1:]
    return _pick_rows(filter_frames_padded(boxes, class_scores, offsets, (cfg,))[0], offsets, boxes, class_scores)


class OnlineTubes:
    """Online linking of per-frame detections (``OnlineLinker``), with the frame size's link boxes."""

    def __init__(self, num_classes: int, frame_size: tuple, iou_thresh: float = 0.1, jumpgap: int = 3,
                 link_score: float = LINKING_FILTER.score_thresh):
        self.linker = OnlineLinker(num_classes, iou_thresh, jumpgap, linking_filter(link_score))
        self.frame_size = frame_size

    def update(self, loc: np.ndarray, scores: np.ndarray) -> None:
        self.linker.update(loc_to_link_boxes(np.asarray(loc).reshape(-1, 4), self.frame_size), np.asarray(scores))

    def current(self, min_score: float = 0.0) -> list:
        """Live paths extended at the latest frame: ``[(class_id, box x1 y1 x2 y2 0-based pixels,
        score at this frame, mean path score)]``, those with a mean below ``min_score`` left out."""
        classes, boxes, scores, means = self.linker.current()
        return [(int(c), b - 1, float(s), float(m))
                for c, b, s, m in zip(classes, boxes, scores, means) if m >= min_score]
