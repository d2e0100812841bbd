"""Train AMTNet (one stream, or two streams fused) with periodic checkpoints and validation.

  python train.py --dataset toy --data_root runs/toy_data --width_mult 0.25 --max_iter 300 --val_step 100
  python train.py --seq_len=2 --num_workers=4 --batch_size=8 --ngpu=2 --fusion_type=NONE \
      --input_type_base=rgb --input_frames_base=1 --lr=0.0005 --max_iter=70000 --stepvalues=50000 --val_step=10000

Under torchrun, or with --ngpu N, training runs in N processes with DistributedDataParallel.
"""
import argparse
import logging
import sys
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from data.dataset import ActionDetection, collate
from data.sampling import IterationBatchSampler, SeededDataset
from engine.cli import data_args, data_config, detection_args, device_args, experiment_args, model_args, model_config, \
    path, train_args
from engine.training import (NonFiniteLossError, TrainingMonitor, VisdomPlots, WeightAverage, autocast_dtype,
                             build_optimizer, experiment_name, train_step, validate, validation_loader)
from layers.loss import MultiBoxLoss
from models import build_model, load_backbone
from models.config import two_stream
from utils.checkpoint import load_checkpoint, load_scheduler_state, read_weights, set_rng_state
from utils.distributed import barrier, cleanup, init_distributed, launch, place_model, under_torchrun
from utils.errors import exits_on_input_errors
from utils.logging_utils import setup_logging
from utils.version import add_version_flag

log = logging.getLogger("train")


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     parents=[data_args(), model_args(), experiment_args(), train_args(),
                                              detection_args(), device_args()])
    parser.add_argument("--resume", default=None, type=path, help="checkpoint to continue from")
    return add_version_flag(parser)


def read_start(args):
    """What the run starts from, read before any other work so that a bad file stops it at once:
    ``(--resume's checkpoint or None, {flag: pretrained weights})``, every file read as data."""
    if args.resume:
        return load_checkpoint(args.resume), {}
    flags = ("base_weights", "extra_weights") if two_stream(args.fusion_type) else ("basenet",)
    return None, {f"--{flag}": read_weights(getattr(args, flag)) for flag in flags if getattr(args, flag)}


def initialise(model, args, pretrained):
    """Pretrained weights for a fresh run: SSD/VGG for one stream, two one-stream checkpoints for fusion."""
    if model.cfg.two_stream:
        for name, core in (("--base_weights", model.core_base), ("--extra_weights", model.core_extra)):
            if name not in pretrained:
                log.warning("%s not given: that stream starts from scratch", name)
            else:
                load_backbone(core, pretrained[name])
    elif pretrained:
        load_backbone(model.core_base, pretrained["--basenet"])
    else:
        log.warning("no --basenet given: the backbone starts from scratch (random weights)")
    if args.background_prior is not None:
        model.reset_head_parameters(args.background_prior)


def resume(args, model, model_cfg, optimizer, scheduler, state, pretrained):
    """The iteration to start from: 0, or ``--resume``'s (its model, optimizer, scheduler and RNG states loaded)."""
    if state is None:
        initialise(model, args, pretrained)
        return 0
    if state["model_config"] != model_cfg.to_dict():
        raise SystemExit(f"--resume {args.resume}: its model config {state['model_config']} "
                         f"differs from these flags' {model_cfg.to_dict()}")
    if bool(args.ema) != ("train_model" in state):
        raise SystemExit(f"--resume {args.resume}: " + ("--ema was not used for it" if args.ema else
                                                        "it was trained with --ema: give --ema again"))
    model.load_state_dict(state.get("train_model", state["model"]))
    optimizer.load_state_dict(state["optimizer"])
    load_scheduler_state(scheduler, state["scheduler"])
    set_rng_state(state["rng"])
    log.info("resumed from %s at iteration %d", args.resume, state["iteration"])
    return state["iteration"]


def run(args):
    info = init_distributed(args.device)
    state, pretrained = read_start(args)
    torch.manual_seed(args.man_seed)
    np.random.seed(args.man_seed)
    data_cfg = data_config(args)
    train_set = ActionDetection(data_cfg, "train")
    model_cfg = model_config(args, train_set.num_classes)
    exp_dir = Path(args.save_root) / (args.exp_name or experiment_name(args))
    exp_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(exp_dir / "training.log", info.is_main)
    log.info("experiment %s on %s, %d process(es)", exp_dir, info.device, info.world_size)

    model = build_model(model_cfg)
    optimizer, scheduler = build_optimizer(model, args.lr, args.momentum, args.weight_decay, args.seq_len,
                                           args.stepvalues, args.gamma, args.optimizer, args.lr_schedule,
                                           args.max_iter, args.warmup_iters)
    start = resume(args, model, model_cfg, optimizer, scheduler, state, pretrained)
    del pretrained
    place_model(model, info.device, args.channels_last)
    average = WeightAverage(model, args.ema, state) if args.ema else None
    del state
    if info.distributed:
        # The priors are constant buffers: no broadcast, so rank 0 can validate alone.
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[info.device] if info.device.type == "cuda" else None, broadcast_buffers=False)
    criterion = MultiBoxLoss(getattr(model, "module", model).priors, args.jaccard_threshold).to(info.device)
    amp = info.device.type == "cuda" if args.amp is None else args.amp
    scaler = torch.amp.GradScaler(info.device.type, enabled=amp and info.device.type == "cuda")
    amp_dtype = autocast_dtype(info.device, amp)

    sampler = IterationBatchSampler(len(train_set), args.batch_size, args.man_seed, start, args.max_iter,
                                    info.rank, info.world_size)
    loader = DataLoader(SeededDataset(train_set), batch_sampler=sampler, num_workers=args.num_workers,
                        collate_fn=collate, pin_memory=info.device.type == "cuda")
    validate_fn = None
    val_loader = validation_loader(data_cfg, train_set.annotations, args.val_samples, args.batch_size,
                                   args.num_workers) if info.is_main else None
    if val_loader is not None:
        validate_fn = partial(validate, loader=val_loader, device=info.device,
                              num_classes=train_set.num_classes, conf_thresh=args.conf_thresh,
                              nms_thresh=args.nms_thresh, top_k=args.topk, iou_thresh=args.iou_thresh)
    plots = VisdomPlots(exp_dir.name, args.vis_port, train_set.classes, args.vis_server) \
        if args.visdom and info.is_main else None
    monitor = TrainingMonitor(exp_dir, train_set.classes, start, args.max_iter, args.print_step, args.loss_reset_step,
                              info.is_main, plots)
    flags = dict(vars(args))
    for iteration, batch in enumerate(loader, start=start + 1):
        loss_l, loss_c = train_step(model, criterion, batch, optimizer, scheduler, info.device, iteration,
                                    info.world_size, scaler, amp_dtype)
        if average is not None:
            average.update(model)
        monitor.step(iteration, loss_l, loss_c, scheduler.get_last_lr()[-1])
        if iteration % args.val_step == 0 or iteration == args.max_iter:
            if info.is_main:
                monitor.checkpoint(iteration, model, optimizer, scheduler, flags, validate_fn, args.iou_thresh,
                                   average)
            barrier(info)
    monitor.close()


def worker(args):
    try:
        run(args)
    except NonFiniteLossError as error:
        logging.getLogger("train").error("%s; stopping (the last checkpoint is kept)", error)
        raise SystemExit(1)
    finally:
        cleanup()


@exits_on_input_errors(get_args_parser)
def main(argv=None):
    args = get_args_parser().parse_args(argv)
    if args.data_root is None:
        raise SystemExit("--data_root is required (make the toy set with: python prepare_data.py toy --out DIR)")
    launch(worker, 1 if under_torchrun() else args.ngpu, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
