"""demo.py on live sources: a video file written with OpenCV opened as a stream URL, its frames
arriving at a fixed rate (--realtime plays it at its frame rate), a consumer slower than the source
(frames dropped and counted), Ctrl-C simulated with a signal (in the process and, for a real run,
sent to a subprocess); every output written whole, the JSON tubes and the per-frame live log;
--display's window on a virtual X display (Xvfb)."""
import importlib.util
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

import demo
from data import layout
from data.annotations import read_video_list
from engine import live
from engine.live import parse_source, source_name
from tests.conftest import optional
from tests.test_demo import CLASSES, read_video, weights  # weights: a fixture
from tubes.detections import read_video_detections

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_stream(toy_root, path, fps, repeat=1):
    video = read_video_list(layout.split_path(toy_root, "testlist01.txt"))[0]
    frames = [cv2.imread(str(p)) for p in sorted(layout.video_dir(toy_root, "rgb", video).glob("*.jpg"))] * repeat
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (320, 240))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return len(frames)


def test_parse_source():
    assert parse_source("0") == 0 and source_name(0) == "camera0"
    assert parse_source("rtsp://host:554/live?x=1") == "rtsp://host:554/live?x=1"
    assert source_name("rtsp://host:554/live?x=1") == "live"
    assert str(parse_source("clips/a.mp4")) == "clips/a.mp4" and not isinstance(parse_source("clips/a.mp4"), str)


def check_outputs(tmp_path, out, processed):
    """Every output of ``processed`` frames is there, consistent, and no temporary file is left."""
    assert len(read_video(out)) == processed
    log = [json.loads(line) for line in out.with_name(f"{out.stem}-live.jsonl").read_text().splitlines()]
    assert [e["frame"] for e in log] == list(range(1, processed + 1))
    assert all(e["label"] in CLASSES + [None] and (e["label"] is None) == (e["paths"] == 0) for e in log)
    assert read_video_detections(tmp_path / "det.npz").num_frames == processed
    tubes = json.loads(out.with_name(f"{out.stem}-tubes-alpha3.json").read_text())
    for tube in tubes["tubes"]:
        assert tube["class"] in CLASSES and 1 <= tube["start"] <= tube["end"] <= processed
        assert len(tube["boxes"]) == tube["end"] - tube["start"] + 1 and all(len(b) == 4 for b in tube["boxes"])
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    return log, tubes


def test_realtime_stream_drops_frames_and_ctrl_c_finishes(toy_root, weights, tmp_path, monkeypatch):
    total = write_stream(toy_root, tmp_path / "stream.avi", fps=20, repeat=30)  # ~40 s if not interrupted
    add = live.LiveLog.add

    def slow_add(self, index, paths):  # a consumer slower than the 20 frames/s source; Ctrl-C at frame 6
        add(self, index, paths)
        time.sleep(0.1)
        if index == 5:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(live.LiveLog, "add", slow_add)
    out = tmp_path / "annotated.avi"
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN in a process a non-interactive shell started in the background
    assert demo.main(["--video", f"file://{tmp_path / 'stream.avi'}", "--weights", str(weights), "--out", str(out),
                      "--device", "cpu", "--realtime", "--det_out", str(tmp_path / "det.npz")]) == 0
    det = read_video_detections(tmp_path / "det.npz")
    processed = det.num_frames
    assert 6 <= processed < total  # stopped after the frames in hand; the windows they need finished
    _, tubes = check_outputs(tmp_path, out, processed)
    assert tubes["video"] == "stream.avi" and tubes["dropped_frames"] > 0
    assert processed + tubes["dropped_frames"] <= total
    assert signal.getsignal(signal.SIGINT) is before  # restored


def test_sigint_to_a_running_demo(toy_root, weights, tmp_path):
    """A real Ctrl-C: the process stops, finishes the tubes of what it saw, writes everything, exits 0."""
    total = write_stream(toy_root, tmp_path / "stream.avi", fps=25, repeat=20)  # ~24 s if not interrupted
    out = tmp_path / "annotated.avi"
    process = subprocess.Popen([sys.executable, "demo.py", "--video", str(tmp_path / "stream.avi"), "--weights",
                                str(weights), "--out", str(out), "--device", "cpu", "--realtime", "--det_out",
                                str(tmp_path / "det.npz")], cwd=REPO, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:  # wait for 10 frames in the live log
        partial = [p for p in tmp_path.glob(".annotated-live.*") if len(p.read_text().splitlines()) >= 10]
        if partial:
            break
        time.sleep(0.2)
    assert process.poll() is None, process.communicate()[1]
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "SIGINT: stopping after this frame" in stderr and "(interrupted)" in stderr
    processed = read_video_detections(tmp_path / "det.npz").num_frames
    assert 10 <= processed < total
    check_outputs(tmp_path, out, processed)


def test_display_without_a_display_is_refused(weights, tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "00001.jpg"), np.zeros((240, 320, 3), np.uint8))
    with pytest.raises(SystemExit, match="--display: no display"):
        demo.main(["--video", str(frames), "--weights", str(weights), "--out", str(tmp_path / "o.avi"), "--display"])
    assert not (tmp_path / "o.avi").exists()


@pytest.fixture(scope="module")
def xvfb():
    """A virtual X display on a free display number (Xvfb picks it); yields its DISPLAY name."""
    optional(shutil.which("Xvfb") and shutil.which("xwininfo") and importlib.util.find_spec("tkinter"),
             "Xvfb, xwininfo or tkinter (Debian: xvfb x11-utils python3-tk)")
    server = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "640x480x24", "-nolisten", "tcp"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    number = server.stdout.readline().strip()
    assert number.isdigit(), f"Xvfb did not start (exit code {server.poll()})"
    yield f":{number}"
    server.terminate()
    server.wait(timeout=10)


def toy_frames(toy_root):
    video = read_video_list(layout.split_path(toy_root, "testlist01.txt"))[0]
    return layout.video_dir(toy_root, "rgb", video)


def test_display_shows_every_annotated_frame_in_a_window(toy_root, weights, tmp_path, monkeypatch, xvfb):
    """The X server has a mapped window of the frame's size, titled with the video's name, showing each
    annotated frame (its pixels, colours in the right order) as it is written."""
    monkeypatch.setenv("DISPLAY", xvfb)
    frames = toy_frames(toy_root)
    shown, windows = [], []
    show = live.Display.show

    def checked_show(display, image):
        still_open = show(display, image)
        assert still_open is True
        for y, x in itertools.product(range(7, 240, 30), range(3, 320, 40)):  # Tk's pixels are RGB, OpenCV's BGR
            assert display.photo.get(x, y) == tuple(int(c) for c in image[y, x, ::-1])
        if not windows:
            windows.append(subprocess.run(["xwininfo", "-display", xvfb, "-name", frames.name],
                                          capture_output=True, text=True, check=True).stdout)
        shown.append(image)
        return still_open

    monkeypatch.setattr(live.Display, "show", checked_show)
    drawn, draw = [], live.draw
    monkeypatch.setattr(live, "draw", lambda *args: drawn.append(draw(*args)) or drawn[-1])
    out = tmp_path / "annotated.avi"
    assert demo.main(["--video", str(frames), "--weights", str(weights), "--out", str(out), "--device", "cpu",
                      "--display"]) == 0
    assert "Map State: IsViewable" in windows[0]
    assert "Width: 320" in windows[0] and "Height: 240" in windows[0]
    written = read_video(out)
    assert len(shown) == len(written) == len(list(frames.glob("*.jpg")))
    for image, annotated in zip(shown, drawn, strict=True):  # the frames written, in order
        np.testing.assert_array_equal(image, annotated)
    gone = subprocess.run(["xwininfo", "-display", xvfb, "-name", frames.name], capture_output=True)
    assert gone.returncode != 0  # the window is closed at the end


def test_closing_the_window_stops_the_run(toy_root, weights, tmp_path, monkeypatch, caplog, xvfb):
    """Closing the window (the window manager's WM_DELETE_WINDOW, as Tk receives it) at the 5th frame
    ends the run as Ctrl-C does: the frames seen are finished, everything is written, exit 0."""
    monkeypatch.setenv("DISPLAY", xvfb)
    frames = toy_frames(toy_root)
    total = len(list(frames.glob("*.jpg")))
    calls = []
    show = live.Display.show

    def closing_show(display, image):
        calls.append(display.open)
        if len(calls) == 5:  # handled during this frame's event processing, as a click on the close button
            display.root.after_idle(display.root.tk.call, display.root.protocol("WM_DELETE_WINDOW"))
        return show(display, image)

    monkeypatch.setattr(live.Display, "show", closing_show)
    out = tmp_path / "annotated.avi"
    assert demo.main(["--video", str(frames), "--weights", str(weights), "--out", str(out), "--device", "cpu",
                      "--display", "--det_out", str(tmp_path / "det.npz")]) == 0
    assert calls == [True] * 5  # never shown again once closed
    assert "window closed: stopping after this frame" in caplog.text
    processed = read_video_detections(tmp_path / "det.npz").num_frames
    assert 5 <= processed < total
    check_outputs(tmp_path, out, processed)
