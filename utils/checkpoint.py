"""Checkpoints: everything needed to rebuild the model and, for training, continue exactly.

A checkpoint is a dict: ``model`` (state dict) and ``model_config`` (dict, rebuilds the
model in test.py and demo.py); a training checkpoint also has ``optimizer``, ``scheduler``,
``iteration``, ``rng`` (Python, numpy, torch and CUDA generator states) and ``flags``. It is
written to a temporary file and renamed, so a crash never leaves a truncated checkpoint.
Loading weights into a model (also the original AMTNet's) is ``models/weights.py``'s.
"""
import json
import random
import re
from pathlib import Path

import numpy as np
import torch

from .io import atomic_path

REQUIRED_KEYS = ("model", "model_config", "optimizer", "scheduler", "iteration", "rng", "flags")


class CheckpointError(ValueError):
    """A missing, unreadable, incomplete or mismatched checkpoint or weights file; the message says which."""


def rng_state() -> dict:
    """The Python, numpy, torch and CUDA generators' states (a training checkpoint's ``rng``)."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    """Restore ``rng_state()``'s generators."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_path(exp_dir: str | Path, iteration: int) -> Path:
    """Where train.py saves the checkpoint of ``iteration`` (``AMTNet_<iteration>.pth``, as the original names it)."""
    return Path(exp_dir) / f"AMTNet_{int(iteration)}.pth"


def latest_checkpoint(exp_dir: str | Path) -> Path | None:
    """The checkpoint of ``exp_dir`` with the highest iteration, or None."""
    found = [(int(m[1]), p) for p in Path(exp_dir).glob("AMTNet_*.pth") if (m := re.fullmatch(r"AMTNet_(\d+)", p.stem))]
    return max(found)[1] if found else None


def validation_file(exp_dir: str | Path) -> Path:
    """train.py's record of each checkpoint's validation frame-mAP: ``{"<iteration>": mAP}``."""
    return Path(exp_dir) / "validation.json"


def record_validation(exp_dir: str | Path, iteration: int, mean_ap: float) -> None:
    """Add ``iteration``'s validation frame-mAP to ``validation_file(exp_dir)`` (atomically)."""
    path = validation_file(exp_dir)
    scores = json.loads(path.read_text()) if path.is_file() else {}
    scores[str(int(iteration))] = float(mean_ap)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(scores, indent=1, sort_keys=True))


def best_checkpoint(exp_dir: str | Path) -> Path | None:
    """The saved checkpoint with the best validation frame-mAP (the later one on ties), else the latest."""
    path = validation_file(exp_dir)
    scores = json.loads(path.read_text()) if path.is_file() else {}
    found = [(score, int(it)) for it, score in scores.items() if checkpoint_path(exp_dir, it).is_file()]
    return checkpoint_path(exp_dir, max(found)[1]) if found else latest_checkpoint(exp_dir)


def save_checkpoint(path: str | Path, model: torch.nn.Module, *, model_config: dict | None = None,
                    optimizer: torch.optim.Optimizer | None = None,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, **extra: object) -> Path:
    """Atomically write ``model``'s checkpoint to ``path``; returns the path.

    ``model_config``: a dict, by default ``model.cfg.to_dict()``. With ``optimizer`` (and
    ``scheduler``) it is a training checkpoint: their states and the RNG states are added.
    ``extra`` entries (``iteration``, ``flags``, ``classes``, ...) are stored as given.
    """
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    state = {"model": model.state_dict(),
             "model_config": model.cfg.to_dict() if model_config is None else model_config}
    if optimizer is not None:
        state.update(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), rng=rng_state())
    state.update(extra)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path: str | Path, required: tuple = REQUIRED_KEYS, map_location: str = "cpu") -> dict:
    """Read a checkpoint; a missing file, a corrupt file or missing keys raise ``CheckpointError``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch file: {error}") from error
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}")
    return state
