"""Every script, each of its input files or folders pointing at something missing, empty, a folder
where a file belongs (or a file where a folder belongs), garbage bytes or a file of the wrong kind:
the script stops with exit status 1 and one line naming the script, the flag and the file, never a
traceback. The scripts run in this process (``main(argv)``) with tiny inputs that are valid apart
from the one under test, so each stops before any heavy work."""
import importlib
import os
import pickle
import shutil

import numpy as np
import pytest
import scipy.io

from data.annotations import Tube, VideoAnnotation, to_pyannot_entry
from models import ModelConfig, build_model
from tubes.detections import detection_path, write_video_detections
from tubes.tube_files import save_tubes
from tubes.trimming import ActionTube
from utils.checkpoint import save_checkpoint

CLASSES = ["Jump", "Run"]
VIDEOS = {"Jump/v_Jump_g01_c01": 0, "Run/v_Run_g01_c01": 1}
FRAMES = 6


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """Valid tiny inputs: annotations, lists, detections, a tube file, a checkpoint, a folder of frames."""
    root = tmp_path_factory.mktemp("good")
    annotations = {name: VideoAnnotation(name, FRAMES, c, [Tube(c, 0, np.tile([[10., 20., 60., 90.]], (FRAMES, 1)))])
                   for name, c in VIDEOS.items()}
    with open(root / "pyannot.pkl", "wb") as f:
        pickle.dump({n: to_pyannot_entry(v) for n, v in annotations.items()}, f, protocol=2)
    (root / "videos.txt").write_text("".join(f"{v}\n" for v in VIDEOS))
    (root / "classes.txt").write_text("".join(f"{c}\n" for c in CLASSES))
    for name in VIDEOS:
        frames = np.arange(FRAMES - 1)[:, None] + np.arange(2)
        boxes = np.tile([[0.1, 0.1, 0.3, 0.4]], (FRAMES - 1, 2, 1))
        scores = np.tile([0.1, 0.6, 0.3], (FRAMES - 1, 1))
        write_video_detections(detection_path(root / "det", name, "npz"), frames, boxes, scores,
                               np.arange(FRAMES - 1), FRAMES)
    tube = ActionTube(0, 0.5, 0, np.tile([[11., 21., 61., 91.]], (FRAMES, 1)))
    save_tubes(root / "tubes.npz", list(VIDEOS), {v: {3.0: [tube]} for v in VIDEOS}, 3.0)
    save_checkpoint(root / "model.pth", build_model(ModelConfig(num_classes=len(CLASSES) + 1, width_mult=1 / 16)),
                    iteration=1, classes=CLASSES, flags={"input_type_base": "rgb"})
    (root / "frames").mkdir()
    for cls in CLASSES:  # a dataset root as far as the class names go (test.py reads them first)
        (root / "data" / "rgb-images" / cls).mkdir(parents=True)
    scipy.io.savemat(root / "other.mat", {"something": np.zeros(3)})
    return root


# What a file of each kind is not: the wrong kind of file for it.
WRONG_KIND = {"checkpoint": "pyannot.pkl", "annotations": "model.pth", "list": "model.pth", "tubes": "other.mat",
              "video": "model.pth", "onnx": "pyannot.pkl"}
FILE_CASES = ("missing", "empty", "folder", "garbage", "wrong kind")
FOLDER_CASES = ("missing", "empty file", "garbage file", "empty folder", "wrong kind")


def _bad(tmp_path, good, kind, case):
    """The bad path of ``case`` for an input of ``kind`` (a folder input when ``kind`` is 'folder:<what>')."""
    path = tmp_path / f"bad_{case.replace(' ', '_')}"
    if case in ("empty", "empty file"):
        path.write_bytes(b"")
    elif case in ("folder", "empty folder"):
        path.mkdir()
    elif case in ("garbage", "garbage file"):
        path.write_bytes(np.random.default_rng(0).bytes(2000))
    elif case == "wrong kind":  # a copy: no other flag names the same path
        source = good / ("det" if kind == "folder:data" else "data" if kind.startswith("folder:") else WRONG_KIND[kind])
        path = path.with_suffix(source.suffix)
        shutil.copytree(source, path) if source.is_dir() else shutil.copy(source, path)
    return path


def _argv(script, good, tmp_path):
    """A command line of ``script`` whose inputs are all valid (the test replaces one)."""
    out = str(tmp_path / "out")
    tubes = ["--annot", str(good / "pyannot.pkl"), "--video_list", str(good / "videos.txt"),
             "--classes", str(good / "classes.txt")]
    detections = ["--det_dir", str(good / "det"), "--det_format", "npz", "--out_dir", out]
    model = ["--device", "cpu", "--num_workers", "0", "--width_mult", "0.0625"]
    return {
        "train": ["--data_root", str(good / "data"), "--save_root", out, "--max_iter", "1", *model],
        "test": ["--data_root", str(good / "data"), "--weights", str(good / "model.pth"), "--det_dir", out, *model],
        "build_tubes": [*tubes, *detections],
        "eval_online": [*tubes, *detections],
        "eval_video_ap": [*tubes, "--tubes", str(good / "tubes.npz"), "--out_dir", out],
        "analyze": [*tubes, "--tubes", str(good / "tubes.npz"), "--out_dir", out],
        "demo": ["--video", str(good / "frames"), "--weights", str(good / "model.pth"), "--out", f"{out}.mp4",
                 "--classes", str(good / "classes.txt"), "--device", "cpu", "--backend", "torch"],
        "export": ["--weights", str(good / "model.pth"), "--out", f"{out}.onnx", "--classes", str(good / "classes.txt")],
        "pipeline": ["--data_root", str(good / "data"), "--work_dir", out, "--stages", "data"],
    }[script]


# (script, flag, kind of input, extra flags that make the script read it)
INPUTS = [
    ("train", "--data_root", "folder:data", ()),
    ("train", "--basenet", "checkpoint", ()),
    ("train", "--resume", "checkpoint", ()),
    ("train", "--base_weights", "checkpoint", ("--fusion_type", "SUM")),
    ("train", "--extra_weights", "checkpoint", ("--fusion_type", "SUM")),
    ("test", "--data_root", "folder:data", ()),
    ("test", "--weights", "checkpoint", ()),
    ("test", "--fuse_weights", "checkpoint", ()),
    ("build_tubes", "--annot", "annotations", ()),
    ("build_tubes", "--video_list", "list", ()),
    ("build_tubes", "--classes", "list", ()),
    ("build_tubes", "--det_dir", "folder:detections", ()),
    ("build_tubes", "--fuse_det_dir", "folder:detections", ("--fusion", "boost")),
    ("eval_online", "--annot", "annotations", ()),
    ("eval_online", "--video_list", "list", ()),
    ("eval_online", "--classes", "list", ()),
    ("eval_online", "--det_dir", "folder:detections", ()),
    ("eval_video_ap", "--annot", "annotations", ()),
    ("eval_video_ap", "--video_list", "list", ()),
    ("eval_video_ap", "--classes", "list", ()),
    ("eval_video_ap", "--tubes", "tubes", ()),
    ("analyze", "--annot", "annotations", ()),
    ("analyze", "--video_list", "list", ()),
    ("analyze", "--classes", "list", ()),
    ("analyze", "--tubes", "tubes", ()),
    ("demo", "--video", "video", ()),
    ("demo", "--weights", "checkpoint", ()),
    ("demo", "--classes", "list", ()),
    ("demo", "--fuse_weights", "checkpoint", ("--fusion", "mean")),
    ("export", "--weights", "checkpoint", ()),
    ("export", "--classes", "list", ()),
    ("pipeline", "--data_root", "folder:data", ()),
    ("pipeline", "--basenet", "checkpoint", ()),
]
CASES = [(script, flag, kind, extra, case) for script, flag, kind, extra in INPUTS
         for case in (FOLDER_CASES if kind.startswith("folder:") else FILE_CASES)]


def _with(argv, flag, value):
    """``argv`` with ``flag`` set to ``value`` (replaced where present, else appended)."""
    if flag in argv:
        argv = list(argv)
        argv[argv.index(flag) + 1] = value
        return argv
    return [*argv, flag, value]


def _expect_one_line_exit(main, argv, capsys, script, flag, path):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    message = stop.value.code
    err = capsys.readouterr().err
    assert isinstance(message, str), f"exit status {message!r} without a message; stderr:\n{err}"
    assert "\n" not in message, message
    assert message.startswith(f"{script}.py: {flag} ") and str(path) in message, message
    assert "Traceback" not in err, err


@pytest.mark.parametrize("script, flag, kind, extra, case", CASES,
                         ids=[f"{s}-{f[2:]}-{c.replace(' ', '_')}" for s, f, _, _, c in CASES])
def test_bad_input_stops_with_one_line_naming_flag_and_file(good, tmp_path, capsys, script, flag, kind, extra, case):
    path = _bad(tmp_path, good, kind, case)
    argv = _with(_argv(script, good, tmp_path), flag, str(path)) + list(extra)
    if flag == "--fuse_det_dir":
        argv = _with(argv, "--fusion", "boost")
    _expect_one_line_exit(importlib.import_module(script).main, argv, capsys, script, flag, path)


# prepare_data.py's sub-commands read a file (tracks --annot) or a folder (videos --videos_dir) and
# write a dataset that must not exist unless it is one of theirs (toy --out).
PREPARE = [("tracks", "--annot", "annotations", ["--out"]), ("videos", "--videos_dir", "folder:videos", ["--out"]),
           ("toy", "--out", "folder:toy", [])]


@pytest.mark.parametrize("command, flag, kind, out, case",
                         [(c, f, k, o, case) for c, f, k, o in PREPARE
                          for case in (FOLDER_CASES if k.startswith("folder:") else FILE_CASES)
                          if not (c == "toy" and case in ("missing", "empty folder"))])  # the two a toy set may go to
def test_prepare_data_inputs(good, tmp_path, capsys, command, flag, kind, out, case):
    import prepare_data
    path = _bad(tmp_path, good, kind, case)
    argv = ["--quiet", command, flag, str(path)] + ([*out, str(tmp_path / "dataset")] if out else [])
    _expect_one_line_exit(prepare_data.main, argv, capsys, "prepare_data", flag, path)


@pytest.mark.parametrize("case", FILE_CASES)
def test_onnx_model_inputs(good, tmp_path, capsys, case):
    """demo.py --onnx: a missing, empty or folder path is named without onnxruntime; what a file holds
    needs it to be read."""
    if case in ("garbage", "wrong kind"):
        pytest.importorskip("onnxruntime")
    path = _bad(tmp_path, good, "onnx", case)
    import demo
    argv = ["--video", str(good / "frames"), "--onnx", str(path), "--out", str(tmp_path / "out.mp4")]
    _expect_one_line_exit(demo.main, argv, capsys, "demo", "--onnx", path)


def test_prepare_data_toy_with_too_few_videos(tmp_path, capsys):
    """The toy set's configuration is checked inside the error handling: one line, no traceback."""
    import prepare_data
    with pytest.raises(SystemExit) as stop:
        prepare_data.main(["--quiet", "toy", "--videos", "4", "--out", str(tmp_path / "toy")])
    assert stop.value.code == "prepare_data.py toy: the toy dataset needs at least 8 videos (two per class), got 4"
    assert "Traceback" not in capsys.readouterr().err and not (tmp_path / "toy").exists()


def test_traceback_kept_on_request(good, tmp_path, monkeypatch):
    """AMTNET_TRACEBACK=1: the error itself, for a developer."""
    import export
    monkeypatch.setenv("AMTNET_TRACEBACK", "1")
    with pytest.raises(ValueError, match="no such checkpoint file"):
        export.main(["--weights", str(tmp_path / "nope.pth"), "--out", str(tmp_path / "m.onnx")])
    assert os.environ["AMTNET_TRACEBACK"] == "1"
