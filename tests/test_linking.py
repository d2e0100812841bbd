"""Filtering and incremental linking on hand-built frames (rules of actionPaths.m / incremental_linking.m)."""
import numpy as np
import pytest

from tubes.boxes import link_iou, loc_to_link_boxes
from tests.reference import filter_frame
from tubes.linking import FRAME_AP_FILTER, LINKING_FILTER, FilterConfig, OnlineLinker

BOX_A = [10.0, 10.0, 50.0, 50.0]
BOX_B = [200.0, 100.0, 260.0, 180.0]


def frame(boxes, class_scores):
    """Scores ``[N, C+1]`` with the background column first."""
    s = np.asarray(class_scores, np.float64).reshape(len(boxes), 1)
    return np.asarray(boxes, np.float64).reshape(-1, 4), np.concatenate([np.zeros((len(s), 1)), s], 1)


def test_read_detections_clip_and_plus_one():
    loc = np.array([[-0.1, -0.2, 1.2, 1.1], [0.5, 0.25, 0.75, 0.5]])
    np.testing.assert_array_equal(loc_to_link_boxes(loc), [[1, 1, 320, 240], [161, 61, 241, 121]])


def test_nms_ties_keep_the_later_box_and_touching_boxes_survive():
    boxes = np.array([BOX_A, BOX_A, [50.0, 10.0, 90.0, 50.0]])  # the third only touches the first (w = 0)
    scores = np.array([[0.5], [0.5], [0.4]])
    # nms.m sorts ascending and takes the last: of two equal scores the later index wins
    assert filter_frame(boxes, scores)[0].tolist() == [1, 2]


def test_filter_threshold_and_topk():
    boxes = np.array([[i * 30.0, 0, i * 30.0 + 20, 20] for i in range(15)])
    scores = np.linspace(0.0005, 0.9, 15)[:, None]
    pick = filter_frame(boxes, scores, FilterConfig(post_nms_topk=10))[0]
    assert pick.tolist() == list(range(14, 4, -1))  # score order, index 0 (<= 0.001) never, top 10


def test_link_iou_inclusive_pixels():
    # widths x2 - x1 + 1: 10x10 boxes overlapping 5x10 -> 50 / 150
    iou = link_iou(np.array([[1.0, 1, 10, 10]]), np.array([[6.0, 1, 15, 10]]))
    assert iou[0, 0] == np.float64(50) / (150 + np.finfo(float).eps)


def test_greedy_order_and_new_paths():
    lk = OnlineLinker(1)
    lk.update(*frame([BOX_A, [12.0, 12, 52, 52]], [[0.9], [0.3]]))
    # NMS keeps only the .9 box (IoU > .45); one path
    assert lk.num_live(0) == 1
    lk.update(*frame([BOX_A, BOX_B], [[0.6], [0.7]]))
    # the path takes the overlapping box (.6), not the better-scored far one, which starts a new path after it
    live = lk.paths(0)
    assert [p.scores.tolist() for p in live] == [[0.9, 0.6], [0.7]]


def test_path_death_gap_filling_and_final_order():
    lk = OnlineLinker(1)
    lk.update(*frame([BOX_A, BOX_B], [[0.9], [0.5]]))
    for _ in range(3):  # both paths extended three times: 4 detections each
        lk.update(*frame([BOX_A, BOX_B], [[0.9], [0.5]]))
    # only A's box: path B misses
    for t in range(3):
        lk.update(*frame([BOX_A], [[0.8]]))
    # B missed 3 frames: dead; A still live
    assert lk.num_live(0) == 1 and lk.num_dead(0) == 1
    lk.update(*frame(np.zeros((0, 4)), np.zeros((0, 1))))
    lk.update(*frame([[12.0, 12, 52, 52]], [[0.7]]))  # A gap of one frame, then found again
    paths = lk.finish()[0]
    a, b = paths  # sorted by the mean of the top-20 scores: A (.9 ...) first
    assert (a.start, a.end, b.start, b.end) == (0, 9, 0, 4)
    # the gap at frame 7 repeats the next detection (frame 8)
    np.testing.assert_array_equal(a.boxes[7], [12, 12, 52, 52])
    assert a.scores[7] == a.scores[8] == 0.7
    assert a.found.tolist() == [0, 1, 2, 3, 4, 5, 6, 8]


def test_short_paths_dropped_and_contested_box():
    lk = OnlineLinker(1)
    lk.update(*frame([BOX_A, [30.0, 10, 70, 50]], [[0.9], [0.2]]))  # IoU (nms.m) 20*40/(2*1600-800) = 1/3: both kept
    lk.update(*frame([[20.0, 10, 60, 50]], [[0.5]]))  # overlaps both; the .9 path is served first
    live = lk.paths(0)
    assert [p.scores.tolist() for p in live] == [[0.9, 0.5], [0.2]]
    assert lk.finish()[0] == []  # no path has more than 3 detections


def test_nms_runs_in_single_for_single_detections():
    """nms.m gets ``[boxes scores]``, single when either is: this pair overlaps 0.45000002 in single
    (above single(0.45)) and 0.4499999901 in double, so the second box goes in single only."""
    boxes = np.array([[35.88758087158203, 47.17167663574219, 91.71835327148438, 115.70535278320312],
                      [57.06476974487305, 47.17167663574219, 112.89554595947266, 115.70535278320312]])
    scores = np.array([[0.9], [0.8]])
    assert filter_frame(boxes.astype(np.float32), scores.astype(np.float32))[0].tolist() == [0]
    assert filter_frame(boxes, scores.astype(np.float32))[0].tolist() == [0]
    assert filter_frame(boxes, scores)[0].tolist() == [0, 1]


def test_iou_exactly_at_the_linking_threshold_links():
    """incremental_linking.m keeps candidates with IoU >= iou_thresh: a 5x10 box inside a 10x10 one
    has IoU 50 / (100 + eps) == 0.5 exactly, so at 0.5 it extends the path; above 0.5 it starts one."""
    a, b = [1.0, 1.0, 10.0, 10.0], [1.0, 1.0, 5.0, 10.0]
    assert link_iou(np.array([a]), np.array([b]))[0, 0] == 0.5
    for thresh, num_paths in ((0.5, 1), (0.5000001, 2)):
        linker = OnlineLinker(1, iou_thresh=thresh)
        linker.update(*frame([a], [0.9]))
        linker.update(*frame([b], [0.8]))
        paths = linker.paths(0)
        assert len(paths) == num_paths
        assert [len(p.found) for p in paths] == ([2] if num_paths == 1 else [1, 1])


def test_the_original_filter_constants():
    """actionPaths.m dofilter keeps the top 10 per class after NMS, frameAp.m the top 20, both after
    cutting the score-sorted list to 50 *before* NMS: 45 copies of one box outscore 15 disjoint
    boxes, so only the 5 disjoint ones within the first 50 survive (6 boxes, not 10 or 16)."""
    disjoint = np.array([[i * 30.0, 0, i * 30.0 + 20, 20] for i in range(25)])
    scores = np.linspace(0.9, 0.5, 25)[:, None]
    assert filter_frame(disjoint, scores)[0].tolist() == list(range(10))
    assert filter_frame(disjoint, scores, FRAME_AP_FILTER)[0].tolist() == list(range(20))
    boxes = np.concatenate([np.tile(BOX_A, (45, 1)), np.array([[i * 30.0, 300, i * 30.0 + 20, 320] for i in range(15)])])
    scores = np.linspace(0.9, 0.3, 60)[:, None]
    for cfg in (LINKING_FILTER, FRAME_AP_FILTER):
        assert filter_frame(boxes, scores, cfg)[0].tolist() == [0, 45, 46, 47, 48, 49]
    # the score thresholds: 0.001 (linking) and 0.01 (frame-AP), both strict
    scores = np.array([[0.001], [0.0011], [0.01], [0.0101]])
    assert filter_frame(disjoint[:4], scores)[0].tolist() == [3, 2, 1]
    assert filter_frame(disjoint[:4], scores, FRAME_AP_FILTER)[0].tolist() == [3]


@pytest.mark.parametrize("jumpgap", [0, -1, 1.5, True])
def test_jumpgap_must_be_a_positive_integer(jumpgap):
    with pytest.raises(ValueError, match="jumpgap must be an integer >= 1"):
        OnlineLinker(2, jumpgap=jumpgap)


def test_compiling_is_said_once_and_only_when_numba_compiles(caplog):
    """The first run's silent compilation is announced: once per process, at a compilation of this package's
    loops; not when they are already compiled or load from numba's on-disk cache, nor for others' functions."""
    import numba
    from tubes import compiling, trimming
    args = (np.zeros((3, 2)), np.array([0]), np.array([3]), 1.0)
    trimming._viterbi(*args)  # compiled or loaded from the cache; either way now on disk
    compiling._listener.said = False

    def plus_one(x):
        return x + 1
    with caplog.at_level("INFO", logger="tubes.compiling"):
        trimming._viterbi(*args)
        numba.njit(cache=True)(trimming._viterbi.py_func)(*args)  # a new dispatcher: loads from the cache
        numba.njit(plus_one)(1)  # compiled, but not ours
        assert compiling.MESSAGE not in caplog.text
        for name in ("tubes.a", "tubes.b"):  # two of ours compiled: said once
            plus_one.__module__ = name
            numba.njit(plus_one)(1)
    assert caplog.text.count(compiling.MESSAGE) == 1
