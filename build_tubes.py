"""Detections -> linked, trimmed action tubes -> video-mAP and frame-mAP (ROAD's online-tubes, in Python).

python build_tubes.py --det_dir DIR --annot finalAnnots.mat|pyannot.pkl|ucf24 --out_dir OUT
    [--video_list FILE] [--det_format road_mat|npz] [--alphas 3,5] [--iou_thresh 0.1]
    [--jumpgap 3] [--workers N] [--classes FILE]
Writes OUT/tubes_alpha<a>.npz, OUT/results.json and prints the results table.
"""
import argparse
import logging
import time
from pathlib import Path

from utils import tube_runner as tr
from utils.args import annotation_args, positive_int, tube_args

log = logging.getLogger("build_tubes")


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], parents=[annotation_args(), tube_args()],
                                epilog="without --video_list: the videos of the test split (testlist01.txt beside "
                                       "--annot) that have detections")
    p.add_argument("--det_dir", required=True, type=Path, help="detections: DIR/<Class>/<video>/00001.mat or DIR/<Class>/<video>.npz")
    p.add_argument("--out_dir", required=True, type=Path)
    p.add_argument("--det_format", default="road_mat", type=str.lower, choices=["road_mat", "npz"])
    p.add_argument("--iou_thresh", default=0.1, type=float, help="linking IoU threshold")
    p.add_argument("--jumpgap", default=3, type=positive_int, help="frames a path may go unmatched")
    p.add_argument("--workers", default=1, type=positive_int)
    p.add_argument("--no_frame_map", action="store_true", help="skip frame-mAP")
    p.add_argument("--strict", action="store_true",
                   help="stop at a video with unreadable or malformed detections (default: count it as a video "
                        "without detections, list it in results.json 'failed_videos' and go on)")
    p.add_argument("--frame_ap_any_class", action="store_true",
                   help="frameAp.m's matching: a detection may take a GT box of another class in a frame that has one "
                        "of its own (differs only where frames have GT of two classes; can give AP > 1)")
    return p


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    cfg = tr.TubeConfig(args.det_dir, args.det_format, args.alphas,
                        args.iou_thresh, args.jumpgap, workers=args.workers,
                        frame_ap_any_class=args.frame_ap_any_class, strict=args.strict)
    t0 = time.perf_counter()
    annotations = tr.load_annotations(args.annot)
    videos = tr.resolve_videos(cfg, annotations, args.annot, args.video_list)
    num_classes = tr.num_classes_of(cfg, videos, annotations)
    names = tr.class_names_from(annotations, num_classes, args.classes)
    t1 = time.perf_counter()
    gts = None if args.no_frame_map else [tr.gt_from_annotation(annotations[v]) for v in videos]
    tubes, frame_aps, times, failed = tr.build_all(cfg, videos, num_classes, gts)
    t2 = time.perf_counter()
    by_alpha = {a: {v: tubes[v][a] for v in videos} for a in cfg.alphas}
    results, _ = tr.evaluate(annotations, videos, by_alpha, num_classes, names, None if args.no_frame_map else frame_aps)
    t3 = time.perf_counter()
    for a in cfg.alphas:
        tr.save_tubes(args.out_dir / f"tubes_alpha{a:g}.npz", videos, tubes, a)
    results["timing_s"] = {"annotations": t1 - t0, "videos_wall": t2 - t1, **{f"{k}_cpu": v for k, v in times.items()},
                           "evaluation": t3 - t2}
    results["failed_videos"] = failed
    tr.write_json(args.out_dir / "results.json", results)
    print(tr.table(results))
    print(f"{len(videos)} videos; time: annotations {t1 - t0:.2f}s, read+link+trim {t2 - t1:.2f}s "
          f"(cpu: " + ", ".join(f"{k} {v:.2f}s" for k, v in times.items()) + f"), evaluation {t3 - t2:.2f}s")
    if failed:
        print(f"{len(failed)} videos counted as without detections, their detections unreadable (see "
              f"'failed_videos' in {args.out_dir / 'results.json'}): {', '.join(list(failed)[:3])}")
    return results


if __name__ == "__main__":
    main()
