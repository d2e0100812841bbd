"""Benchmark: AMTNet's convolution-form pooling + heads against the original's explicit gather.

Measures, side by side, forward and forward+backward time and peak memory of
  heads: micro-tube pooling + linear heads alone, on given source maps;
  model: the whole network (backbone + pooling + heads),
for the full-size (width 1.0) and a small (width 1/16) network, at --batch micro-tubes of
--seq_len frames, on CPU and on CUDA when present. Also checks that both give the same outputs.

Time and memory are measured in separate subprocesses, one per cell. Time: median of at
least --repeats calls after --warmup calls (quick calls are repeated for about a second).
Peak memory of one call after a warm-up: on CPU (Linux) the process's peak resident set size
(VmHWM, reset through /proc/self/clear_refs just before the call) minus its resident size
(VmRSS) just before, so it counts what the call allocates on top of weights and inputs; that
process runs with MALLOC_MMAP_THRESHOLD_=131072 so that glibc maps every large tensor
separately and gives it back when freed, and the resident size follows the live tensors. On
CUDA: torch.cuda.max_memory_allocated minus memory_allocated before the call.

    .venv/bin/python -m bench.bench_model [--batch 8] [--repeats 3] [--sizes full small]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from models import ModelConfig, build_model
from models.backbone import FEATURE_MAPS
from models.config import FUSION_TYPES
from models.weights import load_original_amtnet
from models.heads import fuse_frames, fuse_streams, pooled_heads
from models.reference import ReferenceAMTNet, reference_pool_heads

WIDTHS = {"full": 1.0, "small": 1 / 16}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _setup(job):
    """Build what one measurement needs; returns (run(), outputs_fn) closures."""
    device = torch.device(job["device"])
    cfg = ModelConfig(num_classes=25, seq_len=job["seq_len"], fusion_type=job["fusion_type"],
                      width_mult=WIDTHS[job["size"]])
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    b, t = job["batch"], cfg.seq_len
    grad = job["mode"] == "fwd+bwd"
    if job["part"] == "model":
        ref = ReferenceAMTNet(cfg).to(device)
        load_original_amtnet(model, {k: v for k, v in ref.state_dict().items()})
        base = torch.rand(b, t, 3 * cfg.input_frames_base, 300, 300, device=device)
        extra = torch.rand(b, t, 3 * cfg.input_frames_extra, 300, 300, device=device) if cfg.two_stream else None
        if job["impl"] == "conv":
            def forward():
                return model(base, extra)
        else:
            def forward():
                conf, loc = ref([base, extra])
                return loc, conf
        params = list((model if job["impl"] == "conv" else ref).parameters())
    else:
        depths = model.core_base.source_depths
        streams = 2 if cfg.two_stream else 1
        maps = [[torch.rand(b * t, d, s, s, device=device, requires_grad=grad) for d, s in zip(depths, FEATURE_MAPS)]
                for _ in range(streams)]
        if job["impl"] == "conv":
            def forward():
                fused = [fuse_frames(m.view(b, t, *m.shape[1:]), cfg.feat_fusion) for m in maps[0]]
                if streams == 2:
                    fused = [fuse_streams(f, fuse_frames(e.view(b, t, *e.shape[1:]), cfg.feat_fusion), cfg.fusion_type)
                             for f, e in zip(fused, maps[1])]
                locs, confs = zip(*(pooled_heads(f, lo, co, d)
                                    for f, lo, co, d in zip(fused, model.loc, model.conf, depths)))
                return torch.cat(locs, 1).view(b, -1, 4 * t), torch.cat(confs, 1).view(b, -1, cfg.num_classes)
        else:
            def forward():
                conf, loc = reference_pool_heads(model, maps[0], maps[1] if streams == 2 else None)
                return loc, conf
        params = list(model.loc.parameters()) + list(model.conf.parameters())

    def run():
        if grad:
            loc, conf = forward()
            (loc.sum() + conf.sum()).backward()
            for p in params:
                p.grad = None
        else:
            with torch.no_grad():
                forward()

    def outputs():
        with torch.no_grad():
            return forward()

    return device, run, outputs


def _proc_status_kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_memory_mib(run, device):
    """Extra memory (MiB) one call of run() needs at its peak, over what is allocated before."""
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        run()
        _sync(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
    before = _proc_status_kib("VmRSS")
    run()
    return (_proc_status_kib("VmHWM") - before) / 1024


def measure(job):
    """One (part, size, impl, mode) cell: peak memory (job['what'] == 'memory') or median time,
    saving the forward outputs for checking."""
    torch.set_num_threads(job["threads"])
    device, run, outputs = _setup(job)
    if job["what"] == "memory":
        run()
        return {"peak_mib": peak_memory_mib(run, device)}
    for _ in range(job["warmup"]):
        run()
    _sync(device)
    times = []
    # at least `repeats` runs; quick ones are repeated for about a second (at most 50 runs)
    while len(times) < job["repeats"] or (sum(times) < 1.0 and len(times) < 50):
        t0 = time.perf_counter()
        run()
        _sync(device)
        times.append(time.perf_counter() - t0)
    result = {"time_s": statistics.median(times)}
    if job["mode"] == "fwd" and job["save_outputs"]:
        loc, conf = outputs()
        torch.save({"loc": loc.cpu(), "conf": conf.cpu()}, job["save_outputs"])
    return result


def _child(job):
    env = dict(os.environ)
    if job["what"] == "memory":
        env["MALLOC_MMAP_THRESHOLD_"] = "131072"
    out = subprocess.run([sys.executable, "-m", "bench.bench_model", "--job", json.dumps(job)], capture_output=True,
                         text=True, env=env, cwd=Path(__file__).resolve().parents[1])
    if out.returncode != 0:
        raise RuntimeError(f"benchmark job {job} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def get_args_parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq_len", type=int, default=2)
    ap.add_argument("--fusion_type", default="NONE", choices=FUSION_TYPES, type=str.upper)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--sizes", nargs="+", default=["full", "small"], choices=list(WIDTHS))
    ap.add_argument("--parts", nargs="+", default=["heads", "model"], choices=["heads", "model"])
    ap.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when available")
    ap.add_argument("--job", help=argparse.SUPPRESS)
    return ap


def main():
    args = get_args_parser().parse_args()
    if args.job:
        print(json.dumps(measure(json.loads(args.job))))
        return
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    print(f"batch {args.batch}, seq_len {args.seq_len}, fusion {args.fusion_type}, {args.threads} threads, "
          f"{args.warmup} warm-up calls, median of at least {args.repeats}; torch {torch.__version__}")
    header = (f"{'device':6} {'part':6} {'size':6} {'mode':8} {'gather s':>9} {'conv s':>8} {'speed-up':>8} "
              f"{'gather MiB':>10} {'conv MiB':>9} {'max rel diff':>12}")
    print(header)
    print("-" * len(header))
    for device in devices:
        for part in args.parts:
            for size in args.sizes:
                for mode in ("fwd", "fwd+bwd"):
                    res, files = {}, {}
                    for impl in ("gather", "conv"):
                        files[impl] = tmp / f"bench_model_{os.getpid()}_{impl}.pth"
                        job = dict(device=device, part=part, size=size, mode=mode, impl=impl, batch=args.batch,
                                   seq_len=args.seq_len, fusion_type=args.fusion_type, repeats=args.repeats,
                                   warmup=args.warmup, threads=args.threads,
                                   save_outputs=str(files[impl]) if mode == "fwd" else "")
                        res[impl] = {**_child({**job, "what": "time"}),
                                     **_child({**job, "what": "memory", "save_outputs": ""})}
                    diff = ""
                    if mode == "fwd":
                        a, c = (torch.load(files[i]) for i in ("gather", "conv"))
                        rel = max(((c[k] - a[k]).abs().max() / a[k].abs().max()).item() for k in ("loc", "conf"))
                        diff = f"{rel:.1e}"
                        for f in files.values():
                            f.unlink()
                    g, c = res["gather"], res["conv"]
                    print(f"{device:6} {part:6} {size:6} {mode:8} {g['time_s']:9.3f} {c['time_s']:8.3f} "
                          f"{g['time_s'] / c['time_s']:7.1f}x {g['peak_mib']:10.0f} {c['peak_mib']:9.0f} {diff:>12}",
                          flush=True)


if __name__ == "__main__":
    main()
