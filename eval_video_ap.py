"""Tubes + ground truth -> video-mAP table (get_PR_curve.m or ACT.py) and precision/recall plots.

python eval_video_ap.py --tubes OUT/tubes_alpha3.npz [OUT/tubes_alpha5.npz ...] --annot finalAnnots.mat|pyannot.pkl|GT.pkl|ucf24
    [--protocol road|act|road,act] [--video_list FILE] [--classes FILE] [--num_classes C] [--strict] --out_dir DIR
Tube files: build_tubes.py's .npz, a .mat with convert2eval.m's xmldata, or a folder of ACT/MOC
<Class>/<video>_tubes.pkl. Evaluates --video_list, else the test split (testlist01.txt beside --annot,
or an ACT ground-truth file's), else the videos of the first tube file; a video that a tube file lacks
counts as one without tubes (listed in results.json 'videos_without_tubes'; --strict refuses);
writes DIR/results.json, DIR/pr_[act_]alpha<a>_iou<t>.png for IoU 0.2, 0.5 and 0.75 and
DIR/map_vs_iou.png (video-mAP against the ST-IoU threshold).
"""
import argparse
import logging
from pathlib import Path

from tubes import runner as tr
from tubes.ap import plot_map_vs_iou, plot_pr_curves
from tubes.cli import annotation_args, class_args, protocol_args, strict_args
from tubes.protocols import PROTOCOLS
from tubes.results_table import table
from utils.errors import exits_on_input_errors
from utils.version import add_version_flag

PLOT_IOUS = (0.2, 0.5, 0.75)


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                parents=[annotation_args(), class_args(num_classes=True), protocol_args(), strict_args()])
    p.add_argument("--tubes", required=True, nargs="+", type=Path,
                   help="tube files: build_tubes.py's .npz, .mat with xmldata, or folders of ACT/MOC tube pickles")
    p.add_argument("--out_dir", required=True, type=Path)
    return add_version_flag(p)


@exits_on_input_errors(get_args_parser)
def main(argv=None):
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    annotations, loaded, videos, num_classes, names, lacking = tr.evaluation_inputs(
        args.annot, args.tubes, args.video_list, args.num_classes, args.classes, args.strict)
    results, curves = tr.evaluate(annotations, videos, loaded, num_classes, names, protocols=args.protocol)
    results["videos_without_tubes"] = {str(path): lacking.get(str(path), []) for path in args.tubes}
    tr.write_json(tr.results_path(args.out_dir), results)
    for name, by_alpha in curves.items():
        protocol = PROTOCOLS[name]
        for alpha, per_iou in by_alpha.items():
            for res in per_iou:
                if any(abs(res.iou - t) < 1e-9 for t in PLOT_IOUS):
                    plot_pr_curves(args.out_dir / f"pr_{protocol.file_prefix}alpha{tr.alpha_label(alpha)}_iou{res.iou:g}.png",
                                   res, names, f"{name} protocol, alpha {tr.alpha_label(alpha)}, ST-IoU {protocol.match} {res.iou:g}")
    plot_map_vs_iou(args.out_dir / "map_vs_iou.png", {p: results[PROTOCOLS[p].video_key] for p in args.protocol},
                    {p: PROTOCOLS[p].line_style for p in args.protocol})
    print(table(results))
    return results


if __name__ == "__main__":
    main()
