"""Checkpoints are data, not programs: every weights file is read with torch.load(weights_only=True),
this project's checkpoints (training ones too) hold only plain data and resume exactly, earlier ones
are named with the way to convert them, and a crafted pickle is refused by every script that takes
weights without running a line of it."""
import importlib
import importlib.util
import pickle
import random

import numpy as np
import pytest
import torch

from engine.training import build_optimizer
from models import ModelConfig, build_model
from tests.conftest import REPO_ROOT
from utils.checkpoint import (CheckpointError, load_checkpoint, load_scheduler_state, read_weights, save_checkpoint,
                              set_rng_state, upgrade_checkpoint)

SMALL = dict(num_classes=3, width_mult=1 / 16)


def _draws():
    return random.random(), np.random.rand(), np.random.randn(), torch.rand(3).tolist()


def _training_state(schedule, tmp_path, name="ck.pth"):
    """A training checkpoint after one step, and the scheduler that wrote it."""
    model = build_model(ModelConfig(**SMALL))
    optimizer, scheduler = build_optimizer(model, 0.01, 0.9, 1e-4, 2, [1, 3], 0.1, "sgd", schedule, 10,
                                           2 if schedule == "cosine" else 0)
    optimizer.step()
    scheduler.step()
    np.random.randn()  # numpy's cached Gaussian is part of its state
    path = save_checkpoint(tmp_path / name, model, optimizer=optimizer, scheduler=scheduler, iteration=1,
                           flags={"lr": 0.01, "stepvalues": [1, 3], "basenet": None}, classes=["a", "b"])
    return path, model, optimizer, scheduler


@pytest.mark.parametrize("schedule", ["step", "cosine"])
def test_training_checkpoint_is_plain_data_and_resumes_exactly(tmp_path, schedule):
    path, model, optimizer, scheduler = _training_state(schedule, tmp_path)
    expected = _draws()
    state = torch.load(path, weights_only=True)  # no allow-listed globals: plain data only
    assert state["scheduler"] == scheduler.state_dict()
    set_rng_state(state["rng"])
    assert _draws() == expected
    _, other = build_optimizer(build_model(ModelConfig(**SMALL)), 0.01, 0.9, 1e-4, 2, [1, 3], 0.1, "sgd", schedule, 10,
                               2 if schedule == "cosine" else 0)
    other.optimizer.load_state_dict(state["optimizer"])
    load_scheduler_state(other, state["scheduler"])
    assert other.state_dict() == scheduler.state_dict()  # the milestones a Counter again
    for _ in range(4):  # and the learning rates that follow
        optimizer.step()
        other.optimizer.step()
        scheduler.step()
        other.step()
        assert other.get_last_lr() == scheduler.get_last_lr()


def test_save_refuses_what_would_not_load_as_data(tmp_path):
    model = build_model(ModelConfig(**SMALL))
    with pytest.raises(TypeError, match=r"checkpoint\['flags'\]\['seed'\] is a numpy.int64"):
        save_checkpoint(tmp_path / "x.pth", model, flags={"seed": np.int64(3)})
    assert not (tmp_path / "x.pth").exists()


def _earlier_version_checkpoint(path, scheduler, optimizer, model):
    """What the previous save_checkpoint wrote: numpy's legacy state tuple, Python's tuple, a Counter."""
    torch.save({"model": model.state_dict(), "model_config": model.cfg.to_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "iteration": 1, "flags": {"lr": 0.01}, "classes": ["a", "b"],
                "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                        "cuda": []}}, path)


def test_earlier_checkpoint_is_named_and_converted_once(tmp_path):
    _, model, optimizer, scheduler = _training_state("step", tmp_path, "new.pth")
    old = tmp_path / "old.pth"
    _earlier_version_checkpoint(old, scheduler, optimizer, model)
    expected = _draws()
    with pytest.raises(CheckpointError, match=rf"{old}: a checkpoint of an earlier version of this project .*"
                                              rf"python tools/upgrade_checkpoint.py {old}"):
        read_weights(old)
    tool = importlib.util.spec_from_file_location("upgrade_checkpoint", REPO_ROOT / "tools" / "upgrade_checkpoint.py")
    module = importlib.util.module_from_spec(tool)
    tool.loader.exec_module(module)
    assert module.main([str(old)]) == 0
    state = load_checkpoint(old)
    set_rng_state(state["rng"])
    assert _draws() == expected
    assert state["scheduler"]["milestones"] == {1: 1, 3: 1}
    assert upgrade_checkpoint(old) is False  # already converted


class _WritesAFile:
    """Unpickling this writes ``marker``: what a malicious checkpoint could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",)


@pytest.fixture
def crafted(tmp_path):
    """A torch checkpoint and a bare pickle whose loading would write ``marker``: checked by unpickling one."""
    marker = tmp_path / "marker"
    files = {"zip": tmp_path / "evil.pth", "pickle": tmp_path / "evil.pkl"}
    torch.save({"model": _WritesAFile(marker)}, files["zip"])
    files["pickle"].write_bytes(pickle.dumps({"model": _WritesAFile(marker)}, protocol=2))
    pickle.loads(files["pickle"].read_bytes())
    assert marker.read_text() == "code ran"  # the file really is dangerous
    marker.unlink()
    return marker, files


def test_upgrade_refuses_a_crafted_checkpoint(crafted):
    marker, files = crafted
    for path in files.values():
        with pytest.raises(CheckpointError, match=str(path)):
            upgrade_checkpoint(path)
    assert not marker.exists()


# Every script that takes weights, with the flag and a command line that reaches it at once.
WEIGHT_FLAGS = [("train", "--basenet", []), ("train", "--resume", []),
                ("train", "--base_weights", ["--fusion_type", "SUM"]), ("train", "--extra_weights", ["--fusion_type", "SUM"]),
                ("test", "--weights", []), ("test", "--fuse_weights", []),
                ("demo", "--weights", []), ("demo", "--fuse_weights", ["--fusion", "mean"]),
                ("export", "--weights", []), ("pipeline", "--basenet", [])]


@pytest.mark.parametrize("kind", ["zip", "pickle"])
@pytest.mark.parametrize("script, flag, extra", WEIGHT_FLAGS, ids=[f"{s}{f}" for s, f, _ in WEIGHT_FLAGS])
def test_crafted_pickle_is_refused_by_every_script(tmp_path, capsys, crafted, script, flag, extra, kind):
    marker, files = crafted
    good = tmp_path / "good.pth"
    save_checkpoint(good, build_model(ModelConfig(**SMALL)), classes=["a", "b"], flags={"input_type_base": "rgb"})
    (tmp_path / "data" / "rgb-images" / "a").mkdir(parents=True)
    (tmp_path / "data" / "rgb-images" / "b").mkdir()
    out = str(tmp_path / "out")
    argv = {"train": ["--data_root", str(tmp_path / "data"), "--save_root", out, "--device", "cpu"],
            "test": ["--data_root", str(tmp_path / "data"), "--weights", str(good), "--det_dir", out, "--device", "cpu"],
            "demo": ["--video", str(tmp_path), "--weights", str(good), "--out", f"{out}.mp4", "--device", "cpu",
                     "--backend", "torch"],
            "export": ["--out", f"{out}.onnx"],
            "pipeline": ["--data_root", str(tmp_path / "data"), "--work_dir", out]}[script]
    argv = [a if a != str(good) or flag != "--weights" else str(files[kind]) for a in argv]
    if str(files[kind]) not in argv:
        argv += [flag, str(files[kind])]
    with pytest.raises(SystemExit) as stop:
        importlib.import_module(script).main(argv + extra)
    message = stop.value.code
    assert isinstance(message, str) and "\n" not in message, message
    assert message.startswith(f"{script}.py: {flag} {files[kind]}: "), message
    assert "weights_only=False" not in message and "Traceback" not in capsys.readouterr().err
    assert not marker.exists()
