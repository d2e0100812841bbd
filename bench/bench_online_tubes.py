"""Benchmark of the online linking (demo.py's OnlineTubes): cost per frame as a stream grows.

Feeds one long stream made of bench_tubes' synthetic detections of consecutive UCF101-24 test
videos (24 classes, ``--boxes`` per frame, cluttered) frame by frame to ``OnlineTubes`` and
times ``update`` and ``current`` (the live paths drawn on each frame) around the given frame
numbers; for comparison, also reading every class's live paths with ``linker.paths(c)`` (what
``current`` did before it kept running sums).

python -m bench.bench_online_tubes [--frames 3000] [--at 100,1000,3000] [--boxes 40]
"""
import argparse
import time

import numpy as np

from bench.bench_tubes import SHARED, synth_video
from data.annotations import load_pyannot, read_video_list
from tubes.linking import OnlineTubes


def stream(num_frames, boxes, rng):
    """Consecutive test videos' synthetic detections, cut to ``num_frames`` frames."""
    annots = load_pyannot(SHARED / "pyannot.pkl")
    locs, scores = [], []
    for name in read_video_list(SHARED / "testlist01.txt"):
        loc, sc = synth_video(annots[name], 24, boxes, rng)
        locs.append(loc)
        scores.append(sc)
        if sum(len(x) for x in locs) >= num_frames:
            break
    return np.concatenate(locs)[:num_frames], np.concatenate(scores)[:num_frames]


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=3000)
    p.add_argument("--at", default="100,1000,3000", help="frame numbers (1-based) to time around")
    p.add_argument("--boxes", type=int, default=40)
    p.add_argument("--repeat", type=int, default=5, help="frames timed around each point")
    return p


def main():
    args = get_args_parser().parse_args()
    at = sorted(int(a) for a in args.at.split(","))
    locs, scores = stream(max(args.frames, at[-1]), args.boxes, np.random.default_rng(0))
    tubes = OnlineTubes(24, (320, 240))
    times = {a: {"update": [], "current": [], "paths(c) for all classes": []} for a in at}
    for f in range(len(locs)):
        t0 = time.perf_counter()
        tubes.update(locs[f], scores[f])
        t1 = time.perf_counter()
        live = tubes.current()
        t2 = time.perf_counter()
        near = [a for a in at if a - args.repeat <= f + 1 <= a]
        if near:
            times[near[0]]["update"].append(t1 - t0)
            times[near[0]]["current"].append(t2 - t1)
            t3 = time.perf_counter()
            for c in range(24):
                tubes.linker.paths(c)
            times[near[0]]["paths(c) for all classes"].append(time.perf_counter() - t3)
    print(f"{len(locs)} frames, {args.boxes} boxes/frame, {len(live)} paths extended at the last frame")
    print("| frame | update ms | current ms | paths(c) for all classes ms |\n|---:|---:|---:|---:|")
    for a in at:
        m = {k: 1000 * np.median(v) for k, v in times[a].items()}
        print(f"| {a} | {m['update']:.2f} | {m['current']:.2f} | {m['paths(c) for all classes']:.1f} |")


if __name__ == "__main__":
    main()
