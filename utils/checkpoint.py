"""Checkpoints: everything needed to rebuild the model and, for training, continue exactly.

A checkpoint is a dict: ``model`` (state dict) and ``model_config`` (dict, rebuilds the
model in test.py and demo.py); a training checkpoint also has ``optimizer``, ``scheduler``,
``iteration``, ``rng`` (Python, numpy, torch and CUDA generator states) and ``flags``. It is
written to a temporary file and renamed, so a crash never leaves a truncated checkpoint.
Loading weights into a model (also the original AMTNet's) is ``models/weights.py``'s.

Checkpoints are data, never code: every weights file is read with ``torch.load(...,
weights_only=True)`` (``read_weights``), and a checkpoint holds only tensors, numbers, strings,
lists, tuples and dicts (``save_checkpoint`` checks), so this project's load that way; the
original AMTNet's and the SSD / VGG16 files are plain state dicts and do too. A file that holds
other Python objects is refused before any of them is built.
"""
import json
import pickle
import random
import re
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from .errors import InputError
from .io import atomic_path

REQUIRED_KEYS = ("model", "model_config", "optimizer", "scheduler", "iteration", "rng", "flags")

# What the training checkpoints of earlier versions held besides plain data: numpy's RNG state, an
# array. upgrade_checkpoint (tools/upgrade_checkpoint.py) allows these globals while reading, and only these.
EARLIER_VERSION_GLOBALS = {"numpy.ndarray", "numpy.dtype", "numpy.core.multiarray._reconstruct",
                           "numpy._core.multiarray._reconstruct"}
UPGRADE_HINT = "python tools/upgrade_checkpoint.py"


class CheckpointError(InputError, ValueError):
    """A missing, unreadable, incomplete or mismatched checkpoint or weights file; the message says which."""


def _python_state(state: tuple) -> list:
    """``random.getstate()`` (a tuple holding a tuple) as a list of plain values."""
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _numpy_state(state: tuple | dict) -> dict:
    """numpy's legacy RNG state, ``np.random.get_state()``'s tuple or its dict form, as plain data (the key a tensor)."""
    if isinstance(state, tuple):  # ('MT19937', key, pos, has_gauss, cached_gaussian)
        name, key, pos, has_gauss, gauss = state
        state = {"bit_generator": name, "state": {"key": key, "pos": pos}, "has_gauss": has_gauss, "gauss": gauss}
    return {"bit_generator": str(state["bit_generator"]), "has_gauss": int(state["has_gauss"]),
            "gauss": float(state["gauss"]), "state": {"key": torch.from_numpy(np.asarray(state["state"]["key"], np.int64)),
                                                      "pos": int(state["state"]["pos"])}}


def rng_state() -> dict:
    """The generators' states as plain data (lists, numbers, tensors): they load with weights_only."""
    return {"python": _python_state(random.getstate()), "numpy": _numpy_state(np.random.get_state(legacy=False)),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    """Restore ``rng_state()``'s states exactly."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    np.random.set_state({**numpy, "state": {"key": numpy["state"]["key"].numpy().astype(np.uint32),
                                            "pos": numpy["state"]["pos"]}})
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def scheduler_state(scheduler: torch.optim.lr_scheduler.LRScheduler) -> dict:
    """``scheduler.state_dict()`` as plain data (MultiStepLR's milestones: a dict, not a Counter)."""
    state = scheduler.state_dict()
    if isinstance(state.get("milestones"), Counter):
        state["milestones"] = dict(state["milestones"])
    return state


def load_scheduler_state(scheduler: torch.optim.lr_scheduler.LRScheduler, state: dict) -> None:
    """Inverse of ``scheduler_state``: the scheduler as it was saved."""
    scheduler.load_state_dict(state)
    if isinstance(getattr(scheduler, "milestones", None), dict):
        scheduler.milestones = Counter(scheduler.milestones)


def _check_plain(value: object, where: str = "checkpoint") -> None:
    """Raise TypeError, naming the entry, for anything ``torch.load(weights_only=True)`` would refuse."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"{where}: key {key!r} is a {type(key).__name__}; checkpoints hold plain data only")
            _check_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
    elif not (value is None or isinstance(value, (torch.Tensor, bool, int, float, str))) or \
            type(value).__module__ == "numpy":
        raise TypeError(f"{where} is a {type(value).__module__}.{type(value).__name__}; checkpoints hold plain data "
                        "only (tensors, numbers, strings, lists, tuples, dicts)")


def _refused_globals(path: Path, error: Exception) -> set:
    """The Python objects a weights file would build on loading (empty when it is not a torch file)."""
    try:
        return set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # not a zip checkpoint (the legacy format): the first one the unpickler met
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        return {found[1]} if found else set()


def read_weights(path: str | Path, map_location: str = "cpu") -> object:
    """A weights or checkpoint file, read as data (``torch.load(weights_only=True)``).

    A missing, empty, truncated or foreign file, a folder, and a file that would build Python
    objects other than tensors, numbers, strings, lists and dicts (and so could run code) raise
    ``CheckpointError`` naming it; a checkpoint of an earlier version of this project (its numpy
    RNG state) says how to convert it.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise CheckpointError(f"{path}: a folder, expected a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: an empty file, expected a checkpoint")
    try:
        with warnings.catch_warnings():  # its note on pickle protocols would only add noise to the error below
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        refused = _refused_globals(path, error) if isinstance(error, pickle.UnpicklingError) else set()
        if refused and refused <= EARLIER_VERSION_GLOBALS:
            raise CheckpointError(f"{path}: a checkpoint of an earlier version of this project (its RNG state is a "
                                  f"numpy array); convert it once with: {UPGRADE_HINT} {path}") from None
        if refused:
            raise CheckpointError(f"{path}: refused, it would build Python objects on loading "
                                  f"({', '.join(sorted(refused))}), which can run code; a checkpoint holds only "
                                  "tensors, numbers, strings, lists and dicts") from None
        # torch's own messages suggest weights_only=False: never pass that on
        reason = "a pickle of another kind, or a damaged one" if isinstance(error, pickle.UnpicklingError) else \
            next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__).split(". ")[0]
        raise CheckpointError(f"{path}: not a PyTorch checkpoint, or a truncated one ({reason})") from None


def upgrade_checkpoint(path: str | Path, out: str | Path | None = None) -> bool:
    """Rewrite a training checkpoint of an earlier version of this project (its numpy RNG state) as plain
    data, to ``out`` (default: in place, atomically); returns False when ``path`` already loads as data.
    While reading it only ``EARLIER_VERSION_GLOBALS`` are allowed: any other object is refused, as by
    ``read_weights``."""
    path = Path(path).expanduser()
    try:
        read_weights(path)
        return False
    except CheckpointError as error:
        if UPGRADE_HINT not in str(error):
            raise
    multiarray = getattr(np, "_core", None) or np.core
    allowed = [multiarray.multiarray._reconstruct, (multiarray.multiarray._reconstruct,
               "numpy.core.multiarray._reconstruct"), np.ndarray, np.dtype, type(np.dtype(np.uint32))]
    try:
        with torch.serialization.safe_globals(allowed), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: cannot be converted, it holds objects other than an earlier version's "
                              "numpy RNG state") from None
    if "rng" in state:
        state["rng"].update(python=_python_state(state["rng"]["python"]), numpy=_numpy_state(state["rng"]["numpy"]))
    if isinstance(state.get("scheduler", {}).get("milestones"), Counter):
        state["scheduler"]["milestones"] = dict(state["scheduler"]["milestones"])
    _check_plain(state)
    with atomic_path(out or path) as tmp:
        torch.save(state, tmp)
    return True


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
        state.update(optimizer=optimizer.state_dict(), scheduler=scheduler_state(scheduler), rng=rng_state())
    state.update(extra)
    _check_plain(state)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path: str | Path, required: tuple = REQUIRED_KEYS, map_location: str = "cpu") -> dict:
    """Read a checkpoint (``read_weights``); a missing, corrupt or foreign file or missing keys raise
    ``CheckpointError``."""
    path = Path(path).expanduser()
    state = read_weights(path, map_location)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, expected a checkpoint (a dict)")
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(f"{path}: not a training checkpoint of this project, it lacks {', '.join(missing)}")
    return state
