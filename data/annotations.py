"""Annotation readers, all converted to one internal representation.

Internal representation (one convention, used everywhere downstream):

- ``VideoAnnotation``: ``name`` (``Class/video``), ``num_frames``, ``class_id`` and
  a list of ``Tube``.
- ``Tube``: ``class_id`` (0-based index into the dataset's class list; the model's
  labels are ``class_id + 1`` with 0 for background), ``start`` (0-based first
  frame), ``boxes`` (``[n, 4]`` float32 x1, y1, x2, y2 in 0-based pixels), and
  ``end = start + n`` (exclusive).

The released UCF101-24 ``pyannot.pkl`` stores boxes as x, y, w, h in 1-based pixels;
the original AMTNet (``data/shared.py``, ``make_lists_ucf``: ``box -= 1`` on all
four numbers, then ``box[2] += box[0]``) gives x1 = x - 1 and x2 = x + w - 2, the
0-based index of the last pixel inside the box. We do the same so normalised
targets equal the original's. J-HMDB-21's ``pyannot.pkl`` is read as the original reads it
(``make_lists_jhmdb``: ``boxes[:,2] += boxes[:,0]`` with no ``- 1``): x1 = x, x2 = x + w.
"""
import dataclasses
import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from utils.errors import InputError

from . import layout

log = logging.getLogger(__name__)

UCF_FRAME_SIZE = (320, 240)  # width, height of UCF101-24 and J-HMDB-21 frames


class AnnotationError(InputError, ValueError):
    """Malformed annotation: the message names the file, the video and the field."""


@dataclass
class Tube:
    class_id: int
    start: int
    boxes: np.ndarray

    @property
    def end(self) -> int:
        return self.start + len(self.boxes)


@dataclass
class VideoAnnotation:
    name: str
    num_frames: int
    class_id: int
    tubes: list = field(default_factory=list)


@dataclass
class ClipStats:
    """Counts of boxes repaired while loading, for one log line per file."""
    clipped: int = 0
    dropped: int = 0


# What annotation and tube pickles may hold besides Python's plain types: numpy arrays and scalars (the released
# pyannot.pkl, ACT's *-GT.pkl and tube pickles hold nothing else). Python 3 stores an array's bytes through
# _codecs.encode (protocol 2; an empty array through bytes) or numpy's _frombuffer (protocol 5). Any other global
# a pickle names (a function to call, say) is refused before it is looked up: an annotation file is data, not code.
PICKLE_GLOBALS = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"), ("builtins", "bytes"),
                  ("__builtin__", "bytes")} | {
    (f"numpy.{core}.{module}", name) for core in ("core", "_core")
    for module, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))}


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which an annotation or tube file never holds; "
                                         "refused (only numpy arrays and plain Python data are read)")
        return super().find_class(module, name)


def load_pickle(path: Path) -> object:
    """A pickle of plain data and numpy arrays (``PICKLE_GLOBALS``; anything else is refused). Pickles written
    by Python 2 (the released ones) need latin1 decoding."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        with open(path, "rb") as f:
            return _DataUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as e:
        raise AnnotationError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from e


def xywh1_to_xyxy0(boxes: np.ndarray) -> np.ndarray:
    """x, y, w, h in 1-based pixels -> x1, y1, x2, y2 in 0-based pixels (see module doc)."""
    b = np.asarray(boxes, dtype=np.float32) - 1.0
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """x, y, w, h -> x, y, x + w, y + h: J-HMDB-21's boxes as the original reads them (see module doc)."""
    b = np.asarray(boxes, dtype=np.float32)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def xyxy0_to_xywh1(boxes: np.ndarray) -> np.ndarray:
    """Inverse of ``xywh1_to_xyxy0``: the released annotation format."""
    b = np.asarray(boxes, dtype=np.float64)
    return np.concatenate([b[:, :2] + 1.0, b[:, 2:] - b[:, :2] + 1.0], axis=1)


def _clip_tube(tube, frame_size, stats):
    """Clip boxes to the frame; split the tube where a box has no area left."""
    width, height = frame_size
    boxes = tube.boxes.copy()
    clipped = boxes.copy()
    clipped[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width - 1)
    clipped[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height - 1)
    stats.clipped += int(np.any(clipped != boxes, axis=1).sum())
    valid = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    stats.dropped += int((~valid).sum())
    pieces, run_start = [], None
    for i, ok in enumerate(list(valid) + [False]):
        if ok and run_start is None:
            run_start = i
        elif not ok and run_start is not None:
            pieces.append(Tube(tube.class_id, tube.start + run_start, clipped[run_start:i]))
            run_start = None
    return pieces


def check_box_values(boxes, where):
    """``boxes`` as an array of finite numbers; an ``AnnotationError`` naming ``where`` otherwise."""
    boxes = np.asarray(boxes)
    if boxes.dtype.kind not in "biuf":
        raise AnnotationError(f"{where} holds {boxes.dtype} values, expected numbers")
    if not np.isfinite(boxes).all():
        raise AnnotationError(f"{where} has non-finite values (NaN or inf)")
    return boxes


def _field(entry, key, path, video):
    try:
        return entry[key]
    except (KeyError, TypeError, IndexError):
        raise AnnotationError(f"{path}: video {video!r} has no field {key!r}") from None


def parse_ucf_database(database: dict, path: Path, num_classes: int | None = None,
                       frame_size: tuple = UCF_FRAME_SIZE, jhmdb: bool = False) -> dict:
    """Convert a ``pyannot.pkl`` dictionary to ``{name: VideoAnnotation}``.

    ``jhmdb``: J-HMDB-21's file, read as the original (``data/shared.py``, ``make_lists_jhmdb``)
    reads it: the number of frames from the first tube's boxes (every tube spans the whole video;
    ``numf = annotations[0]['boxes'].shape[0]``) and boxes x, y, x + w, y + h (``boxes[:,2] +=
    boxes[:,0]``, without ``make_lists_ucf``'s ``box -= 1``).
    """
    to_xyxy = xywh_to_xyxy if jhmdb else xywh1_to_xyxy0
    stats = ClipStats()
    videos = {}
    for name in sorted(database):
        entry = database[name]
        label = int(_field(entry, "label", path, name))
        tubes_in = _field(entry, "annotations", path, name)
        if jhmdb:
            if not tubes_in:
                raise AnnotationError(f"{path}: video {name!r} field 'annotations' is empty")
            num_frames = len(_field(tubes_in[0], "boxes", path, name))
        else:
            # numf is a numpy unsigned integer in the released file: cast before arithmetic.
            num_frames = int(_field(entry, "numf", path, name))
        if num_classes is not None and not 0 <= label < num_classes:
            raise AnnotationError(f"{path}: video {name!r} field 'label' = {label} is outside 0..{num_classes - 1}")
        tubes = []
        for t, raw in enumerate(tubes_in):
            tube_label = int(_field(raw, "label", path, name))
            where = f"{path}: video {name!r} tube {t}"
            boxes = check_box_values(_field(raw, "boxes", path, name), f"{where} field 'boxes'")
            if jhmdb:
                sf, ef = 0, len(boxes)
            else:
                sf, ef = int(_field(raw, "sf", path, name)), int(_field(raw, "ef", path, name))
            if tube_label != label:
                raise AnnotationError(f"{where} field 'label' = {tube_label} differs from the video's label {label}")
            if boxes.ndim != 2 or boxes.shape[1] != 4 or len(boxes) != ef - sf:
                raise AnnotationError(f"{where} field 'boxes' has shape {boxes.shape}, expected ({ef - sf}, 4) for sf={sf}, ef={ef}")
            if sf < 0 or ef > num_frames or ef <= sf:
                raise AnnotationError(f"{where} fields 'sf'={sf}, 'ef'={ef} do not fit a video of {num_frames} frames")
            tubes.extend(_clip_tube(Tube(label, sf, to_xyxy(boxes)), frame_size, stats))
        videos[name] = VideoAnnotation(name, num_frames, label, tubes)
    if stats.clipped or stats.dropped:
        log.warning("%s: clipped %d boxes to the frame, dropped %d boxes with no area", path, stats.clipped, stats.dropped)
    return videos


def load_pyannot(path: Path, num_classes: int | None = None, frame_size: tuple = UCF_FRAME_SIZE,
                 jhmdb: bool = False) -> dict:
    """Read a ``pyannot.pkl`` (UCF101-24 layout; J-HMDB-21's with ``jhmdb``, see ``parse_ucf_database``).

    Accepts both the plain dictionary and ``pyannot_with_class_names.pkl``'s
    ``{'db': ..., 'classes': ..., 'trainvideos': ...}``.
    """
    database = load_pickle(path)
    if isinstance(database, dict) and "db" in database and "classes" in database:
        database = database["db"]
    if not isinstance(database, dict):
        raise AnnotationError(f"{path}: expected a dictionary of videos, found {type(database).__name__}")
    return parse_ucf_database(database, path, num_classes, frame_size, jhmdb)


def read_video_list(path: str | Path) -> list:
    """One name per line (videos; also class names, ``--classes``); blank lines ignored, a file without names
    is an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"list of names not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{path}: not a text file of names, one per line ({e})") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise AnnotationError(f"{path}: no names in this file (one per line)")
    return names


def load_class_names(root: str | Path) -> list:
    """Class names of a dataset in the UCF24 layout.

    ``classes`` of ``splitfiles/pyannot_with_class_names.pkl`` when present, else the
    sorted class folder names under ``rgb-images/``.
    """
    named = layout.split_path(root, layout.ANNOT_WITH_NAMES_FILE)
    if named.is_file():
        return [str(c) for c in load_pickle(named)["classes"]]
    rgb = layout.images_dir(root, "rgb")
    if not rgb.is_dir():
        raise FileNotFoundError(f"cannot find class names: neither {named} nor {rgb} exists")
    names = sorted(p.name for p in rgb.iterdir() if p.is_dir())
    if not names:
        raise AnnotationError(f"{rgb}: no class folders")
    return names


def to_pyannot_entry(video: VideoAnnotation) -> dict:
    """``VideoAnnotation`` -> the released ``pyannot.pkl`` entry (inverse of the reader)."""
    tubes = [{"label": t.class_id, "sf": t.start, "ef": t.end,
              "boxes": np.round(xyxy0_to_xywh1(t.boxes)).astype(np.uint16)} for t in video.tubes]
    return {"numf": np.uint16(video.num_frames), "label": video.class_id, "annotations": tubes}


@dataclass
class DatasetAnnotations:
    """Everything a dataset needs from its annotation files, in the internal representation.

    ``videos``: ``{name: VideoAnnotation}`` for every annotated video; ``train_videos`` and
    ``test_videos``: the split's names (annotated videos only), sorted; ``frame_sizes``:
    ``{name: (width, height)}`` where the file gives it (ACT format), else empty;
    ``val_videos``: training videos held out for validation (``hold_out``), else empty.
    """
    classes: list
    videos: dict
    train_videos: list
    test_videos: list
    frame_sizes: dict = field(default_factory=dict)
    val_videos: list = field(default_factory=list)

    def split_videos(self, split: str) -> list:
        """Names of the ``'train'``, ``'val'`` or ``'test'`` videos."""
        splits = {"train": self.train_videos, "val": self.val_videos, "test": self.test_videos}
        if split not in splits:
            raise ValueError(f"split must be one of {sorted(splits)}, got {split!r}")
        return splits[split]

    def hold_out(self, fraction: float) -> "DatasetAnnotations":
        """A copy whose training videos lose ``ceil(fraction * n)`` of each class's ``n`` (evenly
        spread over the sorted names, at least one left for training) to ``val_videos``: a
        validation split of the training videos, so that checkpoints and settings are chosen
        without looking at the test videos. Not in the original, which validates on test windows."""
        if not 0 <= fraction < 1:
            raise ValueError(f"the validation fraction must be in [0, 1), got {fraction}")
        by_class = {}
        for name in self.train_videos:
            by_class.setdefault(self.videos[name].class_id, []).append(name)
        held = []
        for names in by_class.values():
            count = min(int(np.ceil(fraction * len(names))), len(names) - 1)
            if count > 0:
                held += [names[int(i)] for i in np.linspace(0, len(names) - 1, count + 2)[1:-1].round()]
        held = set(held)
        return dataclasses.replace(self, train_videos=[n for n in self.train_videos if n not in held],
                                   val_videos=sorted(held))


def _annotated_subset(names, videos, source):
    missing = [n for n in names if n not in videos]
    if missing:
        # The released pyannot_with_class_names.pkl lists 6 training videos whose annotations were dropped.
        log.info("%s: %d listed videos have no annotation and are skipped (first: %s)", source, len(missing), missing[0])
    return sorted(n for n in set(names) if n in videos)


def resolve_split(root: str | Path, split: int, videos: dict) -> tuple:
    """Training and test video names of split ``split`` for a dataset in the UCF101-24 layout.

    The original (``data/shared.py``) reads ``splitfiles/trainlistNN.txt`` and treats every
    other annotated video as a test video. Where that file is absent (the released
    UCF101-24 annotations ship ``testlist01.txt`` only) the training videos are the annotated
    videos not in ``testlistNN.txt``; failing that, ``trainvideos`` of
    ``pyannot_with_class_names.pkl`` (split 1 only).
    """
    train_file = layout.split_path(root, layout.split_list_name("train", split))
    test_file = layout.split_path(root, layout.split_list_name("test", split))
    named = layout.split_path(root, layout.ANNOT_WITH_NAMES_FILE)
    if train_file.is_file():
        train = _annotated_subset(read_video_list(train_file), videos, train_file)
    elif test_file.is_file():
        test = set(_annotated_subset(read_video_list(test_file), videos, test_file))
        train = sorted(set(videos) - test)
    elif split == 1 and named.is_file():
        train = _annotated_subset(load_pickle(named).get("trainvideos", []), videos, named)
    else:
        raise FileNotFoundError(f"no split {split} for {root}: neither {train_file} nor {test_file} exists")
    test = sorted(set(videos) - set(train))
    return train, test


def load_ucf_layout(root: str | Path, split: int = 1, jhmdb: bool = False, annot_file: str | Path | None = None) -> "DatasetAnnotations":
    """``DatasetAnnotations`` of a dataset in the UCF101-24 layout (``splitfiles/pyannot.pkl``).

    ``jhmdb``: J-HMDB-21's file (``parse_ucf_database``).
    """
    classes = load_class_names(root)
    path = Path(annot_file) if annot_file else layout.split_path(root, layout.ANNOT_FILE)
    videos = load_pyannot(path, num_classes=len(classes), jhmdb=jhmdb)
    train, test = resolve_split(root, split, videos)
    return DatasetAnnotations(classes, videos, train, test)


def check_dataset(root: str | Path, input_types: tuple = ("rgb",)) -> dict:
    """Load ``root``'s annotations and check that the test list names annotated videos and that the
    last frame of every annotated video exists for each input type. Returns a summary dict (also logged)."""
    classes = load_class_names(root)
    videos = load_pyannot(layout.split_path(root, layout.ANNOT_FILE), num_classes=len(classes))
    test = read_video_list(layout.split_path(root, layout.split_list_name("test", 1)))
    unknown = [v for v in test if v not in videos]
    if unknown:
        raise ValueError(f"{root}: test list names videos without annotations: {unknown[:5]}")
    missing = []
    for name, video in videos.items():
        for input_type in input_types:
            last = layout.frame_path(root, input_type, name, video.num_frames - 1)
            if not last.is_file():
                missing.append(str(last))
    if missing:
        raise FileNotFoundError(f"{len(missing)} videos lack frames, e.g. {missing[0]}")
    summary = {"classes": classes, "videos": len(videos), "test_videos": len(test),
               "frames": sum(v.num_frames for v in videos.values()), "tubes": sum(len(v.tubes) for v in videos.values())}
    log.info("dataset %s: %d classes (%s), %d videos (%d test), %d frames, %d tubes", root, len(classes),
             ", ".join(classes), summary["videos"], summary["test_videos"], summary["frames"], summary["tubes"])
    return summary
