"""Edge cases and bad input for everything that reads user or generated data: videos
(prepare_data.py), annotation files (pyannot.pkl, finalAnnots.mat, ACT pickles) and detection
files (npz, road_mat). Each is handled, or stops with an error naming the file and the field;
nothing already written is lost."""
import logging
import pickle
import subprocess
import sys

import cv2
import numpy as np
import pytest
import scipy.io

from data import layout
from data.act_annots import load_act_gt
from data.annotations import AnnotationError, load_pyannot
from data.matlab_annots import load_final_annots
from tests.conftest import REPO_ROOT
from tubes.detections import (DetectionError, frame_detections, read_road_mat_video, read_video_detections,
                              write_road_mat_frame, write_video_detections)


# ---------------------------------------------------------------- videos (prepare_data.py videos)

def _write_video(path, num_frames, size):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, size)
    assert writer.isOpened()
    rng = np.random.default_rng(num_frames)
    scene = cv2.GaussianBlur((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8), (0, 0), 2)
    for i in range(num_frames):
        writer.write(np.roll(scene, 2 * i, axis=1))
    writer.release()


def _prepare(*args):
    return subprocess.run([sys.executable, "prepare_data.py", "--quiet", "videos", *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, errors="replace", timeout=300)


def _tree(root):
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_videos_of_zero_and_one_frame_odd_sizes_and_garbage(tmp_path):
    """Zero frames and garbage: reported by name (exit 1), no folder for them; one frame: one frame
    and one (zero) flow image; odd sizes: frames as OpenCV decodes them, flow of the same size. A
    rerun with more bad videos leaves what the first run wrote untouched."""
    videos = tmp_path / "videos" / "Clips"
    videos.mkdir(parents=True)
    _write_video(videos / "good.avi", 4, (64, 48))
    out = tmp_path / "data"
    assert _prepare("--videos_dir", str(tmp_path / "videos"), "--out", str(out)).returncode == 0
    first = _tree(out)
    _write_video(videos / "empty.avi", 0, (64, 48))
    _write_video(videos / "single.avi", 1, (64, 48))
    _write_video(videos / "odd.avi", 3, (75, 49))
    (videos / "garbage.mp4").write_bytes(b"\x00\x01 not a video" * 50)
    (videos / "cut.avi").write_bytes((videos / "good.avi").read_bytes()[:200])  # truncated in its header
    result = _prepare("--videos_dir", str(tmp_path / "videos"), "--out", str(out), "--workers", "2")
    assert result.returncode == 1
    for bad in ("empty", "garbage", "cut"):
        assert f"FAILED Clips/{bad}:" in result.stderr and f"{bad}." in result.stderr, bad
        assert not layout.video_dir(out, "rgb", f"Clips/{bad}").exists(), bad
    assert "2 done, 1 already complete, 3 failed" in result.stderr
    assert {k: v for k, v in _tree(out).items() if k in first} == first  # untouched
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporaries left
    for name, count in (("single", 1), ("odd", 3)):
        rgb = sorted(layout.video_dir(out, "rgb", f"Clips/{name}").iterdir())
        flow = sorted(layout.video_dir(out, "fastOF", f"Clips/{name}").iterdir())
        assert [p.name for p in rgb] == [p.name for p in flow] == [f"{i:05d}.jpg" for i in range(1, count + 1)]
        decoded = cv2.VideoCapture(str(videos / f"{name}.avi")).read()[1].shape
        assert {cv2.imread(str(p)).shape for p in rgb + flow} == {decoded}, name
    single_flow = cv2.imread(str(layout.frame_path(out, "fastOF", "Clips/single", 0)))
    assert np.abs(single_flow[..., :2].astype(int) - 128).max() <= 1  # no successor: zero flow
    result = _prepare("--videos_dir", str(tmp_path / "videos"), "--out", str(out), "--resize", "33x17")
    assert result.returncode == 1 and "0 done, 3 already complete, 3 failed" in result.stderr
    resized = tmp_path / "resized"
    assert _prepare("--videos_dir", str(videos.parent), "--out", str(resized), "--resize", "33x17",
                    "--flow").returncode == 1
    assert cv2.imread(str(layout.frame_path(resized, "rgb", "Clips/odd", 2))).shape == (17, 33, 3)


# ---------------------------------------------------------------- pyannot.pkl

def _pyannot(tmp_path, tubes, numf=10, label=0):
    path = tmp_path / "pyannot.pkl"
    entry = {"numf": np.uint8(numf), "label": label, "annotations": tubes}
    with open(path, "wb") as f:
        pickle.dump({"Run/v_Run_g01_c01": entry}, f, protocol=2)
    return path


def _tube(sf, ef, boxes, label=0):
    return {"label": label, "sf": sf, "ef": ef, "boxes": np.asarray(boxes)}


def test_pyannot_edges_are_kept_as_they_are(tmp_path, caplog):
    """No tubes, a tube of one frame, boxes touching every border of the 320x240 frame, the last frame."""
    path = _pyannot(tmp_path, [_tube(9, 10, [[1, 1, 320, 240]]), _tube(0, 2, [[1, 5, 4, 4], [317, 237, 4, 4]])])
    with caplog.at_level(logging.WARNING):
        video = load_pyannot(path)["Run/v_Run_g01_c01"]
    assert not caplog.records  # nothing clipped or dropped
    assert [(t.start, t.end) for t in video.tubes] == [(9, 10), (0, 2)]
    np.testing.assert_array_equal(video.tubes[0].boxes, [[0, 0, 319, 239]])
    np.testing.assert_array_equal(video.tubes[1].boxes, [[0, 4, 3, 7], [316, 236, 319, 239]])
    assert load_pyannot(_pyannot(tmp_path, []))["Run/v_Run_g01_c01"].tubes == []


def test_pyannot_boxes_beyond_the_frame_are_clipped_and_empty_ones_split_the_tube(tmp_path, caplog):
    path = _pyannot(tmp_path, [_tube(2, 5, [[300, 1, 40, 10], [330, 1, 40, 10], [1, 1, 5, 5]])])
    with caplog.at_level(logging.WARNING):
        video = load_pyannot(path)["Run/v_Run_g01_c01"]
    assert "clipped 2 boxes to the frame, dropped 1 boxes with no area" in caplog.text and "pyannot.pkl" in caplog.text
    assert [(t.start, t.end) for t in video.tubes] == [(2, 3), (4, 5)]
    np.testing.assert_array_equal(video.tubes[0].boxes, [[299, 0, 319, 9]])


@pytest.mark.parametrize("tubes, message", [
    ([_tube(8, 12, np.ones((4, 4)))], r"tube 0 fields 'sf'=8, 'ef'=12 do not fit a video of 10 frames"),
    ([_tube(-1, 2, np.ones((3, 4)))], r"tube 0 fields 'sf'=-1, 'ef'=2"),
    ([_tube(3, 3, np.ones((0, 4)))], r"tube 0 fields 'sf'=3, 'ef'=3"),
    ([_tube(0, 2, np.ones((3, 4)))], r"tube 0 field 'boxes' has shape \(3, 4\), expected \(2, 4\)"),
    ([_tube(0, 2, np.ones((2, 3)))], r"tube 0 field 'boxes' has shape \(2, 3\)"),
    ([_tube(0, 1, [[np.nan, 1, 5, 5]])], r"tube 0 field 'boxes' has non-finite values"),
    ([_tube(0, 1, [["1", "1", "5", "5"]])], r"tube 0 field 'boxes' holds <U1 values, expected numbers"),
    ([_tube(0, 1, [[1, 1, 5, 5]], label=3)], r"tube 0 field 'label' = 3 differs from the video's label 0"),
])
def test_pyannot_errors_name_file_video_and_field(tmp_path, tubes, message):
    with pytest.raises(AnnotationError, match=r"pyannot\.pkl: video 'Run/v_Run_g01_c01' " + message):
        load_pyannot(_pyannot(tmp_path, tubes))


# ---------------------------------------------------------------- finalAnnots.mat

def _final_annots(tmp_path, tubes, num_imgs=10):
    """A one-video ``annot`` struct array as the released file stores it (tubes: (sf, ef, boxes), 1-based)."""
    annot = np.zeros(1, dtype=[("name", object), ("num_imgs", object), ("tubes", object)])
    annot[0]["name"], annot[0]["num_imgs"] = "Run/v_Run_g01_c01", np.uint16(num_imgs)
    rows = np.zeros(len(tubes), dtype=[("sf", object), ("ef", object), ("class", object), ("boxes", object)])
    for i, (sf, ef, boxes) in enumerate(tubes):
        rows[i]["sf"], rows[i]["ef"], rows[i]["class"] = np.uint16(sf), np.uint16(ef), np.uint8(1)
        rows[i]["boxes"] = np.asarray(boxes)
    annot[0]["tubes"] = rows
    path = tmp_path / "finalAnnots.mat"
    scipy.io.savemat(path, {"annot": annot})
    return path


def test_final_annots_edges(tmp_path):
    """A tube of one frame (Matlab squeezes its boxes to a vector), boxes on the border, uint8 values
    (x + w past 255), no tubes (class from the names given)."""
    path = _final_annots(tmp_path, [(10, 10, np.array([[1, 1, 320, 240]], np.uint16)),
                                    (1, 2, np.array([[250, 1, 70, 9], [1, 2, 3, 4]], np.uint8))])
    video = load_final_annots(path)["Run/v_Run_g01_c01"]
    assert [(t.start, t.end, t.class_id) for t in video.tubes] == [(9, 10, 0), (0, 2, 0)]
    np.testing.assert_array_equal(video.tubes[0].boxes, [[0, 0, 319, 239]])
    np.testing.assert_array_equal(video.tubes[1].boxes, [[249, 0, 318, 8], [0, 1, 2, 4]])
    path = _final_annots(tmp_path, [])
    with pytest.raises(AnnotationError, match=r"finalAnnots\.mat: video 'Run/v_Run_g01_c01' has no tubes and its class is unknown"):
        load_final_annots(path)
    assert load_final_annots(path, class_names=["Jump", "Run"])["Run/v_Run_g01_c01"].class_id == 1


@pytest.mark.parametrize("tubes, message", [
    ([(9, 11, np.ones((3, 4)))], r"tube 0 fields 'sf'=9, 'ef'=11 do not fit a video of 10 frames"),
    ([(5, 3, np.ones((1, 4)))], r"tube 0 fields 'sf'=5, 'ef'=3 do not fit"),
    ([(0, 1, np.ones((2, 4)))], r"tube 0 fields 'sf'=0, 'ef'=1 do not fit"),
    ([(1, 2, np.ones((3, 4)))], r"tube 0 field 'boxes' has shape \(3, 4\), expected \(2, 4\)"),
    ([(1, 1, [[np.inf, 1, 2, 2]])], r"tube 0 field 'boxes' has non-finite values"),
])
def test_final_annots_errors_name_file_video_and_field(tmp_path, tubes, message):
    with pytest.raises(AnnotationError, match=r"finalAnnots\.mat: video 'Run/v_Run_g01_c01' " + message):
        load_final_annots(_final_annots(tmp_path, tubes))


# ---------------------------------------------------------------- ACT ground truth

def _act(tmp_path, gttubes, nframes=10):
    content = {"labels": ["Jump", "Run"], "gttubes": {"Run/v1": gttubes}, "nframes": {"Run/v1": nframes},
               "resolution": {"Run/v1": (240, 320)}, "train_videos": [["Run/v1"]], "test_videos": [[]]}
    path = tmp_path / "UCF101v2-GT.pkl"
    with open(path, "wb") as f:
        pickle.dump(content, f)
    return path


def test_act_edges(tmp_path, caplog):
    """A label with no tubes, a tube of one frame (the last), boxes on the border (kept) and past it (clipped)."""
    one = np.array([[10, 0, 0, 319, 239]], np.float32)
    wide = np.array([[1, -5, 0, 330, 100], [2, 0, 0, 50, 50]], np.float32)
    with caplog.at_level(logging.WARNING):
        video = load_act_gt(_act(tmp_path, {1: [one, wide]})).videos["Run/v1"]
    assert "clipped 1 boxes to the frame, dropped 0 boxes" in caplog.text
    assert [(t.start, t.end, t.class_id) for t in video.tubes] == [(9, 10, 1), (0, 2, 1)]
    np.testing.assert_array_equal(video.tubes[0].boxes, [[0, 0, 319, 239]])
    np.testing.assert_array_equal(video.tubes[1].boxes[0], [0, 0, 319, 100])
    assert load_act_gt(_act(tmp_path, {1: []})).videos["Run/v1"].tubes == []


@pytest.mark.parametrize("gttubes, message", [
    ({1: [np.zeros((0, 5))]}, r"label 1 tube 0 has shape \(0, 5\), expected \(n, 5\)"),
    ({1: [np.array([[11, 0, 0, 5, 5]])]}, r"label 1 tube 0: frame numbers 11\.\.11 are not distinct integers within 1\.\.10"),
    ({1: [np.array([[0, 0, 0, 5, 5]])]}, r"frame numbers 0\.\.0 are not distinct integers within 1\.\.10"),
    ({1: [np.array([[1, np.nan, 0, 5, 5]])]}, r"label 1 tube 0 has non-finite values"),
    ({}, r"field 'gttubes' has labels \[\]; expected exactly one per video"),
])
def test_act_errors_name_file_video_and_field(tmp_path, gttubes, message):
    with pytest.raises(AnnotationError, match=r"UCF101v2-GT\.pkl: video 'Run/v1'.* ?" + message):
        load_act_gt(_act(tmp_path, gttubes))


# ---------------------------------------------------------------- detections (npz, road_mat)

def test_npz_with_no_detections_gives_empty_frames(tmp_path):
    write_video_detections(tmp_path / "v.npz", np.zeros((0, 2), int), np.zeros((0, 2, 4)), np.zeros((0, 3)),
                           np.zeros(0, int), 4)
    per = frame_detections(read_video_detections(tmp_path / "v.npz"))
    assert [(loc.shape, scores.shape) for loc, scores in per] == [((0, 4), (0, 3))] * 4


@pytest.mark.parametrize("change, message", [
    (lambda f: f.pop("scores"), r"missing field\(s\) \['scores'\]"),
    (lambda f: f.update(scores=f["scores"][:, :1]), r"field 'scores' has shape \(2, 1\), expected \(2, C\+1\)"),
    (lambda f: f.update(boxes=np.where(np.eye(4)[:2, None], np.nan, f["boxes"])), r"field 'boxes' has non-finite values"),
    (lambda f: f.update(frames=f["frames"] + 5), r"field 'frames' must increase along T and lie in 0\.\.5"),
    (lambda f: f.update(window=np.array([0, 3])), r"field 'window' has values outside 0\.\.1"),
])
def test_npz_errors_name_file_and_field(tmp_path, change, message):
    path = tmp_path / "Run" / "v1.npz"
    write_video_detections(path, [[0, 1], [2, 3]], np.full((2, 2, 4), 0.5), np.full((2, 3), 0.3), [0, 1], 6)
    with np.load(path) as z:
        fields = dict(z)
    change(fields)
    np.savez(path, **fields)
    with pytest.raises(DetectionError, match=r"Run/v1\.npz: " + message):
        read_video_detections(path)


@pytest.mark.parametrize("fields, message", [
    ({"loc": np.ones((2, 4))}, r"needs fields 'loc' and 'scores'"),
    ({"loc": np.ones((2, 3)), "scores": np.ones((2, 3))}, r"'loc' \(2, 3\) and 'scores' \(2, 3\) must be N x 4 and N x \(C\+1\)"),
    ({"loc": np.ones((2, 4)), "scores": np.ones((1, 3))}, r"'loc' \(2, 4\) and 'scores' \(1, 3\)"),
    ({"loc": np.ones((1, 4)), "scores": np.ones((1, 2))}, r"'scores' has 2 columns, 00001\.mat has 3"),
])
def test_road_mat_errors_name_file_and_field(tmp_path, fields, message):
    video = tmp_path / "Run" / "v1"
    write_road_mat_frame(video / "00001.mat", np.full((1, 4), 0.5), np.full((1, 3), 0.3))
    scipy.io.savemat(video / "00002.mat", fields)
    with pytest.raises(DetectionError, match=r"Run/v1/00002\.mat: " + message):
        read_road_mat_video(video)


def test_road_mat_video_of_empty_frames_only(tmp_path):
    video = tmp_path / "Run" / "v1"
    for n in (1, 2):
        write_road_mat_frame(video / f"{n:05d}.mat", np.zeros((0, 0)), np.zeros((0, 0)))
    assert [(loc.shape, scores.shape) for loc, scores in read_road_mat_video(video)] == [((0, 4), (0, 0))] * 2
    video.mkdir(parents=True, exist_ok=True)
    assert read_road_mat_video(tmp_path / "Run" / "none") == []
