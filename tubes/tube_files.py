"""Tube files: one alpha's trimmed tubes of a list of videos in one npz (build_tubes.py writes them,
eval_video_ap.py and demo.py read or write them).

Arrays: ``videos`` (names), ``alpha``, per tube ``video`` (index into ``videos``), ``class_id``
(0-based), ``score``, ``start`` (0-based first frame), ``length``; ``boxes`` ``[sum length, 4]``
x1, y1, x2, y2 in 0-based pixels (the link boxes minus 1, stored in double: exact), and
``box_dtype``, the precision the link boxes had, in which the evaluation computes.
"""
from pathlib import Path

import numpy as np

from utils.io import atomic_path

from .trimming import ActionTube


def tube_file(out_dir: Path, alpha: float) -> Path:
    """build_tubes.py's tube file of ``alpha`` in ``out_dir``: ``tubes_alpha<alpha>.npz``."""
    return Path(out_dir) / f"tubes_alpha{alpha:g}.npz"


def save_tubes(path: Path, videos: list, tubes: dict, alpha: float) -> None:
    """Tubes of one alpha: boxes in this project's 0-based pixels (link boxes - 1, in double: exact),
    and the precision the link boxes had (``box_dtype``), which the evaluation computes in."""
    flat = [(i, t) for i, v in enumerate(videos) for t in tubes.get(v, {}).get(alpha, [])]
    boxes = np.concatenate([t.boxes.astype(np.float64) - 1 for _, t in flat]) if flat else np.zeros((0, 4))
    box_dtype = "float32" if flat and all(t.boxes.dtype == np.float32 for _, t in flat) else "float64"
    with atomic_path(path) as tmp:
        np.savez(tmp, videos=np.asarray(videos), alpha=np.float64(alpha),
                 video=np.array([i for i, _ in flat], np.int32), class_id=np.array([t.class_id for _, t in flat], np.int32),
                 score=np.array([t.score for _, t in flat], np.float64), start=np.array([t.start for _, t in flat], np.int32),
                 length=np.array([len(t.boxes) for _, t in flat], np.int32), boxes=boxes, box_dtype=box_dtype)


def load_tubes(path: Path) -> tuple:
    """``(alpha, {video: [ActionTube]})`` from ``save_tubes`` (boxes back to link boxes, +1)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"tube file not found: {path}")
    try:
        return _load_tubes(path)
    except Exception as e:  # numpy raises several types (zipfile.BadZipFile, OSError, KeyError, ...)
        raise ValueError(f"{path}: not a tube file written by build_tubes.py ({type(e).__name__}: {e})") from e


def _load_tubes(path):
    with np.load(path) as z:
        box_dtype = np.dtype(str(z["box_dtype"])) if "box_dtype" in z else np.dtype(np.float64)
        all_boxes = (z["boxes"] + 1).astype(box_dtype)  # exact: the stored values came from box_dtype
        videos = [str(v) for v in z["videos"]]
        out = {v: [] for v in videos}
        ends = np.cumsum(z["length"])
        for k, (i, c, s, st) in enumerate(zip(z["video"], z["class_id"], z["score"], z["start"])):
            out[videos[i]].append(ActionTube(int(c), float(s), int(st), all_boxes[ends[k] - z["length"][k]:ends[k]]))
        return float(z["alpha"]), out
