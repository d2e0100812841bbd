"""The whole chain on a dataset in the UCF24 layout (the toy set by default).

  python pipeline.py [--data_root DIR] [--work_dir runs/pipeline]

Stages: make the toy dataset when no --data_root is given (reused when already
complete), then check the dataset: annotations load, every annotated frame exists,
and the splits name annotated videos.
"""
import argparse
import logging
import sys
from pathlib import Path

from data import layout
from data.annotations import load_class_names, load_pyannot, read_video_list
from data.toy import ToyConfig, make_toy_dataset


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_root", default=None, help="dataset in the UCF24 layout (default: make the toy set)")
    parser.add_argument("--work_dir", default="runs/pipeline", help="where the toy data and all outputs go")
    parser.add_argument("--seed", type=int, default=0, help="toy dataset seed")
    parser.add_argument("--toy_videos", type=int, default=ToyConfig.num_videos)
    return parser


def check_dataset(root, input_types=("rgb",)):
    """Load the annotations and confirm every frame of every video exists. Returns a summary dict."""
    classes = load_class_names(root)
    videos = load_pyannot(layout.split_path(root, layout.ANNOT_FILE), num_classes=len(classes))
    test = read_video_list(layout.split_path(root, layout.split_list_name("test", 1)))
    unknown = [v for v in test if v not in videos]
    if unknown:
        raise ValueError(f"{root}: test list names videos without annotations: {unknown[:5]}")
    missing = []
    for name, video in videos.items():
        for input_type in input_types:
            last = layout.frame_path(root, input_type, name, video.num_frames - 1)
            if not last.is_file():
                missing.append(str(last))
    if missing:
        raise FileNotFoundError(f"{len(missing)} videos lack frames, e.g. {missing[0]}")
    return {"classes": classes, "videos": len(videos), "test_videos": len(test),
            "frames": sum(v.num_frames for v in videos.values()), "tubes": sum(len(v.tubes) for v in videos.values())}


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    work = Path(args.work_dir).expanduser()
    root = Path(args.data_root).expanduser() if args.data_root else work / "toy_data"
    input_types = ("rgb",)
    if args.data_root is None:
        input_types = ("rgb", "fastOF")
        if layout.split_path(root, layout.ANNOT_FILE).is_file():
            logging.info("toy dataset already in %s", root)
        else:
            logging.info("stage 1/1: rendering the toy dataset into %s", root)
            make_toy_dataset(root, ToyConfig(num_videos=args.toy_videos, seed=args.seed))
    summary = check_dataset(root, input_types)
    logging.info("dataset %s: %d classes (%s), %d videos (%d test), %d frames, %d tubes", root,
                 len(summary["classes"]), ", ".join(summary["classes"]), summary["videos"],
                 summary["test_videos"], summary["frames"], summary["tubes"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
