"""Tubes + ground truth -> video-mAP table (get_PR_curve.m) and precision/recall plots.

python eval_video_ap.py --tubes OUT/tubes_alpha3.npz [OUT/tubes_alpha5.npz ...] --annot finalAnnots.mat|pyannot.pkl|ucf24
    [--video_list FILE] [--classes FILE] [--num_classes C] --out_dir DIR
Evaluates the videos stored in the tube files (or --video_list); writes DIR/results.json
and DIR/pr_alpha<a>_iou<t>.png for IoU 0.2, 0.5 and 0.75.
"""
import argparse
from pathlib import Path

from data.annotations import read_video_list
from tubes import runner as tr
from tubes.ap import plot_pr_curves
from tubes.cli import annotation_args, class_args
from tubes.tube_files import load_tubes

PLOT_IOUS = (0.2, 0.5, 0.75)


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], parents=[annotation_args(), class_args(num_classes=True)])
    p.add_argument("--tubes", required=True, nargs="+", type=Path, help="tube files written by build_tubes.py")
    p.add_argument("--out_dir", required=True, type=Path)
    return p


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    annotations = tr.load_annotations(args.annot)
    loaded = dict(load_tubes(path) for path in args.tubes)
    first = next(iter(loaded.values()))
    videos = tr.check_videos(read_video_list(args.video_list) if args.video_list else list(first), annotations,
                             args.annot, args.video_list or args.tubes[0])
    num_classes = args.num_classes or max(v.class_id for v in annotations.values()) + 1
    names = tr.class_names_from(annotations, num_classes, args.classes)
    results, curves = tr.evaluate(annotations, videos, loaded, num_classes, names)
    tr.write_json(tr.results_path(args.out_dir), results)
    for alpha, per_iou in curves.items():
        for res in per_iou:
            if any(abs(res.iou - t) < 1e-9 for t in PLOT_IOUS):
                plot_pr_curves(args.out_dir / f"pr_alpha{alpha:g}_iou{res.iou:g}.png", res, names,
                               f"alpha {alpha:g}, ST-IoU > {res.iou:g}")
    print(tr.table(results))
    return results


if __name__ == "__main__":
    main()
