"""On-disk layout shared by UCF101-24, J-HMDB-21, the toy set and users' own data.

```
<root>/rgb-images/<Class>/<video>/00001.jpg ...      frames, 1-based file numbers
<root>/<flowtype>-images/<Class>/<video>/00001.jpg   flow images (brox, fastOF, ...)
<root>/splitfiles/pyannot.pkl, trainlist01.txt, testlist01.txt
```
Frame numbers are 1-based in file names and 0-based in memory.

Annotations shipped with the project are named without a path (``--annot ucf24``):
``annotation_path`` resolves the name (data/ucf24/README.md gives their source).
"""
from pathlib import Path

FRAME_PATTERN = "{:05d}.jpg"
SPLIT_DIR = "splitfiles"
ANNOT_FILE = "pyannot.pkl"
ANNOT_WITH_NAMES_FILE = "pyannot_with_class_names.pkl"

UCF24_ANNOT_DIR = Path(__file__).resolve().parent / "ucf24"
# finalAnnots.mat: what the original Matlab evaluation reads; pyannot.pkl beside it is identical.
SHIPPED_ANNOTATIONS = {"ucf24": UCF24_ANNOT_DIR / "finalAnnots.mat"}


def images_dir(root: str | Path, input_type: str) -> Path:
    """Folder of one input type (``rgb``, ``brox``, ``fastOF``, ...)."""
    return Path(root) / f"{input_type}-images"


def video_dir(root: str | Path, input_type: str, video: str) -> Path:
    return images_dir(root, input_type) / video


def frame_path(root: str | Path, input_type: str, video: str, frame_index: int) -> Path:
    """Path of the frame with 0-based index ``frame_index`` (file ``frame_index + 1``)."""
    return video_dir(root, input_type, video) / FRAME_PATTERN.format(frame_index + 1)


def split_path(root: str | Path, name: str) -> Path:
    return Path(root) / SPLIT_DIR / name


def split_list_name(kind: str, split: int) -> str:
    """``trainlist01.txt`` / ``testlist01.txt`` for ``kind`` in {train, test}."""
    return f"{kind}list{split:02d}.txt"


def annotation_path(text):
    """An annotation file given by name or path: ``ucf24`` (any case) is the shipped corrected
    UCF101-24 ``finalAnnots.mat`` (its ``testlist01.txt`` beside it); anything else is a path."""
    shipped = SHIPPED_ANNOTATIONS.get(str(text).lower())
    return shipped if shipped is not None else Path(text).expanduser()
