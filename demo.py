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
import numpy as np
import torch
from tqdm import tqdm

from models import load_model
from utils.args import device_args, model_args, model_config, stream_args, tube_args
from utils.detections import write_video_detections
from utils.distributed import resolve_device
from utils.engine import place_model
from utils.io import atomic_path
from utils.online import OnlineDetector, OnlineTubes, StreamSpec
from utils.tube_runner import save_tubes
from utils.tubes import trim_paths

log = logging.getLogger("demo")
COLOURS = [(0, 200, 255), (255, 120, 0), (60, 220, 60), (220, 60, 220), (0, 80, 255), (255, 255, 0)]


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     parents=[model_args(), stream_args("fastOF"), device_args(), tube_args("3")])
    parser.add_argument("--video", required=True, type=Path, help="video file or folder of frames")
    parser.add_argument("--weights", required=True, type=Path, help="checkpoint (this project's or, with the model flags, the original's)")
    parser.add_argument("--out", required=True, type=Path, help="annotated video (.mp4 or .avi)")
    parser.add_argument("--classes", type=Path, default=None, help="class names, one per line (default: from the checkpoint)")
    parser.add_argument("--num_classes", default=None, type=int, help="for original checkpoints: classes without background")
    parser.add_argument("--eval_gap", default=1, type=int, help="gap between a micro-tube's frames (test.py --eval_gaps)")
    parser.add_argument("--show_thresh", default=0.2, type=float, help="draw paths whose mean score is at least this")
    parser.add_argument("--fps", default=None, type=float, help="output frame rate (default: the input's, or 25)")
    parser.add_argument("--det_out", type=Path, default=None, help="also write the detections (test.py's npz format)")
    return parser


def read_frames(source):
    """BGR frames of a video file or a folder of 00001.jpg ...; errors name the file."""
    if source.is_dir():
        files = sorted(source.glob("*.jpg"))
        if not files:
            raise SystemExit(f"{source}: no .jpg frames in this folder")
        for path in files:
            image = cv2.imread(str(path))
            if image is None:
                raise SystemExit(f"{path}: cannot be decoded")
            yield image
        return
    if not source.is_file():
        raise SystemExit(f"{source}: no such video file or frame folder")
    capture = cv2.VideoCapture(str(source))
    ok, image = capture.read()
    if not ok:
        raise SystemExit(f"{source}: cannot be read as a video")
    while ok:
        yield image
        ok, image = capture.read()
    capture.release()


def load(args):
    state = torch.load(args.weights, map_location="cpu", weights_only=False) if args.weights.is_file() else None
    if state is None:
        raise SystemExit(f"checkpoint not found: {args.weights}")
    flags = state.get("flags", {})
    classes = [line.strip() for line in args.classes.read_text().splitlines() if line.strip()] if args.classes \
        else state.get("classes")
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


def draw(frame, index, paths, classes):
    out = frame.copy()
    for class_id, box, score, mean in paths:
        colour = COLOURS[class_id % len(COLOURS)]
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        label = f"{classes[class_id]} {mean:.2f}"
        (w, h), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        top = max(y1 - h - 6, 0)
        cv2.rectangle(out, (x1, top), (x1 + w + 4, top + h + 6), colour, -1)
        cv2.putText(out, label, (x1 + 2, top + h + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(out, f"{index + 1}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return out


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
                tubes = OnlineTubes(len(classes), detector.frame_size)
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
        write_detections(args.det_out, detector, detections)
    return 0


def write_detections(path, detector, detections):
    """Per-frame detections as a one-frame-window npz (T = 1), readable by build_tubes.py."""
    boxes = np.concatenate([loc for loc, _ in detections]).reshape(-1, 1, 4)
    scores = np.concatenate([s for _, s in detections])
    window = np.concatenate([np.full(len(loc), f) for f, (loc, _) in enumerate(detections)])
    frames = np.arange(len(detections))[:, None]
    write_video_detections(path, frames, boxes, scores, window, len(detections), detector.frame_size)


if __name__ == "__main__":
    sys.exit(main())
