"""Benchmark: what running the network on every k-th frame costs in accuracy and gains in speed.

For k = 1, 2, 4 (test.py / demo.py ``--eval_gaps k - 1``: micro-tubes (t, t + k), one every k
frames) on a dataset in the layout with a trained checkpoint (the pipeline's: ``WORK/toy_data``
and ``WORK/train/.../AMTNet_<n>.pth``):

- test.py's detections of the test split, then build_tubes.py with frame-level linking (ROAD's, on
  the per-frame boxes test.py's files give, interpolated between a micro-tube's frames) and with
  micro-tube linking (``--link micro``): video-mAP at 0.2 and 0.5 (alpha 3), accuracy, frameAp.m's
  frame-mAP, and the linking's CPU seconds;
- demo.py end to end (a new process, as a user runs it, PyTorch) on a folder of ``--frames`` frames cycled
  from the test videos: frames per second, with each linking.

    .venv/bin/python -m bench.bench_micro --data_root WORK/toy_data --weights WORK/train/rgb_w0.125/AMTNet_366.pth
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

from data import layout
from data.annotations import read_video_list

ROOT = Path(__file__).resolve().parents[1]
GAPS = (1, 2, 4)
LINKS = ("frame", "micro")


def load():
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run(*argv):
    result = subprocess.run([sys.executable, *map(str, argv)], cwd=ROOT, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{' '.join(map(str, argv[:1]))} failed:\n{result.stderr[-3000:]}")
    return result


def frame_folder(data_root, videos, frames, out):
    images = [p for v in videos for p in sorted(layout.video_dir(data_root, "rgb", v).glob("*.jpg"))]
    out.mkdir()
    for i in range(frames):
        (out / f"{i + 1:05d}.jpg").write_bytes(images[i % len(images)].read_bytes())
    return out


def accuracy_rows(args, work, k):
    det_dir = work / f"det_k{k}"
    run("test.py", "--data_root", args.data_root, "--weights", args.weights, "--eval_gaps", k - 1, "--det_dir", det_dir,
        "--num_workers", "0")
    rows = []
    for link in LINKS:
        out = work / f"tubes_k{k}_{link}"
        run("build_tubes.py", "--det_dir", det_dir, "--det_format", "npz", "--out_dir", out, "--link", link,
            "--annot", layout.split_path(args.data_root, "pyannot.pkl"), "--alphas", "3",
            "--link_score", args.link_score)
        results = json.loads((out / "results.json").read_text())
        vmap = {r["iou"]: r for r in results["video_map"] if r["alpha"] == 3}
        rows.append(dict(k=k, link=link, vmap02=vmap[0.2]["mAP"], vmap05=vmap[0.5]["mAP"],
                         accuracy=vmap[0.2]["accuracy"], frame_map=results["frame_map_frameap"]["mAP"],
                         link_cpu_s=results["timing_s"]["link+filter_cpu"]))
    return rows


def demo_fps(args, folder, work, k, link):
    before = load()
    tick = time.perf_counter()
    run("demo.py", "--video", folder, "--weights", args.weights, "--out", work / "out.mp4", "--device", "cpu",
        "--eval_gaps", k - 1, "--link", link, "--link_score", args.link_score, "--backend", "torch")
    return args.frames / (time.perf_counter() - tick), f"{before} -> {load()}"


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_root", required=True, type=Path)
    parser.add_argument("--weights", required=True, type=Path)
    parser.add_argument("--frames", type=int, default=1200, help="frames of demo.py's end-to-end run")
    parser.add_argument("--link_score", default="0.1", help="build_tubes.py / demo.py --link_score (the toy recipe's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    rows = []
    print("| k | linking | v-mAP@0.2 | v-mAP@0.5 | accuracy | frame-mAP | linking CPU s | demo fps | load |")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        videos = read_video_list(layout.split_path(args.data_root, "testlist01.txt"))
        folder = frame_folder(args.data_root, videos, args.frames, work / "frames")
        for k in GAPS:
            for row in accuracy_rows(args, work, k):
                row["demo_fps"], row["demo_load"] = demo_fps(args, folder, work, k, row["link"])
                rows.append(row)
                print(f"| {k} | {row['link']} | {100 * row['vmap02']:.2f} | {100 * row['vmap05']:.2f} | "
                      f"{100 * row['accuracy']:.1f} | {100 * row['frame_map']:.2f} | {row['link_cpu_s']:.2f} | "
                      f"{row['demo_fps']:.1f} | {row['demo_load']} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
