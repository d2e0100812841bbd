"""Micro-tube linking (AMTNet, Saha et al., ICCV 2017): the network runs on frame pairs
(t, t + k) only, and whole micro-tubes are linked, not per-frame boxes.

``MicroTubeLinker`` is ``OnlineLinker`` (ROAD's ``incremental_linking.m``: per class, the
``dofilter`` picks, the path order by the mean of its ``jumpgap + 1`` best scores, new paths
from uncovered picks) run once per micro-tube window instead of once per frame, with:

- affinity: the IoU of a path's last box with a micro-tube's *first* box; the filtering
  (score, top 50, NMS, top 10) also runs on the first boxes;
- extension: the micro-tube's boxes at the frames after the path's last frame, linearly
  interpolated between the micro-tube's own frames (``tubes.detections.boxes_at``, the rule
  test.py's per-frame detections follow), so a path still has one box per frame; the path's
  last box is then the micro-tube's last box. Every frame a micro-tube adds gets its scores;
- gaps: the frames between a path's last frame and a later micro-tube's first frame repeat
  that micro-tube's first box and scores (``fill_gaps`` repeats the next detection);
- ``jumpgap`` counts micro-tubes (windows), not frames: a path dies after ``jumpgap`` windows
  without a match, and a final path needs more than ``jumpgap`` micro-tubes.

With windows at every frame reduced to their first box (``T = 1``) this is exactly the
frame-level linking of those boxes (tested). Test windows come from test.py (``--eval_gaps
g``: micro-tubes (t, t + g + 1), one every g + 1 frames, so k = g + 1) in start order; the
window test.py appends to cover a video's last frame may start inside the previous one:
it extends the paths it links only by its frames after theirs.
"""
import numpy as np

from data.annotations import UCF_FRAME_SIZE

from .boxes import loc_to_link_boxes
from .detections import VideoDetections, boxes_at
from .linking import LINKING_FILTER, OnlineLinker, filter_frame_padded, linking_filter, segment_starts


def spans(prev_end: np.ndarray, last: np.ndarray) -> tuple:
    """The frames each record adds to its path, ``prev_end + 1 .. last``: (record per frame, frame)."""
    counts = last - prev_end
    record = np.repeat(np.arange(len(counts)), counts)
    return record, prev_end[record] + 1 + np.arange(counts.sum()) - segment_starts(counts)[record]


class MicroTubeLinker(OnlineLinker):
    """Incremental linking of one video's micro-tubes, all classes (see the module doc).

    ``update(frames, loc, scores)`` with one window: its frames ``[T]`` (increasing), the
    micro-tubes' normalised boxes ``[N, T, 4]`` and scores ``[N, C+1]`` (background first),
    windows in start order with increasing last frames. ``paths``/``finish`` as ``OnlineLinker``'s,
    one box per frame; ``found`` holds the first frames of the linked micro-tubes.
    """

    def __init__(self, num_classes: int, frame_size: tuple = UCF_FRAME_SIZE, iou_thresh: float = 0.1,
                 jumpgap: int = 3, filter_cfg=LINKING_FILTER):
        super().__init__(num_classes, iou_thresh, jumpgap, filter_cfg)
        self.frame_size = frame_size
        self._frames, self._loc = [], []

    def update(self, frames: np.ndarray, loc: np.ndarray, scores: np.ndarray) -> None:
        frames, loc, scores = np.asarray(frames), np.asarray(loc), np.asarray(scores)
        if loc.ndim != 3 or loc.shape[1:] != (len(frames), 4) or scores.shape != (len(loc), self.num_classes + 1):
            raise ValueError(f"window {self.t} (frames {frames.tolist()}): boxes {loc.shape} and scores "
                             f"{scores.shape}, expected ({len(loc)}, {len(frames)}, 4) and ({len(loc)}, "
                             f"{self.num_classes + 1})")
        if self._frames and (frames[0] < self._frames[-1][0] or frames[-1] <= self._frames[-1][-1]):
            raise ValueError(f"window {self.t} (frames {frames.tolist()}) after frames {self._frames[-1].tolist()}: "
                             "windows must come in start order, each ending later")
        first = loc_to_link_boxes(loc[:, 0], self.frame_size)
        last = loc_to_link_boxes(loc[:, -1], self.frame_size)
        class_scores = scores[:, 1:]
        self.link(first, class_scores, filter_frame_padded(first, class_scores, (self.filter_cfg,))[0], last)
        self._frames.append(frames)
        self._loc.append(loc.reshape(-1, len(frames), 4))

    def current(self):
        raise NotImplementedError("MicroTubeLinker links windows: the paths at each frame come from OnlineMicroTubes")

    def _path_frames(self, n, window, rows):
        """``OnlineLinker._path_frames`` of micro-tubes (records are windows): each record's first frame, and
        the frames each micro-tube adds after its path's previous end (see the module doc)."""
        win_frames = np.stack(self._frames)[window]
        first, last = win_frames[:, 0], win_frames[:, -1]
        prev_end = np.concatenate([[0], last[:-1]])
        prev_end[segment_starts(n)] = first[segment_starts(n)] - 1
        record, frame = spans(prev_end, last)
        loc = boxes_at(win_frames[record], np.concatenate(self._loc)[rows[record]], np.maximum(frame, first[record]))
        return (first, rows[record], loc_to_link_boxes(loc, self.frame_size),
                np.add.reduceat(last - prev_end, segment_starts(n)))


def link_micro_tubes(det: VideoDetections, num_classes: int, iou_thresh: float = 0.1, jumpgap: int = 3,
                     link_score: float = LINKING_FILTER.score_thresh) -> list:
    """One video's micro-tube detections (test.py's npz, ``read_video_detections``) -> paths per class."""
    linker = MicroTubeLinker(num_classes, det.frame_size, iou_thresh, jumpgap, linking_filter(link_score))
    for window in windows_in_order(det, num_classes):
        linker.update(*window)
    return linker.finish()


def windows_in_order(det: VideoDetections, num_classes: int) -> list:
    """A video's windows as ``MicroTubeLinker.update`` takes them: ``(frames [T], boxes [K, T, 4], scores
    [K, C+1])`` in start order."""
    if len(det.scores) and det.scores.shape[1] != num_classes + 1:
        raise ValueError(f"scores have {det.scores.shape[1]} columns, expected {num_classes + 1} (background first)")
    order = np.argsort(det.window, kind="stable")
    bounds = np.searchsorted(det.window[order], np.arange(len(det.frames) + 1))
    return [(det.frames[w], det.boxes[order[bounds[w]:bounds[w + 1]]], det.scores[order[bounds[w]:bounds[w + 1]]])
            for w in np.argsort(det.frames[:, 0], kind="stable")]


def no_windows(frame_size: tuple) -> VideoDetections:
    """The micro-tubes of a video without detections."""
    return VideoDetections(np.zeros((0, 1), np.int32), np.zeros((0, 1, 4), np.float32), np.zeros((0, 1), np.float32),
                           np.zeros(0, np.int32), 0, frame_size)


class OnlineMicroTubes:
    """demo.py ``--link micro``: ``add_window`` links each micro-tube window as the detector runs it;
    ``update`` (per-frame detections, not used) and ``current`` then go frame by frame, as
    ``OnlineTubes``', ``current`` giving the paths that cover the frame with their box there."""

    def __init__(self, num_classes: int, frame_size: tuple, iou_thresh: float = 0.1, jumpgap: int = 3,
                 link_score: float = LINKING_FILTER.score_thresh):
        self.linker = MicroTubeLinker(num_classes, frame_size, iou_thresh, jumpgap, linking_filter(link_score))
        self.frame = -1
        self._pending = {}  # frame -> [(class, box, score, mean)]

    def add_window(self, frames: np.ndarray, loc: np.ndarray, scores: np.ndarray) -> None:
        lk = self.linker
        lk.update(frames, loc, scores)
        run = lk.running()  # per path: class, sum and length of its gap-filled scores, last frame
        pid, row = lk._rec_pid[-1], lk._rec_row[-1] - lk._frame_start[-1]
        cls = run["class"][pid]
        prev_end = np.where(run["length"][pid] > 0, run["last_t"][pid], frames[0] - 1)
        record, frame = spans(prev_end, np.full(len(pid), frames[-1]))
        loc = boxes_at(np.broadcast_to(frames, (len(record), len(frames))), lk._loc[-1][row[record]],
                       np.maximum(frame, frames[0]))
        boxes = loc_to_link_boxes(loc, lk.frame_size) - 1
        score = lk._class_scores[-1][row[record], cls[record]]
        added = frame - prev_end[record]
        means = (run["sum"][pid][record] + added * score.astype(np.float64)) / (run["length"][pid][record] + added)
        for i in np.lexsort((record, frame)):  # by frame, then class order as OnlineTubes.current
            self._pending.setdefault(int(frame[i]), []).append((int(cls[record[i]]), boxes[i], float(score[i]),
                                                                float(means[i])))
        run["sum"][pid] += (frames[-1] - prev_end) * lk._class_scores[-1][row, cls].astype(np.float64)
        run["length"][pid] += frames[-1] - prev_end
        run["last_t"][pid] = frames[-1]

    def update(self, loc: np.ndarray, scores: np.ndarray) -> None:
        self.frame += 1

    def current(self, min_score: float = 0.0) -> list:
        """The paths covering the latest frame: ``[(class_id, box x1 y1 x2 y2 0-based pixels, score,
        mean path score so far)]``, in class order, those with a mean below ``min_score`` left out."""
        entries = sorted(self._pending.pop(self.frame, []), key=lambda e: e[0])
        return [e for e in entries if e[3] >= min_score]
