"""Training throughput at the toy recipe: seconds per step and windows per second, by memory format and precision.

  python -m bench.bench_train [--root DIR] [--steps 20] [--threads 2] [--workers 2]

The model is the default recipe's (width 0.125, batch norm, Adam, batch 8, rgb) on a toy dataset (rendered when no
--root is given). Two measurements per setup:
  step   forward + loss + backward + optimizer on batches decoded beforehand (the network alone);
  loop   the same steps fed by train.py's DataLoader with --workers processes (what a training run sees: the
         loader's processes and the torch threads share the cores).
Setups run in turns (round-robin, after a warm-up step each), so a busy machine slows them alike; the CPU
seconds of a step (all of this process's threads) are less sensitive to other jobs than its wall time.
"""
import argparse
import logging
import statistics
import tempfile
import time

import torch
from torch.utils.data import DataLoader

from data.dataset import ActionDetection, DataConfig, collate
from data.sampling import IterationBatchSampler, SeededDataset
from data.toy import ToyConfig, make_toy_dataset
from engine.training import autocast_dtype, build_optimizer, train_step
from layers.loss import MultiBoxLoss
from models import build_model
from models.config import ModelConfig

SETUPS = {"float32": dict(channels_last=False, amp=False),
          "channels-last": dict(channels_last=True, amp=False),
          "channels-last + bfloat16": dict(channels_last=True, amp=True)}


def setup(num_classes, channels_last, amp, seed=0):
    torch.manual_seed(seed)
    model = build_model(ModelConfig(num_classes=num_classes + 1, width_mult=0.125, norm="batch"))
    model.reset_head_parameters(0.99)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    optimizer, scheduler = build_optimizer(model, 0.003, 0.9, 5e-4, 2, (), 0.1, "adam", "cosine", 1000, 40)
    criterion = MultiBoxLoss(model.priors)
    return model, criterion, optimizer, scheduler, autocast_dtype(torch.device("cpu"), amp)


def step_seconds(state, batch, iteration):
    """Wall and CPU seconds (all threads of this process) of one training step."""
    model, criterion, optimizer, scheduler, amp_dtype = state
    start, cpu = time.perf_counter(), time.process_time()
    train_step(model, criterion, batch, optimizer, scheduler, torch.device("cpu"), iteration, amp_dtype=amp_dtype)
    return time.perf_counter() - start, time.process_time() - cpu


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="a toy dataset (default: render one)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=8)
    return parser


def main():
    args = get_args_parser().parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or tmp
        if args.root is None:
            make_toy_dataset(root, ToyConfig(num_videos=16, seed=0), progress=False)
        dataset = ActionDetection(DataConfig(dataset="toy", data_root=str(root), max_expand=1.0, channel_swap=False),
                                  "train")
        sampler = lambda: IterationBatchSampler(len(dataset), args.batch_size, 0, 0, args.steps + 1)
        batches = [collate([SeededDataset(dataset)[item] for item in items]) for items in sampler()]
        states = {name: setup(dataset.num_classes, **cfg) for name, cfg in SETUPS.items()}
        times, cpu_times = {name: [] for name in SETUPS}, {name: [] for name in SETUPS}
        for name, state in states.items():
            step_seconds(state, batches[0], 1)  # warm-up
        for i, batch in enumerate(batches[1:], start=2):
            for name, state in states.items():
                wall, cpu = step_seconds(state, batch, i)
                times[name].append(wall)
                cpu_times[name].append(cpu)
        loop = {}
        for name, state in states.items():
            loader = DataLoader(SeededDataset(dataset), batch_sampler=sampler(), num_workers=args.workers,
                                collate_fn=collate)
            batches_iter = iter(loader)
            step_seconds(state, next(batches_iter), 1)  # start-up of the loader's processes is not counted
            start = time.perf_counter()
            for i, batch in enumerate(batches_iter, start=2):
                step_seconds(state, batch, i)
            loop[name] = (time.perf_counter() - start) / args.steps
    print(f"torch threads {args.threads}, loader workers {args.workers}, batch {args.batch_size}, {args.steps} steps")
    print("| setup | step s (median) | step CPU s (median) | step windows/s | loop s/it | loop it/s | loop windows/s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in SETUPS:
        step, cpu = statistics.median(times[name]), statistics.median(cpu_times[name])
        print(f"| {name} | {step:.3f} | {cpu:.3f} | {args.batch_size / step:.1f} | {loop[name]:.3f} | "
              f"{1 / loop[name]:.2f} | {args.batch_size / loop[name]:.1f} |")


if __name__ == "__main__":
    main()
