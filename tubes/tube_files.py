"""Tube files: one alpha's trimmed tubes of a list of videos in one npz (build_tubes.py writes them,
eval_video_ap.py and demo.py read or write them).

Arrays: ``videos`` (names), ``alpha``, per tube ``video`` (index into ``videos``), ``class_id``
(0-based), ``score``, ``start`` (0-based first frame), ``length``; ``boxes`` ``[sum length, 4]``
x1, y1, x2, y2 in 0-based pixels (the link boxes minus 1, stored in double: exact), and
``box_dtype``, the precision the link boxes had, in which the evaluation computes.
"""
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from utils.io import atomic_path

from .trimming import ActionTube, TubeArrays


def tube_file(out_dir: Path, alpha: float) -> Path:
    """build_tubes.py's tube file of ``alpha`` in ``out_dir``: ``tubes_alpha<alpha>.npz``."""
    return Path(out_dir) / f"tubes_alpha{alpha:g}.npz"


def save_tubes(path: Path, videos: list, tubes: dict, alpha: float) -> None:
    """Tubes of one alpha (``{video: {alpha: [ActionTube]}}``): boxes in this project's 0-based pixels (link boxes - 1,
    in double: exact), and the precision the link boxes had (``box_dtype``), which the evaluation computes in."""
    with TubeFileWriter(path, videos, alpha) as writer:
        for i, v in enumerate(videos):
            writer.add(i, tubes.get(v, {}).get(alpha, []))


class TubeFileWriter:
    """``save_tubes`` one video at a time: ``add`` each video's tubes (in the videos' order); their boxes go to a
    temporary file beside ``path`` as they come, so memory does not grow with them. A context manager: ``path``
    appears, whole, when the block ends without an error (else nothing is written)."""

    def __init__(self, path: Path, videos: list, alpha: float):
        self.path, self.videos, self.alpha = Path(path), list(videos), alpha
        self.fields = {k: [] for k in ("video", "class_id", "score", "start", "length")}
        self.rows, self.all_single = 0, True

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._spill = tempfile.TemporaryFile(dir=self.path.parent, prefix=f".{self.path.stem}.", suffix=".boxes")
        return self

    def add(self, index: int, tubes) -> None:
        """Video ``videos[index]``'s tubes: a list of ``ActionTube`` or a ``TubeArrays``."""
        if isinstance(tubes, TubeArrays):
            classes, scores, starts, lengths, boxes = (tubes.classes, tubes.scores, tubes.starts, tubes.lengths,
                                                       tubes.boxes)
            single = not len(classes) or boxes.dtype == np.float32
        else:
            classes, scores, starts = ([getattr(t, k) for t in tubes] for k in ("class_id", "score", "start"))
            lengths = [len(t.boxes) for t in tubes]
            boxes = np.concatenate([np.asarray(t.boxes, np.float64).reshape(-1, 4) for t in tubes]) if tubes else None
            single = all(t.boxes.dtype == np.float32 for t in tubes)
        self.all_single &= bool(single)
        for key, values, dtype in (("video", [index] * len(classes), np.int32), ("class_id", classes, np.int32),
                                   ("score", scores, np.float64), ("start", starts, np.int32),
                                   ("length", lengths, np.int32)):
            self.fields[key].append(np.asarray(values, dtype).reshape(-1))
        if boxes is not None and len(boxes):
            (np.asarray(boxes, np.float64) - 1).astype("<f8").tofile(self._spill)
            self.rows += len(boxes)

    def __exit__(self, kind, value, traceback):
        try:
            if kind is None:
                self._write()
        finally:
            self._spill.close()

    def _write(self):
        arrays = {k: np.concatenate(v) if v else np.zeros(0, np.float64 if k == "score" else np.int32)
                  for k, v in self.fields.items()}
        arrays.update(videos=np.asarray(self.videos), alpha=np.float64(self.alpha),
                      box_dtype="float32" if len(arrays["video"]) and self.all_single else "float64")
        self._spill.flush()
        self._spill.seek(0)
        with atomic_path(self.path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
            for name in ("videos", "alpha", "video", "class_id", "score", "start", "length"):  # np.savez's layout
                with z.open(f"{name}.npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asanyarray(arrays[name]), allow_pickle=False)
            with z.open("boxes.npy", "w", force_zip64=True) as f:  # streamed from the spill file
                header = {"descr": "<f8", "fortran_order": False, "shape": (self.rows, 4)}
                np.lib.format.write_array_header_1_0(f, header)
                shutil.copyfileobj(self._spill, f, 1 << 20)
            with z.open("box_dtype.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(arrays["box_dtype"]), allow_pickle=False)


def load_tubes(path: Path) -> tuple:
    """``(alpha, {video: [ActionTube]})`` from ``save_tubes`` (boxes back to link boxes, +1)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"tube file not found: {path}")
    try:
        return _load_tubes(path)
    except Exception as e:  # numpy raises several types (zipfile.BadZipFile, OSError, KeyError, ...)
        # numpy's first sentence only: the next suggests loading pickled objects, which could run code
        raise ValueError(f"{path}: not a tube file written by build_tubes.py ({type(e).__name__}: "
                         f"{str(e).split('. ')[0]})") from e


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


# Other projects' tube files (eval_video_ap.py --tubes): ACT / MOC-Detector tube pickles and ROAD's
# Matlab ``xmldata`` (convert2eval.m). Both convert exactly to ``ActionTube`` and back for boxes on a
# binary grid (xmldata stores widths, x2 - x1).

ACT_TUBE_SUFFIX = "_tubes.pkl"  # MOC-Detector ACT_build.py: <inference_dir>/<video>_tubes.pkl


def act_tube_path(tube_dir: Path, video: str) -> Path:
    return Path(tube_dir) / f"{video}{ACT_TUBE_SUFFIX}"


def save_act_tubes(tube_dir: Path, tubes: dict, num_classes: int) -> None:
    """``{video: [ActionTube]}`` -> ACT_build.py's pickles ``{label: [(rows [n, 6], score)]}``, rows
    ``[frame (1-based), x1, y1, x2, y2, score]`` in 0-based pixels (the per-frame score column is the
    tube's; ACT.py does not read it)."""
    import pickle
    for video, video_tubes in tubes.items():
        out = {c: [] for c in range(num_classes)}
        for t in video_tubes:
            rows = np.column_stack([np.arange(t.start + 1, t.end + 1), np.asarray(t.boxes, np.float64) - 1,
                                    np.full(len(t.boxes), t.score)])
            out[t.class_id].append((rows, t.score))
        with atomic_path(act_tube_path(tube_dir, video)) as tmp:
            with open(tmp, "wb") as f:
                pickle.dump(out, f, protocol=4)


def _contiguous_frames(frames, where):
    frames = np.asarray(frames, np.float64).reshape(-1)
    if not len(frames) or np.any(frames != np.round(frames)) or frames[0] < 1 or np.any(np.diff(frames) != 1):
        raise ValueError(f"{where}: frame numbers must be consecutive integers from 1 on, got "
                         f"{frames[:3].tolist()}{' ...' if len(frames) > 3 else ''}")
    return int(frames[0])


def _finite_boxes(boxes, n, where):
    boxes = np.asarray(boxes)
    if boxes.dtype.kind not in "biuf" or boxes.ndim != 2 or boxes.shape != (n, 4) or not np.isfinite(boxes).all():
        raise ValueError(f"{where}: expected {n} rows of 4 finite numbers, got shape {boxes.shape} of {boxes.dtype}")
    return boxes.astype(np.float64)


def load_act_tubes(tube_dir: Path, videos: list | None = None) -> dict:
    """ACT / MOC tube pickles under ``tube_dir`` -> ``{video: [ActionTube]}`` (link boxes: + 1).

    ``videos``: the names to read (a missing file is an error); default: every ``*_tubes.pkl`` below.
    """
    from data.annotations import load_pickle
    tube_dir = Path(tube_dir)
    if videos is None:
        videos = sorted(str(p.relative_to(tube_dir))[:-len(ACT_TUBE_SUFFIX)] for p in tube_dir.rglob(f"*{ACT_TUBE_SUFFIX}"))
        if not videos:
            raise FileNotFoundError(f"{tube_dir}: no ACT tube files (<Class>/<video>{ACT_TUBE_SUFFIX})")
    out = {}
    for video in videos:
        path = act_tube_path(tube_dir, video)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no ACT tube file for video {video}")
        content = load_pickle(path)
        if not isinstance(content, dict):
            raise ValueError(f"{path}: video {video}: expected a dictionary {{label: [(tube, score)]}}, "
                             f"found {type(content).__name__}")
        out[video] = []
        for label, entries in content.items():
            for k, entry in enumerate(entries):
                where = f"{path}: video {video} label {label} tube {k}"
                if not isinstance(label, (int, np.integer)) or label < 0:
                    raise ValueError(f"{where}: labels must be integers >= 0 (0-based classes)")
                if not isinstance(entry, (tuple, list)) or len(entry) != 2:
                    raise ValueError(f"{where}: expected a (rows, score) pair")
                rows, score = np.asarray(entry[0]), entry[1]
                if rows.ndim != 2 or rows.shape[1] < 5 or not len(rows):
                    raise ValueError(f"{where} field 'rows': shape {rows.shape}, expected (n, 5 or 6) rows of "
                                     "frame, x1, y1, x2, y2[, score]")
                start = _contiguous_frames(rows[:, 0], f"{where} field 'rows' (column 0)")
                boxes = _finite_boxes(rows[:, 1:5], len(rows), f"{where} field 'rows' (boxes)")
                if not np.isfinite(float(score)):
                    raise ValueError(f"{where} field 'score': {score!r} is not finite")
                out[video].append(ActionTube(int(label), float(score), start - 1, boxes + 1))
    return out


def save_xmldata(path: Path, tubes: dict) -> None:
    """``{video: [ActionTube]}`` -> a ``.mat`` with ``xmldata`` as ``convert2eval.m`` makes it: per video
    ``videoName``, ``score``, ``nr``, ``class`` (1-based), ``framenr(k).fnr`` (1-based frames) and
    ``boxes(k).bxs`` ``[x1 y1 x2-x1 y2-y1]`` of the link boxes."""
    import scipy.io
    xml = np.zeros((1, len(tubes)), dtype=[(f, "O") for f in ("videoName", "score", "nr", "class", "framenr", "boxes")])
    for i, (video, video_tubes) in enumerate(tubes.items()):
        fnr = np.zeros((1, len(video_tubes)), dtype=[("fnr", "O")])
        bxs = np.zeros((1, len(video_tubes)), dtype=[("bxs", "O")])
        for k, t in enumerate(video_tubes):
            fnr[0, k]["fnr"] = np.arange(t.start + 1, t.end + 1, dtype=np.float64)[None]
            b = np.asarray(t.boxes)
            bxs[0, k]["bxs"] = np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1)
        xml[0, i] = (video, np.array([[t.score for t in video_tubes]], np.float64),
                     np.arange(1, len(video_tubes) + 1, dtype=np.float64)[None],
                     np.array([[t.class_id + 1 for t in video_tubes]], np.float64), fnr, bxs)
    with atomic_path(path) as tmp:
        scipy.io.savemat(tmp, {"xmldata": xml})


def load_xmldata(path: Path) -> dict:
    """A ``.mat`` holding ``convert2eval.m``'s ``xmldata`` (or one struct array with its fields) ->
    ``{video: [ActionTube]}``, link boxes ``[x, y, x + w, y + h]`` in the file's precision."""
    import scipy.io
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tube file not found: {path}")
    try:
        mat = scipy.io.loadmat(path, squeeze_me=False, struct_as_record=True)
    except Exception as e:  # scipy raises several types for a file that is not a .mat
        raise ValueError(f"{path}: not a readable Matlab file ({type(e).__name__}: {e})") from e
    names = [k for k in mat if not k.startswith("__")]
    name = "xmldata" if "xmldata" in mat else (names[0] if len(names) == 1 else None)
    if name is None:
        raise ValueError(f"{path}: no variable 'xmldata' (found {', '.join(names) or 'none'})")
    xml = mat[name]
    fields = xml.dtype.names or ()
    for f in ("videoName", "score", "class", "framenr", "boxes"):
        if f not in fields:
            raise ValueError(f"{path}: variable {name!r} has no field {f!r} (convert2eval.m's xmldata)")
    out = {}
    for i, entry in enumerate(xml.reshape(-1)):
        video = str(np.asarray(entry["videoName"]).reshape(-1)[0]) if np.asarray(entry["videoName"]).size else ""
        if not video:
            raise ValueError(f"{path}: {name}({i + 1}) field 'videoName' is empty")
        scores = np.asarray(entry["score"], np.float64).reshape(-1)
        classes = np.asarray(entry["class"]).reshape(-1)
        framenr = np.asarray(entry["framenr"]).reshape(-1)
        boxes = np.asarray(entry["boxes"]).reshape(-1)
        n = len(scores)
        for f, v in (("class", classes), ("framenr", framenr), ("boxes", boxes)):
            if len(v) != n:
                raise ValueError(f"{path}: video {video} field {f!r} has {len(v)} entries for {n} scores")
        out[video] = []
        for k in range(n):
            where = f"{path}: video {video} tube {k + 1}"
            if not np.isfinite(scores[k]) or classes[k] < 1 or classes[k] != int(classes[k]):
                raise ValueError(f"{where}: field 'score' {scores[k]} / 'class' {classes[k]} (1-based) is invalid")
            fnr = np.asarray(framenr[k]["fnr"] if framenr.dtype.names else framenr[k]).reshape(-1)
            start = _contiguous_frames(fnr, f"{where} field 'framenr.fnr'")
            bxs = np.asarray(boxes[k]["bxs"] if boxes.dtype.names else boxes[k])
            b = _finite_boxes(bxs, len(fnr), f"{where} field 'boxes.bxs'")
            b = b.astype(bxs.dtype if bxs.dtype in (np.float32, np.float64) else np.float64)
            out[video].append(ActionTube(int(classes[k]) - 1, float(scores[k]), start - 1,
                                         np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], 1)))
    return out


def load_any_tubes(path: Path) -> tuple:
    """``(label, {video: [ActionTube]})`` of a tube file of any format: this project's ``.npz`` (label: its
    alpha), a ``.mat`` with ``xmldata`` or a folder of ACT tube pickles (label: the file's name)."""
    path = Path(path)
    if path.is_dir():
        return path.name, load_act_tubes(path)
    if path.suffix.lower() == ".mat":
        return path.stem, load_xmldata(path)
    return load_tubes(path)
