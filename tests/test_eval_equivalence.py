"""Vectorised evaluation pieces against their one-at-a-time forms (same numbers, same order)."""
import numpy as np
import pytest

from tests.reference import eval_boxes, spatio_temporal_iou
from tubes.ap import descending_order
from tubes.frame_map import FrameAP
from tubes.trimming import ActionTube
from tubes.video_map import GTTube, VideoGT, _video_st_iou


@pytest.mark.parametrize("inclusive", [True, False])
def test_add_frames_equals_add_frame(inclusive):
    rng = np.random.default_rng(int(inclusive))
    one, batch = FrameAP(3, 0.5, inclusive), FrameAP(3, 0.5, inclusive)
    det, gt = [], []
    for f in range(40):
        k, n = int(rng.integers(0, 8)), int(rng.integers(0, 3))
        gb = np.round(rng.uniform(0, 60, (n, 2)))
        gb = np.concatenate([gb, gb + 30], 1)
        db = np.concatenate([gb, np.round(rng.uniform(0, 60, (4, 4)))])[rng.integers(0, n + 4, k)] + rng.integers(-6, 7, (k, 4))
        ds, dl, gl = np.round(rng.random(k), 1), rng.integers(0, 3, k), rng.integers(0, 2, n)
        one.add_frame(db, ds, dl, gb, gl)
        det.append((np.full(k, f), db, ds, dl))
        gt.append((np.full(n, f), gb, gl))
    batch.add_frames(*(np.concatenate(a) for a in zip(*det)), *(np.concatenate(a) for a in zip(*gt)))
    assert sum(one.class_arrays(c)[1].sum() for c in range(3)) > 5
    for c in range(3):
        for x, y in zip(one.class_arrays(c), batch.class_arrays(c)):
            np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(one.num_gt, batch.num_gt)


def test_video_st_iou_equals_pairwise():
    rng = np.random.default_rng(0)
    gts = [GTTube(int(c), sf, sf + ln - 1, np.concatenate([rng.uniform(1, 100, (ln, 2)), rng.uniform(10, 60, (ln, 2))], 1))
           for c, sf, ln in [(0, 1, 30), (1, 10, 20), (0, 25, 10)]]
    video = VideoGT("v", 0, 50, gts)
    tubes = []
    for start, ln in [(0, 40), (29, 5), (35, 10), (5, 1), (8, 12)]:  # (29, 5) shares one frame with the first GT tube
        xy = rng.uniform(1, 100, (ln, 2))
        for c in (0, 1):
            tubes.append(ActionTube(c, 0.5, start, np.concatenate([xy, xy + rng.uniform(10, 60, (ln, 2))], 1)))
    got = _video_st_iou(video, tubes)
    for i, t in enumerate(tubes):
        for j, g in enumerate(gts):
            want = spatio_temporal_iou(g, t.start + 1, eval_boxes(t)) if g.class_id == t.class_id else -np.inf
            assert got[i, j] == want, (i, j)
    assert (got > 0).sum() >= 3


def test_descending_order_equals_stable_argsort():
    """The key sort behind every PR curve: the same order as a stable argsort of -scores, ties included."""
    rng = np.random.default_rng(0)
    cases = [rng.random(5000), np.round(rng.normal(size=5000) * 3),  # many ties
             [0.0, -0.0, 1, -1, 0.5, -0.0, np.inf, -np.inf, 1e-45, -1e-45], [], [1.0, np.nan, 2.0, np.nan]]
    for scores in cases:
        scores = np.asarray(scores, np.float32)
        np.testing.assert_array_equal(descending_order(scores), np.argsort(-scores, kind="stable"))
