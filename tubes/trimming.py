"""Temporal trimming of action paths into action tubes, ported from ROAD.

The originals are gurkirt/realtime-action-detection ``online-tubes/gentube/``:
``PARactionPathSmoother.m`` with ``dpEM_max.m`` (a max-sum Viterbi over class labels,
a penalty ``alpha`` per label change) and ``convert2eval.m`` (tube scores and the
minimum length). Boxes stay in the link convention of ``tubes.boxes``.
"""
from dataclasses import dataclass

import numba
import numpy as np

from .linking import PathArrays, segment_starts, topk_means

SCORE_OFFSET = 20.0  # PARactionPathSmoother.m: M = M + 20
MIN_NUM_FRAMES = 8   # I01onlineTubes.m: min_num_frames = 8 (kept when te - ts > 8)
TOPK = 40            # I01onlineTubes.m: topk = 40
KTHRESH = 0.0        # I01onlineTubes.m: kthresh = 0.0


@dataclass
class ActionTube:
    """A trimmed tube: class_id 0-based, score, start 0-based first frame, boxes ``[n, 4]`` link boxes."""
    class_id: int
    score: float
    start: int
    boxes: np.ndarray

    @property
    def end(self) -> int:
        return self.start + len(self.boxes)


@dataclass
class TubeArrays:
    """A video's tubes as flat arrays (what a worker sends back: a few arrays instead of an object per tube):
    tube ``i`` of class ``classes[i]`` with score ``scores[i]`` from frame ``starts[i]``, its ``lengths[i]``
    boxes consecutive in ``boxes`` ``[R, 4]``. ``tubes`` gives the ``ActionTube`` list."""
    classes: np.ndarray
    scores: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    boxes: np.ndarray

    def tubes(self) -> list:
        ends = np.cumsum(self.lengths).tolist()
        return [ActionTube(c, s, start, self.boxes[e - n:e]) for c, s, start, n, e in
                zip(self.classes.tolist(), self.scores.tolist(), self.starts.tolist(), self.lengths.tolist(), ends)]


@numba.njit(cache=True)
def _viterbi(u, starts, lengths, alpha):
    """``dpEM_max.m`` for the paths stacked in ``u`` ``[sum L, C]`` (the Matlab's ``M'``, path ``i`` at
    rows ``starts[i]:starts[i] + lengths[i]``); labels ``[sum L]`` (``_viterbi_rows``)."""
    return _viterbi_rows(u, 0.0, starts, lengths, starts, len(u), alpha)


@numba.njit(cache=True)
def _viterbi_rows(scores, offset, starts, lengths, out_starts, out_len, alpha):
    """``dpEM_max.m`` for the paths at rows ``starts[i]:starts[i] + lengths[i]`` of ``scores`` ``[R, C]``, with
    the unaries ``M = scores + offset`` (in the scores' precision, then double); labels ``[out_len]``, path
    ``i``'s at ``out_starts[i]`` on.

    Each frame's label score is ``M + max_k(D_k - alpha * (k != i))`` with the first ``k`` on ties;
    the traceback starts from the first best label of the last frame. With ``a = D - alpha``
    and ``j`` its first argmax, the max over ``k`` is ``max(D_i, a_j)``: label i keeps
    itself when ``D_i > a_j``, or ``D_i == a_j`` and ``i <= j`` (i = j always keeps itself,
    since ``a_k <= D_j`` for every k), else comes from j. These are exactly the numbers and
    choices of the full ``C x C`` comparison.
    """
    num_classes = scores.shape[1]
    labels = np.empty(out_len, np.int64)
    d = np.empty(num_classes)
    longest = lengths.max() if len(lengths) else 0
    before = np.empty((longest, num_classes))  # D entering each frame
    best = np.empty(longest)
    best_idx = np.empty(longest, np.int64)
    for s, length, o in zip(starts, lengths, out_starts):
        if length == 0:
            continue
        d[:] = 0
        for t in range(length):
            before[t] = d
            j = 0
            for i in range(1, num_classes):
                if d[i] - alpha > d[j] - alpha:
                    j = i
            a = d[j] - alpha
            best[t], best_idx[t] = a, j
            for i in range(num_classes):
                d[i] = np.float64(scores[s + t, i] + offset) + max(d[i], a)
        i = np.argmax(d)
        labels[o + length - 1] = i
        for t in range(length - 1, 0, -1):
            di = before[t, i]
            if not (di > best[t] or (di == best[t] and i <= best_idx[t])):
                i = best_idx[t]
            labels[o + t - 1] = i
    return labels


def trim_paths(paths_per_class: list, alpha: float, min_num_frames: int = MIN_NUM_FRAMES, topk: int = TOPK,
               kthresh: float = KTHRESH) -> list:
    """Paths of one video -> action tubes, in the Matlab's order (class, path, segment).

    ``PARactionPathSmoother.m``: the path's C class scores + 20 go to the Viterbi;
    only segments labelled with the path's own class become tubes.
    ``convert2eval.m``: the score is the mean of the ``topk`` highest class scores of
    the path inside the segment; kept if score > kthresh and ``te - ts > min_num_frames``.
    A path of ``min_num_frames + 1`` frames or fewer has no such segment and is skipped.
    """
    return trim_video(paths_per_class, (alpha,), min_num_frames, topk, kthresh)[alpha]


def trim_video(paths_per_class, alphas: tuple, min_num_frames: int = MIN_NUM_FRAMES, topk: int = TOPK,
               kthresh: float = KTHRESH) -> dict:
    """``{alpha: trim_paths(paths_per_class, alpha)}``, the paths gathered once for all alphas
    (``paths_per_class``: ``ActionPath`` lists per class, or their ``PathArrays``)."""
    return {alpha: tubes.tubes()
            for alpha, tubes in trim_arrays(paths_per_class, alphas, min_num_frames, topk, kthresh).items()}


def trim_arrays(paths, alphas: tuple, min_num_frames: int = MIN_NUM_FRAMES, topk: int = TOPK,
                kthresh: float = KTHRESH) -> dict:
    """``trim_video`` as ``{alpha: TubeArrays}``, of ``PathArrays`` (or ``ActionPath`` lists per class)."""
    for alpha in alphas:
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
    if not isinstance(paths, PathArrays):
        paths = PathArrays.from_paths(paths)
    keep = np.flatnonzero(paths.lengths > min_num_frames + 1)
    lengths = paths.lengths[keep]
    path_start = segment_starts(lengths)
    # each kept path's rows, consecutive, in the paths' order
    rows = np.repeat(paths.rows[keep] - path_start, lengths) + np.arange(lengths.sum())
    scores = paths.scores[rows]
    path_of = np.repeat(np.arange(len(keep)), lengths)
    path_class = paths.classes[keep][path_of]
    first = np.zeros(len(path_of), bool)
    first[path_start] = True
    last = np.roll(first, -1)
    out = {}
    for alpha in alphas:
        # PARactionPathSmoother.m: M = M + 20 in the scores' precision; dpEM_max.m's D is double.
        labels = _viterbi_rows(paths.all_scores, paths.all_scores.dtype.type(SCORE_OFFSET), paths.rows[keep], lengths,
                               path_start, len(rows), float(alpha))
        own = labels == path_class
        starts = np.flatnonzero(own & (first | ~np.roll(own, 1)))
        ends = np.flatnonzero(own & (last | ~np.roll(own, -1)))
        long = ends - starts > min_num_frames
        starts, ends = starts[long], ends[long]
        seg_len = ends - starts + 1
        seg_rows = np.repeat(starts - segment_starts(seg_len), seg_len) + np.arange(seg_len.sum())
        seg_scores = topk_means(scores[seg_rows], seg_len, topk)
        kept = seg_scores > kthresh
        k = path_of[starts]
        tube_rows = rows[seg_rows[np.repeat(kept, seg_len)]]
        out[alpha] = TubeArrays(paths.classes[keep][k][kept], seg_scores[kept],
                                (paths.starts[keep][k] + starts - path_start[k])[kept], seg_len[kept],
                                paths.boxes[tube_rows])
    return out
