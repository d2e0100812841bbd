"""Export a trained AMTNet for deployment: an ONNX graph with decoded boxes and softmax scores as
outputs and a dynamic batch, checked against PyTorch on the same inputs.

  python export.py --weights runs/pipeline/train/rgb_w0.125/AMTNet_273.pth --format onnx --out model.onnx
  python demo.py --onnx model.onnx --video clip.mp4 --out clip-tubes.mp4

Beside OUT it writes the per-frame graphs demo.py runs with one backbone pass per frame (OUT's
``.base``, ``.extra`` for two streams, and ``.heads``; keep them with it). Needs the optional
packages of requirements-onnx.txt. The file keeps the model config, the class
names and the streams' input types, so demo.py needs nothing else. An original AMTNet checkpoint
is described by the model flags (--fusion_type, ...) and --classes or --num_classes.
"""
import argparse
import logging
import sys
from pathlib import Path

from data.annotations import read_video_list
from engine.cli import model_args, original_config, stream_args
from engine.export import export_checked
from engine.online import load_detector
from tubes.cli import class_args
from utils.errors import exits_on_input_errors
from utils.version import add_version_flag

log = logging.getLogger("export")

def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     parents=[model_args(), stream_args("fastOF"), class_args(num_classes=True)])
    parser.add_argument("--weights", required=True, type=Path, help="checkpoint (this project's or the original's)")
    parser.add_argument("--format", default="onnx", type=str.lower, choices=["onnx"], help="export format")
    parser.add_argument("--out", required=True, type=Path, help="output file (model.onnx)")
    return add_version_flag(parser)


@exits_on_input_errors(get_args_parser, also=(ImportError, RuntimeError))  # onnx missing, a graph that differs
def main(argv=None):
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    model, classes, streams = load_detector(args.weights, read_video_list(args.classes) if args.classes else None,
                                            original_config(args), (args.input_type_base, args.input_type_extra))
    export_checked(model, args.out, {"classes": classes, "streams": streams})
    return 0


if __name__ == "__main__":
    sys.exit(main())
