"""Boxes drawn on frames (OpenCV, BGR images, pixel boxes x1, y1, x2, y2): demo.py's live paths in their
class's colour, the ground truth of a dataset video beside them in white, and a legend saying which is which;
the run report's frame strips and videos draw the evaluated tubes and the ground truth the same way. Imports
no torch (the report is written by analyze.py)."""
from pathlib import Path

import cv2
import numpy as np

from data.annotations import VideoAnnotation
from tubes.runner import load_annotations

COLOURS = [(0, 200, 255), (255, 120, 0), (60, 220, 60), (220, 60, 220), (0, 80, 255), (255, 255, 0)]
GT_COLOUR = (255, 255, 255)  # white: none of the class colours, and clear on the toy set's busy backgrounds
FONT = cv2.FONT_HERSHEY_SIMPLEX


def draw_box(image: np.ndarray, box, colour: tuple, label: str, thickness: int = 2, below: bool = False) -> None:
    """``box`` (pixels) and ``label`` on a filled tab above it (``below``: under it), in place."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness)
    (w, h), _ = cv2.getTextSize(label, FONT, 0.4, 1)
    top = min(y2 + 1, image.shape[0] - h - 6) if below else max(y1 - h - 6, 0)
    cv2.rectangle(image, (x1, top), (x1 + w + 4, top + h + 6), colour, -1)
    cv2.putText(image, label, (x1 + 2, top + h + 2), FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)


def draw_legend(image: np.ndarray, entries: list) -> None:
    """``(text, colour)`` entries, one a line from the bottom-left corner up, each after a swatch, in place."""
    bottom = image.shape[0] - 6
    for text, colour in reversed(entries):
        (w, h), _ = cv2.getTextSize(text, FONT, 0.4, 1)
        cv2.rectangle(image, (2, bottom - h - 4), (w + 22, bottom + 3), (0, 0, 0), -1)
        cv2.rectangle(image, (5, bottom - h), (14, bottom - 1), colour, -1)
        cv2.putText(image, text, (18, bottom - 1), FONT, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        bottom -= h + 8


def draw_ground_truth(image: np.ndarray, boxes: list, classes: list) -> None:
    """The ground truth's ``(class_id, box)`` of a frame in ``GT_COLOUR``, labelled ``GT <class>`` under the box
    (the detections' labels are above theirs), in place."""
    for class_id, box in boxes:
        name = classes[class_id] if 0 <= class_id < len(classes) else str(class_id)
        draw_box(image, box, GT_COLOUR, f"GT {name}", below=True)


def draw(frame: np.ndarray, index: int, paths: list, classes: list, ground_truth: dict | None = None) -> np.ndarray:
    """``frame`` with the live ``paths`` (class, box, score, mean score) drawn and labelled, and its 1-based index;
    with ``ground_truth`` (``ground_truth_boxes``), the frame's ground-truth boxes too, and a legend: the ground
    truth's colour and the colour of each class drawn."""
    out = frame.copy()
    for class_id, box, score, mean in paths:
        draw_box(out, box, COLOURS[class_id % len(COLOURS)], f"{classes[class_id]} {mean:.2f}")
    if ground_truth is not None:
        draw_ground_truth(out, ground_truth.get(index, []), classes)
        drawn = sorted({path[0] for path in paths})
        draw_legend(out, [("ground truth", GT_COLOUR)] + [(classes[c], COLOURS[c % len(COLOURS)]) for c in drawn])
    draw_frame_number(out, index)
    return out


def draw_frame_number(image: np.ndarray, index: int) -> None:
    """The 1-based number of the frame of 0-based ``index`` in the top-left corner, in place."""
    cv2.putText(image, f"{index + 1}", (4, 14), FONT, 0.4, (255, 255, 255), 1, cv2.LINE_AA)


def ground_truth_boxes(annotation: VideoAnnotation) -> dict:
    """``{0-based frame: [(class_id, box in 0-based pixels)]}`` of a video's GT tubes."""
    frames = {}
    for tube in annotation.tubes:
        for offset, box in enumerate(np.asarray(tube.boxes, np.float64)):
            frames.setdefault(tube.start + offset, []).append((tube.class_id, box))
    return frames


def dataset_video_name(source) -> str:
    """The dataset video (``Class/video``) a ``--video`` path names: its last two components, without a video
    file's extension. ValueError for a camera or a stream URL."""
    if not isinstance(source, Path):
        raise ValueError(f"--annot draws the ground truth of a dataset video: {source} is a camera or a stream")
    return f"{source.parent.name}/{source.stem if source.is_file() else source.name}"


def video_ground_truth(annot_path: Path, source, realtime: bool = False) -> dict:
    """``ground_truth_boxes`` of the dataset video that ``source`` names (``dataset_video_name``) in the annotations
    ``annot_path``; ValueError naming both when it is not there, or with ``realtime`` (dropped frames would shift
    the frame numbers)."""
    if realtime:
        raise ValueError("--annot draws each frame's ground truth: not with --realtime, which drops frames")
    annotations, name = load_annotations(annot_path), dataset_video_name(source)
    if name not in annotations:
        raise ValueError(f"{annot_path}: no video {name} (named by the last two parts of --video {source})")
    return ground_truth_boxes(annotations[name])
