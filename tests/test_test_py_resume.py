"""test.py killed (SIGKILL) between videos, inside a video's windows, between a video's detection file and its
record, and inside the atomic write of a detection file, then run again: it skips the finished videos, leaves no
partial file, and ends with the files and frame-mAP of an uninterrupted run.

The kills are deterministic: a small driver runs test.py's main in a subprocess with one function wrapped to
SIGKILL the process at its n-th call (before or after the call)."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

import test as test_script
from data import layout
from data.annotations import load_class_names, read_video_list
from data.toy import ToyConfig, make_toy_dataset
from models import ModelConfig, build_model
from tests.conftest import REPO_ROOT
from tubes.detections import read_video_detections
from utils.checkpoint import save_checkpoint

# a random-weight model: a loose frame-AP IoU gives it true positives, so that the frame-mAPs compared are not 0
RUN = ["--device", "cpu", "--num_workers", "0", "--batch_size", "4", "--dataset", "toy", "--eval_gaps", "1",
       "--iou_thresh", "0.1"]

DRIVER = """
import os, signal, sys
import numpy as np
import engine.inference as inference
import test as test_script

where, when, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
owner, name = {"forward": (inference, "run_windows"), "record": (inference.VideoRecords, "save"),
               "detections": (np, "savez")}[where]
original, calls = getattr(owner, name), [0]

def killing(*args, **kwargs):
    counted = where != "detections" or "-videos" not in str(args[0])  # the detection files' writes only
    calls[0] += counted
    if counted and calls[0] == n and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    out = original(*args, **kwargs)
    if counted and calls[0] == n:
        os.kill(os.getpid(), signal.SIGKILL)
    return out

setattr(owner, name, killing)
sys.exit(test_script.main(sys.argv[4:]))
"""


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """4 test videos of 12, 12, 14 and 12 windows (3, 3, 4 and 3 batches); two processes take two each (the
    longest and the last, the middle two: engine.inference.process_share)."""
    root = tmp_path_factory.mktemp("toy12")
    make_toy_dataset(root, ToyConfig(num_videos=12, seed=3, min_frames=24, max_frames=30, flow=False), progress=False)
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, toy):
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=len(load_class_names(toy)) + 1, width_mult=0.0625))
    return save_checkpoint(tmp_path_factory.mktemp("resume") / "model.pth", model)


def _killed(argv, where, when, n):
    """test.py (``argv``) killed at the ``n``-th call of ``where``'s function, ``when`` before or after it."""
    run = subprocess.run([sys.executable, "-c", DRIVER, where, when, str(n), *argv], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == -9, run.stderr


def _state(det_dir, videos):
    """Per video: the detection file's modification time (None: none) and whether its record is there."""
    return {v: ((det_dir / f"{v}.npz").stat().st_mtime_ns if (det_dir / f"{v}.npz").exists() else None,
                (det_dir.parent / f"{det_dir.name}-videos" / f"{v}.npz").exists()) for v in videos}


def _no_partial_files(det_dir):
    """Every detection file there reads whole; a killed atomic write leaves only its hidden temporary."""
    for path in det_dir.rglob("*.npz"):
        if not path.name.startswith("."):
            read_video_detections(path)


def test_killed_and_resumed_runs_end_as_an_uninterrupted_run(toy, checkpoint, tmp_path):
    videos = read_video_list(layout.split_path(toy, "testlist01.txt"))
    common = ["--data_root", str(toy), "--weights", str(checkpoint), *RUN]
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    assert test_script.main([*common, "--det_dir", str(reference)]) == 0
    argv = [*common, "--det_dir", str(resumed)]
    _killed(argv, "forward", "before", 4)  # between videos: the first finished, the second not started
    state = _state(resumed, videos)
    assert [state[v] != (None, False) for v in videos] == [True, False, False, False] and state[videos[0]][1]
    _killed(argv, "forward", "before", 2)  # inside the second video's windows
    assert _state(resumed, videos) == state  # the first was skipped, nothing of the second written
    _killed(argv, "record", "before", 1)  # the second's detections written, its record not
    second = _state(resumed, videos)
    assert second[videos[0]] == state[videos[0]] and second[videos[1]][0] is not None and not second[videos[1]][1]
    _no_partial_files(resumed)
    _killed(argv, "detections", "after", 2)  # the second run again and recorded; the third's write killed
    third = _state(resumed, videos)
    assert third[videos[1]][1] and third[videos[2]] == (None, False)
    assert list((resumed / videos[2]).parent.glob(".*.tmp.npz"))  # the killed write's temporary, not the file
    _no_partial_files(resumed)
    run = subprocess.run([sys.executable, "test.py", *argv], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "2 of 4 videos already done" in run.stderr
    final = _state(resumed, videos)
    assert all(recorded for _, recorded in final.values()) and final[videos[0]] == state[videos[0]]
    assert not list(resumed.rglob(".*.tmp.npz"))  # the stale temporary was removed
    for video in videos:
        got, want = (read_video_detections(d / f"{video}.npz") for d in (resumed, reference))
        for field in ("frames", "boxes", "scores", "window"):
            np.testing.assert_array_equal(getattr(got, field), getattr(want, field))
    got, want = (json.loads((tmp_path / f"{d}-frame_map.json").read_text()) for d in ("resumed", "reference"))
    for key in ("frame_map_voc", "ap", "windows", "frames", "videos"):
        assert got[key] == want[key], key
    assert want["videos"] == 4 and want["frame_map_voc"] > 0


def test_records_of_another_run_are_not_taken(toy, checkpoint, tmp_path):
    """Other flags (a detection threshold) make another run: every video runs again, its files overwritten; a
    video whose record is there but not its detection file runs again too."""
    common = ["--data_root", str(toy), "--weights", str(checkpoint), *RUN, "--det_dir", str(tmp_path / "d")]
    assert test_script.main([*common, "--conf_thresh", "0.5"]) == 0
    first = json.loads((tmp_path / "d-frame_map.json").read_text())
    assert test_script.main(common) == 0
    again = json.loads((tmp_path / "d-frame_map.json").read_text())
    assert again["videos"] == first["videos"] == 4 and again["frame_map_voc"] != first["frame_map_voc"]
    written = {p: p.stat().st_mtime_ns for p in (tmp_path / "d").rglob("*.npz")}
    os.remove(tmp_path / "d-frame_map.json")
    assert test_script.main(common) == 0  # the same run: everything from the records, no file written again
    assert json.loads((tmp_path / "d-frame_map.json").read_text())["frame_map_voc"] == again["frame_map_voc"]
    assert len(written) == 4 and {p: p.stat().st_mtime_ns for p in (tmp_path / "d").rglob("*.npz")} == written
    lost = next(iter(written))
    os.remove(lost)
    assert test_script.main(common) == 0
    assert lost.is_file() and {p: t for p, t in written.items() if p != lost} == {
        p: p.stat().st_mtime_ns for p in (tmp_path / "d").rglob("*.npz") if p != lost}
    assert json.loads((tmp_path / "d-frame_map.json").read_text())["frame_map_voc"] == again["frame_map_voc"]


def test_two_processes_each_resume_their_share(toy, checkpoint, tmp_path):
    """torchrun with 2 gloo processes, the first killed after its first video's record (the second then stopped by
    torchrun, wherever it was): run again, each process skips its finished videos and the files equal a
    one-process run's (the frame-mAP too, but for the order of equal scores: the shares' are merged in turn)."""
    videos = read_video_list(layout.split_path(toy, "testlist01.txt"))
    common = ["--data_root", str(toy), "--weights", str(checkpoint), *RUN]
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    assert test_script.main([*common, "--det_dir", str(reference)]) == 0
    driver = tmp_path / "driver.py"  # torchrun runs a file: the first process killed after its first record
    driver.write_text(f"import os, sys\nsys.path.insert(0, {str(REPO_ROOT)!r})\n"
                      + DRIVER.replace("if counted and", "if os.environ['RANK'] == '0' and counted and"))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                str(_free_port())]
    argv = [*common, "--det_dir", str(resumed)]
    killed = subprocess.run([*torchrun, str(driver), "record", "after", "1", *argv], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode != 0
    done = [v for v, (_, recorded) in _state(resumed, videos).items() if recorded]
    assert 1 <= len(done) < len(videos)
    _no_partial_files(resumed)
    run = subprocess.run([*torchrun, "test.py", *argv], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "1 of 2 videos already done" in run.stderr  # the first process's share
    for video in videos:
        got, want = (read_video_detections(d / f"{video}.npz") for d in (resumed, reference))
        for field in ("frames", "boxes", "scores", "window"):
            np.testing.assert_array_equal(getattr(got, field), getattr(want, field))
    got, want = (json.loads((tmp_path / f"{d}-frame_map.json").read_text()) for d in ("resumed", "reference"))
    assert got["videos"] == want["videos"] == 4 and got["windows"] == want["windows"]
    assert got["frame_map_voc"] == pytest.approx(want["frame_map_voc"], abs=1e-12)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
