"""Online action detection on a video, a camera or a stream: micro-tubes frame by frame, linked
online into action paths, drawn into an annotated video; at the end (or on Ctrl-C) the paths are
trimmed into action tubes.

  python demo.py --video clip.mp4 --weights runs/pipeline/train/rgb_w0.125/AMTNet_400.pth --out clip-tubes.mp4
  python demo.py --video runs/pipeline/toy_data/rgb-images/Waving/v_Waving_g05_c01 --weights ... --out waving.mp4
  python demo.py --video 0 --realtime --display --onnx model.onnx --out camera.mp4      (export.py writes model.onnx)

``--video`` is a video file, a folder of frames (00001.jpg, ...), a camera index or a stream URL
OpenCV opens. The model is rebuilt from the checkpoint (class names too, for checkpoints train.py
saved; else ``--classes``) or from the .onnx file. Writes the annotated video OUT, its per-frame
log of the best live path (OUT's ``-live.jsonl``), the tubes of each alpha (``-tubes-alpha<a>.npz``,
build_tubes.py's format, and ``.json``) and, with ``--det_out``, the detections in test.py's npz
format. ``--realtime`` processes the newest frame and drops the others (a file is played at its
frame rate); Ctrl-C stops the run and still finishes and writes everything for the frames seen.
``--eval_gap g`` runs the network on every (g + 1)-th frame (micro-tubes (t, t + g + 1)); ``--link
micro`` links whole micro-tubes, once per window (tubes/micro.py), instead of per-frame boxes.
"""
import os

# Before torch loads OpenMP: its threads sleep instead of spinning while they wait. On a CPU shared with
# other jobs, spinning threads starve each other (the toy-size backbone took 1 s a frame instead of 35 ms
# at a load of 8 on 2 cores; BENCHMARKS.md, "Real time").
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from data.annotations import read_video_list
from engine.cli import device_args, inference_args, model_args, original_config, stream_args
from engine.export import load_onnx_detector
from engine.live import Display, FrameSource, parse_source, run_online, write_outputs
from engine.online import OnlineDetector, StreamSpec, load_detector
from tubes.cli import class_args, tube_args
from tubes.linking import OnlineTubes
from tubes.micro import OnlineMicroTubes
from tubes.runner import LINK_MODES
from utils.distributed import place_model, resolve_device

log = logging.getLogger("demo")


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     parents=[model_args(), stream_args("fastOF"), device_args(), inference_args(),
                                              tube_args("3"), class_args(num_classes=True)])
    parser.add_argument("--video", required=True, type=parse_source,
                        help="video file, folder of frames, camera index (0) or stream URL")
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--weights", type=Path, help="checkpoint (this project's or, with the model flags, the original's)")
    weights.add_argument("--onnx", type=Path, help="a model export.py wrote, run by onnxruntime on the CPU")
    parser.add_argument("--out", required=True, type=Path, help="annotated video (.mp4 or .avi)")
    parser.add_argument("--eval_gap", default=1, type=int,
                        help="frames skipped between a micro-tube's frames (test.py --eval_gaps): the network runs on "
                             "every (eval_gap + 1)-th frame")
    parser.add_argument("--link", default="frame", choices=LINK_MODES,
                        help="frame: link the per-frame detections (build_tubes.py's default); micro: link whole "
                             "micro-tubes, once per window (build_tubes.py --link micro)")
    parser.add_argument("--show_thresh", default=0.2, type=float, help="draw paths whose mean score is at least this")
    parser.add_argument("--fps", default=None, type=float, help="output frame rate (default: the input's, or 25)")
    parser.add_argument("--det_out", type=Path, default=None, help="also write the detections (test.py's npz format)")
    parser.add_argument("--realtime", action="store_true",
                        help="never fall behind the source: take the newest frame, drop the others (and count them)")
    parser.add_argument("--display", action="store_true", help="show the annotated frames in a window")
    return parser


def load(args, device):
    classes = read_video_list(args.classes) if args.classes else None
    if args.onnx:
        model, classes, streams = load_onnx_detector(args.onnx, classes)
    else:
        model, classes, streams = load_detector(args.weights, classes, original_config(args),
                                                (args.input_type_base, args.input_type_extra))
        place_model(model, device, args.channels_last)
    return model, classes, StreamSpec(streams, model.cfg.seq_len, args.eval_gap)


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    device = resolve_device("cpu" if args.onnx else args.device)
    model, classes, spec = load(args, device)
    source = FrameSource(args.video, args.realtime, args.fps)
    display = Display(source.name) if args.display else None
    detector = OnlineDetector(model, spec, device, args.frame_cache)
    tubes_class = OnlineMicroTubes if args.link == "micro" else OnlineTubes
    bar = lambda frames: tqdm(frames, desc="frames", disable=not sys.stderr.isatty())
    try:
        tubes, detections, interrupted = run_online(
            source, detector, lambda size: tubes_class(len(classes), size, link_score=args.link_score), args.out,
            classes, args.fps or source.fps, args.show_thresh, display, bar)
    finally:
        source.close()
        if display:
            display.close()
    log.info("%d frames -> %s%s%s", len(detections), args.out,
             f" ({source.dropped} dropped to keep up)" if args.realtime else "", " (interrupted)" if interrupted else "")
    write_outputs(args.out, source.name, tubes, detections, detector.frame_size, classes, args.alphas, args.det_out,
                  source.dropped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
