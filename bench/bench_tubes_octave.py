"""The original Matlab tube building (under GNU Octave) against ours, on the same detections.

Writes bench_tubes.py's synthetic detections (real frame counts, 24 classes, ``--boxes``
boxes per frame) for the first ``--videos`` videos of the UCF101-24 test split in the
road_mat layout, runs the ORIGINAL online-tubes code (gurkirt/realtime-action-detection,
through tools/octave/reference.m, which times each stage with tic/toc) and then ours on
the same files, stage by stage, in one process (Octave runs on one core). Prints both
tables' numbers and checks that the results agree (video-mAP per alpha and threshold,
frame-mAP). Needs ``octave-cli`` and a local copy of the original repository; the test
suite does not.

python -m bench.bench_tubes_octave [--videos 10] [--boxes 40] [--sharpness 1] [--src BARE_GIT_DIR] [--work DIR]
"""
import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.io

from bench.bench_tubes import SHARED, synth_video
from tools.octave.make_fixtures import MIRROR, run_reference
from data.annotations import load_pyannot, read_video_list
from tubes import runner as tr
from tubes.detections import write_road_mat_frame
from tubes.frame_map import frame_map_of
from tubes.linking import FRAME_AP_FILTER, link_frames
from tubes.trimming import trim_video
from tubes.video_map import VIDEO_IOU_THRESHOLDS, gt_from_annotation, video_ap


def write_inputs(work, names, annots, class_names, boxes, sharpness, alphas):
    rng = np.random.default_rng(0)
    for name in names:
        loc, scores = synth_video(annots[name], len(class_names), boxes, rng, sharpness)
        for f in range(len(loc)):
            write_road_mat_frame(work / "dets" / name / f"{f + 1:05d}.mat", loc[f], scores[f])
    (work / "videos.txt").write_text("\n".join(names) + "\n")
    scipy.io.savemat(work / "config.mat", {"actions": np.array(class_names, dtype=object), "iou_thresh": 0.1,
                                           "alphas": np.array(alphas, np.float64)})
    shutil.copy(SHARED / "finalAnnots.mat", work / "finalAnnots.mat")


def run_ours(work, names, annots, num_classes, alphas):
    """Our stages on the road_mat files, one process; wall seconds per stage and the results."""
    cfg = tr.TubeConfig(work / "dets", "road_mat", alphas)
    times = dict.fromkeys(("read", "link", "trim", "video_ap", "frame_ap"), 0.0)
    tubes, frame_dets = {}, {}
    for v in names:
        t0 = time.perf_counter()
        frames, size = tr.read_frames(cfg, v)
        t1 = time.perf_counter()
        paths, frame_dets[v] = link_frames(frames, num_classes, size, cfg.iou_thresh, cfg.jumpgap, FRAME_AP_FILTER)
        t2 = time.perf_counter()
        tubes[v] = trim_video(paths, alphas)
        t3 = time.perf_counter()
        times["read"] += t1 - t0
        times["link"] += t2 - t1
        times["trim"] += t3 - t2
    gts = [gt_from_annotation(annots[v]) for v in names]
    t0 = time.perf_counter()
    maps = {a: video_ap(gts, {v: tubes[v][a] for v in names}, num_classes, VIDEO_IOU_THRESHOLDS) for a in alphas}
    t1 = time.perf_counter()
    fmap = frame_map_of(gts, frame_dets, num_classes)[0]
    times["video_ap"], times["frame_ap"] = t1 - t0, time.perf_counter() - t1
    return times, maps, fmap


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=10)
    p.add_argument("--boxes", type=int, default=40)
    p.add_argument("--sharpness", type=float, default=1.0, help="logit scale: 1 cluttered, 5 clean (bench_tubes.synth_video)")
    p.add_argument("--src", default=str(MIRROR), help="bare git repository of gurkirt/realtime-action-detection")
    p.add_argument("--work", type=Path, default=None, help="kept afterwards (default: a temporary folder)")
    return p


def main():
    args = get_args_parser().parse_args()
    alphas = (3.0, 5.0)
    annots = load_pyannot(SHARED / "pyannot.pkl")
    names = read_video_list(SHARED / "testlist01.txt")[:args.videos]
    class_names = tr.class_names_from(annots, 24)
    frames = sum(annots[n].num_frames for n in names)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        work = args.work or tmp / "work"
        if (work / "timing.mat").is_file():
            print(f"reusing the original's run in {work}")
        else:
            work.mkdir(parents=True)
            write_inputs(work, names, annots, class_names, args.boxes, args.sharpness, alphas)
            print(f"{len(names)} videos, {frames} frames, {args.boxes} boxes per frame; running the original under "
                  "Octave", flush=True)
            t0 = time.perf_counter()
            run_reference(args.src, tmp, work)
            (work / "octave_total_s.txt").write_text(f"{time.perf_counter() - t0}\n")
        octave_total = float((work / "octave_total_s.txt").read_text())
        ref = scipy.io.loadmat(work / "timing.mat", squeeze_me=True)
        rows = scipy.io.loadmat(work / "results.mat")["results"]
        ref_fmap = float(scipy.io.loadmat(work / "frameap.mat")["mAP"].squeeze())
        run_ours(work, names[:1], annots, 24, alphas)  # warm-up: numba's one-off loading, not timed
        ours, maps, fmap = run_ours(work, names, annots, 24, alphas)
    diff = max(max(abs(r.mAP - ref[2]), abs(r.mean_iou - ref[3]), abs(r.accuracy - ref[4]))
               for i, a in enumerate(alphas) for k, r in enumerate(maps[a])
               for ref in [rows[i * len(VIDEO_IOU_THRESHOLDS) + k]])
    n_pr = np.size(ref["pr"])
    table = [
        ("read + filter + link + gap filling (actionPaths.m; ours: also the frame-AP filtering)",
         ref["paths"], ours["read"] + ours["link"]),
        ("  of which ours: reading the .mat files", np.nan, ours["read"]),
        ("  of which ours: filter + link + gap filling", np.nan, ours["link"]),
        (f"trimming, {len(alphas)} alphas (PARactionPathSmoother.m + convert2eval.m)",
         ref["read_paths"] + np.sum(ref["smooth"]) + np.sum(ref["convert"]), ours["trim"]),
        (f"video-mAP, per threshold (get_PR_curve.m, {n_pr} calls)", np.mean(ref["pr"]), ours["video_ap"] / n_pr),
        ("frame-mAP (frameAp.m: reads, filters and evaluates; ours: evaluation only)", ref["frameap"], ours["frame_ap"]),
        ("total", octave_total, sum(ours.values())),
    ]
    print(f"| stage | Octave s | Octave ms/frame | ours s | ours ms/frame | speed-up |\n|---|---:|---:|---:|---:|---:|")
    for name, o, u in table:
        octave = f"{o:.2f} | {1000 * o / frames:.2f} | " if np.isfinite(o) else " | | "
        print(f"| {name} | {octave}{u:.3f} | {1000 * u / frames:.3f} | " + (f"{o / u:.0f}x |" if np.isfinite(o) else " |"))
    print(f"largest difference of video-mAP, mean IoU, accuracy over {len(alphas)} alphas x {len(VIDEO_IOU_THRESHOLDS)} "
          f"thresholds: {diff:.2e}; frame-mAP {100 * fmap:.4f}% (ours), difference {abs(fmap - ref_fmap):.2e}")


if __name__ == "__main__":
    main()
