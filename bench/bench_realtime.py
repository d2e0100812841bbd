"""Benchmark: frames per second of the online demo, end to end and network only.

End to end: ``demo.py`` run as a user runs it (a new process: start, decode, flow, network, NMS,
linking, drawing, writing), on a folder of --frames toy frames (320x240, cycled from a rendered toy
dataset); frames/s = frames / wall time of the process. Network only: one micro-tube window of a
1-frame stream (and a 5-frame flow stream) per call, in this process; a window (t, t+2) advances the
video by two frames (test.py's windows at eval_gap 1), so frames/s = 2 / seconds per window.

Cells: toy-size (width 0.125) and full-size (width 1) models, rgb and rgb + fastOF (CAT), PyTorch and
onnxruntime (export.py's graphs), without and with the per-frame cache. Weights are random: speed
does not depend on them, except drawing and linking, which see more paths than a trained model's.
The machine's load averages (``/proc/loadavg``) are printed beside each row: other jobs share the CPU.

    .venv/bin/python -m bench.bench_realtime [--frames 1200] [--full_frames 60] [--sizes toy full]
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as demo.py, before torch loads OpenMP

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from data.toy import ToyConfig, make_toy_dataset
from engine.export import OnnxDetector
from engine.frame_cache import FeatureMapCache
from models import ModelConfig, build_model
from utils.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"toy": 0.125, "full": 1.0}
STREAMS = {"rgb": {}, "rgb+fastOF": {"fusion_type": "CAT", "input_frames_extra": 5}}
BACKENDS = {"torch": ["--backend", "torch", "--no-frame_cache"], "torch+cache": ["--backend", "torch"],
            "onnx": ["--no-frame_cache"], "onnx+cache": []}


def load():
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def frame_folder(work, frames):
    work.mkdir()
    root = work / "toy"
    make_toy_dataset(root, ToyConfig(num_videos=8, seed=0, min_frames=30, max_frames=40), progress=False)
    images = [p for v in sorted((root / "rgb-images").glob("*/*")) for p in sorted(v.glob("*.jpg"))]
    out = work / f"frames{frames}"
    out.mkdir()
    for i in range(frames):
        (out / f"{i + 1:05d}.jpg").write_bytes(images[i % len(images)].read_bytes())
    return out


def models(work, sizes):
    out = {}
    for size in sizes:
        for streams, kwargs in STREAMS.items():
            torch.manual_seed(0)
            model = build_model(ModelConfig(num_classes=5, width_mult=SIZES[size], **kwargs)).eval()
            path = work / f"{size}_{streams}.pth"
            save_checkpoint(path, model, classes=["Walking", "Jumping", "Waving", "Spinning"],
                            flags={"input_type_base": "rgb", "input_type_extra": "fastOF"})
            tick = time.perf_counter()
            subprocess.run([sys.executable, "export.py", "--weights", str(path), "--out", str(path.with_suffix(".onnx"))],
                           cwd=ROOT, check=True, capture_output=True)
            print(f"exported {path.stem} in {time.perf_counter() - tick:.0f} s", flush=True)
            out[size, streams] = (model, path)
    return out


def end_to_end(path, backend, folder, frames, work):
    weights = ["--onnx", str(path.with_suffix(".onnx"))] if backend.startswith("onnx") else ["--weights", str(path)]
    before = load()
    tick = time.perf_counter()
    subprocess.run([sys.executable, "demo.py", "--video", str(folder), "--out", str(work / "out.mp4"), "--device", "cpu",
                    *weights, *BACKENDS[backend]], cwd=ROOT, check=True, capture_output=True)
    return frames / (time.perf_counter() - tick), f"{before} -> {load()}"


def per_window(fn, seconds=3.0):
    fn()
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 3:
        tick = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tick)
    return float(np.median(times))


def network_only(model, path, backend):
    cfg = model.cfg
    g = torch.Generator().manual_seed(0)
    inputs = {"base": torch.rand(1, 2, 3 * cfg.input_frames_base, 300, 300, generator=g) * 200 - 100}
    if cfg.two_stream:
        inputs["extra"] = torch.rand(1, 2, 3 * cfg.input_frames_extra, 300, 300, generator=g) * 200 - 100
    runner = OnnxDetector(path.with_suffix(".onnx")) if backend.startswith("onnx") else model
    if backend.endswith("+cache"):
        cache, step = FeatureMapCache(runner), [0]

        def run():  # windows (t, t+2), (t+2, t+4), ...: one new time step per window
            keys = [[step[0], step[0] + 2]]
            cache.outputs(inputs, keys)
            cache.keep(keys[0])
            step[0] += 2
    elif backend == "onnx":
        run = lambda: runner.decoded(inputs["base"], inputs.get("extra"))
    else:
        run = lambda: model(inputs["base"], inputs.get("extra"))
    before = load()
    with torch.no_grad():
        seconds = per_window(run)
    return 2 / seconds, f"{before} -> {load()}"


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1200, help="frames of the end-to-end run, toy-size model")
    parser.add_argument("--full_frames", type=int, default=60, help="frames of the end-to-end run, full-size model")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    rows = []
    print(f"torch threads {torch.get_num_threads()}, CPUs {os.cpu_count()}, {cv2.__version__=}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folders = {n: frame_folder(work / str(n), n) for n in {args.frames, args.full_frames}}
        for (size, streams), (model, path) in models(work, args.sizes).items():
            frames = args.frames if size == "toy" else args.full_frames
            for backend in BACKENDS:
                net, net_load = network_only(model, path, backend)
                e2e, e2e_load = end_to_end(path, backend, folders[frames], frames, work)
                rows.append(dict(size=size, streams=streams, backend=backend, frames=frames, end_to_end_fps=e2e,
                                 end_to_end_load=e2e_load, network_fps=net, network_load=net_load))
                print(f"| {size} | {streams} | {backend} | {frames} | {e2e:.1f} | {e2e_load} | {net:.1f} | {net_load} |",
                      flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
