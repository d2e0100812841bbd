"""Benchmark: one training step of the toy-size AMTNet on CPU (forward, loss, backward, Adam step) for
the settings the recipe chooses between: backbone width, normalisation, bfloat16 autocast
(``--amp``) and channels-last memory format.

Each setting runs in its own subprocess with --threads torch threads: median seconds per step of
--repeats steps after --warmup steps, batch --batch micro-tubes of 2 frames, random inputs and one
ground-truth micro-tube per sample.

    .venv/bin/python -m bench.bench_train_step [--threads 2] [--batch 8] [--repeats 5]
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

SETTINGS = [  # (width, norm, amp, channels_last)
    (0.125, "none", False, False),
    (0.125, "batch", False, False),
    (0.125, "batch", True, False),
    (0.125, "batch", False, True),
    (0.125, "batch", True, True),
    (0.0625, "batch", False, False),
    (0.0625, "batch", True, False),
    (0.25, "batch", False, False),
]


def one(width, norm, amp, channels_last, batch, warmup, repeats, threads):
    import torch

    from engine.training import build_optimizer
    from layers.loss import MultiBoxLoss
    from models import ModelConfig, build_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=5, width_mult=width, norm=norm)).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer, _ = build_optimizer(model, 1e-3, 0.9, 0.0, 2, [1000], 0.1, "adam")
    criterion = MultiBoxLoss(model.priors)
    x = torch.rand(batch, 2, 3, 300, 300)
    targets = [{"boxes": torch.tensor([[[0.1, 0.2, 0.4, 0.7], [0.12, 0.2, 0.42, 0.7]]]),
                "labels": torch.tensor([1 + k % 4])} for k in range(batch)]
    times = []
    for step in range(warmup + repeats):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loc, conf = model(x)
        sum_l, sum_c, num_pos = criterion.sums(loc.float(), conf.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        ((sum_l + sum_c) / num_pos.clamp(min=1)).backward()
        optimizer.step()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        setting = json.loads(args.one)
        print(json.dumps(one(*setting, args.batch, args.warmup, args.repeats, args.threads)))
        return 0
    print(f"training step, batch {args.batch} x 2 frames, {args.threads} threads (median of {args.repeats})")
    print("| width | norm | bf16 autocast | channels-last | s/step |")
    print("| --- | --- | --- | --- | --- |")
    for setting in SETTINGS:
        out = subprocess.run([sys.executable, "-m", "bench.bench_train_step", "--threads", str(args.threads),
                              "--batch", str(args.batch), "--warmup", str(args.warmup), "--repeats", str(args.repeats),
                              "--one", json.dumps(setting)], capture_output=True, text=True, check=True)
        width, norm, amp, channels_last = setting
        print(f"| {width:g} | {norm} | {'yes' if amp else 'no'} | {'yes' if channels_last else 'no'} | "
              f"{json.loads(out.stdout.strip().splitlines()[-1]):.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
