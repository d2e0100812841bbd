"""Late fusion (tubes/fusion.py): hand-worked frames of each fusion type, the original's boost details
(the covered-box test, the +0.001 in the IoU), and the plumbing (mean of a stream with itself and union
with an empty stream link as one stream). The comparison with the original is tests/test_fusion_octave.py."""
import numpy as np
import pytest

from tests.test_fusion_octave import FIXTURES, stream_frames
from tubes.fusion import fuse_frame, fusion_name, link_fused
from tubes.linking import link_frames

A1, A2 = [1, 1, 20, 20], [101, 1, 120, 20]          # base boxes (link boxes: widths x2 - x1 + 1 = 20)
B1, B2, B3 = [1, 1, 20, 30], [101, 1, 120, 20], [201, 101, 230, 130]  # flow boxes; B1 overlaps A1, B2 is A2


def fuse(base, top, fusion, **kw):
    """One class; each stream a list of (box, [background, class score]); -> [(box, [bg, score])] in link order."""
    def arrays(dets):
        return (np.array([b for b, _ in dets], np.float64).reshape(-1, 4), np.array([s for _, s in dets], np.float64).reshape(-1, 2))
    boxes, class_scores, picks = fuse_frame(*arrays(base), *arrays(top), fusion, **kw)
    assert class_scores.shape[1] == 1
    return [(boxes[r].tolist(), class_scores[r, 0]) for r in picks[0] if r >= 0]


@pytest.mark.parametrize("name,want", [("boost", "boost"), ("NWSUM-plus", "boost"), ("cat", "union"),
                                       ("Union", "union"), ("mean", "mean")])
def test_fusion_names(name, want):
    assert fusion_name(name) == want


def test_unknown_fusion_is_an_error():
    with pytest.raises(ValueError, match="unknown fusion 'sum'"):
        fusion_name("sum")


def test_union_keeps_the_best_of_either_stream():
    a, b, d = [11, 11, 50, 50], [12, 12, 51, 51], [100, 100, 140, 140]
    got = fuse([(a, [0.4, 0.6])], [(b, [0.2, 0.8]), (d, [0.7, 0.3])], "union")
    assert got == [(b, 0.8), (d, 0.3)]  # a overlaps b (IoU 0.90 > 0.45) and scores less


def boost_case():
    base = [(A1, [0.5, 0.5]), (A2, [0.6, 0.4])]
    top = [(B1, [0.2, 0.8]), (B2, [0.1, 0.9]), (B3, [0.5, 0.5])]
    m1 = 400 / (400 + 600 - 400 + 0.001)  # IoU(A1, B1): 20 x 20 in 20 x 30, union + 0.001
    m2 = 400 / (400 + 400 - 400 + 0.001)  # IoU(A2, B2)
    # (s_base + s_flow * iou) / sum, the sum over class then background (the Matlab's column order)
    a1 = (0.5 + 0.8 * m1) / ((0.5 + 0.8 * m1) + (0.5 + 0.2 * m1))
    a2 = (0.4 + 0.9 * m2) / ((0.4 + 0.9 * m2) + (0.6 + 0.1 * m2))
    return base, top, a1, a2


def test_boost_as_the_original_boosts_one_base_box():
    """fusedActionPaths.m: only the first base box reaching fuse_iou is boosted (A1 by B1; A2 keeps
    0.4 though B2 is its double); the flow boxes but B1 are appended; NMS drops A2 under B2."""
    base, top, a1, _ = boost_case()
    got = fuse(base, top, "boost")
    assert [b for b, _ in got] == [B2, A1, B3]
    np.testing.assert_allclose([s for _, s in got], [0.9, a1, 0.5], rtol=1e-15)


def test_boost_fixed_boosts_every_base_box_once():
    base, top, a1, a2 = boost_case()
    got = fuse(base, top, "boost", fixed=True)
    assert [b for b, _ in got] == [A2, A1, B3]  # B1, B2 covered; a2 = 0.65 > a1 = 0.62
    np.testing.assert_allclose([s for _, s in got], [a2, a1, 0.5], rtol=1e-15)


def test_boost_renormalises_the_whole_score_row():
    boxes, class_scores, picks = fuse_frame(np.array([A1], float), np.array([[0.5, 0.3, 0.2]]), np.array([B1], float),
                                            np.array([[0.2, 0.2, 0.6]]), "boost")
    m = 400 / 600.001
    row = np.array([0.5 + 0.2 * m, 0.3 + 0.2 * m, 0.2 + 0.6 * m])  # background, class 1, class 2
    total = (row[1] + row[2]) + row[0]
    np.testing.assert_allclose(class_scores[picks[0, 0]], row[1:] / total, rtol=1e-15)


def test_boost_without_overlap_keeps_the_base_stream_only():
    """No base box boosted: the original appends no flow box (~ismember([], i) is empty, i.e. false)."""
    got = fuse([(A1, [0.5, 0.5])], [(B3, [0.1, 0.9])], "boost")
    assert got == [(A1, 0.5)]
    assert fuse([(A1, [0.5, 0.5])], [(B3, [0.1, 0.9])], "boost", fixed=True) == [(B3, 0.9), (A1, 0.5)]


def test_boost_with_nothing_in_the_base_stream():
    nothing = [(A1, [0.9995, 0.0005])]  # below the filtering's 0.001
    assert fuse(nothing, [(B3, [0.1, 0.9])], "boost") == []
    assert fuse(nothing, [(B3, [0.1, 0.9])], "boost", fixed=True) == [(B3, 0.9)]
    assert fuse(nothing, [(B3, [0.1, 0.9])], "union") == [(B3, 0.9)]
    assert fuse([(B3, [0.1, 0.9])], nothing, "boost") == [(B3, 0.9)]


def test_boost_iou_has_plus_0001_in_its_denominator():
    """A 10 x 10 box inside a 10 x 40 one: IoU 100 / 400 = 0.25 exactly, but 100 / 400.001 < 0.25."""
    a, b = [1, 1, 10, 10], [1, 1, 10, 40]
    assert fuse([(a, [0.5, 0.5])], [(b, [0.2, 0.8])], "boost", fuse_iou=0.25) == [(a, 0.5)]
    m = 100 / 400.001
    got = fuse([(a, [0.5, 0.5])], [(b, [0.2, 0.8])], "boost", fuse_iou=0.2499)
    assert got[0][0] == a and got[0][1] == pytest.approx((0.5 + 0.8 * m) / (1 + m), rel=1e-15)


def test_mean_averages_the_priors_on_the_base_boxes():
    p1, p2 = [11, 11, 50, 50], [100, 100, 140, 140]
    got = fuse([(p1, [0.5, 0.5]), (p2, [0.9, 0.1])], [(B1, [0.1, 0.9]), (B3, [0.99, 0.01])], "mean")
    assert got == [(p1, 0.7), (p2, 0.055)]
    with pytest.raises(ValueError, match="same priors"):
        fuse([(p1, [0.5, 0.5])], [(B1, [0.1, 0.9]), (B3, [0.99, 0.01])], "mean")


@pytest.mark.parametrize("fusion,second", [("mean", "same"), ("union", "empty"), ("boost", "empty")])
def test_degenerate_fusions_link_as_one_stream(fusion, second):
    """mean of a stream with itself, union (and boost) with an empty stream: the one-stream paths."""
    det = np.load(FIXTURES / "fusion.npz")
    frames = stream_frames(det, 0)
    other = frames if second == "same" else [(loc[:0], s[:0]) for loc, s in frames]
    fused, rows = link_fused(frames, other, 3, fusion)
    one, _ = link_frames(frames, 3)
    assert sum(map(len, fused)) > 3
    for got_c, want_c in zip(fused, one):
        assert len(got_c) == len(want_c)
        for got, want in zip(got_c, want_c):
            assert got.start == want.start
            np.testing.assert_array_equal(got.boxes, want.boxes)
            np.testing.assert_array_equal(got.all_scores, want.all_scores)
    assert rows.shape[1] == 7 and len(rows) >= sum(len(p.found) for c in fused for p in c)


def test_streams_of_different_lengths_are_an_error():
    det = np.load(FIXTURES / "fusion.npz")
    frames = stream_frames(det, 0)
    with pytest.raises(ValueError, match="40 and 39 frames"):
        link_fused(frames, frames[:-1], 3, "union")


def test_frame_map_rows_are_the_fused_detections_linked():
    """link_fused's rows (the frame-mAP's input) are the fused frame's picks: boost_case in link boxes."""
    base, top, a1, _ = boost_case()
    scale = np.array([320, 240, 320, 240], np.float64)

    def frame(dets):  # link boxes -> normalised loc (exact: the link boxes are + 1 of pixels on the grid)
        return np.array([b for b, _ in dets], np.float64) / scale - 1 / scale, np.array([s for _, s in dets])
    _, rows = link_fused([frame(base)], [frame(top)], 1, "boost")
    np.testing.assert_allclose(rows, [[0, 0, 0.9] + B2, [0, 0, a1] + A1, [0, 0, 0.5] + B3], rtol=1e-12)
