"""Command-line flags of the training and detection scripts, each defined once, composed by the
scripts through ``parents=[...]``; ``data_config`` and ``model_config`` turn them into configs.
The tube flags are in ``tubes/cli.py``.

Flag names are the original AMTNet ones (``--seq_len``, ``--fusion_type``,
``--input_type_base``, ``--stepvalues``, ``--val_step``, ``--ngpu``, ...) so the
published commands run unchanged. Paths expand ``~``.
"""
import argparse
from pathlib import Path
from typing import Callable

from data.dataset import DATASETS, DataConfig
from data.flow import CHANNEL_ORDERS
from models.config import FUSION_TYPES, NORMS, ModelConfig, two_stream
from utils.distributed import DEVICE_CHOICES

OPTIMIZERS = ("sgd", "adam")


def optional_probability(text: str) -> float | None:
    """A number in (0, 1), or ``none`` (``--background_prior none``: zero biases, the original)."""
    if str(text).lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1) or none, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1) or none, got {text!r}")
    return value


def str2bool(text: str | bool) -> bool:
    """The original's boolean flags (``--visdom=True``)."""
    if isinstance(text, bool):
        return text
    if text.lower() in ("yes", "true", "t", "1"):
        return True
    if text.lower() in ("no", "false", "f", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {text!r}")


def path(text: str) -> str:
    return str(Path(text).expanduser())


def int_list(text: str) -> list:
    try:
        return [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _add_stream_flags(group, extra_type="brox"):
    """What each stream reads: shared by the dataset scripts and demo.py. Input types are open
    (any ``<type>-images`` folder), so they have no ``choices``."""
    group.add_argument("--seq_len", default=2, type=int, help="frames per micro-tube")
    group.add_argument("--input_type_base", default="rgb", help="base stream: any <type>-images folder (rgb, brox, fastOF)")
    group.add_argument("--input_type_extra", default=extra_type, help="extra stream of a two-stream model")
    group.add_argument("--input_frames_base", default=1, type=int, help="stacked frames per time step, base stream")
    group.add_argument("--input_frames_extra", default=5, type=int, help="stacked frames per time step, extra stream")


def stream_args(extra_type: str = "brox") -> argparse.ArgumentParser:
    """The stream flags alone (demo.py: for original checkpoints, which do not store them)."""
    parser = argparse.ArgumentParser(add_help=False)
    _add_stream_flags(parser.add_argument_group("streams"), extra_type)
    return parser


def model_config(args: argparse.Namespace, num_classes: int) -> ModelConfig:
    """The ModelConfig the flags describe; ``num_classes`` without the background."""
    return ModelConfig(num_classes=num_classes + 1, seq_len=args.seq_len, fusion_type=args.fusion_type,
                       input_frames_base=args.input_frames_base, input_frames_extra=args.input_frames_extra,
                       width_mult=args.width_mult, norm=args.norm)


def original_config(args: argparse.Namespace) -> Callable:
    """``num_classes -> ModelConfig`` of an original AMTNet checkpoint (it stores none), from the model
    and stream flags and ``--num_classes`` (else the number of class names), for ``load_detector``."""
    def config(num_classes):
        if (args.num_classes or num_classes) is None:
            raise ValueError("an original AMTNet checkpoint: give --num_classes or --classes")
        return model_config(args, args.num_classes or num_classes)
    return config


def data_config(args: argparse.Namespace) -> DataConfig:
    """The DataConfig the data and model flags describe."""
    return DataConfig(dataset=args.dataset, data_root=args.data_root, input_type_base=args.input_type_base,
                      input_type_extra=args.input_type_extra, input_frames_base=args.input_frames_base,
                      input_frames_extra=args.input_frames_extra, two_stream=two_stream(args.fusion_type),
                      seq_len=args.seq_len, seq_gap=args.seq_gap, train_split=args.train_split,
                      flow_channels=args.flow_channels, mirror_flow_pixels_only=args.original_flow_mirror,
                      check_data=args.check_data, max_expand=args.max_expand, val_fraction=args.val_fraction,
                      channel_swap=args.channel_swap)


def data_args() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", default="toy", type=str.lower, choices=DATASETS,
                       help="dataset name; any dataset in the UCF24 layout works as ucf24 or toy")
    group.add_argument("--data_root", default=None, type=path,
                       help="dataset root (folder holding rgb-images/ and splitfiles/)")
    group.add_argument("--train_split", default=1, type=int, help="split id (J-HMDB-21: 1..3)")
    group.add_argument("--seq_gap", default=0, type=int, help="frames skipped between the micro-tube's frames")
    _add_stream_flags(group)
    group.add_argument("--flow_channels", default="xym", type=str.lower, choices=CHANNEL_ORDERS,
                       help="order of x, y, magnitude in the flow JPEGs' R, G, B planes")
    group.add_argument("--original_flow_mirror", action=argparse.BooleanOptionalAction, default=False,
                       help="mirror flow images without negating x, as the original RandomMirror")
    group.add_argument("--max_expand", default=4.0, type=float,
                       help="largest zoom-out of the Expand augmentation (original: 4; 1: none)")
    group.add_argument("--channel_swap", action=argparse.BooleanOptionalAction, default=True,
                       help="randomly permute the colour channels in the photometric distortion (the original's "
                            "ssd.pytorch augmentation; the Caffe SSD has none)")
    group.add_argument("--val_fraction", default=0.0, type=float,
                       help="fraction of each class's training videos held out to validate on (0: validate on "
                            "test windows, as the original)")
    group.add_argument("--check_data", action=argparse.BooleanOptionalAction, default=False,
                       help="check every frame file exists before starting")
    group.add_argument("--num_workers", "-j", default=2, type=int, help="data loading processes")
    return parser


def model_args() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("model")
    group.add_argument("--fusion_type", default="NONE", type=str.upper, choices=FUSION_TYPES,
                       help="two-stream fusion, any case: NONE (base stream only), SUM, CAT, MEAN")
    group.add_argument("--width_mult", default=1.0, type=float, help="backbone width multiplier (1.0 = the paper's VGG16)")
    group.add_argument("--norm", default="none", type=str.lower, choices=NORMS,
                       help="normalisation after each backbone convolution (none: the original's VGG16)")
    return parser


def device_args() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("device")
    group.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="auto: cuda when available")
    group.add_argument("--ngpu", default=1, type=int,
                       help="processes to train with (DistributedDataParallel); torchrun sets this itself")
    group.add_argument("--amp", default=None, type=str2bool,
                       help="mixed precision (default: on for CUDA, off on CPU)")
    group.add_argument("--channels_last", default=None, type=str2bool,
                       help="channels-last memory format for the convolutions (default: on for CUDA; test.py and demo.py: "
                            "on for CPU too)")
    return parser


def inference_args() -> argparse.ArgumentParser:
    """Test-time speed options of test.py and demo.py."""
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("inference")
    group.add_argument("--frame_cache", action=argparse.BooleanOptionalAction, default=True,
                       help="run the backbone once per frame and keep its maps for the windows sharing the frame "
                            "(the same detections to float rounding)")
    return parser


def fuse_model_args(onnx: bool = False) -> argparse.ArgumentParser:
    """The late fusion's second model (test.py, demo.py): ``--fuse_weights`` (with ``onnx``, or ``--fuse_onnx``:
    the script refuses both) and what it reads, ``--fuse_input_type``."""
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("late fusion (two one-stream models over the same windows)")
    group.add_argument("--fuse_weights", default=None, type=path,
                       help="the second stream's one-stream checkpoint (e.g. flow, beside --weights rgb)")
    if onnx:  # not a mutually exclusive group: parents=[...] would move it out of this group in --help
        group.add_argument("--fuse_onnx", default=None, type=path,
                           help="the second stream's one-stream model as export.py wrote it (or --fuse_weights)")
    group.add_argument("--fuse_input_type", default=None,
                       help="what the second model reads (default: its checkpoint's --input_type_base)")
    return parser


def detection_args() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("detection")
    group.add_argument("--conf_thresh", default=0.01, type=float, help="minimum class score of a detection")
    group.add_argument("--nms_thresh", default=0.45, type=float, help="per-class NMS overlap")
    group.add_argument("--topk", default=50, type=int, help="detections kept per class before NMS")
    group.add_argument("--iou_thresh", default=0.5, type=float, help="VOC-style frame-mAP overlap threshold")
    group.add_argument("--batch_size", default=8, type=int, help="micro-tubes per batch")
    return parser


def experiment_args() -> argparse.ArgumentParser:
    """Where train.py saves and test.py finds an experiment's checkpoints."""
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("experiment")
    group.add_argument("--save_root", default="runs", type=path, help="experiments are saved under SAVE_ROOT/<exp_name>")
    group.add_argument("--exp_name", default=None,
                       help="experiment folder under --save_root (train.py's default: built from the flags as the original)")
    return parser


def train_args() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("training")
    group.add_argument("--basenet", default=None, type=path,
                       help="pretrained SSD300 / reduced-fc VGG16 / torchvision VGG16 weights for a one-stream model")
    group.add_argument("--base_weights", default=None, type=path, help="two-stream: trained one-stream checkpoint, base")
    group.add_argument("--extra_weights", default=None, type=path, help="two-stream: trained one-stream checkpoint, extra")
    group.add_argument("--background_prior", default=None, type=optional_probability,
                       help="initial background probability of the class scores (default: zero biases, the original)")
    group.add_argument("--max_iter", default=70000, type=int)
    group.add_argument("--lr", "--learning-rate", default=0.0005, type=float)
    group.add_argument("--momentum", default=0.9, type=float)
    group.add_argument("--optimizer", default="sgd", type=str.lower, choices=OPTIMIZERS,
                       help="sgd: the original's; adam: for backbones trained from scratch (the toy recipe)")
    group.add_argument("--weight_decay", default=1e-4, type=float)
    group.add_argument("--stepvalues", default=[50000], type=int_list, help="iterations where the lr drops by --gamma")
    group.add_argument("--gamma", default=0.1, type=float)
    group.add_argument("--lr_schedule", default="step", type=str.lower, choices=["step", "cosine"],
                       help="step: drops at --stepvalues (the original); cosine: decay to zero at --max_iter")
    group.add_argument("--warmup_iters", default=0, type=int, help="linear learning-rate warm-up steps")
    group.add_argument("--ema", default=None, type=optional_probability,
                       help="decay of an exponential moving average of the weights (e.g. 0.99): the average is what "
                            "is validated and saved as the checkpoint's model (default: none, the original)")
    group.add_argument("--jaccard_threshold", default=0.5, type=float, help="IoU for matching priors")
    group.add_argument("--val_step", default=10000, type=int, help="checkpoint and validate every N iterations")
    group.add_argument("--val_samples", default=15000, type=int, help="test windows used for validation frame-mAP")
    group.add_argument("--print_step", default=10, type=int)
    group.add_argument("--loss_reset_step", default=30, type=int, help="prints between running-average resets")
    group.add_argument("--man_seed", default=123, type=int)
    group.add_argument("--visdom", default=False, type=str2bool)
    group.add_argument("--vis_port", default=8097, type=int)
    group.add_argument("--vis_server", default="http://127.0.0.1", help="visdom server URL")
    return parser


def one_stream_args(args: argparse.Namespace, input_type: str, frames: int) -> argparse.Namespace:
    """``args`` for a one-stream model of ``input_type`` with ``frames`` stacked frames per time step (pipeline.py)."""
    return argparse.Namespace(**{**vars(args), "input_type_base": input_type, "input_frames_base": frames,
                                 "fusion_type": "NONE", "base_weights": None, "extra_weights": None})


def changed_flags(args: argparse.Namespace, parsers: list) -> list:
    """The argv that passes on ``args``' values of the flags of ``parsers`` (argument groups of this
    module or ``tubes/cli.py``) that differ from the groups' defaults: what pipeline.py gives each
    stage, so that a stage keeps its own defaults (test.py's ``--topk``) for the flags left alone."""
    argv = []
    for parser in parsers:
        for action in parser._actions:
            flag = next((o for o in action.option_strings if o.startswith("--")), None)
            value = getattr(args, action.dest, None) if flag else None
            if flag is None or value is None or value == action.default or action.dest == "help":
                continue
            if isinstance(action, argparse.BooleanOptionalAction):
                argv.append(flag if value else f"--no-{flag[2:]}")
            elif isinstance(value, bool):
                argv += [flag, str(value).lower()]
            elif isinstance(value, (list, tuple)):
                argv += [flag, ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)]
            else:
                argv += [flag, str(value)]
    return argv
