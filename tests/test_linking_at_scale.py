"""The whole-video compiled paths of tube building against literal references, at the box counts test.py
writes (hundreds of boxes per frame, where the filtering's histogram pre-pass decides which boxes are sorted),
with ties: the per-frame filtering, the linking of a video in one call, the per-frame detections of the npz
windows, and the rankings and APs of the evaluation."""
import numpy as np
import pytest

from tests.test_linking_equivalence import ref_filter
from tubes.ap import descending_order, hits_ap, pr_curve, voc_ap
from tubes.detections import VideoDetections, boxes_at, frame_detections
from tubes.frame_map import FrameAP
from tubes.linking import (FRAME_AP_FILTER, LINKING_FILTER, FilterConfig, OnlineLinker, filter_frames_padded,
                           link_frames, link_video)
from tubes.trimming import trim_arrays, trim_video


def crowded_video(rng, num_frames, num_boxes, num_classes, dtype, ties):
    """Link boxes ``[M, 4]``, class scores ``[M, C]`` and offsets of frames of up to ``num_boxes`` boxes (some
    empty, some repeated boxes); scores on a coarse grid when ``ties``, many of them equal."""
    counts = rng.integers(0, num_boxes + 1, num_frames)
    counts[::3] = num_boxes
    m = int(counts.sum())
    centre = rng.uniform(40, 280, (m, 2))
    size = rng.uniform(10, 80, (m, 2))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], 1)
    boxes[1::17] = boxes[::17][:len(boxes[1::17])]  # identical boxes
    scores = rng.dirichlet(np.full(num_classes, 0.2), m) * rng.uniform(0.001, 1, (m, 1))
    if ties:
        scores = np.round(scores * 40) / 40
    return boxes.astype(dtype), scores.astype(dtype), np.concatenate([[0], np.cumsum(counts)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ties", [False, True])
def test_filtering_many_boxes_equals_the_literal_dofilter(dtype, ties):
    rng = np.random.default_rng(int(ties) + 2 * (dtype == np.float32))
    boxes, scores, offsets = crowded_video(rng, 12, 400, 6, dtype, ties)
    cfgs = (LINKING_FILTER, FRAME_AP_FILTER, FilterConfig(0.0, 7, 0.3, 4), FilterConfig(-1.0, 50, 0.45, 10),
            FilterConfig(0.02, 1, 0.5, 3), FilterConfig(0.001, 120, 0.6, 30))
    got = filter_frames_padded(boxes, scores, offsets, cfgs)
    for f in range(len(offsets) - 1):
        b, s = boxes[offsets[f]:offsets[f + 1]], scores[offsets[f]:offsets[f + 1]]
        for picks, cfg in zip(got, cfgs):
            assert [row[row >= 0].tolist() for row in picks[f]] == ref_filter(b, s, cfg), (f, cfg)


def test_linking_a_video_at_once_equals_frame_by_frame():
    """link_all leaves the linker as link() frame by frame does: the same paths, live paths and latest frame,
    and further frames link on from there."""
    rng = np.random.default_rng(7)
    boxes, scores, offsets = crowded_video(rng, 30, 120, 3, np.float32, True)
    cfg = FilterConfig(0.05)
    picks = filter_frames_padded(boxes, scores, offsets, (cfg,))[0]
    whole, stepwise = OnlineLinker(3, filter_cfg=cfg), OnlineLinker(3, filter_cfg=cfg)
    whole.link_all(boxes[:offsets[20]], scores[:offsets[20]], offsets[:21], picks[:20])
    for f in range(30):
        stepwise.link(boxes[offsets[f]:offsets[f + 1]], scores[offsets[f]:offsets[f + 1]], picks[f])
        if f == 19:
            for got, want in zip(whole.current(), stepwise.current()):
                np.testing.assert_array_equal(got, want)
    for f in range(20, 30):
        whole.link(boxes[offsets[f]:offsets[f + 1]], scores[offsets[f]:offsets[f + 1]], picks[f])
    assert sum(map(len, stepwise.finish())) > 10
    for a, b in zip(whole.finish() + [whole.paths(c) for c in range(3)],
                    stepwise.finish() + [stepwise.paths(c) for c in range(3)]):
        assert len(a) == len(b)
        for p, q in zip(a, b):
            assert p.start == q.start
            for field in ("boxes", "scores", "all_scores", "found"):
                np.testing.assert_array_equal(getattr(p, field), getattr(q, field))


def test_trimming_path_arrays_equals_trimming_the_path_lists():
    rng = np.random.default_rng(3)
    boxes, scores, offsets = crowded_video(rng, 80, 60, 3, np.float32, False)
    frames = [((boxes[a:b] - 1) / [320, 240, 320, 240], np.concatenate([np.zeros((b - a, 1)), scores[a:b]], 1))
              for a, b in zip(offsets[:-1], offsets[1:])]
    arrays, _ = link_video(frames, 3)
    lists, _ = link_frames(frames, 3)
    got, want = trim_arrays(arrays, (0.0, 3.0)), trim_video(lists, (0.0, 3.0))
    for alpha in (0.0, 3.0):
        tubes = got[alpha].tubes()
        assert len(tubes) == len(want[alpha]) > 3
        for t, u in zip(tubes, want[alpha]):
            assert (t.class_id, t.score, t.start) == (u.class_id, u.score, u.start)
            np.testing.assert_array_equal(t.boxes, u.boxes)


def per_frame_rule(det, first):
    """The module doc's rule frame by frame: the latest window starting at or before f and ending at or after
    it, its detections in order, each box at f."""
    out = []
    for f in range(first, det.num_frames):
        covering = [w for w in range(len(det.frames)) if det.frames[w, 0] <= f <= det.frames[w, -1]]
        if not covering:
            out.append((np.zeros((0, 4), det.boxes.dtype), np.zeros((0, det.scores.shape[1]), det.scores.dtype)))
            continue
        w = max(covering, key=lambda w: (det.frames[w, 0], w))
        idx = np.flatnonzero(det.window == w)
        frames = np.broadcast_to(det.frames[w], (len(idx), det.frames.shape[1]))
        out.append((boxes_at(frames, det.boxes[idx], np.full(len(idx), f)), det.scores[idx]))
    return out


def test_per_frame_detections_of_the_windows_equal_the_rule():
    rng = np.random.default_rng(0)
    for trial in range(200):
        t = int(rng.integers(1, 4))
        num_windows = int(rng.integers(0, 10))
        frames = np.array([np.sort(rng.choice(np.arange(s, s + 3 * t + 2), t, replace=False))
                           for s in rng.integers(0, 20, num_windows)], np.int32).reshape(num_windows, t)
        num_frames = int(max(rng.integers(1, 25), frames.max() + 1 if num_windows else 0))
        k = int(rng.integers(0, 40)) if num_windows else 0
        window = np.sort(rng.integers(0, num_windows, k)) if trial % 2 else rng.integers(0, max(num_windows, 1), k)
        det = VideoDetections(frames, rng.random((k, t, 4)).astype(np.float32), rng.random((k, 3)).astype(np.float32),
                              window.astype(np.int32), num_frames)
        first = int(rng.integers(0, num_frames + 1))
        got, want = frame_detections(det, first), per_frame_rule(det, first)
        assert len(got) == len(want)
        for (loc, s), (loc_want, s_want) in zip(got, want):
            assert loc.dtype == loc_want.dtype and s.dtype == s_want.dtype
            np.testing.assert_array_equal(loc, loc_want)
            np.testing.assert_array_equal(s, s_want)


def test_rankings_and_aps_from_the_hits_equal_the_curves():
    rng = np.random.default_rng(1)
    for trial in range(600):
        n = int(rng.integers(0, 300))
        scores = (rng.integers(-2, 6, n) / 5 if trial % 2 else rng.normal(size=n)).astype(np.float32)
        scores[rng.integers(0, n, min(n, 3))] = -0.0
        assert np.array_equal(descending_order(scores), np.argsort(-scores, kind="stable"))
        hits = rng.random(n) < rng.random()
        num_gt = float(rng.integers(0, 12)) if trial % 3 else float(hits.sum())
        with np.errstate(invalid="ignore"):  # without ground truth the curves are NaN (AP NaN, reported as 0)
            want = voc_ap(*pr_curve(scores, hits, num_gt))
            got = hits_ap(scores, hits, num_gt)
        assert got == want or (np.isnan(got) and np.isnan(want)), trial
    acc = FrameAP(3)
    acc.add_frame(rng.uniform(0, 50, (40, 4)) + [0, 0, 60, 60], np.round(rng.random(40), 1), rng.integers(0, 3, 40),
                  rng.uniform(0, 50, (5, 4)) + [0, 0, 60, 60], rng.integers(0, 3, 5))
    full, fast = acc.compute(), acc.compute(curves=False)
    assert full[0] == fast[0] > 0 and np.array_equal(full[1], fast[1]) and fast[2] is None
