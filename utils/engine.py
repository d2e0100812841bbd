"""Training and validation steps shared by train.py and the tests (gurkirt/AMTNet ``train.py``)."""
import logging
import math

import numpy as np
import torch

from layers.postprocess import detect
from utils.evaluation import FrameAP

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stops and the last good checkpoint stays."""


def experiment_name(args):
    """The original's experiment name (``train.py``), which also names the visdom environment."""
    lr = int(args.lr * 100000)
    if args.fusion_type == "NONE":
        return (f"AMTNet-{args.dataset}-s{args.train_split:d}-{args.input_type_base}-"
                f"sl{args.seq_len:02d}sg{args.seq_gap:02d}-bs{args.batch_size:02d}-lr{lr:05d}")
    return (f"AMTNet-{args.dataset}-s{args.train_split:d}-{args.fusion_type.lower()}-{args.input_type_base}-"
            f"{args.input_type_extra}-sl{args.seq_len:02d}sg{args.seq_gap:02d}-bs{args.batch_size:02d}-lr{lr:05d}")


def param_groups(model, lr, weight_decay, seq_len):
    """The original's per-parameter settings: biases at 2x lr without weight decay; backbone
    parameters (names with 'vgg', 'extra' or 'L2Norm') at lr / seq_len."""
    groups = []
    for name, param in model.named_parameters():
        mult, decay = (2.0, 0.0) if "bias" in name else (1.0, 1.0)
        if "vgg" in name or "extra" in name or "L2Norm" in name:
            mult /= seq_len
        groups.append({"params": [param], "lr": lr * mult, "weight_decay": weight_decay * decay, "name": name})
    return groups


def lr_factor(iteration, max_iter, warmup_iters=0, schedule="step", stepvalues=(), gamma=0.1):
    """Learning-rate multiplier after ``iteration`` optimiser steps: a linear warm-up from
    1/warmup_iters to 1 over ``warmup_iters`` steps, then the original's drops by ``gamma`` at
    ``stepvalues`` ('step') or a cosine decay to zero at ``max_iter`` ('cosine')."""
    if iteration < warmup_iters:
        return (iteration + 1) / warmup_iters
    if schedule == "cosine":
        span = max(max_iter - warmup_iters, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(iteration - warmup_iters, span) / span))
    return gamma ** sum(iteration >= s for s in stepvalues)


def build_optimizer(model, lr, momentum, weight_decay, seq_len, stepvalues, gamma, name="sgd", schedule="step",
                    max_iter=0, warmup_iters=0):
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


def place_model(model, device, channels_last=None):
    """Move ``model`` to ``device``; channels-last memory format (same outputs, faster
    convolutions on GPUs and, for the full-size network, on CPU) when asked, by default on CUDA."""
    model.to(device)
    if device.type == "cuda" if channels_last is None else channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def batch_inputs(batch, device):
    """Model inputs (base, extra or None) and targets on ``device``."""
    images = batch["images"]
    base = images["base"].to(device, non_blocking=True)
    extra = images["extra"].to(device, non_blocking=True) if "extra" in images else None
    targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in batch["targets"]]
    return base, extra, targets


def train_step(model, criterion, batch, optimizer, scheduler, device, iteration, world_size=1, scaler=None):
    """One SGD step. Returns (loss_l, loss_c) as floats.

    With several processes each loss is normalised by the positives of the whole
    global batch (summed over processes) and scaled by the number of processes, so
    DDP's gradient average equals the one-process gradient of the full batch.
    """
    base, extra, targets = batch_inputs(batch, device)
    autocast = torch.autocast(device.type, enabled=scaler is not None and scaler.is_enabled())
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
def validate(model, loader, device, num_classes, conf_thresh=0.01, nms_thresh=0.45, top_k=50, iou_thresh=0.5,
             progress=None):
    """Frame-mAP of the first frame of each micro-tube, as the original's ``validate``.

    ``model`` is the plain module (not the DDP wrapper): only the main process validates.

    Detections and ground truth are in pixels of the original frame. Returns
    ``(mAP, per-class AP [C])`` with classes 0-based.
    """
    was_training = model.training
    model.eval()
    accumulator = FrameAP(num_classes, iou_thresh, inclusive=False)
    priors = model.priors
    for batch in (progress(loader) if progress else loader):
        base, extra, targets = batch_inputs(batch, device)
        loc, conf = model(base, extra)
        for det, target, (height, width) in zip(detect(loc.float(), conf.float(), priors, conf_thresh, nms_thresh, top_k),
                                                targets, batch["sizes"]):
            scale = np.array([width, height, width, height], np.float64)
            accumulator.add_frame(det["boxes"][:, 0].cpu().double().numpy() * scale, det["scores"].cpu().numpy(),
                                  det["labels"].cpu().numpy() - 1,
                                  target["boxes"][:, 0].cpu().double().numpy() * scale,
                                  target["labels"].cpu().numpy() - 1)
    model.train(was_training)
    mean_ap, ap, _ = accumulator.compute()
    return mean_ap, ap


def eta(seconds_per_iteration, remaining):
    seconds = int(seconds_per_iteration * remaining)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if math.isfinite(seconds_per_iteration) else "?"
