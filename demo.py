"""Online action detection on a video: micro-tubes frame by frame, linked online into action
paths, drawn into an annotated video; at the end the paths are trimmed into action tubes.

  python demo.py --video clip.mp4 --weights runs/pipeline/train/rgb_w0.125/AMTNet_400.pth --out clip-tubes.mp4
  python demo.py --video runs/pipeline/toy_data/rgb-images/Waving/v_Waving_g05_c01 --weights ... --out waving.mp4

``--video`` is a video file or a folder of frames (00001.jpg, ...). The model is rebuilt from
the checkpoint (class names too, for checkpoints train.py saved; else ``--classes``). Writes
the annotated video, OUT's ``-tubes.npz`` (build_tubes.py's tube format, one file per alpha)
and, with ``--det_out``, the detections in test.py's npz format.
"""
import argparse
import logging
import sys
from pathlib import Path

import cv2
import torch
from tqdm import tqdm

from data.annotations import read_video_list
from engine.cli import device_args, model_args, model_config, stream_args
from engine.online import OnlineDetector, StreamSpec, draw, read_frames, write_detections
from models import load_model
from tubes.cli import class_args, tube_args
from tubes.linking import OnlineTubes
from tubes.trimming import trim_paths
from tubes.tube_files import save_tubes
from utils.distributed import place_model, resolve_device
from utils.io import atomic_path

log = logging.getLogger("demo")


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     parents=[model_args(), stream_args("fastOF"), device_args(), tube_args("3"),
                                              class_args(num_classes=True)])
    parser.add_argument("--video", required=True, type=Path, help="video file or folder of frames")
    parser.add_argument("--weights", required=True, type=Path, help="checkpoint (this project's or, with the model flags, the original's)")
    parser.add_argument("--out", required=True, type=Path, help="annotated video (.mp4 or .avi)")
    parser.add_argument("--eval_gap", default=1, type=int, help="gap between a micro-tube's frames (test.py --eval_gaps)")
    parser.add_argument("--show_thresh", default=0.2, type=float, help="draw paths whose mean score is at least this")
    parser.add_argument("--fps", default=None, type=float, help="output frame rate (default: the input's, or 25)")
    parser.add_argument("--det_out", type=Path, default=None, help="also write the detections (test.py's npz format)")
    return parser


def load(args):
    state = torch.load(args.weights, map_location="cpu", weights_only=False) if args.weights.is_file() else None
    if state is None:
        raise SystemExit(f"checkpoint not found: {args.weights}")
    flags = state.get("flags", {})
    classes = read_video_list(args.classes) if args.classes else state.get("classes")
    model_cfg = None
    if "model_config" not in state:  # an original checkpoint: the flags describe it
        if args.num_classes is None and classes is None:
            raise SystemExit("an original AMTNet checkpoint: give --num_classes or --classes")
        model_cfg = model_config(args, args.num_classes or len(classes))
    model = load_model(state, model_cfg)
    cfg = model.cfg
    classes = classes or [f"class {i + 1}" for i in range(cfg.num_classes - 1)]
    if len(classes) != cfg.num_classes - 1:
        raise SystemExit(f"{len(classes)} class names for a model of {cfg.num_classes - 1} classes")
    streams = {"base": (flags.get("input_type_base", args.input_type_base), cfg.input_frames_base)}
    if cfg.two_stream:
        streams["extra"] = (flags.get("input_type_extra", args.input_type_extra), cfg.input_frames_extra)
    return model, classes, StreamSpec(streams, cfg.seq_len, args.eval_gap)


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    device = resolve_device(args.device)
    model, classes, spec = load(args)
    place_model(model, device, args.channels_last)
    detector = OnlineDetector(model, spec, device)
    fps = args.fps or (cv2.VideoCapture(str(args.video)).get(cv2.CAP_PROP_FPS) if args.video.is_file() else 0) or 25
    frames, tubes, writer, detections = {}, None, None, []

    def show(ready):
        """Link each emitted frame's detections and write the frame with the live paths drawn."""
        for index, loc, scores in ready:
            tubes.update(loc, scores)
            detections.append((loc, scores))
            writer.write(draw(frames.pop(index), index, tubes.current(args.show_thresh), classes))

    with atomic_path(args.out) as tmp:
        fourcc = cv2.VideoWriter_fourcc(*("mp4v" if args.out.suffix.lower() == ".mp4" else "MJPG"))
        for image in tqdm(read_frames(args.video), desc="frames", disable=not sys.stderr.isatty()):
            frames[detector.num_read] = image
            ready = detector.push(image)
            if writer is None:
                writer = cv2.VideoWriter(str(tmp), fourcc, fps, detector.frame_size)
                tubes = OnlineTubes(len(classes), detector.frame_size, link_score=args.link_score)
            show(ready)
        show(detector.finish())
        writer.release()
    log.info("%d frames -> %s", len(detections), args.out)
    paths = tubes.linker.finish()
    name = args.video.stem if args.video.is_file() else args.video.name
    for alpha in args.alphas:
        found = trim_paths(paths, alpha)
        out = args.out.with_name(f"{args.out.stem}-tubes-alpha{alpha:g}.npz")
        save_tubes(out, [name], {name: {alpha: found}}, alpha)
        log.info("alpha %g: %d tubes -> %s", alpha, len(found), out)
        for tube in sorted(found, key=lambda t: -t.score)[:10]:
            log.info("  %-12s frames %d-%d score %.3f", classes[tube.class_id], tube.start + 1,
                     tube.start + len(tube.boxes), tube.score)
    if args.det_out:
        write_detections(args.det_out, detections, detector.frame_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
