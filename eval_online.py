"""Online evaluation (ROAD, ICCV 2017): early label accuracy and video-mAP against the fraction of each video observed.

python eval_online.py --det_dir DIR --annot finalAnnots.mat|pyannot.pkl|GT.pkl|ucf24 --out_dir OUT
    [--fractions 0.1,0.2,...,1] [--online_ious 0.2,0.5,0.75] [--early_label live|all] [--protocol road|act|road,act]
    [build_tubes.py's detection, linking and trimming flags]
Writes OUT/online.json, OUT/online_accuracy.png and OUT/online_map.png and prints both curves.
"""
import argparse
import logging

from tubes import online_eval as oe
from tubes import runner as tr
from tubes.cli import annotation_args, build_args, class_args, protocol_args, tube_args, tube_config, with_protocols
from utils.errors import exits_on_input_errors
from utils.version import add_version_flag


def fraction_list(text: str) -> tuple:
    try:
        values = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if any(not 0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected numbers in (0, 1], got {text!r}")
    return values


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                parents=[annotation_args(), class_args(), tube_args(), build_args(), protocol_args()],
                                epilog="build_tubes.py's flags, so the tubes are the same (--link micro too); "
                                       "frame-mAP's (--no_frame_map, --frame_ap_any_class) have no effect here, "
                                       "late fusion is refused")
    group = p.add_argument_group("online evaluation")
    group.add_argument("--fractions", default=oe.FRACTIONS, type=fraction_list, help="fractions of each video observed")
    group.add_argument("--online_ious", default=oe.ONLINE_IOUS, type=fraction_list, help="ST-IoU thresholds of the video-mAP curves")
    group.add_argument("--early_label", default="live", choices=oe.EARLY_LABELS, type=str.lower,
                       help="a video's label at a fraction: the class of its best live path (live; no live path is "
                            "wrong) or of its best path so far, ended ones included (all)")
    return add_version_flag(p)


@exits_on_input_errors(get_args_parser)
def main(argv=None):
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    cfg = with_protocols(tube_config(args), args)
    if cfg.fusion and not cfg.prefused:  # test.py --fuse_weights's mean/ folder is linked as one stream
        raise SystemExit("eval_online.py links one stream's detections: late fusion of two is build_tubes.py's")
    annotations = tr.load_annotations(args.annot)
    videos = tr.resolve_videos(cfg, annotations, args.annot, args.video_list)
    num_classes = tr.num_classes_of(cfg, videos, annotations)
    names = tr.class_names_from(annotations, num_classes, args.classes)
    results = oe.online_curves(cfg, annotations, videos, num_classes, names, args.fractions, args.online_ious,
                               args.early_label)
    oe.write_online(args.out_dir, results)
    print(oe.table(results))
    if line := tr.without_detections_line(results, len(videos), args.out_dir / oe.ONLINE_FILE):
        print(line)
    return results


if __name__ == "__main__":
    main()
