"""train.py killed with SIGKILL (DataLoader workers running) resumes to bit-identical weights."""
import os
import signal
import subprocess
import sys
import time

import torch

from tests.conftest import REPO_ROOT
from utils.checkpoint import checkpoint_path, latest_checkpoint, load_checkpoint

# The smallest model and run that still has checkpoints to fall back on: 6 iterations, one every 2.
ARGS = ["--width_mult", "0.03", "--batch_size", "2", "--num_workers", "2", "--val_samples", "1", "--print_step", "1",
        "--device", "cpu", "--dataset", "toy", "--max_iter", "6", "--val_step", "2"]


def _start(toy_root, exp_dir, log, *extra):
    """train.py in its own process group (the main process and its two DataLoader workers)."""
    with open(log, "w") as err:
        return subprocess.Popen([sys.executable, "train.py", "--data_root", str(toy_root), "--save_root",
                                 str(exp_dir.parent), "--exp_name", exp_dir.name, *ARGS, *extra], cwd=REPO_ROOT,
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)


def _kill_when(process, ready, log, timeout=300):
    """SIGKILL the whole process group (kill -9 of the job) as soon as ``ready()`` holds."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert process.poll() is None, f"train.py ended (status {process.returncode}) first:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"timed out:\n{log.read_text()}"
            time.sleep(0.02)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL


def test_sigkill_between_and_at_checkpoints_resumes_to_identical_weights(toy_root, tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    uninterrupted = _start(toy_root, reference, tmp_path / "reference.err")  # alongside the killed runs
    run = None
    try:
        # 1. killed between checkpoints: iteration 3 logged, iteration 4 (and its checkpoint) not done
        run = _start(toy_root, killed, tmp_path / "1.err")
        _kill_when(run, lambda: "iteration 3/6" in _text(killed / "training.log"), tmp_path / "1.err")
        assert latest_checkpoint(killed) == checkpoint_path(killed, 2)
        # 2. resumed from the latest checkpoint, killed as soon as the next one is on disk (validating)
        run = _start(toy_root, killed, tmp_path / "2.err", "--resume", str(latest_checkpoint(killed)))
        _kill_when(run, lambda: checkpoint_path(killed, 4).is_file(), tmp_path / "2.err")
        assert latest_checkpoint(killed) == checkpoint_path(killed, 4)
        # 3. resumed again, to the end
        run = _start(toy_root, killed, tmp_path / "3.err", "--resume", str(latest_checkpoint(killed)))
        assert run.wait(timeout=300) == 0, (tmp_path / "3.err").read_text()
        assert uninterrupted.wait(timeout=300) == 0, (tmp_path / "reference.err").read_text()
    finally:
        for process in (uninterrupted, run):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    assert "resumed from" in (tmp_path / "3.err").read_text()
    for iteration in (4, 6):
        a = load_checkpoint(checkpoint_path(reference, iteration))
        b = load_checkpoint(checkpoint_path(killed, iteration))
        assert a["model"].keys() == b["model"].keys()
        for key in a["model"]:
            assert torch.equal(a["model"][key], b["model"][key]), (iteration, key)
        for key, value in a["optimizer"]["state"].items():
            for name in value:
                assert torch.equal(torch.as_tensor(value[name]), torch.as_tensor(b["optimizer"]["state"][key][name])), key
        assert a["scheduler"] == b["scheduler"] and a["rng"]["torch"].equal(b["rng"]["torch"])
    # and the weights did move after the last kill: the comparison is not between two copies of AMTNet_4
    assert not torch.equal(load_checkpoint(checkpoint_path(killed, 4))["model"]["conf.0.weight"],
                           load_checkpoint(checkpoint_path(killed, 6))["model"]["conf.0.weight"])


def _text(path):
    return path.read_text() if path.is_file() else ""
