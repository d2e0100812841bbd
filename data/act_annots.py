"""Ground truth in the ACT / MOC format (``UCF101v2-GT.pkl``, ``JHMDB-GT.pkl``).

The file (Kalogeiton et al., "Action Tubelet Detector", ICCV 2017; reused by MOC) is one
pickled dictionary:

- ``labels``: class names in label order;
- ``gttubes``: ``{video: {label: [array of rows (frame, x1, y1, x2, y2)]}}`` with 1-based
  frame numbers and pixel boxes;
- ``nframes``: ``{video: number of frames}``; ``resolution``: ``{video: (height, width)}``;
- ``train_videos``, ``test_videos``: one list of video names per split.

Boxes are used as given (x1, y1, x2, y2 in pixels); frames become 0-based. A tube
whose rows skip frames is split into contiguous pieces.
"""
import logging
from pathlib import Path

import numpy as np

from .annotations import (AnnotationError, ClipStats, DatasetAnnotations, Tube, VideoAnnotation,
                          _clip_tube, check_box_values, load_pickle)

log = logging.getLogger(__name__)

ACT_FILES = ("UCF101v2-GT.pkl", "JHMDB-GT.pkl")
ACT_KEYS = ("labels", "gttubes", "nframes", "train_videos", "test_videos", "resolution")


def is_act_file(content: object) -> bool:
    return isinstance(content, dict) and "gttubes" in content


def _contiguous_pieces(frames):
    """Index ranges ``[a, b)`` of the runs of consecutive frame numbers."""
    breaks = np.flatnonzero(np.diff(frames) != 1) + 1
    edges = np.concatenate([[0], breaks, [len(frames)]])
    return list(zip(edges[:-1], edges[1:]))


def _parse_tube(rows, label, num_frames, where):
    rows = check_box_values(rows, where).astype(np.float64)
    if rows.ndim != 2 or rows.shape[1] != 5 or len(rows) == 0:
        raise AnnotationError(f"{where} has shape {rows.shape}, expected (n, 5) rows of frame, x1, y1, x2, y2")
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    frames = rows[:, 0].astype(np.int64)
    if np.any(frames != rows[:, 0]) or frames[0] < 1 or frames[-1] > num_frames or np.any(np.diff(frames) == 0):
        raise AnnotationError(f"{where}: frame numbers {frames[0]}..{frames[-1]} are not distinct integers "
                              f"within 1..{num_frames} (the video's 'nframes')")
    return [Tube(label, int(frames[a]) - 1, rows[a:b, 1:].astype(np.float32)) for a, b in _contiguous_pieces(frames)]


def parse_act_gt(content: dict, path: Path, split: int = 1, clip: bool = True) -> DatasetAnnotations:
    """Convert an ACT ground-truth dictionary to ``DatasetAnnotations`` (split ``split``, 1-based).

    ``clip``: boxes past the frame are clipped (a box left without area splits its tube), as training
    needs; ``False`` keeps them as the file has them, as ACT.py evaluates them (tubes/runner.py).
    """
    for key in ACT_KEYS:
        if key not in content:
            raise AnnotationError(f"{path}: missing field {key!r} (an ACT ground-truth file has {', '.join(ACT_KEYS)})")
    classes = [str(c) for c in content["labels"]]
    num_splits = len(content["train_videos"])
    if not 1 <= split <= num_splits or len(content["test_videos"]) != num_splits:
        raise AnnotationError(f"{path}: split {split} requested; the file has {num_splits} training and "
                              f"{len(content['test_videos'])} test video lists")
    stats = ClipStats()
    videos, sizes = {}, {}
    for name in sorted(content["gttubes"]):
        where = f"{path}: video {name!r}"
        if name not in content["nframes"]:
            raise AnnotationError(f"{where} has no field 'nframes'")
        if name not in content["resolution"]:
            raise AnnotationError(f"{where} has no field 'resolution'")
        num_frames = int(content["nframes"][name])
        height, width = (int(v) for v in content["resolution"][name])
        tubes, labels = [], set()
        for label, raw_tubes in sorted(content["gttubes"][name].items()):
            label = int(label)
            if not 0 <= label < len(classes):
                raise AnnotationError(f"{where} field 'gttubes' label {label} is outside 0..{len(classes) - 1}")
            labels.add(label)
            for t, rows in enumerate(raw_tubes):
                for piece in _parse_tube(rows, label, num_frames, f"{where} field 'gttubes' label {label} tube {t}"):
                    tubes.extend(_clip_tube(piece, (width, height), stats) if clip else [piece])
        if len(labels) != 1:
            raise AnnotationError(f"{where} field 'gttubes' has labels {sorted(labels)}; expected exactly one per video")
        videos[name] = VideoAnnotation(name, num_frames, labels.pop(), tubes)
        sizes[name] = (width, height)
    if stats.clipped or stats.dropped:
        log.warning("%s: clipped %d boxes to the frame, dropped %d boxes with no area", path, stats.clipped, stats.dropped)
    train = _split_names(content["train_videos"][split - 1], videos, path, "train_videos")
    test = _split_names(content["test_videos"][split - 1], videos, path, "test_videos")
    return DatasetAnnotations(classes, videos, train, test, sizes)


def _split_names(names, videos, path, key):
    missing = [n for n in names if n not in videos]
    if missing:
        log.info("%s: %d videos of %r have no ground-truth tubes and are skipped (first: %s)", path, len(missing), key, missing[0])
    return sorted(n for n in set(names) if n in videos)


def load_act_gt(path: Path, split: int = 1) -> DatasetAnnotations:
    """Read ``UCF101v2-GT.pkl`` / ``JHMDB-GT.pkl`` (or any file in that format)."""
    content = load_pickle(path)
    if not is_act_file(content):
        raise AnnotationError(f"{path}: not an ACT ground-truth file (no 'gttubes' field)")
    return parse_act_gt(content, Path(path), split)
