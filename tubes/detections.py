"""Detection files: this project's per-video ``npz`` and the original per-frame ``road_mat``.

``npz`` (one file per video, written by test.py, read by build_tubes.py):

- ``frames``  int32 ``[W, T]``: the 0-based frame numbers of each micro-tube window's T frames
  (T = 1 for a per-frame detector), increasing along T.
- ``boxes``   float64 ``[K, T, 4]``: each detection's box in each frame of its window,
  x1, y1, x2, y2 in pixels of the ``frame_size`` frame. In memory (``VideoDetections``)
  boxes are float32 normalised to [0, 1] (the model's convention, and ``loc`` of road_mat):
  the file functions convert, losslessly (a float32 times the frame size is exact in float64).
- ``scores``  float32 ``[K, C+1]``: per-class scores, background in column 0.
- ``window``  int32 ``[K]``: the window (row of ``frames``) of each detection.
- ``num_frames`` int32 scalar: frames in the video; ``frame_size`` int32 ``[2]``: width, height.

Per-frame detections for linking (``frame_detections``): frame f takes the detections
of the latest window that starts at or before f and ends at or after it, with that
window's box at f (linearly interpolated between the window's frames when f falls
between them). AMTNet's test.py writes, for each window, the micro-tube boxes of all
its frames under the window's first frame; with windows at every frame (eval gap 1)
each frame gets the first box of the micro-tubes starting there, and the last frame
the last box of the final window. A frame that no window covers has no detections.

``road_mat`` (ROAD's and AMTNet's layout, which the Matlab reads):
``DIR/<Class>/<video>/00001.mat ...``, one file per frame, each holding ``loc``
(N x 4, normalised x1 y1 x2 y2 of the 320x240 frame) and ``scores`` (N x (C+1),
background first). The frame number is the number in the file name. The Matlab
(``readDetections``) takes the position in the sorted ``dir`` listing instead: the same
for a complete video with zero-padded names (as the test scripts write them), but a
missing file or a stray ``.mat`` (say, a temporary file left by a killed writer) would
shift every later frame. Here a missing frame has no detections
(with a warning), hidden files are ignored, and another name is an error.
"""
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from data.annotations import UCF_FRAME_SIZE
from utils.errors import InputError
from utils.io import atomic_path

log = logging.getLogger(__name__)


FRAME_FILE = re.compile(r"\d+\.mat")
DET_FORMATS = ("road_mat", "npz")  # see the module doc


def detection_path(det_dir: Path, video: str, det_format: str) -> Path:
    """Where a video's detections are: ``DET_DIR/<Class>/<video>.npz``, or the road_mat folder ``DET_DIR/<Class>/<video>``."""
    return Path(det_dir) / (f"{video}.npz" if det_format == "npz" else video)


def has_detections(det_dir: Path, video: str, det_format: str) -> bool:
    """Whether a video's detections are there: its npz file, or a road_mat folder with a frame file."""
    path = detection_path(det_dir, video, det_format)
    if det_format == "npz":
        return path.is_file()
    return path.is_dir() and any(FRAME_FILE.fullmatch(f.name) for f in path.iterdir())


def frame_map_path(det_dir: Path) -> Path:
    """test.py's summary beside its detections, ``DET_DIR-frame_map.json``: the VOC-style frame-mAP
    (``frame_map_voc``, IoU ``iou``), per-class ``ap``, ``weights``, ``eval_gap``, ``det_dir``, counts
    and timings (``windows``, ``frames``, ``videos``, ``network_seconds``, ``total_seconds``)."""
    det_dir = Path(det_dir)
    return det_dir.parent / f"{det_dir.name}-frame_map.json"


class DetectionError(InputError, ValueError):
    """Malformed detection file: the message names the file and the field."""


@dataclass
class VideoDetections:
    frames: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    window: np.ndarray
    num_frames: int
    frame_size: tuple = UCF_FRAME_SIZE


def write_video_detections(path: Path, frames: np.ndarray, boxes: np.ndarray, scores: np.ndarray, window: np.ndarray,
                           num_frames: int, frame_size: tuple = UCF_FRAME_SIZE) -> None:
    """Write one video's detections atomically (see the module doc for the arrays)."""
    det = VideoDetections(np.asarray(frames, np.int32), np.asarray(boxes, np.float32),
                          np.asarray(scores, np.float32), np.asarray(window, np.int32),
                          int(num_frames), tuple(int(v) for v in frame_size))
    _check(det, path)
    with atomic_path(path) as tmp:
        np.savez(tmp, frames=det.frames, boxes=det.boxes.astype(np.float64) * _scale(det.frame_size), scores=det.scores, window=det.window,
                 num_frames=np.int32(det.num_frames), frame_size=np.asarray(det.frame_size, np.int32))


def read_video_detections(path: Path) -> VideoDetections:
    """Read and check one video's ``npz``; errors name the file and the field."""
    path = Path(path)
    try:
        with np.load(path) as z:
            missing = {"frames", "boxes", "scores", "window", "num_frames"} - set(z.files)
            if missing:
                raise DetectionError(f"{path}: missing field(s) {sorted(missing)}")
            size = tuple(int(v) for v in z["frame_size"]) if "frame_size" in z.files else UCF_FRAME_SIZE
            boxes = (z["boxes"] / _scale(size)).astype(np.float32)
            det = VideoDetections(z["frames"], boxes, z["scores"], z["window"], int(z["num_frames"]), size)
    except DetectionError:
        raise
    except Exception as e:  # numpy raises several types (zipfile.BadZipFile, OSError, ValueError, ...)
        raise DetectionError(f"{path}: cannot read detections ({type(e).__name__}: {e})") from e
    _check(det, path)
    return det


def _scale(frame_size):
    width, height = frame_size
    return np.array([width, height, width, height], np.float64)


def _numeric(path, **fields):
    """Each field an array of real numbers (a text or object field would fail later without a name)."""
    for name, value in fields.items():
        if np.asarray(value).dtype.kind not in "biuf":
            raise DetectionError(f"{path}: field '{name}' holds {np.asarray(value).dtype}, expected numbers")


def _all_finite(values: np.ndarray) -> bool:
    """No NaN or infinity in ``values`` (a NaN makes the minimum NaN; no array of flags is made)."""
    return values.size == 0 or bool(np.isfinite(values.min()) and np.isfinite(values.max()))


def _check(det, path):
    _numeric(path, frames=det.frames, boxes=det.boxes, scores=det.scores, window=det.window)
    if det.frames.ndim != 2:
        raise DetectionError(f"{path}: field 'frames' has shape {det.frames.shape}, expected [W, T]")
    w, t = det.frames.shape
    k = len(det.window)
    if det.boxes.shape != (k, t, 4):
        raise DetectionError(f"{path}: field 'boxes' has shape {det.boxes.shape}, expected ({k}, {t}, 4)")
    if not _all_finite(det.boxes):
        raise DetectionError(f"{path}: field 'boxes' has non-finite values")
    if not _all_finite(det.scores):
        raise DetectionError(f"{path}: field 'scores' has non-finite values")
    if det.scores.ndim != 2 or len(det.scores) != k or det.scores.shape[1] < 2:
        raise DetectionError(f"{path}: field 'scores' has shape {det.scores.shape}, expected ({k}, C+1)")
    if k and (det.window.min() < 0 or det.window.max() >= w):
        raise DetectionError(f"{path}: field 'window' has values outside 0..{w - 1}")
    if w and (det.frames.min() < 0 or det.frames.max() >= det.num_frames or np.any(np.diff(det.frames, axis=1) <= 0)):
        raise DetectionError(f"{path}: field 'frames' must increase along T and lie in 0..{det.num_frames - 1}")


class FrameList(list):
    """Per-frame ``(loc, scores)`` pairs (a list to every reader) that are consecutive views of flat arrays,
    ``flat = (loc [M, 4], scores [M, C+1], offsets [F + 1])``: the linking takes those as they are."""

    def __init__(self, loc: np.ndarray, scores: np.ndarray, offsets: np.ndarray):
        bounds = offsets.tolist()
        super().__init__((loc[a:b], scores[a:b]) for a, b in zip(bounds[:-1], bounds[1:]))
        self.flat = (loc, scores, offsets)


def frame_detections(det: VideoDetections, first: int = 0) -> FrameList:
    """Per-frame ``(loc [N, 4] normalised, scores [N, C+1])`` for frames ``first``..num_frames-1
    (see module doc), views of one array each (``FrameList``)."""
    owner = np.full(max(det.num_frames - first, 0), -1)
    # Later-starting windows overwrite earlier ones: each frame keeps the latest covering window.
    for w in np.argsort(det.frames[:, 0], kind="stable"):
        owner[max(det.frames[w, 0] - first, 0):max(det.frames[w, -1] + 1 - first, 0)] = w
    by_window = np.argsort(det.window, kind="stable")
    bounds = np.searchsorted(det.window[by_window], np.arange(len(det.frames) + 1))
    covered = owner >= 0
    counts = np.where(covered, bounds[owner + 1] - bounds[owner], 0)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    # each frame's detections: its window's, in the window's (stable) order
    rows = by_window[np.repeat(bounds[owner[covered]] - offsets[:-1][covered], counts[covered]) + np.arange(offsets[-1])]
    identity = len(rows) == len(det.scores) and np.array_equal(rows, np.arange(len(rows)))
    boxes, scores = (det.boxes, det.scores) if identity else (det.boxes[rows], det.scores[rows])
    if det.frames.shape[1] == 1:  # one frame per window: its box
        return FrameList(boxes[:, 0], scores, offsets)
    frame = np.repeat(np.arange(first, det.num_frames), counts)
    window = np.repeat(np.where(covered, owner, 0), counts)
    return FrameList(boxes_at(det.frames[window], boxes, frame), scores, offsets)


def boxes_at(frames: np.ndarray, boxes: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Each micro-tube's box at a frame of its window: ``frames`` ``[E, T]`` (increasing), ``boxes``
    ``[E, T, 4]``, ``at`` ``[E]`` frames within the windows -> ``[E, 4]`` in the boxes' precision;
    linear between the window's frames (weights in float64, the result cast back)."""
    frames, at = np.asarray(frames), np.asarray(at)
    pos = np.minimum((frames < at[:, None]).sum(1), frames.shape[1] - 1)
    rows = np.arange(len(at))
    exact = frames[rows, pos] == at
    out = boxes[rows, pos].copy()
    if not exact.all():
        e = ~exact
        lo, hi = frames[rows[e], pos[e] - 1], frames[rows[e], pos[e]]
        a = ((at[e] - lo) / (hi - lo))[:, None]
        out[e] = ((1 - a) * boxes[rows[e], pos[e] - 1] + a * boxes[rows[e], pos[e]]).astype(boxes.dtype)
    return out


def read_road_mat_video(video_dir: Path) -> list:
    """Per-frame ``(loc, scores)`` of one video in the road_mat layout, frame n from ``<n>.mat``
    (frames up to the highest number; see the module doc for missing and stray files).

    A frame without detections may hold empty arrays of any shape (it gets the video's score
    width); every other frame's ``scores`` must have as many columns as the first such frame's.
    A video whose frames are all empty has scores of width 0.
    """
    video_dir = Path(video_dir)
    files = {}
    for f in video_dir.glob("*.mat"):
        if f.name.startswith("."):  # e.g. an unfinished atomic write
            continue
        if not FRAME_FILE.fullmatch(f.name) or int(f.stem) < 1:
            raise DetectionError(f"{f}: not a frame file (expected 1-based numbers: 00001.mat, 00002.mat, ...)")
        if int(f.stem) in files:
            raise DetectionError(f"{f}: frame {int(f.stem)} is also in {files[int(f.stem)].name}")
        files[int(f.stem)] = f
    num_frames = max(files, default=0)
    if num_frames > 2 * len(files) + 100:  # a stray number (a date?) would make millions of empty frames
        raise DetectionError(f"{files[num_frames]}: frame number {num_frames} for a folder of {len(files)} frame files")
    missing = [n for n in range(1, num_frames + 1) if n not in files]
    if missing:
        log.warning("%s: %d of %d frame files missing (first: %05d.mat); those frames have no detections",
                    video_dir, len(missing), num_frames, missing[0])
    frames, width, first = [], None, None
    for n in range(1, num_frames + 1):
        f = files.get(n)
        if f is None:
            frames.append(None)
            continue
        try:
            m = scipy.io.loadmat(f, variable_names=("loc", "scores"))
        except Exception as e:
            raise DetectionError(f"{f}: cannot read ({e})") from e
        if "loc" not in m or "scores" not in m:
            raise DetectionError(f"{f}: needs fields 'loc' and 'scores'")
        loc, scores = m["loc"], m["scores"]
        _numeric(f, loc=loc, scores=scores)
        if loc.size == 0 and scores.size == 0:
            frames.append((loc.reshape(0, 4), scores))
            continue
        if loc.ndim != 2 or loc.shape[1] != 4 or scores.ndim != 2 or len(scores) != len(loc):
            raise DetectionError(f"{f}: 'loc' {loc.shape} and 'scores' {scores.shape} must be N x 4 and N x (C+1)")
        if not (np.isfinite(loc).all() and np.isfinite(scores).all()):
            raise DetectionError(f"{f}: 'loc' or 'scores' has non-finite values")
        if width is None:
            width, first = scores.shape[1], f
        elif scores.shape[1] != width:
            raise DetectionError(f"{f}: 'scores' has {scores.shape[1]} columns, {first.name} has {width}")
        frames.append((loc, scores))
    # a missing frame takes the precision of the video's detections (Matlab's single stays single)
    loc_dtype, score_dtype = (np.float64, np.float64) if first is None else (frames[int(first.stem) - 1][0].dtype,
                                                                              frames[int(first.stem) - 1][1].dtype)
    empty = (np.zeros((0, 4), loc_dtype), np.zeros((0, 0), score_dtype))
    frames = [empty if f is None else f for f in frames]
    return [(loc, scores.reshape(0, width or 0) if len(loc) == 0 else scores) for loc, scores in frames]


def write_road_mat_frame(path: Path, loc: np.ndarray, scores: np.ndarray) -> None:
    """One frame of the road_mat layout (as ROAD's test script writes it)."""
    with atomic_path(path) as tmp:
        scipy.io.savemat(tmp, {"loc": np.asarray(loc), "scores": np.asarray(scores)})
