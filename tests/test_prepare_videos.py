"""prepare_data.py videos: frames and flow from real video files written here with OpenCV."""
import subprocess
import sys

import cv2
import numpy as np

from data import layout
from data.flow import decode_flow
from tests.conftest import REPO_ROOT


def _write_video(path, num_frames, step=3):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 120))
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    background = cv2.GaussianBlur((rng.random((120, 160, 3)) * 255).astype(np.uint8), (0, 0), 2)
    for i in range(num_frames):
        writer.write(np.roll(background, step * i, axis=1))  # the whole scene pans right
    writer.release()


def _run(*args):
    return subprocess.run([sys.executable, "prepare_data.py", "--quiet", "videos", *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def test_videos_to_frames_and_flow_with_a_bad_file_and_a_rerun(tmp_path):
    videos = tmp_path / "videos"
    (videos / "Panning").mkdir(parents=True)
    _write_video(videos / "Panning" / "v_pan_01.avi", 12)
    _write_video(videos / "loose.avi", 5)
    (videos / "Panning" / "v_broken.avi").write_bytes(b"this is not a video")
    out = tmp_path / "data"

    result = _run("--videos_dir", str(videos), "--out", str(out), "--workers", "2")
    assert result.returncode == 1
    assert "v_broken.avi" in result.stderr and "FAILED Panning/v_broken" in result.stderr

    frames = sorted(layout.video_dir(out, "rgb", "Panning/v_pan_01").iterdir())
    assert [f.name for f in frames] == [f"{i:05d}.jpg" for i in range(1, 13)]
    assert cv2.imread(str(frames[0])).shape == (120, 160, 3)
    assert len(list(layout.video_dir(out, "rgb", "videos/loose").iterdir())) == 5
    flow = cv2.imread(str(layout.frame_path(out, "fastOF", "Panning/v_pan_01", 4)))
    assert abs(np.median(decode_flow(flow)[20:-20, 20:-20, 0]) - 3) < 0.3  # the scene pans 3 px right
    assert not list(out.rglob("*.tmp"))  # nothing half-written is left

    stamp = frames[0].stat().st_mtime_ns
    (videos / "Panning" / "v_broken.avi").unlink()
    result = _run("--videos_dir", str(videos), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "0 done, 2 already complete, 0 failed" in result.stderr
    assert frames[0].stat().st_mtime_ns == stamp


def test_interrupted_flow_is_completed_from_the_frames(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    _write_video(videos / "clip.avi", 6)
    out = tmp_path / "data"
    assert _run("--videos_dir", str(videos), "--out", str(out), "--flow").returncode == 0  # frames only
    assert not layout.video_dir(out, "fastOF", "videos/clip").exists()
    stale = layout.video_dir(out, "fastOF", "videos/clip").parent / ".clip.abc.tmp"
    stale.mkdir(parents=True)  # what an interrupted run leaves behind
    result = _run("--videos_dir", str(videos), "--out", str(out))
    assert result.returncode == 0 and "1 done" in result.stderr
    assert len(list(layout.video_dir(out, "fastOF", "videos/clip").iterdir())) == 6
    assert not stale.exists()


def test_empty_directory_is_a_clear_error(tmp_path):
    (tmp_path / "none").mkdir()
    result = _run("--videos_dir", str(tmp_path / "none"), "--out", str(tmp_path / "o"))
    assert result.returncode != 0 and "no video files" in result.stderr
