"""Detect micro-tubes in every test video; write per-video detection files; report frame-mAP.

  python test.py --data_root runs/toy_data --weights runs/exp/AMTNet_300.pth
  python test.py --data_root ~/data/ucf24 --dataset ucf24 --save_root runs --exp_name NAME --eval_iters 70000,120000
  python test.py ... --weights AMTNet_120000.pth --fusion_type CAT   (an original AMTNet checkpoint)
  python test.py ... --weights RGB.pth --fuse_weights FLOW.pth [--fuse_input_type fastOF]   (late fusion)

Detections go to DET_DIR/<Class>/<video>.npz (the format build_tubes.py reads; --save_mat
also writes the original per-frame .mat layout); the VOC-style frame-mAP to
DET_DIR-frame_map.json. Under torchrun each process takes a share of the videos.
With --fuse_weights, two one-stream models run over the same windows and DET_DIR holds
base/, fuse/ (each model's own detections, for build_tubes.py --late_fusion boost|union) and
mean/ (the base model's boxes with the mean of the two softmax outputs per prior: mean
fusion, which build_tubes.py --det_dir DET_DIR/mean --late_fusion mean links), each with its
frame-mAP summary beside it.
"""
import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from data.annotations import load_class_names
from data.dataset import ActionDetection, collate
from engine.cli import data_args, data_config, detection_args, device_args, experiment_args, fuse_model_args, \
    inference_args, int_list, model_args, model_config, path
from engine.inference import (VideoRecords, check_classes, check_late_fusion, detect_videos, detect_videos_late_fusion,
                              process_share, run_key, video_batches)
from models import load_model
from tubes.detections import frame_map_path
from tubes.frame_map import FrameAP
from tubes.fusion import fusion_streams, prefused
from utils.checkpoint import checkpoint_path, read_weights
from utils.distributed import barrier, cleanup, init_distributed, place_model
from utils.errors import exits_on_input_errors
from utils.io import atomic_path
from utils.version import add_version_flag

log = logging.getLogger("test")


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     parents=[data_args(), model_args(), experiment_args(), detection_args(),
                                              device_args(), inference_args(), fuse_model_args()])
    parser.set_defaults(topk=20)  # evaluate.py's default
    group = parser.add_argument_group("checkpoints and outputs")
    group.add_argument("--weights", default=None, type=path, help="one checkpoint (this project's or the original's)")
    group.add_argument("--eval_iters", default=None, type=int_list, help="iterations of AMTNet_<iter>.pth to test")
    group.add_argument("--eval_gaps", "--eval_gap", dest="eval_gaps", default=[1], type=int_list,
                       help="frames skipped between a test micro-tube's frames; several, comma-separated: each in turn")
    group.add_argument("--det_dir", default=None, type=path, help="default: next to the checkpoint")
    group.add_argument("--save_mat", action=argparse.BooleanOptionalAction, default=False,
                       help="also write the original per-frame .mat files")
    return add_version_flag(parser)


def checkpoints(args):
    if args.weights:
        return [Path(args.weights)]
    if not (args.exp_name and args.eval_iters):
        raise SystemExit("give --weights PATH, or --exp_name NAME with --eval_iters N[,M...]")
    return [checkpoint_path(Path(args.save_root) / args.exp_name, i) for i in args.eval_iters]


def load(path, args, classes):
    """This project's checkpoints carry their config; an original AMTNet checkpoint is described by the flags.
    A model of another number of classes than the dataset's ``classes`` is refused before any window runs."""
    state = read_weights(path)
    check_classes(state, classes, path)
    return load_model(state, model_config(args, len(classes)))


@exits_on_input_errors(get_args_parser)
def main(argv=None):
    args = get_args_parser().parse_args(argv)
    if args.data_root is None:
        raise SystemExit("--data_root is required")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    info = init_distributed(args.device)
    try:  # the packages' errors name the file: exits_on_input_errors ends the run with them
        for weights in checkpoints(args):
            for gap in args.eval_gaps:
                run_one(args, info, weights, gap)
        barrier(info)  # no process leaves (and tears the gloo group down) while another still uses it
    finally:
        cleanup()
    return 0


def fuse_stream(args, model, fuse):
    """The late fusion's data layout: the base model's stream as base, the fuse model's as extra."""
    path = Path(args.fuse_weights)
    input_type = args.fuse_input_type or read_weights(path).get("flags", {}).get("input_type_base")
    if input_type is None:
        raise SystemExit(f"{path}: the checkpoint does not say what its model reads: give --fuse_input_type")
    check_late_fusion(model.cfg, fuse.cfg)
    return {"two_stream": True, "input_type_extra": input_type, "input_frames_extra": fuse.cfg.input_frames_base}


def run_one(args, info, weights, gap):
    classes = load_class_names(args.data_root)
    model = place_model(load(weights, args, classes), info.device, args.channels_last, inference=True)
    # The stream layout comes from the checkpoint's config, not the flags.
    streams = {"two_stream": model.cfg.two_stream, "input_frames_extra": model.cfg.input_frames_extra}
    if args.fuse_weights:
        fuse = place_model(load(Path(args.fuse_weights), args, classes), info.device, args.channels_last,
                           inference=True)
        streams = fuse_stream(args, model, fuse)
    data_cfg = replace(data_config(args), eval_gap=gap, seq_len=model.cfg.seq_len,
                       input_frames_base=model.cfg.input_frames_base, **streams)
    dataset = ActionDetection(data_cfg, "test", full_test=True)
    mine = process_share(dataset.windows, info.rank, info.world_size)
    det_dir = Path(args.det_dir) if args.det_dir else weights.parent / f"detections-{weights.stem}-eg{gap:02d}"
    # resumed: the videos finished by an earlier run of the same checkpoints and flags are not run again
    records = VideoRecords(det_dir, run_key({**vars(args), "eval_gap": gap}, [weights, args.fuse_weights]),
                           fusion_streams() if args.fuse_weights else (None,))
    todo = records.pending(dataset, mine)
    loader = DataLoader(dataset, batch_sampler=video_batches(dataset, todo, args.batch_size),
                        num_workers=args.num_workers, collate_fn=collate)
    bar = lambda it: tqdm(it, desc=f"{weights.name} eg{gap}", disable=not (info.is_main and sys.stderr.isatty()))
    detect_args = (loader, dataset, info.device, det_dir, args.conf_thresh, args.nms_thresh, args.topk, args.iou_thresh,
                   args.save_mat, todo, bar)
    if args.fuse_weights:
        accumulators, stats = detect_videos_late_fusion((model, fuse), *detect_args, args.frame_cache, records)
        for stream in fusion_streams():
            extra = {"fusion": prefused(stream), "fuse_weights": str(args.fuse_weights), "stream": stream}
            report(args, info, weights, gap, accumulators[stream], dict(stats), det_dir / stream, dataset.classes, extra)
        return
    accumulator, stats = detect_videos(model, *detect_args, args.frame_cache, records)
    report(args, info, weights, gap, accumulator, stats, det_dir, dataset.classes)


def report(args, info, weights, gap, accumulator, stats, det_dir, classes, extra=None):
    """Frame-mAP over all processes: logged, and written to DET_DIR-frame_map.json by the main process."""
    if info.distributed:
        gathered = [None] * info.world_size
        torch.distributed.all_gather_object(gathered, (accumulator, stats))
        accumulator = FrameAP.merge([a for a, _ in gathered])
        stats = {k: sum(s[k] for _, s in gathered) for k in stats}
    if not info.is_main:
        return
    mean_ap, aps, _ = accumulator.compute()
    for name, ap in zip(classes, aps):
        log.info("AP %6.2f %s", 100 * ap, name)
    log.info("%sVOC frame-mAP@%.2f %.4f over %d windows of %d videos; %.1f frames/s network, %.1f frames/s end to end",
             f"{det_dir.name}: " if extra else "", args.iou_thresh, mean_ap, stats["windows"], stats["videos"],
             stats["frames"] / max(stats["network_seconds"], 1e-9), stats["frames"] / max(stats["total_seconds"], 1e-9))
    result = {"weights": str(weights), "eval_gap": gap, "iou": args.iou_thresh, "frame_map_voc": mean_ap,
              "ap": dict(zip(classes, map(float, aps))), "det_dir": str(det_dir), **stats, **(extra or {})}
    with atomic_path(frame_map_path(det_dir)) as tmp:
        tmp.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())
