"""Train AMTNet (one stream, or two streams fused) with periodic checkpoints and validation.

  python train.py --dataset toy --data_root runs/toy_data --width_mult 0.25 --max_iter 300 --val_step 100
  python train.py --seq_len=2 --num_workers=4 --batch_size=8 --ngpu=2 --fusion_type=NONE \
      --input_type_base=rgb --input_frames_base=1 --lr=0.0005 --max_iter=70000 --stepvalues=50000 --val_step=10000

Under torchrun, or with --ngpu N, training runs in N processes with DistributedDataParallel.
"""
import argparse
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from data.dataset import ActionDetection, DataConfig, collate
from layers.loss import MultiBoxLoss
from models import build_model
from models.checkpoints import load_backbone
from utils.args import data_args, detection_args, device_args, model_args, model_config, train_args
from utils.checkpoint import checkpoint_path, load_checkpoint, record_validation, save_checkpoint, set_rng_state
from utils.distributed import barrier, cleanup, init_distributed, launch, under_torchrun
from utils.engine import (NonFiniteLossError, build_optimizer, experiment_name, eta, place_model, train_step,
                          validate)
from utils.logging_utils import AverageMeter, VisdomPlots, setup_logging
from utils.sampling import IterationBatchSampler, SeededDataset

log = logging.getLogger("train")


def get_args_parser():
    return argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                   parents=[data_args(), model_args(), train_args(), detection_args(), device_args()])


def data_config(args):
    return DataConfig(dataset=args.dataset, data_root=args.data_root, input_type_base=args.input_type_base,
                      input_type_extra=args.input_type_extra, input_frames_base=args.input_frames_base,
                      input_frames_extra=args.input_frames_extra, fusion=args.fusion_type != "NONE",
                      seq_len=args.seq_len, seq_gap=args.seq_gap, train_split=args.train_split,
                      flow_channels=args.flow_channels, mirror_flow_pixels_only=args.original_flow_mirror,
                      check_data=args.check_data, max_expand=args.max_expand, val_fraction=args.val_fraction)


def initialise(model, args):
    """Pretrained weights for a fresh run: SSD/VGG for one stream, two one-stream checkpoints for fusion."""
    if args.fusion_type != "NONE":
        for name, path, core in (("--base_weights", args.base_weights, model.core_base),
                                 ("--extra_weights", args.extra_weights, model.core_extra)):
            if path is None:
                log.warning("%s not given: that stream starts from scratch", name)
            else:
                load_backbone(core, torch.load(path, map_location="cpu", weights_only=False))
    elif args.basenet:
        load_backbone(model.core_base, torch.load(args.basenet, map_location="cpu", weights_only=False))
    else:
        log.warning("no --basenet given: the backbone starts from scratch (random weights)")
    if args.background_prior is not None:
        model.reset_head_parameters(args.background_prior)


def validation_loader(args, data_cfg, annotations):
    """Windows of the held-out training videos (``--val_fraction``), else of the test videos (the
    original); None when every class has a single training video, so none can be held out."""
    split = "val" if data_cfg.val_fraction > 0 else "test"
    if not annotations.split_videos(split):
        log.warning("--val_fraction %g: no class has a training video to spare; no validation", data_cfg.val_fraction)
        return None
    dataset = ActionDetection(data_cfg, split, annotations=annotations)
    if len(dataset) > args.val_samples:  # a fixed, evenly spread subset, as the original's ~15k windows
        dataset = Subset(dataset, np.unique(np.linspace(0, len(dataset) - 1, args.val_samples).astype(int)).tolist())
    return DataLoader(dataset, args.batch_size, shuffle=False, num_workers=args.num_workers, collate_fn=collate)


def run(args):
    info = init_distributed(args.device)
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
    start = 0
    if args.resume:
        state = load_checkpoint(args.resume)
        if state["model_config"] != model_cfg.to_dict():
            raise SystemExit(f"--resume {args.resume}: its model config {state['model_config']} "
                             f"differs from these flags' {model_cfg.to_dict()}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        start = state["iteration"]
        log.info("resumed from %s at iteration %d", args.resume, start)
    else:
        initialise(model, args)
    place_model(model, info.device, args.channels_last)
    if info.distributed:
        # The priors are constant buffers: no broadcast, so rank 0 can validate alone.
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[info.device] if info.device.type == "cuda" else None, broadcast_buffers=False)
    criterion = MultiBoxLoss(getattr(model, "module", model).priors, args.jaccard_threshold).to(info.device)
    amp = info.device.type == "cuda" if args.amp is None else args.amp
    scaler = torch.amp.GradScaler(info.device.type, enabled=amp and info.device.type == "cuda")

    sampler = IterationBatchSampler(len(train_set), args.batch_size, args.man_seed, start, args.max_iter,
                                    info.rank, info.world_size)
    loader = DataLoader(SeededDataset(train_set), batch_sampler=sampler, num_workers=args.num_workers,
                        collate_fn=collate, pin_memory=info.device.type == "cuda")
    val_loader = validation_loader(args, data_cfg, train_set.annotations) if info.is_main else None
    plots = VisdomPlots(exp_dir.name, args.vis_port, train_set.classes, args.vis_server) \
        if args.visdom and info.is_main else None
    flags = {k: v for k, v in vars(args).items()}

    meters = {k: AverageMeter() for k in ("loc", "cls", "avg", "time")}
    prints = 0
    tick = time.perf_counter()
    bar = tqdm(total=args.max_iter, initial=start, desc="train", disable=not (info.is_main and sys.stderr.isatty()))
    for iteration, batch in enumerate(loader, start=start + 1):
        loss_l, loss_c = train_step(model, criterion, batch, optimizer, scheduler, info.device, iteration,
                                    info.world_size, scaler)
        meters["loc"].update(loss_l)
        meters["cls"].update(loss_c)
        meters["avg"].update((loss_l + loss_c) / 2)
        bar.update()
        if iteration % args.print_step == 0 and info.is_main:
            now = time.perf_counter()
            meters["time"].update((now - tick) / args.print_step)
            tick = now
            log.info("iteration %d/%d loc-loss %.3f(%.3f) cls-loss %.3f(%.3f) average-loss %.3f(%.3f) "
                     "lr %.6f %.3fs/it ETA %s", iteration, args.max_iter, meters["loc"].val, meters["loc"].avg,
                     meters["cls"].val, meters["cls"].avg, meters["avg"].val, meters["avg"].avg,
                     scheduler.get_last_lr()[-1], meters["time"].avg, eta(meters["time"].avg, args.max_iter - iteration))
            if plots:
                plots.loss(iteration, [meters[k].val for k in ("loc", "cls", "avg")] +
                           [meters[k].avg for k in ("loc", "cls", "avg")])
            prints += 1
            if prints % args.loss_reset_step == 0:
                for meter in meters.values():
                    meter.reset()
        if iteration % args.val_step == 0 or iteration == args.max_iter:
            if info.is_main:
                path = save_checkpoint(checkpoint_path(exp_dir, iteration), model=model, model_config=model_cfg.to_dict(),
                                       optimizer=optimizer, scheduler=scheduler, iteration=iteration, flags=flags,
                                       extra={"classes": list(train_set.classes)})
                log.info("saved %s", path)
                if val_loader is not None:
                    started = time.perf_counter()
                    mean_ap, aps = validate(getattr(model, "module", model), val_loader, info.device, train_set.num_classes, args.conf_thresh,
                                            args.nms_thresh, args.topk, args.iou_thresh)
                    for name, ap in zip(train_set.classes, aps):
                        log.info("AP %6.2f %s", 100 * ap, name)
                    log.info("iteration %d frame-mAP@%.2f %.4f (validation %.1fs)", iteration, args.iou_thresh, mean_ap,
                             time.perf_counter() - started)
                    record_validation(exp_dir, iteration, mean_ap)
                    if plots:
                        plots.map(iteration, mean_ap, aps)
                tick = time.perf_counter()
            barrier(info)
    bar.close()


def worker(args):
    try:
        run(args)
    except NonFiniteLossError as error:
        logging.getLogger("train").error("%s; stopping (the last checkpoint is kept)", error)
        raise SystemExit(1)
    finally:
        cleanup()


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    if args.data_root is None:
        raise SystemExit("--data_root is required (make the toy set with: python prepare_data.py toy --out DIR)")
    launch(worker, 1 if under_torchrun() else args.ngpu, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
