"""The UCF101-24 annotations shipped in data/ucf24: checksums, and ``--annot ucf24`` in the scripts."""
import hashlib
import json
import re
from pathlib import Path

import numpy as np

from data import layout
from data.annotations import load_pyannot, read_video_list
from tests.test_tubes import _write_gt_detections
from tubes.tube_files import load_tubes

SHIPPED = ("finalAnnots.mat", "pyannot.pkl", "testlist01.txt")


def test_shipped_files_match_the_checksums_in_their_readme():
    readme = (layout.UCF24_ANNOT_DIR / "README.md").read_text()
    listed = {name: digest for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", readme, re.M)}
    assert sorted(listed) == sorted(SHIPPED)
    assert sorted(p.name for p in layout.UCF24_ANNOT_DIR.iterdir()) == sorted(SHIPPED + ("README.md",))
    for name, digest in listed.items():
        assert hashlib.sha256((layout.UCF24_ANNOT_DIR / name).read_bytes()).hexdigest() == digest, name
    # what the tests rely on: 3194 videos, 910 of them in the test list
    assert len(load_pyannot(layout.UCF24_ANNOT_DIR / "pyannot.pkl")) == 3194
    assert len(read_video_list(layout.UCF24_ANNOT_DIR / "testlist01.txt")) == 910


def test_annotation_names_resolve_to_the_shipped_files():
    shipped = layout.UCF24_ANNOT_DIR / "finalAnnots.mat"
    assert layout.annotation_path("ucf24") == layout.annotation_path("UCF24") == shipped
    assert shipped.is_file() and shipped.with_name("testlist01.txt").is_file()
    assert layout.annotation_path("runs/pyannot.pkl") == Path("runs/pyannot.pkl")
    assert layout.annotation_path("~/pyannot.pkl") == Path.home() / "pyannot.pkl"


def test_scripts_take_the_shipped_annotations_by_name_from_any_folder(tmp_path, monkeypatch):
    """build_tubes.py and eval_video_ap.py with ``--annot ucf24``, run from an unrelated folder,
    give the results of the explicit pyannot.pkl; without --video_list the test list beside the
    shipped file picks the videos."""
    import build_tubes
    import eval_video_ap
    pkl = layout.UCF24_ANNOT_DIR / "pyannot.pkl"
    annots = load_pyannot(pkl)
    names = [n for n in read_video_list(layout.UCF24_ANNOT_DIR / "testlist01.txt") if annots[n].num_frames < 80][:2]
    test = set(read_video_list(layout.UCF24_ANNOT_DIR / "testlist01.txt"))
    train = next(n for n in sorted(annots) if n not in test and annots[n].num_frames < 80)
    for name in names + [train]:  # the training video's detections are not evaluated
        _write_gt_detections(tmp_path / "dets", annots[name], 24, np.random.default_rng(1), jitter=1)
    monkeypatch.chdir(tmp_path)
    common = ["--det_dir", "dets", "--alphas", "3", "--no_frame_map"]
    by_name = build_tubes.main(common + ["--annot", "ucf24", "--out_dir", "a"])
    by_path = build_tubes.main(common + ["--annot", str(pkl), "--out_dir", "b"])
    assert by_name["video_map"] == by_path["video_map"]
    tubes = load_tubes(tmp_path / "a" / "tubes_alpha3.npz")[1]
    assert list(tubes) == read_video_list(layout.UCF24_ANNOT_DIR / "testlist01.txt")  # the whole split, not the train video
    assert sorted(v for v, t in tubes.items() if t) == sorted(names)
    assert by_name["videos_without_detections"] == [v for v in tubes if v not in names]
    assert max(r["mAP"] for r in by_name["video_map"]) > 0
    evaluated = eval_video_ap.main(["--tubes", "a/tubes_alpha3.npz", "--annot", "ucf24", "--out_dir", "eval"])
    assert evaluated["video_map"] == by_name["video_map"]
    assert json.loads(Path("eval/results.json").read_text())["video_map"] == by_name["video_map"]
