"""Command-line flags, each defined once, composed by the scripts through ``parents=[...]``.

Flag names are the original AMTNet ones (``--seq_len``, ``--fusion_type``,
``--input_type_base``, ``--stepvalues``, ``--val_step``, ``--ngpu``, ...) so the
published commands run unchanged. Paths expand ``~``.
"""
import argparse
from pathlib import Path

from models.config import FUSION_TYPES, NORMS, ModelConfig
from utils.distributed import DEVICE_CHOICES

DATASETS = ("ucf24", "jhmdb21", "toy")


def str2bool(text):
    """The original's boolean flags (``--visdom=True``)."""
    if isinstance(text, bool):
        return text
    if text.lower() in ("yes", "true", "t", "1"):
        return True
    if text.lower() in ("no", "false", "f", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {text!r}")


def path(text):
    return str(Path(text).expanduser())


def int_list(text):
    try:
        return [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def positive_int(text):
    """An integer >= 1 (``--jumpgap``, ``--workers``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def alpha_list(text):
    """``--alphas 3,5``: the trimming's label-change penalties, non-negative numbers."""
    try:
        alphas = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if any(not a >= 0 for a in alphas):
        raise argparse.ArgumentTypeError(f"label-change penalties must be >= 0, got {text!r}")
    return alphas


def upper_choice(choices):
    def parse(text):
        if text.upper() not in choices:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)} (any case), got {text!r}")
        return text.upper()
    return parse


def _add_stream_flags(group, extra_type="brox"):
    """What each stream reads: shared by the dataset scripts and demo.py."""
    group.add_argument("--seq_len", default=2, type=int, help="frames per micro-tube")
    group.add_argument("--input_type_base", default="rgb", help="base stream: any <type>-images folder (rgb, brox, fastOF)")
    group.add_argument("--input_type_extra", default=extra_type, help="extra stream of a two-stream model")
    group.add_argument("--input_frames_base", default=1, type=int, help="stacked frames per time step, base stream")
    group.add_argument("--input_frames_extra", default=5, type=int, help="stacked frames per time step, extra stream")


def stream_args(extra_type="brox"):
    """The stream flags alone (demo.py: for original checkpoints, which do not store them)."""
    parser = argparse.ArgumentParser(add_help=False)
    _add_stream_flags(parser.add_argument_group("streams"), extra_type)
    return parser


def model_config(args, num_classes):
    """The ModelConfig the flags describe; ``num_classes`` without the background."""
    return ModelConfig(num_classes=num_classes + 1, seq_len=args.seq_len, fusion_type=args.fusion_type,
                       input_frames_base=args.input_frames_base, input_frames_extra=args.input_frames_extra,
                       width_mult=args.width_mult, norm=args.norm)


def data_args():
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", default="toy", type=str.lower, choices=DATASETS,
                       help="dataset name; any dataset in the UCF24 layout works as ucf24 or toy")
    group.add_argument("--data_root", default=None, type=path,
                       help="dataset root (folder holding rgb-images/ and splitfiles/)")
    group.add_argument("--train_split", default=1, type=int, help="split id (J-HMDB-21: 1..3)")
    group.add_argument("--seq_gap", default=0, type=int, help="frames skipped between the micro-tube's frames")
    _add_stream_flags(group)
    group.add_argument("--flow_channels", default="xym", help="order of x, y, magnitude in the flow JPEGs' R, G, B planes")
    group.add_argument("--original_flow_mirror", action="store_true",
                       help="mirror flow images without negating x, as the original RandomMirror")
    group.add_argument("--max_expand", default=4.0, type=float,
                       help="largest zoom-out of the Expand augmentation (original: 4; 1: none)")
    group.add_argument("--val_fraction", default=0.0, type=float,
                       help="fraction of each class's training videos held out to validate on (0: validate on "
                            "test windows, as the original)")
    group.add_argument("--check_data", action="store_true", help="check every frame file exists before starting")
    group.add_argument("--num_workers", "-j", default=2, type=int, help="data loading processes")
    return parser


def model_args():
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("model")
    group.add_argument("--fusion_type", default="NONE", type=upper_choice(FUSION_TYPES),
                       help="two-stream fusion: NONE (base stream only), SUM, CAT, MEAN")
    group.add_argument("--width_mult", default=1.0, type=float, help="backbone width multiplier (1.0 = the paper's VGG16)")
    group.add_argument("--norm", default="none", type=str.lower, choices=NORMS,
                       help="normalisation after each backbone convolution (none: the original's VGG16)")
    return parser


def device_args():
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("device")
    group.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="auto: cuda when available")
    group.add_argument("--ngpu", default=1, type=int,
                       help="processes to train with (DistributedDataParallel); torchrun sets this itself")
    group.add_argument("--amp", default=None, type=str2bool,
                       help="mixed precision (default: on for CUDA, off on CPU)")
    group.add_argument("--channels_last", default=None, type=str2bool,
                       help="channels-last memory format for the convolutions (default: on for CUDA)")
    return parser


def detection_args():
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("detection")
    group.add_argument("--conf_thresh", default=0.01, type=float, help="minimum class score of a detection")
    group.add_argument("--nms_thresh", default=0.45, type=float, help="per-class NMS overlap")
    group.add_argument("--topk", default=50, type=int, help="detections kept per class before NMS")
    group.add_argument("--iou_thresh", default=0.5, type=float, help="frame-mAP overlap threshold")
    group.add_argument("--batch_size", default=8, type=int, help="micro-tubes per batch")
    return parser


def train_args():
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("training")
    group.add_argument("--save_root", default="runs", type=path, help="experiments are saved under SAVE_ROOT/<exp_name>")
    group.add_argument("--exp_name", default=None, help="default: built from the flags as the original")
    group.add_argument("--basenet", default=None, type=path,
                       help="pretrained SSD300 / reduced-fc VGG16 / torchvision VGG16 weights for a one-stream model")
    group.add_argument("--base_weights", default=None, type=path, help="two-stream: trained one-stream checkpoint, base")
    group.add_argument("--extra_weights", default=None, type=path, help="two-stream: trained one-stream checkpoint, extra")
    group.add_argument("--background_prior", default=None, type=float,
                       help="initial background probability of the class scores (default: zero biases, the original)")
    group.add_argument("--max_iter", default=70000, type=int)
    group.add_argument("--lr", "--learning-rate", default=0.0005, type=float)
    group.add_argument("--momentum", default=0.9, type=float)
    group.add_argument("--optimizer", default="sgd", type=str.lower, choices=["sgd", "adam"],
                       help="sgd: the original's; adam: for backbones trained from scratch (the toy recipe)")
    group.add_argument("--weight_decay", default=1e-4, type=float)
    group.add_argument("--stepvalues", default=[50000], type=int_list, help="iterations where the lr drops by --gamma")
    group.add_argument("--gamma", default=0.1, type=float)
    group.add_argument("--lr_schedule", default="step", type=str.lower, choices=["step", "cosine"],
                       help="step: drops at --stepvalues (the original); cosine: decay to zero at --max_iter")
    group.add_argument("--warmup_iters", default=0, type=int, help="linear learning-rate warm-up steps")
    group.add_argument("--jaccard_threshold", default=0.5, type=float, help="IoU for matching priors")
    group.add_argument("--val_step", default=10000, type=int, help="checkpoint and validate every N iterations")
    group.add_argument("--val_samples", default=15000, type=int, help="test windows used for validation frame-mAP")
    group.add_argument("--print_step", default=10, type=int)
    group.add_argument("--loss_reset_step", default=30, type=int, help="prints between running-average resets")
    group.add_argument("--man_seed", default=123, type=int)
    group.add_argument("--resume", default=None, type=path, help="checkpoint to continue from")
    group.add_argument("--visdom", default=False, type=str2bool)
    group.add_argument("--vis_port", default=8097, type=int)
    group.add_argument("--vis_server", default="http://127.0.0.1")
    return parser


def tube_args(alphas="3,5"):
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("tubes")
    group.add_argument("--alphas", default=alphas, type=alpha_list, help="label-change penalties of the temporal trimming")
    return parser


def annotation_args():
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("annotations")
    group.add_argument("--annot", required=True, type=Path, help="finalAnnots.mat or pyannot.pkl")
    group.add_argument("--video_list", type=Path, default=None, help="videos to evaluate, one Class/video per line")
    group.add_argument("--classes", type=Path, default=None, help="class names in label order, one per line")
    return parser
