"""Video-mAP and frame-mAP on hand-built cases with answers worked out here."""
import numpy as np
import pytest

from tests.reference import average_precision, spatio_temporal_iou
from tubes.ap import voc_ap
from tubes.frame_map import FrameAP
from tubes.trimming import ActionTube
from tubes.video_map import GTTube, VideoGT, video_ap

GT_XYWH = np.array([10.0, 20.0, 40.0, 60.0])


def gt_tube(class_id, sf, ef, xywh=GT_XYWH):
    return GTTube(class_id, sf, ef, np.tile(xywh, (ef - sf + 1, 1)))


def det_tube(class_id, score, sf1, ef1, xywh=GT_XYWH):
    """A tube whose evaluated boxes equal ``xywh``: get_PR_curve adds 1 to [x1 y1 x2-x1 y2-y1]."""
    x, y, w, h = xywh
    box = np.array([x - 1, y - 1, x + w - 2, y + h - 2])
    return ActionTube(class_id, score, sf1 - 1, np.tile(box, (ef1 - sf1 + 1, 1)))


def test_voc_ap_by_hand():
    # envelope of [0, 1, .5, 0] is [1, 1, .5, 0]; recall steps .5 and .5 -> .5 * 1 + .5 * .5
    assert voc_ap([0.5, 1.0], [1.0, 0.5]) == pytest.approx(0.75)
    assert voc_ap([], []) == 0.0
    assert np.isnan(voc_ap([np.nan, np.nan], [0.0, 0.0]))  # a class without GT; callers map it to 0


def test_perfect_tube_and_shifted_tube_iou():
    gt = gt_tube(0, 1, 20)
    assert spatio_temporal_iou(gt, 1, det_tube(0, 1, 1, 20).boxes * 0 + [9, 19, 39, 59]) == 1.0
    # detection 6..25 against 1..20: overlap 15 frames, union 25 frames, boxes identical -> 0.6
    shifted = det_tube(0, 1, 6, 25)
    b = np.concatenate([shifted.boxes[:, :2], shifted.boxes[:, 2:] - shifted.boxes[:, :2]], 1)
    assert spatio_temporal_iou(gt, 6, b) == 0.6
    # half the width inside the overlap: spatial IoU 20*60 / (40*60) = .5
    narrow = det_tube(0, 1, 1, 20, np.array([10.0, 20.0, 20.0, 60.0]))
    b = np.concatenate([narrow.boxes[:, :2], narrow.boxes[:, 2:] - narrow.boxes[:, :2]], 1)
    assert spatio_temporal_iou(gt, 1, b) == pytest.approx(0.5)


def test_one_frame_overlap_counts_zero():
    gt = gt_tube(0, 1, 20)
    t = det_tube(0, 1, 20, 39)
    b = np.concatenate([t.boxes[:, :2], t.boxes[:, 2:] - t.boxes[:, :2]], 1)
    assert spatio_temporal_iou(gt, 20, b) == 0.0
    t = det_tube(0, 1, 19, 38)  # two frames: T_i = 1 + 1, T_u = 38 -> 2/38
    b = np.concatenate([t.boxes[:, :2], t.boxes[:, 2:] - t.boxes[:, :2]], 1)
    assert spatio_temporal_iou(gt, 19, b) == pytest.approx(2 / 38)


def test_strict_threshold():
    gts = [VideoGT("A/v1", 0, 30, [gt_tube(0, 1, 20)])]
    res = video_ap(gts, {"A/v1": [det_tube(0, 0.9, 6, 25)]}, 1, (0.5, 0.6))
    assert [r.mAP for r in res] == [1.0, 0.0]  # IoU exactly 0.6 is not > 0.6
    assert res[0].mean_iou == pytest.approx((0.6 + 1e-6) / (1 + 1e-5))


def test_two_classes_duplicates_missing_video_class_without_gt():
    gts = [VideoGT("A/v1", 0, 40, [gt_tube(0, 1, 20)]),
           VideoGT("A/v2", 0, 40, [gt_tube(0, 1, 20)]),
           VideoGT("B/v3", 1, 40, [gt_tube(1, 5, 30)])]
    dets = {
        # v1: a perfect tube and a duplicate of it (a false positive), plus a class-2 tube (no GT of class 2)
        "A/v1": [det_tube(0, 0.5, 1, 20), det_tube(0, 0.8, 1, 20), det_tube(2, 0.9, 1, 20)],
        # v2 has no detections; v3: its GT found with a lower score than v1's duplicate
        "B/v3": [det_tube(1, 0.3, 5, 30)],
    }
    res = video_ap(gts, dets, 3, (0.5,))[0]
    # class 0: scores .8 (TP), .5 (FP, the GT is covered); 2 GT tubes -> recall .5, AP = .5
    # class 1: one TP of one GT -> 1; class 2: no GT -> NaN -> 0
    np.testing.assert_allclose(res.ap, [0.5, 1.0, 0.0])
    assert res.mAP == pytest.approx(0.5)
    # mean IoU: class 0 (1 + 1e-6) / (1 + 1e-5), class 1 the same, class 2 1e-6 / 1e-5
    assert res.class_iou[2] == pytest.approx(0.1)
    assert res.mean_iou == pytest.approx((2 * (1 + 1e-6) / (1 + 1e-5) + 0.1) / 3)
    # accuracy: v1's top tube is class 2 (wrong), v2 has none (wrong), v3 right
    assert res.accuracy == pytest.approx(1 / 3)


def test_best_uncovered_gt_of_same_class():
    gts = [VideoGT("A/v1", 0, 40, [gt_tube(0, 1, 20), gt_tube(0, 1, 10)])]
    # the first (higher score) detection takes the better GT, the second takes the other one
    dets = {"A/v1": [det_tube(0, 0.9, 1, 20), det_tube(0, 0.8, 1, 10)]}
    assert video_ap(gts, dets, 1, (0.4,))[0].mAP == 1.0


def test_ap_properties():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 30))
        scores, tp = rng.random(n), rng.random(n) < 0.5
        num_gt = int(tp.sum() + rng.integers(0, 3))
        if num_gt == 0:
            continue
        ap = average_precision(scores, tp, num_gt)
        assert 0.0 <= ap <= 1.0
        # a false positive below every true positive leaves AP unchanged
        low = scores.min() - 1.0
        assert average_precision(np.append(scores, low), np.append(tp, False), num_gt) == pytest.approx(ap)


def test_frame_ap_by_hand():
    acc = FrameAP(2, 0.5)
    gt = np.array([[10, 10, 49, 49]])
    # frame 1: class 0 hit (.9), its duplicate (.8, FP), class 1 detection without GT of class 1 (FP)
    acc.add_frame([[10, 10, 49, 49], [10, 10, 49, 49], [10, 10, 49, 49]], [0.9, 0.8, 0.7], [0, 0, 1], gt, [0])
    # frame 2: IoU exactly .5 (half the width) counts (>= as frameAp.m); frame 3: a missed GT box
    acc.add_frame([[10, 10, 29, 49]], [0.6], [0], gt, [0])
    acc.add_frame(np.zeros((0, 4)), [], [], gt, [0])
    mAP, ap, _ = acc.compute()
    # class 0 in score order: TP .9, FP .8, TP .6; 3 GT -> precision 1, .5, 2/3 at recall 1/3, 1/3, 2/3
    assert ap[0] == pytest.approx(1 / 3 * 1 + 1 / 3 * 2 / 3)
    assert ap[1] == 0.0 and mAP == pytest.approx(ap[0] / 2)


def test_frame_ap_continuous_iou_and_merge():
    """AMTNet's Python frame evaluation: areas without +1. Boxes [0,0,10,10] and [0,0,10,5]
    overlap 50/100 = 0.5 (continuous) but 66/121 = 0.545 with inclusive pixels."""
    det, gt = np.array([[0, 0, 10, 5.0]]), np.array([[0, 0, 10, 10.0]])
    strict = FrameAP(1, iou_thresh=0.52, inclusive=False)
    strict.add_frame(det, [0.9], [0], gt, [0])
    assert strict.compute()[0] == 0.0  # 0.5 < 0.52
    loose = FrameAP(1, iou_thresh=0.52)
    loose.add_frame(det, [0.9], [0], gt, [0])
    assert loose.compute()[0] == 1.0  # 0.545 >= 0.52
    # two halves of the frames give the same AP as all frames in one accumulator
    whole, parts = FrameAP(1, 0.5, inclusive=False), [FrameAP(1, 0.5, inclusive=False) for _ in range(2)]
    frames = [(np.array([[0, 0, 10, 10.0]]), [0.8], [0], gt, [0]),
              (np.array([[20, 20, 30, 30.0]]), [0.9], [0], gt, [0])]
    for i, frame in enumerate(frames):
        whole.add_frame(*frame)
        parts[i].add_frame(*frame)
    merged = FrameAP.merge(parts)
    # ranked: the false positive (0.9) then the hit (0.8): recall 1/2 reached at precision 1/2 -> AP 0.25
    assert merged.compute()[0] == whole.compute()[0] == 0.25


def test_ranking_compares_scores_in_single_precision():
    """get_PR_curve.m stores tube scores as single: 0.5 and 0.5 + 1e-9 tie and keep the video order.
    Ranked in double, the false positive of the second video would come first (AP 0.5, not 1)."""
    gts = [VideoGT("A/v1", 0, 30, [gt_tube(0, 1, 20)]), VideoGT("A/v2", 0, 30, [])]
    tubes = {"A/v1": [det_tube(0, 0.5, 1, 20)], "A/v2": [det_tube(0, 0.5 + 1e-9, 1, 20)]}
    assert np.float32(0.5) == np.float32(0.5 + 1e-9)
    assert video_ap(gts, tubes, 1, (0.5,))[0].mAP == 1.0
    tubes["A/v2"] = [det_tube(0, 0.5 + 1e-6, 1, 20)]  # distinct in single: the FP ranks first
    assert video_ap(gts, tubes, 1, (0.5,))[0].mAP == 0.5
