"""Trimming (Viterbi), detection files, annotation readers, and build_tubes.py end to end on real annotations."""
import json
import shutil

import numpy as np
import pytest
import scipy.io

from data.annotations import load_pyannot, read_video_list, xyxy0_to_xywh1
from data.matlab_annots import load_final_annots
from tubes.detections import (DetectionError, frame_detections, read_video_detections, write_road_mat_frame,
                              write_video_detections)
from tests.reference import label_segments, viterbi_labels
from tubes.linking import ActionPath
from tubes.trimming import trim_paths


def viterbi_reference(m, alpha):
    """dpEM_max.m written out literally: the full C x C comparison, first index on ties."""
    length, c = m.shape
    d = np.zeros(c)
    phi = np.zeros((length, c), int)
    for t in range(length):
        new = np.empty(c)
        for i in range(c):
            cand = d - alpha * (np.arange(c) != i)
            phi[t, i] = int(np.argmax(cand))
            new[i] = m[t, i] + cand[phi[t, i]]
        d = new
    labels = [int(np.argmax(d))]
    for t in range(length - 1, 0, -1):
        labels.insert(0, phi[t, labels[0]])
    return np.array(labels)


@pytest.mark.parametrize("alpha", [0.0, 1.0, 3.0])
def test_viterbi_equals_literal_dp(alpha):
    rng = np.random.default_rng(int(alpha))
    # integer-valued scores make many exact ties, where the first-index rule decides
    unaries = [rng.integers(0, 4, (int(n), 5)).astype(float) + 20 for n in rng.integers(1, 30, 12)]
    got = viterbi_labels(unaries, alpha)
    for u, g in zip(unaries, got):
        np.testing.assert_array_equal(g, viterbi_reference(u, alpha))


def test_segments_and_trimming_rules():
    assert label_segments(np.array([1, 1, 0, 1, 2, 1]), 1) == [(0, 1), (3, 3), (5, 5)]
    n = 30
    scores = np.zeros((n, 2))
    scores[:, 0] = 0.9
    scores[10:, 0], scores[10:, 1] = 0.0, 0.9  # class 1 from frame 10 on: with alpha 1, the path switches
    boxes = np.tile([1.0, 1, 10, 10], (n, 1))
    path = ActionPath(5, boxes, scores[:, 0].copy(), scores, np.arange(5, 5 + n))
    tubes = trim_paths([[path], []], alpha=1.0)
    # frames 0..9 labelled class 0: te - ts = 9 > 8 -> kept; score = mean of the top 40 class-0 scores
    assert [(t.class_id, t.start, t.end) for t in tubes] == [(0, 5, 15)]
    assert tubes[0].score == pytest.approx(0.9)
    short = ActionPath(0, boxes[:9], scores[:9, 0].copy(), scores[:9], np.arange(9))
    assert trim_paths([[short], []], alpha=1.0) == []  # 9 frames: te - ts = 8 is not > 8


def test_npz_roundtrip_and_per_frame_detections(tmp_path):
    frames = np.array([[0, 1], [1, 2], [3, 5]])
    boxes = np.zeros((3, 2, 4), np.float32)
    boxes[:, 0] = [[0.1, 0.1, 0.2, 0.2], [0.3, 0.3, 0.4, 0.4], [0.5, 0.5, 0.6, 0.6]]
    boxes[:, 1] = [[0.11, 0.1, 0.2, 0.2], [0.31, 0.3, 0.4, 0.4], [0.7, 0.5, 0.6, 0.6]]
    scores = np.array([[0.1, 0.9], [0.2, 0.8], [0.3, 0.7]])
    write_video_detections(tmp_path / "v.npz", frames, boxes, scores, [0, 1, 2], 7)
    with np.load(tmp_path / "v.npz") as z:  # pixels on disk (default frame 320 x 240)
        np.testing.assert_allclose(z["boxes"][2, 1], [224, 120, 192, 144], rtol=1e-6)
    det = read_video_detections(tmp_path / "v.npz")
    np.testing.assert_array_equal(det.boxes, boxes)  # normalised again in memory, exactly
    per = frame_detections(det)
    assert len(per) == 7
    np.testing.assert_allclose(per[0][0], boxes[[0], 0])          # window 0 starts at frame 0
    np.testing.assert_allclose(per[1][0], boxes[[1], 0])          # the latest window covering frame 1
    np.testing.assert_allclose(per[2][0], boxes[[1], 1])          # window 1's second frame
    np.testing.assert_allclose(per[4][0], [[0.6, 0.5, 0.6, 0.6]])  # halfway between frames 3 and 5
    assert len(per[6][0]) == 0 and per[6][1].shape == (0, 2)      # no window covers frame 6
    np.savez(tmp_path / "bad.npz", frames=frames, boxes=boxes[:2], scores=scores, window=[0, 1, 2], num_frames=7)
    with pytest.raises(DetectionError, match="bad.npz.*'boxes'"):
        read_video_detections(tmp_path / "bad.npz")


def test_final_annots_equal_pyannot(ucf24_dir):
    mat = load_final_annots(ucf24_dir / "finalAnnots.mat")
    pkl = load_pyannot(ucf24_dir / "pyannot.pkl")
    assert mat.keys() == pkl.keys()
    for name in read_video_list(ucf24_dir / "testlist01.txt")[::20]:
        a, b = mat[name], pkl[name]
        assert (a.num_frames, a.class_id, len(a.tubes)) == (b.num_frames, b.class_id, len(b.tubes))
        for ta, tb in zip(a.tubes, b.tubes):
            assert (ta.start, ta.end, ta.class_id) == (tb.start, tb.end, tb.class_id)
            np.testing.assert_array_equal(ta.boxes, tb.boxes)


def _write_gt_detections(root, video, num_classes, rng, jitter):
    """road_mat files from the GT boxes (+- jitter px) plus a low-scored clutter box per frame."""
    for f in range(video.num_frames):
        loc, scores = [], []
        for t in video.tubes:
            if t.start <= f < t.end:
                # link boxes are loc * size + 1 and the evaluator compares them to x - 1, x + w - 2
                x, y, w, h = xyxy0_to_xywh1(t.boxes[f - t.start:f - t.start + 1])[0]
                box = np.array([x - 2, y - 2, x + w - 3, y + h - 3]) + rng.integers(-jitter, jitter + 1, 4)
                loc.append(box / [320, 240, 320, 240])
                s = np.full(num_classes + 1, 0.002)
                s[video.class_id + 1] = 0.9
                scores.append(s)
        loc.append([0.0, 0.0, 0.1, 0.1])
        scores.append(np.r_[0.9, np.full(num_classes, 0.0001)])
        write_road_mat_frame(root / video.name / f"{f + 1:05d}.mat", np.array(loc), np.array(scores))


def test_build_tubes_end_to_end_on_real_annotations(tmp_path, ucf24_dir):
    import build_tubes
    annots = load_pyannot(ucf24_dir / "pyannot.pkl")
    names = [n for n in read_video_list(ucf24_dir / "testlist01.txt") if annots[n].num_frames < 90][:4]
    rng = np.random.default_rng(0)
    for name in names:
        _write_gt_detections(tmp_path / "dets", annots[name], 24, rng, jitter=1)
    missing = "Basketball/v_Basketball_g01_c01"  # listed, but without detections
    (tmp_path / "list.txt").write_text("\n".join(names + [missing]) + "\n")
    args = ["--det_dir", str(tmp_path / "dets"), "--video_list", str(tmp_path / "list.txt"), "--alphas", "3"]
    res_mat = build_tubes.main(args + ["--annot", str(ucf24_dir / "finalAnnots.mat"), "--out_dir", str(tmp_path / "a")])
    res_pkl = build_tubes.main(args + ["--annot", str(ucf24_dir / "pyannot.pkl"), "--out_dir", str(tmp_path / "b")])
    assert json.loads((tmp_path / "a" / "results.json").read_text())["video_map"] == res_mat["video_map"]
    assert [r["mAP"] for r in res_mat["video_map"]] == [r["mAP"] for r in res_pkl["video_map"]]
    by_iou = {round(r["iou"], 2): r for r in res_mat["video_map"]}
    # every found GT tube is detected once with jitter of 1 px: all of a class's tubes are found at 0.5,
    # except the video without detections, whose class has AP (found / total) by hand
    classes = {annots[n].class_id for n in names + [missing]}
    expected = []
    for c in classes:
        total = sum(len(annots[n].tubes) for n in names + [missing] if annots[n].class_id == c)
        found = sum(len(annots[n].tubes) for n in names if annots[n].class_id == c)
        expected.append(found / total)
    assert by_iou[0.5]["mAP"] == pytest.approx(sum(expected) / 24)
    assert by_iou[0.2]["accuracy"] == pytest.approx(len(names) / (len(names) + 1))
    assert (tmp_path / "a" / "tubes_alpha3.npz").is_file()
    # frame-mAP by hand: each GT box has one detection of its class (0.9, 1 px off), so a class's AP
    # is the share of its GT boxes (frames) in videos with detections
    gt_boxes = {c: [0, 0] for c in classes}
    for n in names + [missing]:
        for tube in annots[n].tubes:
            gt_boxes[tube.class_id][n != missing] += tube.end - tube.start
    names_24 = list(res_mat["frame_map_frameap"]["ap"])
    for c, (lost, found) in gt_boxes.items():
        assert res_mat["frame_map_frameap"]["ap"][names_24[c]] == pytest.approx(found / (found + lost))
    assert res_mat["frame_map_frameap"]["mAP"] == pytest.approx(sum(f / (f + m) for m, f in gt_boxes.values()) / 24)
    # two worker processes (each matching its videos' frame-AP detections) give the same results
    res_two = build_tubes.main(args + ["--annot", str(ucf24_dir / "pyannot.pkl"), "--out_dir", str(tmp_path / "c"),
                                       "--workers", "2"])
    assert res_two["video_map"] == res_pkl["video_map"] and res_two["frame_map_frameap"] == res_pkl["frame_map_frameap"]


def test_trim_paths_equals_per_path_reference():
    """Vectorised segments and scores against label_segments + a left-to-right mean, path by path."""
    rng = np.random.default_rng(5)
    paths = [[], [], []]
    for _ in range(30):
        c, n = int(rng.integers(0, 3)), int(rng.integers(1, 60))
        all_scores = np.round(rng.random((n, 3)) * 0.6, 1)
        all_scores[rng.random(n) < 0.7, c] += 0.4  # mostly the path's class, with switches
        paths[c].append(ActionPath(int(rng.integers(0, 50)), rng.random((n, 4)), all_scores[:, c].copy(), all_scores, None))
    for alpha in (0.0, 0.5, 3.0):
        want = []  # alpha 0: every frame takes its best label
        for c, ps in enumerate(paths):
            for p in ps:
                for ts, te in label_segments(viterbi_reference(p.all_scores + 20, alpha), c):
                    top = np.sort(p.scores[ts:te + 1])[::-1][:40]
                    score = sum(top.tolist(), 0.0) / len(top)
                    if score > 0 and te - ts > 8:
                        want.append((c, score, p.start + ts, p.boxes[ts:te + 1]))
        got = trim_paths(paths, alpha)
        assert len(got) == len(want) > (0 if alpha == 0 else 3)
        for t, (c, score, start, boxes) in zip(got, want):
            assert (t.class_id, t.score, t.start) == (c, score, start)
            np.testing.assert_array_equal(t.boxes, boxes)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tubes_file_keeps_the_box_precision(tmp_path, dtype):
    """Single detections give single link boxes, which the evaluation computes in (convert2eval.m's
    x2 - x1 and the evaluator's + 1): a saved and reloaded tube has the same boxes, bit for bit, in
    the same precision, and the same scores."""
    from tests.reference import link_and_trim
    from tubes.tube_files import load_tubes, save_tubes
    rng = np.random.default_rng(4)
    track = np.cumsum(rng.normal(0, 1.5, (30, 4)), 0) + [60, 40, 160, 200]
    frames = [((np.stack([b, b + rng.normal(0, 3, 4)]) / [320, 240, 320, 240]).astype(dtype),
               np.array([[0.1, 0.8, 0.1], [0.3, 0.6, 0.1]], dtype)) for b in track]
    paths, tubes = link_and_trim(frames, 2, [3.0])
    assert paths[0][0].boxes.dtype == paths[0][0].scores.dtype == dtype
    save_tubes(tmp_path / "t.npz", ["v"], {"v": tubes}, 3.0)
    _, loaded = load_tubes(tmp_path / "t.npz")
    assert len(loaded["v"]) == len(tubes[3.0]) > 0
    for a, b in zip(loaded["v"], tubes[3.0]):
        assert a.boxes.dtype == b.boxes.dtype == dtype
        np.testing.assert_array_equal(a.boxes, b.boxes)
        assert (a.class_id, a.start, a.score) == (b.class_id, b.start, b.score)
    # for single detections the tube score is a single-precision mean (Octave: sum(x) / n in single)
    assert all((t.score == float(np.float32(t.score))) == (dtype == np.float32) for t in tubes[3.0])


def test_build_tubes_inputs_edges_and_errors(tmp_path, ucf24_dir, caplog, capsys):
    """Default video selection, empty frame files (either shape), a video folder without files; a malformed
    video counted as one without detections (or, with --strict, an error); list and flag errors."""
    import build_tubes
    from tubes.tube_files import load_tubes
    annots = load_pyannot(ucf24_dir / "pyannot.pkl")
    split = read_video_list(ucf24_dir / "testlist01.txt")
    short = [n for n in split if annots[n].num_frames < 90]
    first, empty_dir = short[1], short[0]  # selection must follow the split's order, not the folders'
    for variant, empty in (("a", np.zeros((0, 0))), ("b", np.zeros((0, 25)))):
        det = tmp_path / variant
        _write_gt_detections(det, annots[first], 24, np.random.default_rng(1), jitter=1)
        write_road_mat_frame(det / first / "00001.mat", np.zeros((0, 4)) if empty.size else empty, empty)
        (det / empty_dir).mkdir(parents=True)
    common = ["--annot", str(ucf24_dir / "pyannot.pkl"), "--alphas", "3", "--no_frame_map"]
    with caplog.at_level("WARNING"):
        res = build_tubes.main(["--det_dir", str(tmp_path / "a"), "--out_dir", str(tmp_path / "out_a")] + common)
    assert f"no .mat frame files for video {empty_dir}" in caplog.text
    assert res["video_map"][0]["alpha"] == 3 and isinstance(res["video_map"][0]["alpha"], int)
    printed = capsys.readouterr().out
    assert "alpha  mAP@0.2  mAP@0.5  mAP@0.75  mAP@0.5:0.95  accuracy" in printed and "time: annotations" in printed
    build_tubes.main(["--det_dir", str(tmp_path / "b"), "--out_dir", str(tmp_path / "out_b")] + common)
    _, tubes_a = load_tubes(tmp_path / "out_a" / "tubes_alpha3.npz")
    _, tubes_b = load_tubes(tmp_path / "out_b" / "tubes_alpha3.npz")
    assert list(tubes_a) == split  # every video of the test split, in its order; those without detections have no tubes
    assert res["videos_without_detections"] == [v for v in split if v != first]
    assert tubes_a[empty_dir] == [] and len(tubes_a[first]) == len(tubes_b[first]) > 0
    for ta, tb in zip(tubes_a[first], tubes_b[first]):
        assert ta.start == tb.start >= 1  # frame 1 has no detection
        np.testing.assert_array_equal(ta.boxes, tb.boxes)
    # A frame whose scores have another number of columns than the video's other frames: the video
    # counts as one without detections (its GT tubes still count) and the run goes on; --strict stops.
    second = short[2]
    _write_gt_detections(tmp_path / "b", annots[second], 24, np.random.default_rng(2), jitter=1)
    write_road_mat_frame(tmp_path / "b" / first / "00003.mat", np.zeros((1, 4)), np.full((1, 21), 0.5))
    (tmp_path / "pair.txt").write_text(f"{first}\n{second}\n")
    pair = ["--det_dir", str(tmp_path / "b"), "--video_list", str(tmp_path / "pair.txt")] + common
    caplog.clear()
    with_frame_map = pair[:-1] + ["--workers", "2"]  # the failure comes back from a worker process
    res_bad = build_tubes.main(with_frame_map + ["--out_dir", str(tmp_path / "out_c")])
    assert list(res_bad["failed_videos"]) == [first]
    assert "00003.mat: 'scores' has 21 columns" in res_bad["failed_videos"][first]
    assert f"{first}" in caplog.text and "counted as a video without detections" in caplog.text
    assert res_bad["videos_without_detections"] == [first]
    assert "1 of 2 videos counted as without detections, 1 of them unreadable" in capsys.readouterr().out
    shutil.rmtree(tmp_path / "b" / first)
    res_none = build_tubes.main(with_frame_map + ["--out_dir", str(tmp_path / "out_d")])
    assert res_none["failed_videos"] == {} and res_none["video_map"] == res_bad["video_map"]
    assert res_none["videos_without_detections"] == [first]
    assert res_none["frame_map_frameap"] == res_bad["frame_map_frameap"] and 0 < res_bad["frame_map_frameap"]["mAP"]
    assert 0 < res_bad["video_map"][0]["mAP"] and res_bad["video_map"][0]["accuracy"] == 0.5
    _write_gt_detections(tmp_path / "b", annots[first], 24, np.random.default_rng(1), jitter=1)
    write_road_mat_frame(tmp_path / "b" / first / "00003.mat", np.zeros((1, 4)), np.full((1, 21), 0.5))
    with pytest.raises(SystemExit, match=r"00003\.mat: 'scores' has 21 columns, 00001\.mat has 25"):
        build_tubes.main(pair + ["--out_dir", str(tmp_path / "out_c"), "--strict"])
    # no video readable is an error, not a table of zeros
    (tmp_path / "one.txt").write_text(f"{first}\n")
    with pytest.raises(SystemExit, match=r"no readable detections in any listed video \(first error: .*00003\.mat"):
        build_tubes.main(pair[:2] + ["--video_list", str(tmp_path / "one.txt"), "--out_dir", str(tmp_path / "y")]
                         + common)
    # detections with fewer classes than the annotations (here the first video's): an error naming its folder
    shutil.rmtree(tmp_path / "b" / first)
    for f in range(annots[first].num_frames):
        write_road_mat_frame(tmp_path / "b" / first / f"{f + 1:05d}.mat", np.zeros((1, 4)), np.full((1, 3), 0.5))
    with pytest.raises(SystemExit, match=rf"{first}: scores have 3 columns .* the annotations have 24 classes"):
        build_tubes.main(pair + ["--out_dir", str(tmp_path / "z")])
    (tmp_path / "twice.txt").write_text(f"{second}\n{first}\n{second}\n")
    with pytest.raises(SystemExit, match=rf"twice\.txt: 1 videos listed more than once \(first: {second}\)"):
        build_tubes.main(pair[:2] + ["--video_list", str(tmp_path / "twice.txt"), "--out_dir", str(tmp_path / "x")]
                         + common)
    (tmp_path / "list.txt").write_text(f"{first}\nBasketball/v_Basketball_g99_c99\n")
    with pytest.raises(SystemExit, match=r"list\.txt: 1 videos not in the annotations .*v_Basketball_g99_c99"):
        build_tubes.main(["--det_dir", str(tmp_path / "b"), "--out_dir", str(tmp_path / "out_d"),
                          "--video_list", str(tmp_path / "list.txt")] + common)
    for flag, bad in (("--alphas", "3,x"), ("--alphas", "3,-1"), ("--jumpgap", "0"), ("--jumpgap", "-1"),
                      ("--workers", "0")):
        with pytest.raises(SystemExit):
            build_tubes.main(["--det_dir", str(tmp_path / "b"), "--out_dir", str(tmp_path / "out_e"), *common[:2],
                              flag, bad])
        assert flag in capsys.readouterr().err


def test_road_mat_frames_are_placed_by_their_number(tmp_path, caplog):
    """Frame n comes from <n>.mat: a missing file is a frame without detections (warned, in the video's
    precision), a hidden leftover of an interrupted write is ignored, other names and NaN are errors."""
    from tubes.detections import read_road_mat_video
    video = tmp_path / "Basketball" / "v_Basketball_g01_c01"
    rng = np.random.default_rng(0)
    written = {n: (rng.random((3, 4)).astype(np.float32), rng.random((3, 5)).astype(np.float32)) for n in (1, 3, 4)}
    for n, (loc, scores) in written.items():
        write_road_mat_frame(video / f"{n:05d}.mat", loc, scores)
    write_road_mat_frame(video / ".00002.mat.k3j2.tmp.mat", np.ones((3, 4)), np.ones((3, 5)))
    with caplog.at_level("WARNING"):
        frames = read_road_mat_video(video)
    assert "1 of 4 frame files missing (first: 00002.mat)" in caplog.text
    assert len(frames) == 4
    for n, (loc, scores) in written.items():
        np.testing.assert_array_equal(frames[n - 1][0], loc)
        np.testing.assert_array_equal(frames[n - 1][1], scores)
    assert frames[1][0].shape == (0, 4) and frames[1][1].shape == (0, 5)
    assert frames[1][0].dtype == frames[1][1].dtype == np.float32  # a single video stays single
    write_road_mat_frame(video / "3.mat", *written[3])
    with pytest.raises(DetectionError, match=r"3\.mat: frame 3 is also in 00003\.mat|00003\.mat: frame 3 is also in 3\.mat"):
        read_road_mat_video(video)
    (video / "3.mat").unlink()
    write_road_mat_frame(video / "notes.mat", *written[3])
    with pytest.raises(DetectionError, match=r"notes\.mat: not a frame file"):
        read_road_mat_video(video)
    (video / "notes.mat").unlink()
    write_road_mat_frame(video / "00004.mat", written[4][0], np.where(np.eye(3, 5) > 0, np.nan, written[4][1]))
    with pytest.raises(DetectionError, match=r"00004\.mat: 'loc' or 'scores' has non-finite values"):
        read_road_mat_video(video)
    scipy.io.savemat(video / "00004.mat", {"loc": np.array([["a", "b"]], object), "scores": written[4][1]})
    with pytest.raises(DetectionError, match=r"00004\.mat: field 'loc' holds object, expected numbers"):
        read_road_mat_video(video)
    write_road_mat_frame(video / "00004.mat", *written[4])
    write_road_mat_frame(video / "20231125.mat", *written[4])  # a stray number: not 20 million empty frames
    with pytest.raises(DetectionError, match=r"20231125\.mat: frame number 20231125 for a folder of 4 frame files"):
        read_road_mat_video(video)


def test_npz_with_non_finite_scores_is_an_error(tmp_path):
    path = tmp_path / "v.npz"
    write_video_detections(path, [[0]], np.zeros((1, 1, 4)), [[0.5, 0.5]], [0], 1)
    with np.load(path) as z:
        fields = dict(z)
    fields["scores"] = np.array([[np.nan, 0.5]], np.float32)
    np.savez(path, **fields)
    with pytest.raises(DetectionError, match=r"v\.npz: field 'scores' has non-finite values"):
        read_video_detections(path)
    fields["scores"] = np.array([["x", "y"]])
    np.savez(path, **fields)
    with pytest.raises(DetectionError, match=r"v\.npz: field 'scores' holds <U1, expected numbers"):
        read_video_detections(path)
    path.write_bytes(path.read_bytes()[:100])  # truncated: numpy raises zipfile.BadZipFile
    with pytest.raises(DetectionError, match=r"v\.npz: cannot read detections \(BadZipFile"):
        read_video_detections(path)


@pytest.mark.parametrize("field, value", [("jumpgap", 0), ("workers", 0), ("alphas", (3.0, -1.0)), ("alphas", ())])
def test_tube_config_checks_its_values(tmp_path, field, value):
    from tubes.runner import TubeConfig
    with pytest.raises(ValueError, match=field):
        TubeConfig(tmp_path, **{field: value})


def test_input_files_that_are_not_what_they_claim_name_themselves(tmp_path, ucf24_dir):
    """A corrupt annotation file, a tube file that is not one, a list that is not text, and an
    eval_video_ap video list with a video unknown to the annotations."""
    import eval_video_ap
    from data.annotations import AnnotationError
    from tubes.trimming import ActionTube
    from tubes.tube_files import load_tubes, save_tubes
    for name in ("pyannot.pkl", "finalAnnots.mat"):
        (tmp_path / name).write_bytes(b"\x00garbage" * 10)
    with pytest.raises(AnnotationError, match=r"pyannot\.pkl: not a readable pickle"):
        load_pyannot(tmp_path / "pyannot.pkl")
    with pytest.raises(AnnotationError, match=r"finalAnnots\.mat: not a readable Matlab file"):
        load_final_annots(tmp_path / "finalAnnots.mat")
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(ValueError, match=r"other\.npz: not a tube file written by build_tubes\.py"):
        load_tubes(tmp_path / "other.npz")
    (tmp_path / "cut.npz").write_bytes((tmp_path / "other.npz").read_bytes()[:50])
    with pytest.raises(ValueError, match=r"cut\.npz: not a tube file written by build_tubes\.py \(BadZipFile"):
        load_tubes(tmp_path / "cut.npz")
    (tmp_path / "latin1.txt").write_bytes("Basketball/v_Basketball_g01_c01 \xe9\n".encode("latin1"))
    with pytest.raises(ValueError, match=r"latin1\.txt: not a text file"):
        read_video_list(tmp_path / "latin1.txt")
    video = "Basketball/v_Basketball_g01_c01"
    save_tubes(tmp_path / "t.npz", [video], {video: {3.0: [ActionTube(0, 0.5, 0, np.ones((10, 4)))]}}, 3.0)
    (tmp_path / "list.txt").write_text(f"{video}\nBasketball/v_Basketball_g99_c99\n")
    with pytest.raises(SystemExit, match=r"list\.txt: 1 videos not in the annotations .*g99_c99"):
        eval_video_ap.main(["--tubes", str(tmp_path / "t.npz"), "--annot", str(ucf24_dir / "pyannot.pkl"),
                            "--video_list", str(tmp_path / "list.txt"), "--out_dir", str(tmp_path / "out")])
