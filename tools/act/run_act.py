"""Run the ORIGINAL ``videoAP`` and ``frameAP`` of MOC-Detector's ``src/ACT.py`` on one fixture case.

python run_act.py MOC_SRC CASE_DIR THRESHOLDS_JSON  (in a Python with numpy<2; called by make_fixtures.py)

Only ACT.py's surroundings are stubbed: its dataset class (``get_dataset``) reads the case's
ACT ground-truth pickle as MOC's ``BaseDataset`` does (each key as an attribute, ``_`` first but
``labels``), and ``progress.bar`` (a progress bar ACT_build.py imports). ``pr_to_ap`` is wrapped to
record each class's AP. Prints JSON: per threshold the per-class APs (``pr_to_ap``'s fractions) and the mAP (percent, as
ACT.py gives it), and frame-AP@0.5; or the exception ACT.py raised.
"""
import contextlib
import json
import pickle
import sys
import types
from argparse import Namespace
from pathlib import Path

src, case, thresholds = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
sys.path.insert(0, str(src))


class Dataset:
    def __init__(self, opt, mode):
        with open(case / "gt.pkl", "rb") as f:
            pkl = pickle.load(f, encoding="iso-8859-1")
        for k in pkl:  # MOC BaseDataset.__init__
            setattr(self, ("_" if k != "labels" else "") + k, pkl[k])


init_dataset = types.ModuleType("datasets.init_dataset")
init_dataset.get_dataset = lambda name: Dataset
sys.modules["datasets"] = types.ModuleType("datasets")
sys.modules["datasets.init_dataset"] = init_dataset
progress = types.ModuleType("progress.bar")
progress.Bar = object
sys.modules["progress"] = types.ModuleType("progress")
sys.modules["progress.bar"] = progress

import numpy as np  # noqa: E402
import ACT  # noqa: E402

recorded = []
original = ACT.pr_to_ap
ACT.pr_to_ap = lambda pr: recorded.append(float(original(pr))) or recorded[-1]

opt = Namespace(redo=False, th=0.5, model_name="fixture", dataset="ucf101", inference_dir=str(case / "tubes"),
                split=1, root_dir=str(case), exp_id="x", K=1)
out = {"numpy": np.__version__, "video_ap": [], "frame_ap": None}
quiet = contextlib.redirect_stdout(sys.stderr)  # ACT.py prints progress
for th in thresholds:
    opt.th = th
    recorded.clear()
    try:
        with quiet:
            m = ACT.videoAP(opt, print_info=False)
        out["video_ap"].append({"iou": th, "mAP": float(m), "ap": list(recorded)})
    except Exception as e:
        out["video_ap"].append({"iou": th, "error": type(e).__name__})
opt.th, opt.inference_dir = 0.5, str(case)  # frameAP reads CASE/frame_detections.pkl
recorded.clear()
try:
    with quiet:
        m = ACT.frameAP(opt, print_info=False)
    out["frame_ap"] = {"iou": 0.5, "mAP": float(m), "ap": list(recorded)}
except Exception as e:
    out["frame_ap"] = {"iou": 0.5, "error": type(e).__name__}
print(json.dumps(out, indent=1))
