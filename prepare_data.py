"""Make datasets in the UCF24 layout.

  python prepare_data.py toy --out DIR [--videos N --seed S]
      render the toy dataset (frames, fastOF flow, splitfiles/pyannot.pkl); DIR appears when complete
  python prepare_data.py tracks --out DIR [--videos N --seed S --annot PATH]
      render the tracks dataset: real UCF101-24 tube tracks, classes told apart by motion only; DIR appears when complete
  python prepare_data.py videos --videos_dir DIR --out DIR [--flow fastOF] [--workers N]
      frames + optical flow from your own videos (resumable; bad videos reported by name)
"""
import argparse
import logging
import sys
from pathlib import Path

from data.flow import FLOW_METHODS
from data.prepare import PrepareConfig, prepare_videos
from data.toy import EXTRA_TEST_VIDEOS, ToyConfig, make_toy_dataset
from data.toy_tracks import TracksConfig, make_tracks_dataset
from utils.errors import exits_on_input_errors
from utils.version import add_version_flag


def parse_size(text):
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 320x240, got {text!r}") from None
    return width, height


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    toy = commands.add_parser("toy", help="render the toy dataset")
    toy.add_argument("--out", default="runs/toy_data", help="dataset root to create")
    toy.add_argument("--videos", type=int, default=ToyConfig.num_videos, help="number of videos (spread over the classes)")
    toy.add_argument("--test_videos", type=int, default=EXTRA_TEST_VIDEOS,
                     help="more videos, all in the test split (the first --videos and their split stay the same)")
    toy.add_argument("--seed", type=int, default=ToyConfig.seed)
    toy.add_argument("--min_frames", type=int, default=ToyConfig.min_frames)
    toy.add_argument("--max_frames", type=int, default=ToyConfig.max_frames)
    toy.add_argument("--no_flow", action="store_true", help="skip the fastOF flow images")
    toy.add_argument("--frame_size", type=parse_size, default=ToyConfig.frame_size, help="WIDTHxHEIGHT (default 320x240)")
    tracks = commands.add_parser("tracks", help="render the tracks dataset (real tube tracks, classes by motion)")
    tracks.add_argument("--out", default="runs/tracks_data", help="dataset root to create")
    tracks.add_argument("--videos", type=int, default=TracksConfig.num_videos, help="number of videos (spread over the classes)")
    tracks.add_argument("--seed", type=int, default=TracksConfig.seed)
    tracks.add_argument("--max_frames", type=int, default=TracksConfig.max_frames, help="longest video")
    tracks.add_argument("--annot", default=None, help="pyannot.pkl whose tubes give the tracks (default: data/ucf24/pyannot.pkl)")
    tracks.add_argument("--workers", type=int, default=TracksConfig.workers, help="threads writing frames and flow")
    tracks.add_argument("--no_flow", action="store_true", help="skip the fastOF flow images")
    videos = commands.add_parser("videos", help="frames and flow from your own videos")
    videos.add_argument("--videos_dir", required=True, help="videos as <Class>/<video>.avi or <video>.mp4")
    videos.add_argument("--out", required=True, help="dataset root to fill")
    videos.add_argument("--flow", nargs="*", default=["fastOF"], choices=FLOW_METHODS,
                        help="flow types to compute (none: frames only)")
    videos.add_argument("--workers", type=int, default=1, help="videos processed in parallel")
    videos.add_argument("--default_class", default="videos", help="class folder for videos not inside a class folder")
    videos.add_argument("--resize", type=parse_size, default=None, help="resize frames to WIDTHxHEIGHT")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return add_version_flag(parser)


@exits_on_input_errors(get_args_parser)
def main(argv=None):
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    out = Path(args.out).expanduser()
    if args.command in ("toy", "tracks"):
        try:  # the configs check their values
            if args.command == "toy":
                cfg = ToyConfig(num_videos=args.videos, test_videos=args.test_videos, seed=args.seed,
                                min_frames=args.min_frames, max_frames=args.max_frames, flow=not args.no_flow,
                                frame_size=args.frame_size)
            else:
                cfg = TracksConfig(num_videos=args.videos, seed=args.seed, max_frames=args.max_frames, annot=args.annot,
                                   workers=args.workers, flow=not args.no_flow)
        except ValueError as error:
            raise SystemExit(f"prepare_data.py {args.command}: {error}") from None
        make = make_toy_dataset if args.command == "toy" else make_tracks_dataset
        videos = make(out, cfg, progress=not args.quiet)
        logging.info("%s dataset: %d videos, %d frames, %d tubes in %s", args.command, len(videos),
                     sum(v.num_frames for v in videos.values()), sum(len(v.tubes) for v in videos.values()), out)
        return 0
    cfg = PrepareConfig(videos_dir=str(Path(args.videos_dir).expanduser()), out=str(out), flows=tuple(args.flow),
                        workers=args.workers, default_class=args.default_class, resize=args.resize)
    summary = prepare_videos(cfg, progress=not args.quiet)
    logging.info("videos: %d done, %d already complete, %d failed",
                 len(summary["done"]), len(summary["skipped"]), len(summary["failed"]))
    for name, message in summary["failed"]:
        logging.error("FAILED %s: %s", name, message)
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
