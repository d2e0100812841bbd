"""Temporal trimming of action paths into action tubes, ported from ROAD.

The originals are gurkirt/realtime-action-detection ``online-tubes/gentube/``:
``PARactionPathSmoother.m`` with ``dpEM_max.m`` (a max-sum Viterbi over class labels,
a penalty ``alpha`` per label change) and ``convert2eval.m`` (tube scores and the
minimum length). Boxes stay in the link convention of ``utils.linking``.
"""
from dataclasses import dataclass

import numpy as np

from .linking import seq_mean

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
    def end(self):
        return self.start + len(self.boxes)


def viterbi_labels(unaries, alpha):
    """``dpEM_max.m`` for many paths at once; returns one label array per path.

    unaries: list of ``[L, C]`` arrays (the Matlab's ``M'``). Each frame's label score
    is ``M + max_k(D_k - alpha * (k != i))`` with the first ``k`` on ties; the traceback
    starts from the first best label of the last frame. Paths are batched by length;
    the max over ``k`` is taken as ``max(D_i, best of D_k - alpha, k != i)`` with the
    same tie rule, which gives exactly the numbers of the full ``C x C`` comparison.
    """
    if not unaries:
        return []
    lengths = np.array([len(u) for u in unaries])
    order = np.argsort(-lengths, kind="stable")
    num, lmax, num_classes = len(unaries), int(lengths.max()), unaries[0].shape[1]
    u = np.zeros((num, lmax, num_classes))
    for k, p in enumerate(order):
        u[k, :lengths[p]] = unaries[p]
    active = (lengths[order][None, :] > np.arange(lmax)[:, None]).sum(1)
    phi = np.zeros((num, lmax, num_classes), np.int16)
    d = np.zeros((num, num_classes))
    cols = np.arange(num_classes)
    for t in range(lmax):
        n = active[t]
        dn = d[:n]
        rows = np.arange(n)
        a = dn - alpha
        j1 = a.argmax(1)
        a1 = a[rows, j1]
        if num_classes > 1:
            a[rows, j1] = -np.inf
            j2 = a.argmax(1)
            a2 = a[rows, j2]
        else:
            j2, a2 = j1, np.full(n, -np.inf)
        other = np.repeat(a1[:, None], num_classes, 1)
        other_idx = np.repeat(j1[:, None], num_classes, 1)
        other[rows, j1] = a2
        other_idx[rows, j1] = j2
        own = (dn > other) | ((dn == other) & (cols < other_idx))
        phi[:n, t] = np.where(own, cols, other_idx)
        d[:n] = u[:n, t] + np.where(own, dn, other)
    labels = np.zeros((num, lmax), np.int64)
    ends = lengths[order] - 1
    labels[np.arange(num), ends] = d.argmax(1)
    for t in range(lmax - 1, 0, -1):
        n = active[t]
        labels[:n, t - 1] = phi[np.arange(n), t, labels[:n, t]]
    out = [None] * num
    for k, p in enumerate(order):
        out[p] = labels[k, :lengths[p]]
    return out


def label_segments(labels, class_id):
    """``extract_action``: ``(ts, te)`` inclusive 0-based runs where ``labels == class_id``."""
    m = np.concatenate([[False], labels == class_id, [False]])
    edges = np.flatnonzero(m[1:] != m[:-1])
    return list(zip(edges[::2].tolist(), (edges[1::2] - 1).tolist()))


def trim_paths(paths_per_class, alpha, min_num_frames=MIN_NUM_FRAMES, topk=TOPK, kthresh=KTHRESH):
    """Paths of one video -> action tubes, in the Matlab's order (class, path, segment).

    ``PARactionPathSmoother.m``: the path's C class scores + 20 go to the Viterbi;
    only segments labelled with the path's own class become tubes.
    ``convert2eval.m``: the score is the mean of the ``topk`` highest class scores of
    the path inside the segment; kept if score > kthresh and ``te - ts > min_num_frames``.
    """
    flat = [(c, p) for c, paths in enumerate(paths_per_class) for p in paths]
    labels = viterbi_labels([p.all_scores + SCORE_OFFSET for _, p in flat], alpha)
    tubes = []
    for (c, path), lab in zip(flat, labels):
        for ts, te in label_segments(lab, c):
            score = seq_mean(np.sort(path.scores[ts:te + 1])[::-1][:topk])
            if score > kthresh and te - ts > min_num_frames:
                tubes.append(ActionTube(c, score, path.start + ts, path.boxes[ts:te + 1]))
    return tubes


def link_and_trim(frames, num_classes, alphas, frame_size=(320, 240), iou_thresh=0.1, jumpgap=3):
    """One video, per-frame ``(loc, scores)`` -> ``(paths per class, {alpha: [ActionTube]})``.

    ``loc`` normalised ``[N, 4]``, ``scores`` ``[N, C+1]`` background first (both formats' reader output).
    """
    from .linking import OnlineLinker, loc_to_link_boxes
    linker = OnlineLinker(num_classes, iou_thresh, jumpgap)
    for loc, scores in frames:
        linker.update(loc_to_link_boxes(loc, frame_size), scores)
    paths = linker.finish()
    return paths, {alpha: trim_paths(paths, alpha) for alpha in alphas}
