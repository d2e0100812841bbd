"""The vectorised linking against a literal, one-path-at-a-time port of ``incremental_linking.m``.

The reference below is the straightforward port (per class, per path, per box, Python
lists) that the vectorised ``OnlineLinker`` and ``filter_frame_padded`` replaced; they must
give identical paths (same boxes, scores, order) on cluttered random frames with ties.
The reference computes in double, so the inputs here are double; single-precision inputs
(computed in single, as the Matlab does) are checked against the original itself in
tests/test_tubes_octave.py.
"""
import bisect

import numpy as np
import pytest

from tubes.boxes import link_iou, loc_to_link_boxes
from tubes.linking import (FRAME_AP_FILTER, LINKING_FILTER, FilterConfig, OnlineLinker, filter_frame_padded, link_frames,
                           topk_means)


def ref_filter(boxes, class_scores, cfg):
    """dofilter + nms.m, one class at a time, the greedy loop written out."""
    x1, y1, x2, y2 = boxes.T
    area = (x2 - x1) * (y2 - y1)
    out = []
    for c in range(class_scores.shape[1]):
        s = class_scores[:, c]
        idx = np.flatnonzero(s > cfg.score_thresh)
        idx = idx[np.argsort(-s[idx], kind="stable")][:cfg.pre_nms_topk]
        order = list(idx[np.argsort(s[idx], kind="stable")])  # nms.m: ascending, take the last
        pick = []
        while order:
            i = order.pop()
            pick.append(i)
            rest = []
            for j in order:
                w = min(x2[i], x2[j]) - max(x1[i], x1[j])
                h = min(y2[i], y2[j]) - max(y1[i], y1[j])
                if not (w > 0 and h > 0 and w * h / (area[j] + area[i] - w * h) > cfg.nms_thresh):
                    rest.append(j)
            order = rest
        out.append(pick[:cfg.post_nms_topk])
    return out


def seq_mean(values):
    total = 0.0
    for v in values:
        total += v
    return total / len(values)


class RefPath:
    def __init__(self, box, score, all_scores, t):
        self.boxes, self.scores, self.all_scores, self.found, self.lastfound, self.top = [box], [score], [all_scores], [t], 0, [score]


def ref_link(frames, num_classes, iou_thresh=0.1, jumpgap=3):
    """incremental_linking.m for every class; returns per class the sorted (start, boxes, scores, all_scores) tuples."""
    live, dead = [[] for _ in range(num_classes)], [[] for _ in range(num_classes)]
    for t, (boxes, scores) in enumerate(frames):
        cls = scores[:, 1:]
        for c, pick in enumerate(ref_filter(boxes, cls, LINKING_FILTER)):
            covered = [False] * len(pick)
            order_score = []
            for path in live[c]:
                iou = link_iou(np.asarray([path.boxes[-1]]), boxes[pick])[0] if pick else []
                best, best_j = 0.0, -1
                for j, b in enumerate(pick):
                    if iou[j] >= iou_thresh and not covered[j] and cls[b, c] > best:
                        best, best_j = cls[b, c], j
                if best_j >= 0:
                    b = pick[best_j]
                    path.boxes.append(boxes[b]), path.scores.append(cls[b, c]), path.all_scores.append(cls[b])
                    path.found.append(t)
                    path.lastfound = 0
                    bisect.insort(path.top, cls[b, c])
                    path.top = path.top[-(jumpgap + 1):]
                    covered[best_j] = True
                else:
                    path.lastfound += 1
                order_score.append(seq_mean(path.top))
            survivors = []
            for i in np.argsort(-np.asarray(order_score), kind="stable"):
                (survivors if live[c][i].lastfound < jumpgap else dead[c]).append(live[c][i])
            live[c] = survivors + [RefPath(boxes[b], cls[b, c], cls[b], t) for j, b in enumerate(pick) if not covered[j]]
    out = []
    for c in range(num_classes):
        filled = []
        for p in live[c] + dead[c]:
            if len(p.found) > jumpgap:
                rep = np.diff(p.found, prepend=p.found[0] - 1)
                filled.append((p.found[0], np.repeat(p.boxes, rep, 0), np.repeat(p.scores, rep), np.repeat(p.all_scores, rep, 0)))
        key = [seq_mean(np.sort(f[2])[::-1][:20]) for f in filled]
        out.append([filled[i] for i in np.argsort(-np.asarray(key), kind="stable")])
    return out


def cluttered_frames(rng, num_frames, num_boxes, num_classes, quantise):
    """Boxes around two moving actors plus clutter; scores on a coarse grid when quantise (many ties)."""
    frames = []
    for t in range(num_frames):
        n = int(rng.integers(0, num_boxes + 1)) if t % 7 == 3 else num_boxes
        centre = np.array([[60 + 2 * t, 80], [200 - t, 120]])[rng.integers(0, 2, n)] + rng.normal(0, 10, (n, 2))
        size = rng.uniform(20, 90, (n, 2))
        loc = np.concatenate([centre - size / 2, centre + size / 2], 1) / [320, 240, 320, 240]
        scores = rng.dirichlet(np.full(num_classes + 1, 0.3), n)
        if quantise:
            scores = np.round(scores * 20) / 20
        frames.append((loc_to_link_boxes(loc.astype(np.float32)).astype(np.float64), scores))  # double mode
    return frames


@pytest.mark.parametrize("quantise", [False, True])
def test_filter_equals_reference(quantise):
    rng = np.random.default_rng(3)
    cfgs = (LINKING_FILTER, FRAME_AP_FILTER, FilterConfig(0.001, 7, 0.3, 4))
    for boxes, scores in cluttered_frames(rng, 40, 60, 4, quantise):
        got = filter_frame_padded(boxes, scores[:, 1:], cfgs)
        for picks, cfg in zip(got, cfgs):
            want = ref_filter(boxes, scores[:, 1:], cfg)
            assert [row[row >= 0].tolist() for row in picks] == want


@pytest.mark.parametrize("quantise", [False, True])
def test_linking_equals_reference(quantise):
    rng = np.random.default_rng(int(quantise))
    frames = cluttered_frames(rng, 60, 30, 3, quantise)
    lk = OnlineLinker(3)
    for boxes, scores in frames:
        lk.update(boxes, scores)
    got, want = lk.finish(), ref_link(frames, 3)
    assert sum(len(w) for w in want) > 10
    assert_paths_equal(got, want)


def assert_paths_equal(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert len(g) == len(w)
        for path, (start, boxes, scores, all_scores) in zip(g, w):
            assert path.start == start
            np.testing.assert_array_equal(path.boxes, boxes)
            np.testing.assert_array_equal(path.scores, scores)
            np.testing.assert_array_equal(path.all_scores, all_scores)


def test_frame_ap_rows_from_the_shared_pass():
    """link_frames' frame-AP rows equal frameAp.m's dofilter run on its own, frame by frame."""
    rng = np.random.default_rng(7)
    frames = cluttered_frames(rng, 20, 40, 3, True)
    locs = [(b - 1) / [320, 240, 320, 240] for b, _ in frames]
    _, rows = link_frames([(loc, s) for loc, (_, s) in zip(locs, frames)], 3, extra_filter=FRAME_AP_FILTER)
    want = []
    for f, (loc, (_, scores)) in enumerate(zip(locs, frames)):
        boxes = loc_to_link_boxes(loc)
        for c, pick in enumerate(ref_filter(boxes, scores[:, 1:], FRAME_AP_FILTER)):
            want += [(f, c, scores[b, c + 1], *boxes[b]) for b in pick]
    assert len(want) > 100
    np.testing.assert_array_equal(rows, np.array(want))


@pytest.mark.parametrize("jumpgap, iou_thresh", [(1, 0.3), (6, 0.05)])
def test_linking_other_settings_equal_reference(jumpgap, iou_thresh):
    """The compiled step's window of jumpgap + 1 best scores and its IoU test at other settings."""
    frames = cluttered_frames(np.random.default_rng(5), 50, 30, 3, True)
    lk = OnlineLinker(3, iou_thresh, jumpgap)
    for boxes, scores in frames:
        lk.update(boxes, scores)
    want = ref_link(frames, 3, iou_thresh, jumpgap)
    assert sum(len(w) for w in want) > 10
    assert_paths_equal(lk.finish(), want)


def test_link_frames_many_classes_equals_reference():
    """The offline pass (both filters per frame, then one linking step) on 24 cluttered classes."""
    frames = cluttered_frames(np.random.default_rng(11), 30, 40, 24, False)
    locs = [(b - 1) / [320, 240, 320, 240] for b, _ in frames]
    got, _ = link_frames([(loc, s) for loc, (_, s) in zip(locs, frames)], 24, extra_filter=FRAME_AP_FILTER)
    want = ref_link([(loc_to_link_boxes(loc), s) for loc, (_, s) in zip(locs, frames)], 24)
    assert sum(len(w) for w in want) > 50
    assert_paths_equal(got, want)


def test_topk_means_equals_sequential_mean():
    rng = np.random.default_rng(2)
    lengths = np.array([1, 5, 40, 3, 25])
    values = np.round(rng.uniform(0.01, 1, lengths.sum()), 1)  # ties
    got = topk_means(values, lengths, 20)
    starts = np.cumsum(lengths) - lengths
    want = [seq_mean(np.sort(values[s:s + n])[::-1][:20]) for s, n in zip(starts, lengths)]
    np.testing.assert_array_equal(got, want)


def test_current_equals_the_live_paths_last_frame():
    """OnlineLinker.current's running state against the gathered live paths, read every frame or after skips."""
    frames = cluttered_frames(np.random.default_rng(13), 60, 30, 3, True)
    lk = OnlineLinker(3)
    checked = 0
    for t, (boxes, scores) in enumerate(frames):
        lk.update(boxes, scores)
        if t % 5 in (1, 2):  # polls after gaps of 1 and 4 frames: the lazy update catches up
            continue
        want = sorted((c, *p.boxes[-1], p.scores[-1], p.scores.mean()) for c in range(3) for p in lk.paths(c)
                      if p.found[-1] == t)
        cls, b, s, m = lk.current()
        got = sorted(zip(cls.tolist(), *b.T.tolist(), s.tolist(), m.tolist()))
        assert len(got) == len(want) and np.all(np.diff(cls) >= 0)
        np.testing.assert_allclose(np.array(got, float).reshape(-1, 7), np.array(want, float).reshape(-1, 7), rtol=1e-12)
        checked += len(want)
    assert checked > 100
