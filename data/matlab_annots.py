"""Reader of the Matlab ``finalAnnots.mat`` (gurkirt/corrected-UCF101-Annots).

The struct array ``annot`` has ``name``, ``num_imgs`` and ``tubes`` (``sf``, ``ef``
1-based inclusive, ``class`` 1-based, ``boxes`` x y w h in 1-based pixels). The file
stores uint8/uint16 numbers, which Matlab reads as double: ``mat_dtype=True`` does the
same here (without it ``x + w`` wraps at 255). Returns the same ``VideoAnnotation``
representation as ``data.annotations.load_pyannot``; on UCF101-24 the two files give
identical annotations.
"""
from pathlib import Path

import numpy as np
import scipy.io

from .annotations import AnnotationError, Tube, VideoAnnotation, check_box_values, xywh1_to_xyxy0


def _get(entry, key, path, name):
    if key not in entry._fieldnames:
        raise AnnotationError(f"{path}: video {name!r} has no field {key!r}")
    return getattr(entry, key)


def load_final_annots(path: str | Path, class_names: list | None = None) -> dict:
    """``{name: VideoAnnotation}``; a video without tubes takes its class from ``class_names``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False, mat_dtype=True)
    except Exception as e:  # scipy raises several types for a file that is not a .mat
        raise AnnotationError(f"{path}: not a readable Matlab file ({type(e).__name__}: {e})") from e
    if "annot" not in mat:
        raise AnnotationError(f"{path}: no variable 'annot'")
    videos = {}
    for entry in np.atleast_1d(mat["annot"]):
        name = str(_get(entry, "name", path, "?"))
        num_frames = int(_get(entry, "num_imgs", path, name))
        raw = _get(entry, "tubes", path, name)
        raw = [] if isinstance(raw, np.ndarray) and raw.size == 0 else np.atleast_1d(raw)
        tubes = []
        for k, t in enumerate(raw):
            sf, ef = int(_get(t, "sf", path, name)), int(_get(t, "ef", path, name))
            cls = int(_get(t, "class", path, name)) - 1
            where = f"{path}: video {name!r} tube {k}"
            if sf < 1 or ef > num_frames or ef < sf:
                raise AnnotationError(f"{where} fields 'sf'={sf}, 'ef'={ef} do not fit a video of {num_frames} frames")
            boxes = np.atleast_2d(check_box_values(_get(t, "boxes", path, name), f"{where} field 'boxes'")).astype(np.float64)
            if boxes.shape != (ef - sf + 1, 4):
                raise AnnotationError(f"{where} field 'boxes' has shape {boxes.shape}, "
                                      f"expected ({ef - sf + 1}, 4) for sf={sf}, ef={ef}")
            tubes.append(Tube(cls, sf - 1, xywh1_to_xyxy0(boxes)))
        if tubes:
            class_id = tubes[0].class_id
        elif class_names is not None and name.split("/")[0] in class_names:
            class_id = list(class_names).index(name.split("/")[0])
        else:
            raise AnnotationError(f"{path}: video {name!r} has no tubes and its class is unknown")
        videos[name] = VideoAnnotation(name, num_frames, class_id, tubes)
    return videos
