"""Detections -> linked, trimmed action tubes -> video-mAP and frame-mAP (ROAD's online-tubes, in Python).

python build_tubes.py --det_dir DIR --annot finalAnnots.mat|pyannot.pkl|ucf24 --out_dir OUT
    [--video_list FILE] [--det_format road_mat|npz] [--alphas 3,5] [--link_iou 0.1]
    [--jumpgap 3] [--link frame|micro] [--workers N] [--classes FILE] [--protocol road|act|road,act]
    [--fuse_det_dir FLOW_DIR --late_fusion boost|union|mean [--fuse_iou 0.25] [--fuse_fixed]]
Writes OUT/tubes_alpha<a>.npz, OUT/results.json and prints the results table.
"""
import argparse
import logging
import time

from tubes import runner as tr
from tubes.cli import annotation_args, build_args, class_args, protocol_args, tube_args, tube_config, with_protocols
from tubes.protocols import PROTOCOLS
from tubes.results_table import table
from utils.errors import exits_on_input_errors
from utils.version import add_version_flag

log = logging.getLogger("build_tubes")


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     parents=[annotation_args(), class_args(), tube_args(), build_args(), protocol_args()],
                                     epilog="without --video_list: the videos of the test split (testlist01.txt beside "
                                            "--annot), each one: a video without detections counts as one with none")
    return add_version_flag(parser)


@exits_on_input_errors(get_args_parser)
def main(argv=None):
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    cfg = with_protocols(tube_config(args), args)
    t0 = time.perf_counter()
    annotations = tr.load_annotations(args.annot)
    videos = tr.resolve_videos(cfg, annotations, args.annot, args.video_list)
    num_classes = tr.num_classes_of(cfg, videos, annotations)
    names = tr.class_names_from(annotations, num_classes, args.classes)
    t1 = time.perf_counter()
    # each video's tubes go to the tube files as they come; only their matching is kept for the evaluation
    results, run = tr.build_and_evaluate(cfg, annotations, videos, num_classes, names, args.out_dir, not args.no_frame_map)
    times, videos_wall = run.times, time.perf_counter() - t1 - run.evaluation
    results["timing_s"] = {"annotations": t1 - t0, "videos_wall": videos_wall, **{f"{k}_cpu": v for k, v in times.items()},
                           "evaluation": run.evaluation}
    results["failed_videos"] = run.failed
    results["videos_without_detections"] = tr.videos_without_detections(cfg, videos, run.failed)
    results["linking"] = cfg.linking()
    if cfg.fusion:
        results["fusion"] = tr.fusion_summary(cfg)
        for key in (PROTOCOLS[p].frame_key for p in cfg.protocols if PROTOCOLS[p].frame_key in results):
            results[key]["detections"] = "fused (the linking's input: top 10 per class and frame)"
    tr.write_json(tr.results_path(args.out_dir), results)
    print(table(results))
    print(f"{len(videos)} videos, {cfg.link}-level linking; time: annotations {t1 - t0:.2f}s, read+link+trim+match "
          f"{videos_wall:.2f}s (cpu: " + ", ".join(f"{k} {v:.2f}s" for k, v in times.items())
          + f"), evaluation {run.evaluation:.2f}s")
    if line := tr.without_detections_line(results, len(videos), tr.results_path(args.out_dir)):
        print(line)
    return results


if __name__ == "__main__":
    main()
