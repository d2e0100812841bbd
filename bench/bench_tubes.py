"""Benchmark of tube building at UCF101-24 test-split scale, stage by stage.

Synthetic detections with the real frame counts of the test videos (data/ucf24),
C classes, ``--boxes`` boxes per frame around the ground-truth actors and clutter
(realistic overlap: several jittered boxes per actor), softmax-like scores peaked on
the video's class. Writes them in the npz format (and road_mat for ``--road_mat_videos``
videos, which are also timed), then times reading, linking + trimming, frame-AP
filtering, matching and the evaluation separately, and the whole run (build_tubes.py's) with ``--workers``.

On a machine shared with other jobs the wall times mean little; the CPU times do: the workers'
(``getrusage`` of the finished child processes), the main process's while they run, and the
evaluation's after them, which give the wall time on an idle machine with ``--workers`` cores:
(workers + main) / workers + evaluation.

python -m bench.bench_tubes [--videos 910] [--workers 2] [--boxes 40] [--work DIR] [--format npz|road_mat]
"""
import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from data.annotations import load_pyannot, read_video_list
from tubes import runner as tr
from tubes.detections import write_road_mat_frame, write_video_detections
from tubes.results_table import table
from data.layout import UCF24_ANNOT_DIR

SHARED = UCF24_ANNOT_DIR  # the shipped UCF101-24 annotations


def synth_video(video, num_classes, boxes_per_frame, rng, sharpness=1.0):
    """One window per frame (T = 1): boxes near the GT boxes, clutter elsewhere.

    ``sharpness`` scales the logits: 1 is cluttered (every class keeps ~10 boxes per frame after
    the linking's filtering), 5 is clean (most class scores fall below its 0.001 threshold).
    """
    n = video.num_frames
    actors = [t for t in video.tubes]
    loc = np.zeros((n, boxes_per_frame, 4), np.float32)
    for f in range(n):
        anchors = [t.boxes[f - t.start] for t in actors if t.start <= f < t.end] or [np.array([100, 60, 180, 200])]
        k_actor = boxes_per_frame // 2
        centre = np.array([anchors[i % len(anchors)] for i in range(k_actor)], np.float64)
        clutter = rng.uniform([0, 0, 0, 0], [240, 160, 80, 80], (boxes_per_frame - k_actor, 4))
        clutter[:, 2:] += clutter[:, :2] + 20
        b = np.concatenate([centre + rng.normal(0, 8, centre.shape), clutter])
        loc[f] = b / [320, 240, 320, 240]
    logits = rng.normal(0, 2.0, (n, boxes_per_frame, num_classes + 1))
    logits[:, : boxes_per_frame // 2, video.class_id + 1] += 4.0
    logits[:, boxes_per_frame // 2:, 0] += 3.0
    logits *= sharpness
    e = np.exp(logits - logits.max(-1, keepdims=True))
    scores = (e / e.sum(-1, keepdims=True)).astype(np.float32)
    return loc, scores


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=910)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--boxes", type=int, default=40)
    p.add_argument("--road_mat_videos", type=int, default=20)
    p.add_argument("--work", type=Path, default=None)
    p.add_argument("--format", default="npz", choices=["npz", "road_mat"],
                   help="detections the whole run reads (road_mat: written for every video)")
    return p


def main():
    args = get_args_parser().parse_args()
    if args.format == "road_mat":
        args.road_mat_videos = args.videos
    annots = load_pyannot(SHARED / "pyannot.pkl")
    names = read_video_list(SHARED / "testlist01.txt")[:args.videos]
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_tubes_"))
    t0 = time.perf_counter()
    made = work / "detections.json"  # what the detections in WORK were drawn with: the same are not drawn again
    drawn = {"videos": args.videos, "boxes": args.boxes, "road_mat_videos": args.road_mat_videos}
    if not made.is_file() or json.loads(made.read_text()) != drawn:
        made.unlink(missing_ok=True)
        rng = np.random.default_rng(0)
        for i, name in enumerate(names):
            loc, scores = synth_video(annots[name], 24, args.boxes, rng)
            n = annots[name].num_frames
            write_video_detections(work / "npz" / f"{name}.npz", np.arange(n)[:, None], loc.reshape(-1, 1, 4),
                                   scores.reshape(-1, 25), np.repeat(np.arange(n), args.boxes), n)
            if i < args.road_mat_videos:
                for f in range(n):
                    write_road_mat_frame(work / "road_mat" / name / f"{f + 1:05d}.mat", loc[f], scores[f])
        made.write_text(json.dumps(drawn))
    frames = sum(annots[n].num_frames for n in names)
    print(f"synthetic detections for {len(names)} videos, {frames} frames, {args.boxes} boxes/frame: "
          f"{time.perf_counter() - t0:.1f}s (not timed below; kept in {work} for the next run with --work)")
    rows = []
    for fmt, vids in (("road_mat", names[:args.road_mat_videos]), ("npz", names)):
        cfg = tr.TubeConfig(work / fmt, fmt, (3.0, 5.0), workers=1)
        t = time.process_time()
        for v in vids:
            tr.read_frames(cfg, v)
        nf = sum(annots[v].num_frames for v in vids)
        rows.append((f"read {fmt} (cpu)", time.process_time() - t, nf))
    cfg = tr.TubeConfig(work / args.format, args.format, (3.0, 5.0), workers=args.workers)
    class_names = tr.class_names_from(annots, 24)
    t, main_cpu, children = time.perf_counter(), time.process_time(), _children_cpu()
    # build_tubes.py's run: workers read, link, trim and match each video; the main process writes its tubes
    results, run = tr.build_and_evaluate(cfg, annots, names, 24, class_names, work / "tubes")
    wall = time.perf_counter() - t
    main_cpu, workers_cpu = time.process_time() - main_cpu, _children_cpu() - children
    for k, v in run.times.items():
        rows.append((f"{k} (cpu, summed over workers)", v, frames))
    if args.workers > 1:
        rows.append(("workers' cpu (getrusage of the finished workers)", workers_cpu, frames))
    rows.append(("main process cpu while the workers run (their results, the tube files)",
                 main_cpu - run.evaluation_cpu, frames))
    rows.append(("evaluation after the last video (main process cpu: ranking, AP)", run.evaluation_cpu, frames))
    rows.append((f"total wall (detections -> results table and tube files), {args.workers} workers", wall, frames))
    if args.workers > 1:
        rows.append((f"idle {args.workers}-core wall from the cpu times: (workers + main) / {args.workers} + evaluation",
                     (workers_cpu + main_cpu - run.evaluation_cpu) / args.workers + run.evaluation_cpu, frames))
    print("| stage | seconds | frames | ms/frame |\n|---|---|---|---|")
    for name, s, nf in rows:
        print(f"| {name} | {s:.2f} | {nf} | {1000 * s / nf:.3f} |")
    print(table(results))


def _children_cpu():
    """User + system CPU seconds of this process's finished children (the pool's workers, once it is shut)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
