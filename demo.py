"""Online action detection on a video, a camera or a stream: micro-tubes frame by frame, linked
online into action paths, drawn into an annotated video; at the end (or on Ctrl-C) the paths are
trimmed into action tubes.

  python demo.py --video clip.mp4 --weights runs/pipeline/train/rgb_w0.125/AMTNet_400.pth --out clip-tubes.mp4
  python demo.py --video runs/pipeline/toy_data/rgb-images/Waving/v_Waving_g05_c01 --weights ... --out waving.mp4
  python demo.py --video 0 --realtime --display --onnx model.onnx --out camera.mp4      (export.py writes model.onnx)
  python demo.py --video clip.mp4 --weights RGB.pth --fuse_weights FLOW.pth --late_fusion boost --out clip-tubes.mp4

``--video`` is a video file, a folder of frames (00001.jpg, ...), a camera index or a stream URL
OpenCV opens. The model is rebuilt from the checkpoint (class names too, for checkpoints train.py
saved; else ``--classes``) or from the .onnx file. Writes the annotated video OUT, its per-frame
log of the best live path (OUT's ``-live.jsonl``), the tubes of each alpha (``-tubes-alpha<a>.npz``,
build_tubes.py's format, and ``.json``) and, with ``--det_out``, the detections in test.py's npz
format. ``--realtime`` processes the newest frame and drops the others (a file is played at its
frame rate); Ctrl-C stops the run and still finishes and writes everything for the frames seen.
``--eval_gaps g`` runs the network on every (g + 1)-th frame (micro-tubes (t, t + g + 1)); ``--link
micro`` links whole micro-tubes, once per window (tubes/micro.py), instead of per-frame boxes. ``--annot``
draws the ground truth of a dataset video (named by the path's last two parts, Class/video) beside the paths.

Late fusion: ``--fuse_weights`` (or ``--fuse_onnx``, beside ``--weights`` or ``--onnx``) runs a second
one-stream model of the same seq_len over the same windows, reading ``--fuse_input_type`` (default: its
checkpoint's; rgb or fastOF, whose flow is computed online; brox cannot be), and ``--late_fusion`` fuses the
two streams frame by frame before the linking, as test.py --fuse_weights + build_tubes.py --late_fusion do:
boost and union fuse the two models' detections (test.py's DET/base and DET/fuse), mean links the base
model's boxes with the two softmax outputs averaged prior by prior (DET/mean). ``--det_out`` then writes
the detections the fusion reads: the base stream's (and the fuse stream's to ``<det_out>-fuse.npz``), or
for mean the mean stream's.
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
from engine.cli import device_args, fuse_model_args, inference_args, model_args, original_config, stream_args
from engine.drawing import video_ground_truth
from engine.export import BACKENDS, OnnxDetector, cached_export, load_onnx_detector, use_onnxruntime
from engine.inference import check_late_fusion
from engine.live import Display, FrameSource, parse_source, run_online, write_outputs
from engine.online import OnlineDetector, StreamSpec, check_online, load_detector
from tubes.cli import annotation_args, class_args, fusion_args, tube_args
from tubes.fusion import OnlineFusedTubes, check_link, late_fusion
from tubes.linking import OnlineTubes
from tubes.micro import OnlineMicroTubes
from utils.distributed import place_model, resolve_device
from utils.errors import exits_on_input_errors
from utils.version import add_version_flag

log = logging.getLogger("demo")


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     parents=[model_args(), stream_args("fastOF"), device_args(), inference_args(),
                                              tube_args("3"), class_args(num_classes=True), fuse_model_args(onnx=True),
                                              fusion_args("late fusion: how the two streams' detections are fused"),
                                              annotation_args(False, False, ", to draw the --video's ground truth")])
    parser.add_argument("--video", required=True, type=parse_source,
                        help="video file, folder of frames, camera index (0) or stream URL")
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--weights", type=Path, help="checkpoint (this project's or, with the model flags, the original's)")
    weights.add_argument("--onnx", type=Path, help="a model export.py wrote, run by onnxruntime on the CPU")
    parser.add_argument("--backend", default=os.environ.get("AMTNET_BACKEND", "auto"), choices=BACKENDS,
                        help="what runs a --weights checkpoint: auto (onnxruntime on the CPU when its packages are "
                             "installed, the checkpoint exported once to a cache, $AMTNET_CACHE or ~/.cache/amtnet; "
                             "else PyTorch), torch, onnxruntime (default: $AMTNET_BACKEND, else auto)")
    parser.add_argument("--out", required=True, type=Path, help="annotated video (.mp4 or .avi)")
    parser.add_argument("--eval_gaps", "--eval_gap", dest="eval_gap", default=1, type=int,
                        help="frames skipped between a micro-tube's frames, one gap here (test.py's flag): the network "
                             "runs on every (gap + 1)-th frame")
    parser.add_argument("--show_thresh", default=0.2, type=float, help="draw paths whose mean score is at least this")
    parser.add_argument("--fps", default=None, type=float, help="output frame rate (default: the input's, or 25)")
    parser.add_argument("--det_out", type=Path, default=None,
                        help="also write the detections (test.py's npz format; late fusion: those the fusion reads)")
    parser.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=False,
                        help="never fall behind the source: take the newest frame, drop the others (and count them)")
    parser.add_argument("--display", action=argparse.BooleanOptionalAction, default=False,
                        help="show the annotated frames in a window (Tk); closing it stops the run as Ctrl-C does")
    return add_version_flag(parser)


def load_one(weights, onnx, classes, args, input_types, device):
    if not onnx and use_onnxruntime(args.backend, device):
        onnx = cached_export(weights, classes, original_config(args), input_types)
    if onnx:
        return load_onnx_detector(onnx, classes)
    model, classes, streams = load_detector(weights, classes, original_config(args), input_types)
    place_model(model, device, args.channels_last, inference=True)
    return model, classes, streams


def load(args, device):
    """(model, the late fusion's second model or None, class names, StreamSpec)."""
    names = read_video_list(args.classes) if args.classes else None
    model, classes, streams = load_one(args.weights, args.onnx, names, args,
                                       (args.input_type_base, args.input_type_extra), device)
    fuse = None
    if args.late_fusion:
        fuse_path = Path(args.fuse_weights or args.fuse_onnx)
        fuse, _, fuse_streams = load_one(fuse_path, args.fuse_onnx, names, args, (None, None), device)
        check_late_fusion(model.cfg, fuse.cfg, ("--onnx" if args.onnx else "--weights",
                                                "--fuse_onnx" if args.fuse_onnx else "--fuse_weights"))
        input_type = args.fuse_input_type or fuse_streams["base"][0]
        if input_type is None:
            raise ValueError(f"{fuse_path}: the checkpoint does not say what its model reads: give --fuse_input_type")
        check_online(input_type, f"the second stream's model ({fuse_path})")
        streams = {"base": streams["base"], "extra": (input_type, fuse.cfg.input_frames_base)}
    try:
        spec = StreamSpec(streams, model.cfg.seq_len, args.eval_gap)
    except ValueError as error:
        raise ValueError(f"{args.weights or args.onnx}: {error}") from None
    return model, fuse, classes, spec


def tubes_factory(args, num_classes):
    """frame size -> the online linking: one stream's (or a stream fused prior by prior, mean), or two fused per frame."""
    if args.late_fusion and late_fusion(args.late_fusion).per_frame:
        return lambda size: OnlineFusedTubes(num_classes, size, args.late_fusion, args.fuse_iou, args.fuse_fixed,
                                             link_score=args.link_score)
    tubes_class = OnlineMicroTubes if args.link == "micro" else OnlineTubes
    return lambda size: tubes_class(num_classes, size, link_score=args.link_score)


@exits_on_input_errors(get_args_parser, also=(ImportError, RuntimeError))  # onnxruntime missing, no display
def main(argv=None):
    return run(get_args_parser().parse_args(argv))


def run(args):
    if bool(args.late_fusion) != bool(args.fuse_weights or args.fuse_onnx) or (args.fuse_weights and args.fuse_onnx):
        raise ValueError("late fusion needs both --late_fusion and one of --fuse_weights and --fuse_onnx")
    if args.late_fusion:
        args.late_fusion = late_fusion(args.late_fusion).name
        check_link(args.late_fusion, args.link)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    ground_truth = video_ground_truth(args.annot, args.video, args.realtime) if args.annot else None
    device = resolve_device("cpu" if args.onnx or args.fuse_onnx else args.device)
    model, fuse, classes, spec = load(args, device)
    log.info("network: %s", "onnxruntime on the CPU" if isinstance(model, OnnxDetector) else f"PyTorch on {device}")
    source = FrameSource(args.video, args.realtime, args.fps)
    display = Display(source.name) if args.display else None
    outputs = late_fusion(args.late_fusion).streams if args.late_fusion else ("base",)
    detector = OnlineDetector(model, spec, device, args.frame_cache, fuse, outputs)
    bar = lambda frames: tqdm(frames, desc="frames", disable=not sys.stderr.isatty())
    try:
        tubes, detections, interrupted = run_online(
            source, detector, tubes_factory(args, len(classes)), args.out,
            classes, args.fps or source.fps, args.show_thresh, display, bar, ground_truth)
    finally:
        source.close()
        if display:
            display.close()
    log.info("%d frames -> %s%s%s", len(detections), args.out,
             f" ({source.dropped} dropped to keep up)" if args.realtime else "", " (interrupted)" if interrupted else "")
    det_outs = [args.det_out] + [args.det_out.with_name(f"{args.det_out.stem}-{o}{args.det_out.suffix}")
                                 for o in outputs[1:]] if args.det_out else []
    write_outputs(args.out, source.name, tubes, detections, detector.frame_size, classes, args.alphas, det_outs,
                  source.dropped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
