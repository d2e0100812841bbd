"""Literal ports of the Matlab that only the tests use, as oracles for the vectorised code in tubes/, and
conveniences over tubes/ that only the tests call."""
import numpy as np

from data.annotations import UCF_FRAME_SIZE
from tubes.ap import pr_curve, voc_ap
from tubes.boxes import EPS
from tubes.linking import LINKING_FILTER, FilterConfig, filter_frame_padded, link_frames, segment_starts
from tubes.trimming import _viterbi, trim_video
from tubes.video_map import video_ap


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


def label_segments(labels, class_id):
    """``extract_action``: ``(ts, te)`` inclusive 0-based runs where ``labels == class_id``."""
    m = np.concatenate([[False], labels == class_id, [False]])
    edges = np.flatnonzero(m[1:] != m[:-1])
    return list(zip(edges[::2].tolist(), (edges[1::2] - 1).tolist()))


def link_and_trim(frames, num_classes, alphas, frame_size=UCF_FRAME_SIZE, iou_thresh=0.1, jumpgap=3):
    """One video, per-frame ``(loc, scores)`` -> ``(paths per class, {alpha: [ActionTube]})``."""
    paths, _ = link_frames(frames, num_classes, frame_size, iou_thresh, jumpgap)
    return paths, trim_video(paths, alphas)


def viterbi_labels(unaries: list, alpha: float) -> list:
    """``dpEM_max.m`` for many paths through the compiled ``_viterbi``: unaries, a list of ``[L, C]``
    arrays (the Matlab's ``M'``); alpha >= 0. Returns one label array per path."""
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if not unaries:
        return []
    lengths = np.array([len(u) for u in unaries], np.int64)
    labels = _viterbi(np.concatenate(unaries).astype(np.float64), segment_starts(lengths), lengths, float(alpha))
    return np.split(labels, np.cumsum(lengths)[:-1])


def filter_frame(boxes: np.ndarray, class_scores: np.ndarray, cfg: FilterConfig = LINKING_FILTER) -> list:
    """``filter_frame_padded`` for one config as a list of C index arrays."""
    picks = filter_frame_padded(boxes, class_scores, (cfg,))[0]
    return [row[row >= 0] for row in picks]


def average_precision(scores: np.ndarray, is_tp: np.ndarray, num_gt: float) -> float:
    """VOC AP of one class from per-detection scores and TP flags; NaN -> 0 as the Matlab."""
    ap = voc_ap(*pr_curve(scores, is_tp, num_gt))
    return 0.0 if np.isnan(ap) else ap


def assert_paths_equal_matlab(paths_by_video: dict, expected: dict, num_classes: int) -> int:
    """Each video's paths per class (``{name: paths}``) against a fixture's Octave ``paths``; the count compared."""
    count = 0
    for name, paths in paths_by_video.items():
        for c in range(num_classes):
            want = expected["paths"][name][c]
            assert len(paths[c]) == len(want), (name, c)
            for got, ref in zip(paths[c], want):
                assert (got.start + 1, got.end) == (ref["start"], ref["end"])
                np.testing.assert_array_equal(got.boxes, ref["boxes"])
                np.testing.assert_array_equal(got.scores, ref["scores"])
                np.testing.assert_array_equal(got.all_scores, np.asarray(ref["allScores"])[:, :num_classes])
                count += 1
    return count


def assert_tubes_equal_matlab(tubes_by_video: dict, expected: dict, alphas) -> int:
    """Each video's ``{alpha: tubes}`` (``{name: ...}``) against a fixture's Octave ``tubes``; the count compared."""
    count = 0
    for alpha in alphas:
        for name, tubes in tubes_by_video.items():
            want = expected["tubes"][f"{alpha:g}"][name]
            assert len(tubes[alpha]) == len(want), (alpha, name)
            for got, ref in zip(tubes[alpha], want):
                assert (got.class_id + 1, got.start + 1, got.end) == (ref["class"], ref["sf"], ref["ef"])
                assert got.score == ref["score"]
                xywh = np.concatenate([got.boxes[:, :2], got.boxes[:, 2:] - got.boxes[:, :2]], 1)
                np.testing.assert_array_equal(xywh, ref["boxes"])
                count += 1
    return count


def assert_video_map_equal_matlab(gts: list, tubes_by_video: dict, expected: dict, num_classes: int, alphas) -> None:
    """video-mAP, mean IoU, accuracy and per-class AP at every threshold and alpha against a fixture's
    Octave ``results`` (the issue asks for 1e-4; the port is exact up to the last bits of a sum's order)."""
    rows = np.asarray(expected["results"]["rows"])
    aps = np.asarray(expected["results"]["aps"])
    for alpha in alphas:
        results = video_ap(gts, {n: t[alpha] for n, t in tubes_by_video.items()}, num_classes)
        sel = rows[:, 0] == alpha
        assert len(results) == sel.sum() == 11
        for res, row, ap in zip(results, rows[sel], aps[sel]):
            assert abs(res.iou - row[1]) < 1e-9
            assert abs(res.mAP - row[2]) < 1e-12
            assert abs(res.mean_iou - row[3]) < 1e-12
            assert abs(res.accuracy - row[4]) < 1e-12
            np.testing.assert_allclose(res.ap, ap, rtol=0, atol=1e-12)
