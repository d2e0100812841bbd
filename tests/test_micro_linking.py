"""Micro-tube linking (tubes/micro.py): hand-worked windows, and the frame-level linking it becomes
when micro-tubes are reduced to their first box."""
import numpy as np
import pytest

from tubes.boxes import loc_to_link_boxes
from tubes.detections import VideoDetections, frame_detections
from tubes.linking import link_frames
from tubes.micro import MicroTubeLinker, link_micro_tubes

SIZE = (320, 240)
A = [0.05, 0.05, 0.2, 0.25]   # far from B
B = [0.6, 0.5, 0.8, 0.9]
C = [0.62, 0.52, 0.82, 0.9]   # overlaps B


def scores(*class_scores):
    """One class: rows [background, score]."""
    return np.array([[1 - s, s] for s in class_scores], np.float32)


def link(windows, jumpgap=1, num_classes=1):
    linker = MicroTubeLinker(num_classes, SIZE, jumpgap=jumpgap)
    for frames, loc, s in windows:
        linker.update(np.array(frames), np.array(loc, np.float32), s)
    return linker.finish()


def pixels(loc):
    return loc_to_link_boxes(np.array(loc, np.float32).reshape(-1, 4), SIZE)


def test_interpolation_between_the_micro_tubes_frames_and_scores_per_frame():
    paths = link([((0, 4), [[A, C]], scores(0.9)), ((4, 8), [[B, B]], scores(0.5))])[0]
    assert len(paths) == 1
    path = paths[0]
    assert path.start == 0 and len(path.boxes) == 9 and path.found.tolist() == [0, 4]
    # frames 1..3 between A (frame 0) and C (frame 4), a quarter further each frame; frame 4 is the
    # first micro-tube's last box, not the second's first; 5..8 the second micro-tube (B throughout)
    a, c = np.array(A, np.float64), np.array(C, np.float64)
    want = [pixels(((4 - i) * a + i * c) / 4)[0] for i in range(5)] + [pixels(B)[0]] * 4
    np.testing.assert_allclose(path.boxes, want, rtol=1e-6)
    np.testing.assert_array_equal(path.scores, np.float32([0.9] * 5 + [0.5] * 4))


def test_affinity_is_the_paths_last_box_against_the_micro_tubes_first_box():
    # window 2 has a micro-tube starting at A (the path's first box, scored higher) and one starting at
    # B (the path's last box): the path takes the one starting at B; the other starts a new path
    paths = link([((0, 4), [[A, B]], scores(0.9)), ((4, 8), [[A, A], [C, C]], scores(0.8, 0.4))])
    # finish keeps paths of more than jumpgap (1) micro-tubes: only the linked one
    assert len(paths[0]) == 1
    np.testing.assert_allclose(paths[0][0].boxes[5:], pixels([C] * 4), rtol=1e-6)
    assert paths[0][0].scores[-1] == np.float32(0.4)
    linker = MicroTubeLinker(1, SIZE, jumpgap=1)
    linker.update(np.array([0, 4]), np.float32([[A, B]]), scores(0.9))
    linker.update(np.array([4, 8]), np.float32([[A, A], [C, C]]), scores(0.8, 0.4))
    live = linker.paths(0)
    assert [(p.start, len(p.boxes)) for p in live] == [(0, 9), (4, 5)]


def test_gaps_repeat_the_next_micro_tubes_first_box_and_jumpgap_counts_windows():
    far = [[[0.0, 0.0, 0.01, 0.01]] * 2]
    windows = [((0, 4), [[A, A]], scores(0.9)), ((4, 8), far, scores(0.3)), ((8, 12), [[A, C]], scores(0.7)),
               ((12, 16), [[C, C]], scores(0.6))]
    # jumpgap 2: one missed window (4 frames) does not end the path (jumpgap counts windows)
    path = max(link(windows, jumpgap=2)[0], key=lambda p: len(p.boxes))
    assert path.start == 0 and len(path.boxes) == 17 and path.found.tolist() == [0, 8, 12]
    # frames 5..8 repeat the third micro-tube's first box (A) and its scores; 9..11 interpolate A -> C
    np.testing.assert_allclose(path.boxes[5:9], pixels([A] * 4), rtol=1e-6)
    np.testing.assert_array_equal(path.scores[5:13], np.float32([0.7] * 8))
    np.testing.assert_allclose(path.boxes[10], pixels((np.array(A, np.float64) + C) / 2)[0], rtol=1e-6)
    # jumpgap 1: the miss ends it; the path from frame 8 on is another one
    starts = sorted(p.start for p in link(windows, jumpgap=1)[0])
    assert starts == [8]  # the first path had one micro-tube (not more than jumpgap): dropped


def test_the_last_window_starting_inside_the_previous_adds_only_its_later_frames():
    # test.py's windows of a 6-frame video at eval gap 1: (0, 2), (2, 4), then (3, 5) for the last frame
    windows = [((0, 2), [[A, A]], scores(0.9)), ((2, 4), [[A, A]], scores(0.8)), ((3, 5), [[A, C]], scores(0.7))]
    path = link(windows)[0][0]
    assert path.start == 0 and len(path.boxes) == 6
    np.testing.assert_array_equal(path.scores, np.float32([0.9] * 3 + [0.8] * 2 + [0.7]))
    np.testing.assert_allclose(path.boxes[5], pixels(C)[0], rtol=1e-6)  # the micro-tube's box at frame 5
    with pytest.raises(ValueError, match=r"frames \[1, 3\].*start order"):
        link([((2, 4), [[A, A]], scores(0.9)), ((1, 3), [[A, A]], scores(0.9))])


def random_micro_tubes(rng, num_frames, gap, per_window, num_classes):
    """test.py-style windows (t, t + gap), t = 0, gap, ..., plus the one ending at the last frame:
    micro-tubes around two moving actors plus clutter, float32 boxes and scores."""
    starts = list(range(0, num_frames - gap - 1, gap))
    starts += [num_frames - gap - 1] if num_frames - gap - 1 not in starts else []
    frames = np.array([[s, s + gap] for s in starts])
    centre = np.array([[60, 80], [200, 120]])[rng.integers(0, 2, (len(starts), per_window))]
    centre = centre + rng.normal(0, 8, (len(starts), per_window, 2)) + frames[:, :1, None] * [2, -1]
    size = rng.uniform(20, 90, (len(starts), per_window, 1, 2))
    move = rng.normal(0, 3, (len(starts), per_window, 2, 2)) * [[0], [1]]
    box = np.concatenate([centre[:, :, None] + move - size / 2, centre[:, :, None] + move + size / 2], -1)
    loc = np.clip(box / [320, 240, 320, 240], 0, 1).astype(np.float32).reshape(-1, 2, 4)
    class_scores = rng.dirichlet(np.full(num_classes + 1, 0.3), len(loc)).astype(np.float32)
    window = np.repeat(np.arange(len(starts)), per_window)
    return VideoDetections(frames, loc, class_scores, window, num_frames, SIZE)


@pytest.mark.parametrize("seed", [0, 1])
def test_micro_tubes_reduced_to_their_first_box_link_as_frames(seed):
    """k = 1 (test.py --eval_gaps 0: windows (t, t + 1) at every frame), each micro-tube reduced to its
    first box: the micro linking equals the frame-level linking of those boxes, path for path."""
    det = random_micro_tubes(np.random.default_rng(seed), 50, 1, 12, 3)
    reduced = VideoDetections(det.frames[:, :1], det.boxes[:, :1], det.scores, det.window, det.num_frames, SIZE)
    got = link_micro_tubes(reduced, 3)
    # the reduced windows cover frames 0..48 (frame 49 was only the last window's second frame)
    want, _ = link_frames(frame_detections(reduced)[:-1], 3, SIZE)
    assert sum(map(len, want)) > 5
    for g, w in zip(got, want, strict=True):
        assert len(g) == len(w)
        for p, q in zip(g, w):
            assert p.start == q.start and p.found.tolist() == q.found.tolist()
            np.testing.assert_array_equal(p.boxes, q.boxes)
            np.testing.assert_array_equal(p.scores, q.scores)
            np.testing.assert_array_equal(p.all_scores, q.all_scores)



def test_online_micro_tubes_give_each_frame_the_paths_covering_it():
    """OnlineMicroTubes.current, frame by frame: every path (short ones too) that covers the frame,
    with its box there and the mean of its scores up to it."""
    from tubes.micro import OnlineMicroTubes
    det = random_micro_tubes(np.random.default_rng(4), 30, 2, 8, 2)
    online = OnlineMicroTubes(2, SIZE)
    shown = []
    for w in range(len(det.frames)):
        online.add_window(det.frames[w], det.boxes[det.window == w], det.scores[det.window == w])
    for _ in range(det.num_frames):
        online.update(None, None)
        shown.append(online.current())
    paths, classes, _, _ = online.linker._gather(np.arange(online.linker._num_paths), -1)
    assert len(paths) > 4
    for path, c in zip(paths, classes):
        for f in range(path.start, path.end):
            entries = [e for e in shown[f] if e[0] == c and (e[1] == path.boxes[f - path.start] - 1).all()]
            assert len(entries) == 1
            assert entries[0][2] == path.scores[f - path.start]
            assert entries[0][3] == pytest.approx(path.scores[:f - path.start + 1].astype(np.float64).mean())
    assert sum(map(len, shown)) == sum(len(p.boxes) for p in paths)


def test_micro_linking_needs_npz_micro_tubes_of_one_stream(tmp_path):
    from tubes.runner import TubeConfig
    TubeConfig(tmp_path, "npz", link="micro")
    with pytest.raises(ValueError, match="test.py's npz detections .*got 'road_mat'"):
        TubeConfig(tmp_path, "road_mat", link="micro")
    with pytest.raises(ValueError, match="one stream"):
        TubeConfig(tmp_path, "npz", link="micro", fusion="boost", fuse_det_dir=tmp_path)
    with pytest.raises(ValueError, match="link must be one of"):
        TubeConfig(tmp_path, "npz", link="tube")


def test_prefused_mean_detections_link_as_micro_tubes(tmp_path):
    """test.py --fuse_weights's mean/ folder is one stream of micro-tubes: --link micro takes it."""
    import json
    from tubes.detections import frame_map_path
    from tubes.runner import TubeConfig
    (tmp_path / "mean").mkdir()
    frame_map_path(tmp_path / "mean").write_text(json.dumps({"fusion": "mean"}))
    assert TubeConfig(tmp_path / "mean", "npz", link="micro", fusion="mean").prefused


def test_online_evaluation_of_micro_tubes():
    """eval_online.py --link micro: at 100% observed the tubes of build_tubes.py --link micro; at a fraction,
    only the windows that ended before its last frame are linked."""
    from tubes import online_eval as oe
    from tubes.trimming import trim_video
    det = random_micro_tubes(np.random.default_rng(5), 40, 2, 8, 2)
    labels, tubes = oe.online_video(det, SIZE, 40, 2, (3.0,), (0.5, 1.0), link="micro")
    want = trim_video(link_micro_tubes(det, 2), (3.0,))[3.0]
    assert len(want) > 2 and labels[1] in (0, 1)
    assert [(t.class_id, t.score, t.start, t.boxes.tolist()) for t in tubes[1][3.0]] == \
        [(t.class_id, t.score, t.start, t.boxes.tolist()) for t in want]
    half = oe.observed_frames(0.5, 40)  # 20 frames: windows ending at frame 19 or before (0, 2, ..., 16-18)
    early = det.frames[:, -1] < half
    first_half = VideoDetections(det.frames[early], det.boxes[np.isin(det.window, np.nonzero(early)[0])],
                                 det.scores[np.isin(det.window, np.nonzero(early)[0])],
                                 det.window[np.isin(det.window, np.nonzero(early)[0])], half, SIZE)
    assert [(t.class_id, t.score, t.start) for t in tubes[0][3.0]] == \
        [(t.class_id, t.score, t.start) for t in trim_video(link_micro_tubes(first_half, 2), (3.0,))[3.0]]
    assert all(t.start + len(t.boxes) <= half for t in tubes[0][3.0])
