"""Benchmark of late fusion (build_tubes.py --late_fusion) against one stream, over the UCF101-24 test split.

Two streams of ``bench_tubes.synth_video`` detections (independent draws: other boxes and scores, the
same number of boxes per frame, so mean fusion can pair them row by row) with the real frame counts of
the test videos, in the npz format test.py writes. Times the whole tube building (read, fuse, link,
trim, frame-AP matching in ``--workers`` processes, then the evaluation) of the base stream alone and
of each fusion, and prints the ratio to one stream (the issue's goal: at most 2).

python -m bench.bench_fusion [--videos 910] [--boxes 300] [--workers 2] [--fusions boost,union,mean] [--work DIR]
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.bench_tubes import SHARED, synth_video
from data.annotations import load_pyannot, read_video_list
from tubes import runner as tr
from tubes.detections import write_video_detections
from tubes.video_map import gt_from_annotation


def write_stream(folder, names, annots, boxes, seed):
    rng = np.random.default_rng(seed)
    for name in names:
        loc, scores = synth_video(annots[name], 24, boxes, rng)
        n = annots[name].num_frames
        write_video_detections(folder / f"{name}.npz", np.arange(n)[:, None], loc.reshape(-1, 1, 4),
                               scores.reshape(-1, 25), np.repeat(np.arange(n), boxes), n)


def run(cfg, annots, names):
    """Wall seconds of build_all + evaluate, the summed CPU seconds per stage and the results."""
    gts = [gt_from_annotation(annots[v]) for v in names]
    t = time.perf_counter()
    tubes, frame_aps, cpu, failed = tr.build_all(cfg, names, 24, gts)
    assert not failed, failed
    by_alpha = {a: {v: tubes[v][a] for v in names} for a in cfg.alphas}
    results, _ = tr.evaluate(annots, names, by_alpha, 24, tr.class_names_from(annots, 24), frame_aps)
    return time.perf_counter() - t, cpu, results


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=910)
    p.add_argument("--boxes", type=int, default=300, help="boxes per frame in each stream")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--fusions", default="boost,union,mean")
    p.add_argument("--work", type=Path, default=None)
    return p


def main():
    args = get_args_parser().parse_args()
    annots = load_pyannot(SHARED / "pyannot.pkl")
    names = read_video_list(SHARED / "testlist01.txt")[:args.videos]
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_fusion_"))
    t = time.perf_counter()
    for stream, seed in (("rgb", 0), ("flow", 1)):
        write_stream(work / stream, names, annots, args.boxes, seed)
    frames = sum(annots[n].num_frames for n in names)
    print(f"two streams of synthetic detections, {len(names)} videos, {frames} frames, {args.boxes} boxes per frame "
          f"each: {time.perf_counter() - t:.1f}s (not timed below)")
    # a first tiny run compiles the numba functions (cached on disk) outside the timings
    for fusion in [None] + args.fusions.split(","):
        cfg = tr.TubeConfig(work / "rgb", "npz", (3.0, 5.0), fuse_det_dir=fusion and work / "flow", fusion=fusion)
        run(cfg, annots, names[:1])
    rows = []
    for fusion in [None] + args.fusions.split(","):
        cfg = tr.TubeConfig(work / "rgb", "npz", (3.0, 5.0), workers=args.workers, fuse_det_dir=fusion and work / "flow",
                            fusion=fusion)
        wall, cpu, results = run(cfg, annots, names)
        rows.append((fusion or "one stream (rgb)", wall, cpu, results))
    base = rows[0][1]
    print(f"| tube building | wall s | ms/frame | x one stream | read cpu s | fuse+link+filter cpu s | trim cpu s "
          f"| video-mAP@0.5 (alpha 3) |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, wall, cpu, results in rows:
        v = next(r["mAP"] for r in results["video_map"] if r["alpha"] == 3 and r["iou"] == 0.5)
        print(f"| {name} | {wall:.2f} | {1000 * wall / frames:.3f} | {wall / base:.2f} | {cpu['read']:.2f} | "
              f"{cpu['link+filter']:.2f} | {cpu['trim']:.2f} | {100 * v:.2f} |")


if __name__ == "__main__":
    main()
