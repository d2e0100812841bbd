"""Live sources and outputs of the online demo (demo.py): frames from a file, a folder, a camera or a
stream URL, read in a thread (``--realtime``: the newest frame, dropping those the detector could
not take in time); the annotated video, the trimmed tubes (build_tubes.py's npz and JSON) and the
per-frame log of the best live path, all written atomically, also when Ctrl-C stops the run.
"""
import contextlib
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from tubes.linking import OnlineTubes
from tubes.trimming import trim_paths
from tubes.tube_files import save_tubes
from utils.io import atomic_path

from .drawing import draw
from .online import OnlineDetector, write_detections

log = logging.getLogger(__name__)


def parse_source(text: str) -> int | str | Path:
    """``--video``: a camera index (``0``), a stream URL (anything with ``://``) or a path."""
    if text.isdigit():
        return int(text)
    return text if "://" in text else Path(text)


def source_name(source: int | str | Path) -> str:
    if isinstance(source, int):
        return f"camera{source}"
    if isinstance(source, str):
        return Path(source.split("://", 1)[1].split("?")[0]).name or "stream"
    return source.stem if source.is_file() else source.name


def _folder_frames(folder: Path):
    files = sorted(folder.glob("*.jpg"))
    if not files:
        raise FileNotFoundError(f"{folder}: no .jpg frames in this folder")
    for path in files:
        image = cv2.imread(str(path))
        if image is None:
            raise ValueError(f"{path}: cannot be decoded")
        yield image


def _capture_frames(capture, name):
    ok, image = capture.read()
    if not ok:
        raise ValueError(f"{name}: cannot be read as a video")
    while ok:
        yield image
        ok, image = capture.read()
    capture.release()


class FrameSource:
    """Iterate BGR frames of ``source`` (``parse_source``), decoded in a background thread.

    ``realtime``: the iteration always gives the newest frame; frames that arrive while the consumer
    is busy are dropped and counted (``dropped``). Files, folders and stream URLs are played at
    ``fps`` (the source's rate, else 25) as a camera would deliver them; cameras at their own rate.
    Otherwise every frame is given, in order (the thread reads at most ``queue`` frames ahead).
    ``stop()`` ends the iteration, ``close()`` also the thread."""

    def __init__(self, source: int | str | Path, realtime: bool = False, fps: float | None = None, queue: int = 8):
        self.source, self.realtime, self.name = source, realtime, source_name(source)
        self.dropped, self.read = 0, 0
        if isinstance(source, Path) and source.is_dir():
            frames, native = _folder_frames(source), None
        else:
            if isinstance(source, Path) and not source.is_file():
                raise FileNotFoundError(f"{source}: no such video file or frame folder")
            capture = cv2.VideoCapture(str(source) if not isinstance(source, int) else source)
            if not capture.isOpened():
                raise ValueError(f"{source}: cannot be opened (camera index, stream URL, video file or frame folder)")
            native = capture.get(cv2.CAP_PROP_FPS) or None
            frames = _capture_frames(capture, source)
        self.fps = fps or native or 25.0
        # A camera delivers at its own rate; files and stream URLs are released at theirs (a live stream
        # that already delivers at that rate is never waited for; a recorded one plays as if live).
        self.paced = realtime and not isinstance(source, int)
        self.first = next(frames)  # errors (unreadable, empty) surface here, in the caller's thread
        self._frames, self._stop, self._error = frames, threading.Event(), None
        self._cond = threading.Condition()
        self._buffer, self._limit, self._done = [], 1 if realtime else queue, False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        try:
            start = time.perf_counter()
            for i, image in enumerate(_chain(self.first, self._frames)):
                if self._stop.is_set():
                    break
                if self.paced:
                    time.sleep(max(0.0, start + i / self.fps - time.perf_counter()))
                with self._cond:
                    self.read += 1
                    while not self.realtime and len(self._buffer) >= self._limit and not self._stop.is_set():
                        self._cond.wait(0.1)
                    if self.realtime and self._buffer:
                        self._buffer.pop(0)
                        self.dropped += 1
                    self._buffer.append(image)
                    self._cond.notify_all()
        except BaseException as error:  # handed to the consumer
            self._error = error
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def __iter__(self):
        while not self._stop.is_set():
            with self._cond:
                while not self._buffer and not self._done and not self._stop.is_set():
                    self._cond.wait(0.1)
                if not self._buffer or self._stop.is_set():
                    if self._error is not None:
                        raise self._error
                    return
                image = self._buffer.pop(0)
                self._cond.notify_all()
            yield image

    def stop(self) -> None:
        """End the iteration after the frame in hand (safe in a signal handler: takes no lock)."""
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=5)


def _chain(first, rest):
    yield first
    yield from rest


class LiveLog:
    """The per-frame log of the best live path (the highest mean score among the paths extended at the
    frame: ROAD's early label), JSON lines ``{"frame": 1-based, "label", "score", "paths"}``; written
    line by line to a temporary file beside ``path`` and renamed onto it by ``close``."""

    def __init__(self, path: Path, classes: list):
        self.classes = classes
        self._atomic = atomic_path(path)
        self._file = self._atomic.__enter__().open("w", buffering=1)  # line by line, for tail -f

    def add(self, index: int, paths: list) -> None:
        best = max(paths, key=lambda p: p[3], default=None)
        entry = {"frame": int(index) + 1, "label": self.classes[best[0]] if best else None,
                 "score": round(best[3], 6) if best else None, "paths": len(paths)}
        self._file.write(json.dumps(entry) + "\n")

    def close(self, error: BaseException | None = None) -> None:
        self._file.close()
        self._atomic.__exit__(type(error) if error else None, error, None)


def tubes_json(video: str, tubes: list, classes: list, alpha: float, dropped: int = 0) -> dict:
    """Trimmed tubes for other languages: boxes x1, y1, x2, y2 in 0-based pixels, one per frame from
    ``start`` to ``end`` (1-based, inclusive; frames of the processed sequence)."""
    return {"video": video, "alpha": alpha, "dropped_frames": dropped,
            "tubes": [{"class": classes[t.class_id], "class_id": int(t.class_id), "score": float(t.score),
                       "start": int(t.start) + 1, "end": int(t.start) + len(t.boxes),
                       "boxes": np.round(np.asarray(t.boxes, np.float64) - 1, 3).tolist()}
                      for t in sorted(tubes, key=lambda t: -t.score)]}


class Display:
    """``--display``: the annotated frames in a window. Tk's (tkinter, Python's standard GUI toolkit), not
    OpenCV's: the pinned OpenCV is the headless build, whose ``cv2.imshow`` cannot open a window.
    Closing the window stops the run as Ctrl-C does."""

    def __init__(self, title: str):
        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY") and os.name != "nt":
            raise RuntimeError("--display: no display (DISPLAY is not set); run headless without --display")
        try:
            import tkinter
        except ImportError as error:
            raise ImportError("--display needs tkinter, Python's Tk GUI toolkit (Debian's python3-tk, or a Python "
                             "built with Tk); or run without --display") from error
        try:
            self.root = tkinter.Tk()
        except tkinter.TclError as error:
            raise RuntimeError(f"--display: cannot open a window ({error}); run headless without --display") from error
        self.root.title(title)
        self.root.protocol("WM_DELETE_WINDOW", self.close)
        self.label = tkinter.Label(self.root, borderwidth=0)
        self.label.pack()
        self.photo = tkinter.PhotoImage(master=self.root)
        self.label.configure(image=self.photo)
        self.shown = 0

    @property
    def open(self) -> bool:
        return self.root is not None

    def show(self, image: np.ndarray) -> bool:
        """Shows a BGR image; False once the window is closed."""
        if self.open:
            # Tk reads binary PPM (RGB; OpenCV's encoder swaps the channels), no image library needed.
            self.photo.configure(data=cv2.imencode(".ppm", image)[1].tobytes(), format="PPM")
            self.shown += 1
            self.root.update()  # draws the frame and handles the window's events (a close among them)
        return self.open

    def close(self) -> None:
        if self.open:
            self.root.destroy()
            self.root = None


@contextlib.contextmanager
def stop_on_signals(stop: Callable, signals: tuple = (signal.SIGINT, signal.SIGTERM)) -> Iterator[list]:
    """While inside: the first Ctrl-C (or SIGTERM) calls ``stop()`` and is recorded in the yielded list
    (true once signalled), so the run ends after the frame in hand; a second one interrupts as usual.
    Outside the main thread, where Python cannot handle signals, nothing changes."""
    seen = []
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return

    def handler(signum, frame):
        if seen:
            raise KeyboardInterrupt
        seen.append(signal.Signals(signum).name)
        log.warning("%s: stopping after this frame (again to abort)", seen[0])
        stop()

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield seen
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run_online(source: FrameSource, detector: OnlineDetector, tubes_factory: Callable, out: Path, classes: list, fps: float,
               show_thresh: float = 0.2, display: Display | None = None, progress: Callable | None = None,
               ground_truth: dict | None = None) -> tuple:
    """Detect, link and draw ``source``'s frames into the video ``out`` and the per-frame log beside it,
    until the end of the stream or Ctrl-C (then the frames seen are finished and written); ``ground_truth``
    (``engine.drawing.ground_truth_boxes``), the ground truth drawn beside the paths. Returns
    ``(tubes, detections, interrupted)``: the ``OnlineTubes``, the per-frame detections (what the detector
    gives after the frame index: ``loc, scores``, then each further output's; ``tubes.update`` takes them
    as they come) and whether Ctrl-C stopped it. Every file appears whole or not at all."""
    frames, detections, state = {}, [], {}
    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if out.suffix.lower() == ".mp4" else "MJPG"))
    live = LiveLog(out.with_name(f"{out.stem}-live.jsonl"), classes)

    def emit(ready):
        for index, *dets in ready:
            state["tubes"].update(*dets)
            detections.append(dets)
            paths = state["tubes"].current(show_thresh)
            live.add(index, paths)
            image = draw(frames.pop(index), index, paths, classes, ground_truth)
            state["writer"].write(image)
            if display and display.open and not display.show(image):
                log.warning("window closed: stopping after this frame")
                source.stop()

    error = None
    with atomic_path(out) as tmp, stop_on_signals(source.stop) as interrupted:
        try:
            for image in (progress(source) if progress else source):
                frames[detector.num_read] = image
                ready = detector.push(image)
                if "writer" not in state:
                    state["writer"] = cv2.VideoWriter(str(tmp), fourcc, fps, detector.frame_size)
                    state["tubes"] = tubes_factory(detector.frame_size)
                    detector.on_window = getattr(state["tubes"], "add_window", None)  # micro-tube linking
                emit(ready)
            if interrupted:
                log.warning("interrupted after %d frames: finishing the tubes of the frames seen", detector.num_read)
            if "writer" not in state:
                raise ValueError("no frames were read")
            emit(detector.finish())
            state["writer"].release()
        except BaseException as e:
            error = e
            raise
        finally:
            live.close(error)
    return state["tubes"], detections, bool(interrupted)


def write_outputs(out: Path, name: str, tubes: OnlineTubes, detections: list, frame_size: tuple, classes: list, alphas: tuple,
                  det_outs: tuple = (), dropped: int = 0) -> dict:
    """The trimmed tubes of each alpha beside ``out`` (``-tubes-alpha<a>.npz`` and ``.json``) and the
    per-frame detections of the detector's k-th output to ``det_outs[k]`` where given (test.py's npz);
    returns {alpha: tubes}."""
    paths = tubes.linker.finish()
    found = {}
    for alpha in alphas:
        found[alpha] = trim_paths(paths, alpha)
        stem = f"{out.stem}-tubes-alpha{alpha:g}"
        save_tubes(out.with_name(f"{stem}.npz"), [name], {name: {alpha: found[alpha]}}, alpha)
        with atomic_path(out.with_name(f"{stem}.json")) as tmp:
            tmp.write_text(json.dumps(tubes_json(name, found[alpha], classes, alpha, dropped)))
        log.info("alpha %g: %d tubes -> %s(.npz, .json)", alpha, len(found[alpha]), out.with_name(stem))
        for tube in sorted(found[alpha], key=lambda t: -t.score)[:10]:
            log.info("  %-12s frames %d-%d score %.3f", classes[tube.class_id], tube.start + 1,
                     tube.start + len(tube.boxes), tube.score)
    for k, path in enumerate(det_outs):
        if path:
            write_detections(path, [d[2 * k:2 * k + 2] for d in detections], frame_size)
    return found
