"""test.py and demo.py compare a checkpoint's classes with the dataset's (or --classes) before running a
window: another number of classes is refused naming both numbers, other class names are a warning."""
import pytest

import test as test_script
from data.annotations import load_class_names
from engine.online import load_detector
from models import ModelConfig, build_model
from utils.checkpoint import CheckpointError, save_checkpoint

RUN = ["--device", "cpu", "--num_workers", "0", "--batch_size", "8", "--dataset", "toy", "--eval_gaps", "12"]


class Ran(Exception):
    """Raised in place of the inference: the run got past the checks."""


@pytest.fixture
def no_inference(monkeypatch):
    def refuse(*args, **kwargs):
        raise Ran
    monkeypatch.setattr(test_script, "detect_videos", refuse)
    monkeypatch.setattr(test_script, "detect_videos_late_fusion", refuse)


def _model(num_classes):
    return build_model(ModelConfig(num_classes=num_classes + 1, width_mult=0.0625))


@pytest.mark.parametrize("num_classes", [24, 2])
def test_test_py_refuses_another_number_of_classes_before_any_window(toy_root, tmp_path, no_inference, num_classes):
    toy = len(load_class_names(toy_root))
    weights = save_checkpoint(tmp_path / "ckpt.pth", _model(num_classes))
    args = ["--data_root", str(toy_root), *RUN, "--det_dir", str(tmp_path / "dets")]
    with pytest.raises(SystemExit, match=rf"ckpt\.pth: the checkpoint's model detects {num_classes} classes, but the "
                                         rf"dataset has {toy} \("):
        test_script.main(args + ["--weights", str(weights)])
    # the second model of a late fusion too, and an original AMTNet checkpoint (a bare state dict)
    good = save_checkpoint(tmp_path / "good.pth", _model(toy))
    with pytest.raises(SystemExit, match=rf"ckpt\.pth: the checkpoint's model detects {num_classes} classes"):
        test_script.main(args + ["--weights", str(good), "--fuse_weights", str(weights), "--fuse_input_type", "rgb"])
    import torch
    torch.save(_model(num_classes).state_dict(), tmp_path / "original.pth")
    with pytest.raises(SystemExit, match=rf"original\.pth: the checkpoint's model detects {num_classes} classes, but "
                                         rf"the dataset has {toy}"):
        test_script.main(args + ["--weights", str(tmp_path / "original.pth")])
    assert not (tmp_path / "dets").exists()


def test_test_py_warns_of_other_class_names(toy_root, tmp_path, no_inference, caplog):
    names = load_class_names(toy_root)
    renamed = names[:1] + ["Somersault"] + names[2:]
    weights = save_checkpoint(tmp_path / "ckpt.pth", _model(len(names)), classes=renamed)
    with caplog.at_level("WARNING"), pytest.raises(Ran):
        test_script.main(["--data_root", str(toy_root), *RUN, "--weights", str(weights)])
    assert (f"ckpt.pth: 1 of the {len(names)} class names differ from the checkpoint's (first: class 2 is "
            f"'Somersault' in the checkpoint, {names[1]!r} in the dataset)") in caplog.text
    caplog.clear()
    same = save_checkpoint(tmp_path / "same.pth", _model(len(names)), classes=names)
    with caplog.at_level("WARNING"), pytest.raises(Ran):
        test_script.main(["--data_root", str(toy_root), *RUN, "--weights", str(same)])
    assert "class names differ" not in caplog.text


def test_demo_classes_against_the_checkpoint(tmp_path, caplog):
    """demo.py --classes: another count is refused (also for an original checkpoint, whose model the
    count would size), other names are a warning; the names given are the ones used."""
    import torch
    weights = save_checkpoint(tmp_path / "ckpt.pth", _model(3), classes=["a", "b", "c"])
    with pytest.raises(CheckpointError, match=r"ckpt\.pth: the checkpoint's model detects 3 classes, but --classes has 2"):
        load_detector(weights, ["a", "b"])
    torch.save(_model(3).state_dict(), tmp_path / "original.pth")
    with pytest.raises(CheckpointError, match=r"original\.pth: the checkpoint's model detects 3 classes, but --classes has 4"):
        load_detector(tmp_path / "original.pth", ["a", "b", "c", "d"], lambda n: ModelConfig(n + 1, width_mult=0.0625))
    with caplog.at_level("WARNING"):
        _, classes, _ = load_detector(weights, ["a", "x", "c"])
    assert classes == ["a", "x", "c"] and "class 2 is 'b' in the checkpoint, 'x' in --classes" in caplog.text
