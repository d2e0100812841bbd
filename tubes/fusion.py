"""Late fusion of two streams' per-frame detections before the linking, as ROAD's
``online-tubes/actionpath/fusedActionPaths.m`` (driven by ``I02genFusedTubes.m``).

Per frame and class ``a`` (``fuseboxes``), with each stream first filtered as for the linking
(``dofilter``: class score > 0.001, top 50, NMS 0.45, top 10):

- ``union`` (Matlab ``cat``): both streams' kept boxes together (base first), NMS 0.45, top 10.
- ``boost`` (Matlab ``nwsum-plus``): each kept base box, in order, takes the flow box it overlaps
  most (first maximum); if that IoU is at least ``fuse_iou`` (0.25), the base box's score row
  becomes ``(s_base + s_flow * iou) / sum(...)`` (the sum over all C+1 columns, background
  included) and the flow box counts as covered; the uncovered flow boxes are appended; NMS 0.45,
  top 10.
- ``mean``: the mean of the two streams' score rows (same priors: the files must align row by
  row), on the base boxes; then the usual ``dofilter``.

Details of the original that decide the numbers, reproduced here (``fixed=True`` mends the first):

- boost's covered test is ``isempty(ismember(coveredboxes, maxind))``, true only while nothing is
  covered: per frame and class only the first base box that reaches ``fuse_iou`` is boosted. The
  append test ``~ismember(coveredboxes, i)`` is empty (false) while nothing is covered: when no
  base box was boosted (no overlap, or no base box at all), no flow box is appended, and the
  fused frame is the base stream's alone. With ``fixed``: every base box whose best flow box is
  still uncovered is boosted, and every uncovered flow box is appended.
- boost's IoU: widths ``x2 - x1 + 1``, Matlab's ``rectint``, ``inters / (union + 0.001)``.
- boxes of both streams: ``loc * [320 240 320 240]``, x1, y1 clipped at 0 and x2, y2 at 319, 239,
  then ``+1`` (``readDetections``; here the frame size of the detections, 320 x 240 on UCF101-24).
- the boost and union candidates' NMS is ``nms.m`` (areas without ``+1``, ties: the later row first).

Arithmetic: both streams' boxes and scores in one precision (float32 if any of them is single,
as the Matlab's mixed operations give single; float64 otherwise). The Matlab computes boost's
IoU in the precision of ``[boxes scores]`` and the new score row in that of the scores; the two
differ only for single boxes with double scores, where this port is not bit-exact.

Offline (``link_fused``, build_tubes.py) and online (``OnlineFusedTubes``, demo.py) run the same
per-frame step, ``link_fused_frame``.

The fusion types are the records of ``LATE_FUSIONS``, which the flags (``--late_fusion``), test.py,
demo.py, pipeline.py and ``tubes.runner`` read: a new type is one ``LateFusion`` entry and its function.
"""
from dataclasses import dataclass
from typing import Callable

import numba
import numpy as np

from data.annotations import UCF_FRAME_SIZE

from .boxes import loc_to_link_boxes
from .linking import (LINKING_FILTER, FilterConfig, OnlineLinker, OnlineTubes, _link_boxes_and_scores, _pick_rows,
                      filter_frame_padded, filter_frames_padded, linking_filter, work_dtype)

FUSE_IOU = 0.25  # I02genFusedTubes.m: fuseiouth for nwsum-plus
BOOST, UNION = 0, 1
ONE_STREAM_OUTPUTS = ("base", "fuse")  # test.py --fuse_weights: each model's own detections, DET_DIR/base and /fuse


@dataclass(frozen=True)
class LateFusion:
    """One late fusion type.

    ``per_frame``: it fuses the two streams' detections frame by frame before the linking; ``fuse`` is
    ``(base_boxes [N, 4], base_scores [N, C+1], top_boxes, top_scores, fuse_iou, filter_cfg, fixed) ->
    (boxes [M, 4], class_scores [M, C], picks [C, k])``, as ``fuse_frame`` returns. Otherwise it fuses
    the two networks' scores prior by prior, ``fuse(base_scores, top_scores) -> scores`` ``[..., A, C+1]``
    (numpy or torch: plain arithmetic) on the base model's boxes: test.py --fuse_weights writes that
    stream as ``DET_DIR/<name>``, linked as one stream, and build_tubes.py also fuses two streams whose
    files align row by row. ``link_modes``: the ``--link`` modes it allows (the first where the user's
    is not). ``options``: the ``TubeConfig`` fields it reads beyond the streams (kept in results.json).
    ``filtered``: its per-frame ``fuse`` starts from each stream's linking filter (``dofilter``) and also takes
    them made, ``picks=(base [C, k], top [C, k])``: a whole video's filtering at once (``fuse_video``).
    """
    name: str                   # ours: --late_fusion NAME
    alias: str                  # the original's name (I02genFusedTubes.m), also accepted
    per_frame: bool
    fuse: Callable
    link_modes: tuple = ("frame",)
    options: tuple = ()
    help: str = ""
    filtered: bool = False

    @property
    def streams(self) -> tuple:
        """The test.py --fuse_weights outputs it reads (build_tubes.py: --det_dir [--fuse_det_dir])."""
        return ONE_STREAM_OUTPUTS if self.per_frame else (self.name,)


def late_fusion(text: str) -> LateFusion:
    """The ``LATE_FUSIONS`` record of our name or the original's, any case (ValueError naming the choices)."""
    name = str(text).lower()
    for record in LATE_FUSIONS.values():
        if name in (record.name, record.alias):
            return record
    raise ValueError(f"unknown fusion {text!r}: expected one of {', '.join(fusion_choices())}")


def fusion_name(text: str) -> str:
    """Our name of a fusion type from ours or the original's, any case (``cat`` -> ``union``)."""
    return late_fusion(text).name


def fusion_choices() -> tuple:
    """The flag's choices: our names, then the original's."""
    names = tuple(LATE_FUSIONS)
    return names + tuple(dict.fromkeys(f.alias for f in LATE_FUSIONS.values() if f.alias not in names))


def fusion_streams() -> tuple:
    """test.py --fuse_weights's outputs (sub-folders of DET_DIR): each model's own, then each prior-by-prior fusion."""
    return ONE_STREAM_OUTPUTS + tuple(f.name for f in LATE_FUSIONS.values() if not f.per_frame)


def prefused(stream: str) -> str | None:
    """The fusion that the test.py --fuse_weights output ``stream`` already applied (``mean``), else None."""
    record = LATE_FUSIONS.get(stream)
    return None if record is None or record.per_frame else record.name


LINK_NOTES = {"micro": " links one stream's micro-tubes"}


def check_link(fusion: str, link: str) -> None:
    """ValueError unless ``--late_fusion fusion`` allows ``--link link``; the message names the alternatives."""
    record = late_fusion(fusion)
    if link in record.link_modes:
        return
    others = [f.name for f in LATE_FUSIONS.values() if link in f.link_modes]
    what = "fuses per frame" if record.per_frame else f"allows --link {' or '.join(record.link_modes)}"
    raise ValueError(f"--link {link}{LINK_NOTES.get(link, '')}; --late_fusion {record.name} {what} (use --link "
                     f"{record.link_modes[0]}" + (f", or --late_fusion {' or '.join(others)})" if others else ")"))


@numba.njit(cache=True)
def _best_overlap(box, others, one, plus):
    """First maximum of ``fusedActionPaths.m`` ``inters_union`` of one x1 y1 x2 y2 box with ``others``."""
    w0, h0 = box[2] - box[0] + one, box[3] - box[1] + one
    best, arg = -one, -1
    for j in range(len(others)):
        b = others[j]
        w1, h1 = b[2] - b[0] + one, b[3] - b[1] + one
        dx = min(box[0] + w0, b[0] + w1) - max(box[0], b[0])
        dy = min(box[1] + h0, b[1] + h1) - max(box[1], b[1])
        inter = max(dx, one - one) * max(dy, one - one)
        iou = inter / (w0 * h0 + w1 * h1 - inter + plus)
        if arg < 0 or iou > best:
            best, arg = iou, j
    return best, arg


@numba.njit(cache=True)
def _nms_order(keys):
    """``nms.m``'s processing order: score descending, among equal scores the later row first."""
    n = len(keys)
    order = np.arange(n)[::-1].copy()
    # a stable descending sort of the reversed rows puts the later row first on ties
    return order[np.argsort(-keys[order], kind="mergesort")]


@numba.njit(cache=True)
def _nms(boxes, keys, thresh, top):
    """``nms.m`` of ``boxes`` ``[N, 4]`` by ``keys`` ``[N]``; the first ``top`` picks."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept = np.empty(min(top, len(keys)), np.int64)
    n = 0
    for i in _nms_order(keys):
        if n == top:
            break
        keep = True
        for r in range(n):
            j = kept[r]
            w = min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0])
            h = min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1])
            if w > 0 and h > 0 and w * h / (area[j] + area[i] - w * h) > thresh:
                keep = False
                break
        if keep:
            kept[n] = i
            n += 1
    return kept[:n]


@numba.njit(cache=True)
def _fuse(bb, bs, bp, tb, ts, tp, mode, consts, fixed, top):
    """One frame, every class: boost or union of the two streams' ``dofilter`` picks.

    bb, tb ``[N, 4]`` link boxes; bs, ts ``[N, C+1]`` scores in the Matlab's column order (classes,
    then background); bp, tp ``[C, k]`` picks (-1 padded); consts: 1, 0.001, fuse_iou, nms
    threshold in the working precision. Returns boxes ``[M, 4]``, scores ``[M, C+1]`` and picks
    ``[C, top]`` into them (each class's rows in its NMS order).
    """
    num_classes, k = bp.shape
    one, plus, fuse_iou, nms_thresh = consts[0], consts[1], consts[2], consts[3]
    out_b = np.empty((num_classes * top, 4), bb.dtype)
    out_s = np.empty((num_classes * top, bs.shape[1]), bs.dtype)
    picks = np.full((num_classes, top), -1, np.int64)
    m = 0
    for c in range(num_classes):
        nb, nt = 0, 0
        while nb < k and bp[c, nb] >= 0:
            nb += 1
        while nt < k and tp[c, nt] >= 0:
            nt += 1
        cand_b = np.empty((nb + nt, 4), bb.dtype)
        cand_s = np.empty((nb + nt, bs.shape[1]), bs.dtype)
        for i in range(nb):
            cand_b[i], cand_s[i] = bb[bp[c, i]], bs[bp[c, i]]
        n = nb
        covered = np.zeros(nt, np.bool_)
        num_covered = 0
        if mode == BOOST:
            flow = np.empty((nt, 4), bb.dtype)
            for j in range(nt):
                flow[j] = tb[tp[c, j]]
            for i in range(nb):
                if nt == 0:
                    break
                movlp, j = _best_overlap(cand_b[i], flow, one, plus)
                if movlp >= fuse_iou and (not covered[j] if fixed else num_covered == 0):
                    ms = cand_s[i] + ts[tp[c, j]] * movlp
                    total = ms[0]
                    for q in range(1, len(ms)):  # sum(ms), left to right
                        total += ms[q]
                    cand_s[i] = ms / total
                    covered[j] = True
                    num_covered += 1
        for j in range(nt):
            if mode == UNION or (not covered[j] and (fixed or num_covered > 0)):
                cand_b[n], cand_s[n] = tb[tp[c, j]], ts[tp[c, j]]
                n += 1
        kept = _nms(cand_b[:n], cand_s[:n, c].copy(), nms_thresh, top)
        for r in range(len(kept)):
            out_b[m], out_s[m] = cand_b[kept[r]], cand_s[kept[r]]
            picks[c, r] = m
            m += 1
    return out_b[:m], out_s[:m], picks


def fuse_frame(base_boxes: np.ndarray, base_scores: np.ndarray, top_boxes: np.ndarray, top_scores: np.ndarray,
               fusion: str, fuse_iou: float = FUSE_IOU, filter_cfg: FilterConfig = LINKING_FILTER,
               fixed: bool = False) -> tuple:
    """One frame's fused detections for the linking.

    base_boxes, top_boxes ``[N, 4]`` link boxes (``loc_to_link_boxes``); base_scores, top_scores
    ``[N, C+1]``, background first. Returns ``(boxes [M, 4], class_scores [M, C], picks [C, k])``:
    what ``OnlineLinker.link`` takes, ``picks`` listing each class's fused detections in the
    order the linking considers them (-1 padded; a row may serve one class only).
    """
    record = late_fusion(fusion)
    dtype = work_dtype(base_boxes, base_scores, top_boxes, top_scores)
    bb, tb = (np.ascontiguousarray(np.reshape(b, (-1, 4)), dtype) for b in (base_boxes, top_boxes))
    bs, ts = (np.asarray(s, dtype) for s in (base_scores, top_scores))
    if not record.per_frame:
        if bs.shape != ts.shape:
            raise ValueError(f"{record.name} fusion needs the same priors in both streams: scores {bs.shape} and {ts.shape}")
        fused = np.asarray(record.fuse(bs, ts), dtype)[:, 1:]
        return bb, fused, filter_frame_padded(bb, fused, (filter_cfg,))[0]
    if bs.shape[1:] != ts.shape[1:] or bs.ndim != 2 or bs.shape[1] < 2:
        raise ValueError(f"the streams' scores have shapes {bs.shape} and {ts.shape}, expected [N, C+1] of the same C")
    return record.fuse(bb, bs, tb, ts, fuse_iou, filter_cfg, fixed)


def _fuse_kept(mode: int, bb: np.ndarray, bs: np.ndarray, tb: np.ndarray, ts: np.ndarray, fuse_iou: float,
               filter_cfg: FilterConfig, fixed: bool, picks: tuple | None = None) -> tuple:
    """Boost or union (``mode``) of each stream's ``dofilter`` picks (``picks``, or made here); ``fuse_frame``'s
    arguments and result."""
    num_classes = bs.shape[1] - 1
    if picks is None:
        picks = (filter_frame_padded(b, s[:, 1:], (filter_cfg,))[0] for b, s in ((bb, bs), (tb, ts)))
    bp, tp = (np.ascontiguousarray(p, np.int64).reshape(num_classes, -1) for p in picks)
    # the Matlab's column order (classes, then background) for the renormalising sum's order
    consts = np.array([1, 0.001, fuse_iou, filter_cfg.nms_thresh], bb.dtype)
    boxes, scores, picks = _fuse(bb, np.ascontiguousarray(np.roll(bs, -1, 1)), bp, tb,
                                 np.ascontiguousarray(np.roll(ts, -1, 1)), tp, mode, consts, bool(fixed),
                                 int(filter_cfg.post_nms_topk))
    return boxes, scores[:, :-1], picks


def boost(bb, bs, tb, ts, fuse_iou, filter_cfg, fixed, picks=None):
    """``nwsum-plus``: base boxes boosted by the flow boxes they overlap, the others appended (module doc)."""
    return _fuse_kept(BOOST, bb, bs, tb, ts, fuse_iou, filter_cfg, fixed, picks)


def union(bb, bs, tb, ts, fuse_iou, filter_cfg, fixed, picks=None):
    """``cat``: both streams' kept boxes together (module doc)."""
    return _fuse_kept(UNION, bb, bs, tb, ts, fuse_iou, filter_cfg, fixed, picks)


def mean_scores(base_scores, top_scores):
    """``mean``, prior by prior: fusedActionPaths.m ``(topScores + baseScores)/2.0``."""
    return (top_scores + base_scores) / 2


# The fusion types (LateFusion), by our name; the original's names are their aliases.
LATE_FUSIONS = {f.name: f for f in (
    LateFusion("boost", "nwsum-plus", True, boost, options=("fuse_iou", "fuse_fixed"),
               help="each base box boosted by the flow box it overlaps most", filtered=True),
    LateFusion("union", "cat", True, union, help="both streams' boxes together", filtered=True),
    LateFusion("mean", "mean", False, mean_scores, link_modes=("frame", "micro"),
               help="the streams' scores averaged prior by prior"),
)}


def first_unaligned(base_frames: list, top_frames: list) -> int | None:
    """0-based first frame where the two streams' row counts differ (mean fusion needs the same priors), or None."""
    for f, ((loc_b, _), (loc_t, _)) in enumerate(zip(base_frames, top_frames)):
        if len(loc_b) != len(loc_t):
            return f
    return None


def _stream(frames, num_classes, frame_size):
    """All frames' link boxes and scores ``[M, C+1]`` (empty frames of any shape allowed) and offsets."""
    frames = [(loc, s if len(loc) else np.zeros((0, num_classes + 1), np.asarray(s).dtype)) for loc, s in frames]
    if not any(len(loc) for loc, _ in frames):
        return np.zeros((0, 4)), np.zeros((0, num_classes + 1)), np.zeros(len(frames) + 1, np.int64)
    boxes, scores, offsets = _link_boxes_and_scores(frames, frame_size)
    if scores.shape[1] != num_classes + 1:
        raise ValueError(f"scores have {scores.shape[1]} columns, expected {num_classes + 1} (background first)")
    return boxes, scores, offsets


def link_fused_frame(linker: OnlineLinker, base_boxes: np.ndarray, base_scores: np.ndarray, top_boxes: np.ndarray,
                     top_scores: np.ndarray, fusion: str, fuse_iou: float = FUSE_IOU, fixed: bool = False) -> tuple:
    """One frame of late fusion and linking, offline (``link_fused``) and online (``OnlineFusedTubes``):
    ``fuse_frame`` of the two streams (link boxes ``[N, 4]``, scores ``[N, C+1]``) with the linker's
    filter, then ``linker.link``. Returns ``fuse_frame``'s ``(boxes, class_scores, picks)``."""
    fused = fuse_frame(base_boxes, base_scores, top_boxes, top_scores, fusion, fuse_iou, linker.filter_cfg, fixed)
    linker.link(*fused)
    return fused


def link_fused(base_frames: list, top_frames: list, num_classes: int, fusion: str, frame_size: tuple = UCF_FRAME_SIZE,
               fuse_iou: float = FUSE_IOU, iou_thresh: float = 0.1, jumpgap: int = 3,
               link_score: float = LINKING_FILTER.score_thresh, fixed: bool = False) -> tuple:
    """One video's two streams of per-frame ``(loc, scores)`` -> ``(paths per class, fused rows)``.

    As ``link_frames`` for one stream (same inputs per stream, same linking), with each frame
    fused first (``fuse_frame``). The rows are the fused detections the linking consumed,
    ``[frame, class, score, x1, y1, x2, y2]`` (link boxes), for the frame-mAP of the fused stream.
    The streams must have the same number of frames (ValueError naming the counts).
    """
    if len(base_frames) != len(top_frames):
        raise ValueError(f"the streams have {len(base_frames)} and {len(top_frames)} frames")
    record = late_fusion(fusion)
    if not record.per_frame and (f := first_unaligned(base_frames, top_frames)) is not None:
        raise ValueError(f"frame {f + 1}: {len(base_frames[f][0])} and {len(top_frames[f][0])} detections; "
                         f"{record.name} fusion needs the same priors in both streams")
    linker = OnlineLinker(num_classes, iou_thresh, jumpgap, linking_filter(link_score))
    boxes, class_scores, offsets, picks = fuse_video(*_stream(base_frames, num_classes, frame_size),
                                                     *_stream(top_frames, num_classes, frame_size), fusion, fuse_iou,
                                                     linker.filter_cfg, fixed)
    linker.link_all(boxes, class_scores, offsets, picks)
    return linker.finish(), _pick_rows(picks, offsets, boxes, class_scores)


def fuse_video(bb: np.ndarray, bs: np.ndarray, bo: np.ndarray, tb: np.ndarray, ts: np.ndarray, to: np.ndarray,
               fusion: str, fuse_iou: float = FUSE_IOU, filter_cfg: FilterConfig = LINKING_FILTER,
               fixed: bool = False) -> tuple:
    """``fuse_frame`` of every frame of a video: frame f is rows ``bo[f]:bo[f + 1]`` of the base stream's link
    boxes ``bb`` and scores ``bs`` and rows ``to[f]:to[f + 1]`` of the other's. A prior-by-prior fusion (mean)
    fuses and filters the whole video at once, the others go frame by frame (``LateFusion.fuse``; a
    ``filtered`` one with each stream's whole video filtered at once). Returns ``(boxes [M, 4], class_scores
    [M, C], offsets [F + 1], picks [F, C, k])``: what ``OnlineLinker.link_all`` takes."""
    record = late_fusion(fusion)
    dtype = work_dtype(bb, bs, tb, ts)
    bb, tb = (np.ascontiguousarray(np.reshape(b, (-1, 4)), dtype) for b in (bb, tb))
    bs, ts = (np.asarray(s, dtype) for s in (bs, ts))
    if bs.shape[1:] != ts.shape[1:] or bs.ndim != 2 or bs.shape[1] < 2:
        raise ValueError(f"the streams' scores have shapes {bs.shape} and {ts.shape}, expected [N, C+1] of the same C")
    if not record.per_frame:
        if bs.shape != ts.shape or not np.array_equal(bo, to):
            raise ValueError(f"{record.name} fusion needs the same priors in both streams: scores {bs.shape} and {ts.shape}")
        fused = np.ascontiguousarray(np.asarray(record.fuse(bs, ts), dtype)[:, 1:])
        return bb, fused, bo, filter_frames_padded(bb, fused, bo, (filter_cfg,))[0]
    frames = [(bb[bo[f]:bo[f + 1]], bs[bo[f]:bo[f + 1]], tb[to[f]:to[f + 1]], ts[to[f]:to[f + 1]])
              for f in range(len(bo) - 1)]
    if record.filtered:  # each stream's whole video filtered at once
        picks = zip(*(filter_frames_padded(b, s[:, 1:], o, (filter_cfg,))[0] for b, s, o in ((bb, bs, bo), (tb, ts, to))))
        frames = [record.fuse(*frame, fuse_iou, filter_cfg, fixed, p) for frame, p in zip(frames, picks)]
    else:
        frames = [record.fuse(*frame, fuse_iou, filter_cfg, fixed) for frame in frames]
    if not frames:
        return bb, bs[:, 1:], bo, np.zeros((0, bs.shape[1] - 1, filter_cfg.post_nms_topk), np.int64)
    return (np.concatenate([b for b, _, _ in frames]), np.concatenate([s for _, s, _ in frames]),
            np.cumsum([0] + [len(b) for b, _, _ in frames]), np.stack([p for _, _, p in frames]))


class OnlineFusedTubes(OnlineTubes):
    """``OnlineTubes`` of two streams fused frame by frame (demo.py ``--fuse_weights`` with a per-frame fusion):
    ``update(loc, scores, top_loc, top_scores)`` takes a frame's base and second stream's detections
    (normalised ``loc`` ``[N, 4]``, ``scores`` ``[N, C+1]``) and links them as ``link_fused`` does."""

    def __init__(self, num_classes: int, frame_size: tuple, fusion: str, fuse_iou: float = FUSE_IOU,
                 fixed: bool = False, iou_thresh: float = 0.1, jumpgap: int = 3,
                 link_score: float = LINKING_FILTER.score_thresh):
        super().__init__(num_classes, frame_size, iou_thresh, jumpgap, link_score)
        self.fusion, self.fuse_iou, self.fixed = fusion_name(fusion), fuse_iou, fixed

    def update(self, loc: np.ndarray, scores: np.ndarray, top_loc: np.ndarray, top_scores: np.ndarray) -> None:
        boxes = [loc_to_link_boxes(np.asarray(x).reshape(-1, 4), self.frame_size) for x in (loc, top_loc)]
        link_fused_frame(self.linker, boxes[0], np.asarray(scores), boxes[1], np.asarray(top_scores), self.fusion,
                         self.fuse_iou, self.fixed)
