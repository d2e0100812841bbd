"""Training: optimizer, step, validation, and the loop's bookkeeping (running losses, log lines,
visdom plots, periodic checkpoint + validation), shared by train.py and the tests (gurkirt/AMTNet ``train.py``)."""
import argparse
import logging
import math
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from data.annotations import DatasetAnnotations
from data.dataset import ActionDetection, DataConfig, collate
from layers.postprocess import detect
from models.config import two_stream
from utils.checkpoint import checkpoint_path, record_validation, save_checkpoint

from .inference import add_first_frames, batch_inputs, voc_frame_ap

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stops and the last good checkpoint stays."""


def experiment_name(args: argparse.Namespace) -> str:
    """The original's experiment name (``train.py``), which also names the visdom environment."""
    lr = int(args.lr * 100000)
    if not two_stream(args.fusion_type):
        return (f"AMTNet-{args.dataset}-s{args.train_split:d}-{args.input_type_base}-"
                f"sl{args.seq_len:02d}sg{args.seq_gap:02d}-bs{args.batch_size:02d}-lr{lr:05d}")
    return (f"AMTNet-{args.dataset}-s{args.train_split:d}-{args.fusion_type.lower()}-{args.input_type_base}-"
            f"{args.input_type_extra}-sl{args.seq_len:02d}sg{args.seq_gap:02d}-bs{args.batch_size:02d}-lr{lr:05d}")


def param_groups(model: torch.nn.Module, lr: float, weight_decay: float, seq_len: int) -> list:
    """The original's per-parameter settings: biases at 2x lr without weight decay; backbone
    parameters (names with 'vgg', 'extra' or 'L2Norm') at lr / seq_len."""
    groups = []
    for name, param in model.named_parameters():
        mult, decay = (2.0, 0.0) if "bias" in name else (1.0, 1.0)
        if "vgg" in name or "extra" in name or "L2Norm" in name:
            mult /= seq_len
        groups.append({"params": [param], "lr": lr * mult, "weight_decay": weight_decay * decay, "name": name})
    return groups


def lr_factor(iteration: int, max_iter: int, warmup_iters: int = 0, schedule: str = "step", stepvalues: tuple = (),
              gamma: float = 0.1) -> float:
    """Learning-rate multiplier after ``iteration`` optimiser steps: a linear warm-up from
    1/warmup_iters to 1 over ``warmup_iters`` steps, then the original's drops by ``gamma`` at
    ``stepvalues`` ('step') or a cosine decay to zero at ``max_iter`` ('cosine')."""
    if iteration < warmup_iters:
        return (iteration + 1) / warmup_iters
    if schedule == "cosine":
        span = max(max_iter - warmup_iters, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(iteration - warmup_iters, span) / span))
    return gamma ** sum(iteration >= s for s in stepvalues)


def build_optimizer(model: torch.nn.Module, lr: float, momentum: float, weight_decay: float, seq_len: int,
                    stepvalues: list, gamma: float, name: str = "sgd", schedule: str = "step", max_iter: int = 0,
                    warmup_iters: int = 0) -> tuple:
    """The original's SGD with momentum (``name='sgd'``), or Adam (``'adam'``, betas (momentum,
    0.999)) with the same per-parameter groups: not in the original, but a backbone trained
    from scratch without batch norm (the toy recipe) learns much faster with it."""
    groups = param_groups(model, lr, weight_decay, seq_len)
    if name == "sgd":
        optimizer = torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    elif name == "adam":
        optimizer = torch.optim.Adam(groups, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)
    else:
        raise ValueError(f"unknown optimizer {name!r}: choose sgd or adam")
    if schedule == "step" and warmup_iters == 0:
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(stepvalues), gamma=gamma)
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(
            it, max_iter, warmup_iters, schedule, tuple(stepvalues), gamma))
    return optimizer, scheduler


def validation_loader(data_cfg: DataConfig, annotations: DatasetAnnotations, val_samples: int, batch_size: int,
                      num_workers: int) -> DataLoader | None:
    """Windows of the held-out training videos (``--val_fraction``), else of the test videos (the
    original), at most ``val_samples`` evenly spread; None when every class has a single training video, so
    none can be held out."""
    split = "val" if data_cfg.val_fraction > 0 else "test"
    if not annotations.split_videos(split):
        log.warning("--val_fraction %g: no class has a training video to spare; no validation", data_cfg.val_fraction)
        return None
    dataset = ActionDetection(data_cfg, split, annotations=annotations)
    if len(dataset) > val_samples:  # a fixed, evenly spread subset, as the original's ~15k windows
        dataset = Subset(dataset, np.unique(np.linspace(0, len(dataset) - 1, val_samples).astype(int)).tolist())
    return DataLoader(dataset, batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate)


def native_bfloat16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX), where bfloat16 autocast makes a
    training step about twice as fast (BENCHMARKS.md, "Training throughput"); elsewhere it is emulated."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """The mixed-precision type of ``--amp`` on ``device``: float16 on CUDA (with a gradient scaler), bfloat16
    on the CPU (no scaler: bfloat16 has float32's range), None when off."""
    if not amp:
        return None
    return torch.float16 if device.type == "cuda" else torch.bfloat16


class WeightAverage:
    """An exponential moving average of a model's parameters and batch-norm statistics, updated after each step
    (``--ema DECAY``): the averaged model is what validation measures and checkpoints hold as their ``model``, the
    raw weights being kept as ``train_model`` to continue training. The decay warms up as
    ``min(decay, (1 + n) / (10 + n))`` after n updates (so early averages are not dominated by the random start).
    Averaging is done by ``torch.optim.swa_utils.AveragedModel``."""

    def __init__(self, model: torch.nn.Module, decay: float, resumed: dict | None = None, updates: int = 0):
        """``resumed``: a checkpoint saved with an average, whose ``model`` (the average) and ``ema_updates``
        it continues from; else ``updates`` earlier updates are assumed."""
        self.decay = decay
        self.averaged = torch.optim.swa_utils.AveragedModel(getattr(model, "module", model), avg_fn=self._average,
                                                            use_buffers=True)
        if resumed is not None:
            self.averaged.module.load_state_dict(resumed["model"])
            updates = resumed["ema_updates"]
        self.averaged.n_averaged.fill_(updates)

    def _average(self, averaged, current, num_averaged):
        decay = min(self.decay, (1.0 + float(num_averaged)) / (10.0 + float(num_averaged)))
        return averaged + (current - averaged) * (1.0 - decay)

    @property
    def module(self) -> torch.nn.Module:
        return self.averaged.module

    @property
    def updates(self) -> int:
        return int(self.averaged.n_averaged)

    def update(self, model: torch.nn.Module) -> None:
        self.averaged.update_parameters(getattr(model, "module", model))


def train_step(model: torch.nn.Module, criterion: torch.nn.Module, batch: dict, optimizer: torch.optim.Optimizer,
               scheduler: torch.optim.lr_scheduler.LRScheduler, device: torch.device, iteration: int, world_size: int = 1,
               scaler: torch.amp.GradScaler | None = None, amp_dtype: torch.dtype | None = None) -> tuple:
    """One SGD step. Returns (loss_l, loss_c) as floats.

    With several processes each loss is normalised by the positives of the whole
    global batch (summed over processes) and scaled by the number of processes, so
    DDP's gradient average equals the one-process gradient of the full batch.
    The forward pass runs under autocast to ``amp_dtype`` when given (else to float16 when ``scaler`` is
    enabled); the loss and matching stay float32.
    """
    base, extra, targets = batch_inputs(batch, device)
    if amp_dtype is None and scaler is not None and scaler.is_enabled():
        amp_dtype = torch.float16
    autocast = torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None)
    with autocast:
        loc, conf = model(base, extra)
    sum_l, sum_c, num_pos = criterion.sums(loc.float(), conf.float(), targets)
    total_pos = num_pos.detach().double()
    if world_size > 1:
        torch.distributed.all_reduce(total_pos)
    scale = world_size / total_pos.clamp(min=1).to(sum_l.dtype)
    loss_l, loss_c = sum_l * scale, sum_c * scale
    loss = loss_l + loss_c
    if not torch.isfinite(loss):
        raise NonFiniteLossError(f"iteration {iteration}: loss is {loss.item()} "
                                 f"(loc-loss {loss_l.item()}, cls-loss {loss_c.item()})")
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None and scaler.is_enabled():
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    scheduler.step()
    return loss_l.item() / world_size, loss_c.item() / world_size


@torch.no_grad()
def validate(model: torch.nn.Module, loader: Iterable, device: torch.device, num_classes: int, conf_thresh: float = 0.01,
             nms_thresh: float = 0.45, top_k: int = 50, iou_thresh: float = 0.5, progress: Callable | None = None) -> tuple:
    """VOC-style frame-mAP of the first frame of each micro-tube, as the original's ``validate``
    (``add_first_frames``, as test.py).

    ``model`` is the plain module (not the DDP wrapper): only the main process validates.
    Returns ``(mAP, per-class AP [C])`` with classes 0-based.
    """
    was_training = model.training
    model.eval()
    accumulator = voc_frame_ap(num_classes, iou_thresh)
    priors = model.priors
    for batch in (progress(loader) if progress else loader):
        base, extra, targets = batch_inputs(batch, device)
        loc, conf = model(base, extra)
        add_first_frames(accumulator, detect(loc.float(), conf.float(), priors, conf_thresh, nms_thresh, top_k),
                         targets, batch["sizes"])
    model.train(was_training)
    mean_ap, ap, _ = accumulator.compute()
    return mean_ap, ap


def eta(seconds_per_iteration: float, remaining: int) -> str:
    """h:mm:ss for ``remaining`` iterations at ``seconds_per_iteration`` (? when unknown)."""
    seconds = int(seconds_per_iteration * remaining)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if math.isfinite(seconds_per_iteration) else "?"


class AverageMeter:
    """Current value and running average (reset every ``--loss_reset_step`` prints, as the original)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.val, self.sum, self.count = 0.0, 0.0, 0

    def update(self, value: float, n: int = 1) -> None:
        self.val = float(value)
        self.sum += float(value) * n
        self.count += n

    @property
    def avg(self) -> float:
        return self.sum / max(1, self.count)


class VisdomPlots:
    """The original's two windows: losses (current and averaged) and validation mAP with per-class APs."""

    LOSS_LEGEND = ["REG", "CLS", "AVG", "S-REG", "S-CLS", "S-AVG"]

    def __init__(self, env: str, port: int, class_names: list, server: str = "http://127.0.0.1"):
        import visdom  # optional at import time: only needed with --visdom
        # Without the incoming socket: these plots receive no events, and its thread would try to
        # reconnect, logging ConnectionRefusedError every 3 s, for as long as the process outlives the server.
        visdom_log = logging.getLogger("visdom")
        level = visdom_log.level
        visdom_log.setLevel(logging.ERROR)  # its warning that events cannot be received without the socket
        try:
            self.viz = visdom.Visdom(server=server, port=port, env=env, raise_exceptions=True, use_incoming_socket=False)
        finally:
            visdom_log.setLevel(level)
        self.env = env
        self.loss_win = self.viz.line(X=np.zeros(1), Y=np.zeros((1, 6)), win="loss", opts=dict(
            xlabel="Iteration", ylabel="Loss", title="Training loss", legend=self.LOSS_LEGEND))
        self.map_win = self.viz.line(X=np.zeros(1), Y=np.zeros((1, len(class_names) + 1)), win="map", opts=dict(
            xlabel="Iteration", ylabel="AP", title="Validation frame-mAP (VOC-style)", legend=["meanAP"] + list(class_names)))

    def loss(self, iteration: int, values: list) -> None:
        self.viz.line(X=np.full((1, 6), iteration), Y=np.asarray(values, dtype=np.float64)[None],
                      win=self.loss_win, update="append")

    def map(self, iteration: int, mean_ap: float, class_aps: np.ndarray) -> None:
        values = np.concatenate([[mean_ap], class_aps])[None]
        self.viz.line(X=np.full(values.shape, iteration), Y=values, win=self.map_win, update="append")


class TrainingMonitor:
    """The training loop's bookkeeping on the main process: running averages of the losses, a log
    line (and visdom points) every ``print_step`` iterations with the averages reset every
    ``loss_reset_step`` prints, as the original; at ``checkpoint`` the checkpoint and the
    validation frame-mAP. Other processes only count (and wait at the checkpoints' barrier)."""

    def __init__(self, exp_dir: Path, classes: list, start: int, max_iter: int, print_step: int, loss_reset_step: int,
                 is_main: bool = True, plots: VisdomPlots | None = None):
        self.exp_dir, self.classes, self.max_iter, self.is_main, self.plots = exp_dir, list(classes), max_iter, is_main, plots
        self.print_step, self.loss_reset_step = print_step, loss_reset_step
        self.meters = {k: AverageMeter() for k in ("loc", "cls", "avg", "time")}
        self.prints = 0
        self.tick = time.perf_counter()
        self.bar = tqdm(total=max_iter, initial=start, desc="train", disable=not (is_main and sys.stderr.isatty()))

    def step(self, iteration: int, loss_l: float, loss_c: float, lr: float) -> None:
        meters = self.meters
        meters["loc"].update(loss_l)
        meters["cls"].update(loss_c)
        meters["avg"].update((loss_l + loss_c) / 2)
        self.bar.update()
        if iteration % self.print_step or not self.is_main:
            return
        now = time.perf_counter()
        meters["time"].update((now - self.tick) / self.print_step)
        self.tick = now
        log.info("iteration %d/%d loc-loss %.3f(%.3f) cls-loss %.3f(%.3f) average-loss %.3f(%.3f) "
                 "lr %.6f %.3fs/it ETA %s", iteration, self.max_iter, meters["loc"].val, meters["loc"].avg,
                 meters["cls"].val, meters["cls"].avg, meters["avg"].val, meters["avg"].avg,
                 lr, meters["time"].avg, eta(meters["time"].avg, self.max_iter - iteration))
        if self.plots:
            self.plots.loss(iteration, [meters[k].val for k in ("loc", "cls", "avg")] +
                            [meters[k].avg for k in ("loc", "cls", "avg")])
        self.prints += 1
        if self.prints % self.loss_reset_step == 0:
            for meter in meters.values():
                meter.reset()

    def checkpoint(self, iteration: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   scheduler: torch.optim.lr_scheduler.LRScheduler, flags: dict, validate_fn: Callable | None,
                   iou_thresh: float, average: "WeightAverage | None" = None) -> None:
        """Save ``AMTNet_<iteration>.pth``, then log ``validate_fn(plain model)``'s VOC-style frame-mAP and
        record it in ``validation.json`` (pipeline.py tests the best checkpoint); no validation when
        ``validate_fn`` is None. With a ``WeightAverage``, the averaged model is saved as ``model`` and
        validated, the raw one saved as ``train_model``."""
        extra = {} if average is None else {"train_model": getattr(model, "module", model).state_dict(),
                                            "ema_updates": average.updates}
        evaluated = getattr(model, "module", model) if average is None else average.module
        path = save_checkpoint(checkpoint_path(self.exp_dir, iteration), evaluated, optimizer=optimizer,
                               scheduler=scheduler, iteration=iteration, flags=flags, classes=self.classes, **extra)
        log.info("saved %s", path)
        if validate_fn is not None:
            started = time.perf_counter()
            mean_ap, aps = validate_fn(evaluated)
            for name, ap in zip(self.classes, aps):
                log.info("AP %6.2f %s", 100 * ap, name)
            log.info("iteration %d VOC frame-mAP@%.2f %.4f (validation %.1fs)", iteration, iou_thresh, mean_ap,
                     time.perf_counter() - started)
            record_validation(self.exp_dir, iteration, mean_ap)
            if self.plots:
                self.plots.map(iteration, mean_ap, aps)
        self.tick = time.perf_counter()

    def close(self) -> None:
        self.bar.close()
