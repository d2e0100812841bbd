"""The whole chain on a dataset in the UCF24 layout (the toy set by default).

  python pipeline.py                                  # toy data, CPU, a few minutes
  python pipeline.py --data_root ~/data/ucf24 --dataset ucf24 --width_mult 1 --basenet vgg16_reducedfc.pth \\
      --max_iter 70000 --stepvalues 50000 --lr 0.0005 --max_expand 4 --batch_size 8

Stages, each skipped when its output is already there (so an interrupted run continues
where it stopped; training resumes from its latest checkpoint):
  1. data: render the toy dataset into WORK/toy_data when no --data_root is given, then
     check the dataset (annotations load, every annotated video has its frames);
  2. train: train.py into WORK/train/<exp>/AMTNet_<iter>.pth;
  3. detect: test.py on every test video -> WORK/detections/<Class>/<video>.npz and frame-mAP;
  4. tubes: build_tubes.py -> online linking, temporal trimming, video-mAP (WORK/tubes);
  5. plots: eval_video_ap.py -> precision-recall curves, video-mAP against ST-IoU (WORK/eval/*.png);
  6. online: eval_online.py -> early label accuracy and video-mAP against the fraction of each
     video observed, as the ROAD paper's figures (WORK/online/online_*.png, online.json);
  7. video: demo.py on the first test video -> WORK/demo/<video>.mp4 with the online action paths drawn.
Two streams (the original's results table): --late_fusion boost,union,mean and/or --fusion_type
SUM|CAT|MEAN also train a one-stream model of --input_type_extra (--input_frames_extra stacked
frames, fastOF on the toy set) and run its rows: the flow stream alone, the late fusions of the two
streams' detections (build_tubes.py --fuse_det_dir; mean: test.py --fuse_weights), and the
two-stream network initialised from the two one-stream models (train.py --base_weights
--extra_weights). Each extra row's outputs go to WORK/<stage>_<row>/ (detections_fastOF/,
tubes_boost/, train/rgb+fastOF_SUM_w0.125/, ...).
The data, model, training, detection and device flags are train.py's and test.py's (passed on to
them when they differ from those scripts' defaults); the defaults here are the toy recipe.
The results table (a row per model and fusion) is printed at the end and saved in WORK/summary.json.
"""
import argparse
import contextlib
import dataclasses
import io
import json
import logging
import sys
from pathlib import Path

import build_tubes
import demo as demo_script
import eval_online
import eval_video_ap
import test as test_script
import train as train_script
from data import layout
from data.annotations import check_dataset, read_video_list
from data.dataset import ActionDetection
from data.toy import ToyConfig, make_toy_dataset
from engine.cli import changed_flags, data_args, data_config, detection_args, device_args, model_args, train_args
from models.config import two_stream
from tubes.cli import tube_args
from tubes.detections import frame_map_path
from tubes.runner import results_path, rows_table, summary_row, table
from tubes.tube_files import tube_file
from utils.checkpoint import best_checkpoint, checkpoint_path, latest_checkpoint, read_weights
from utils.errors import exits_on_input_errors
from utils.io import atomic_path, is_fresh
from utils.logging_utils import setup_logging

log = logging.getLogger("pipeline")
STAGES = ("data", "train", "detect", "tubes", "plots", "online", "video")
TEST_LIST = layout.split_list_name("test", 1)
LATE_FUSIONS = ("boost", "union", "mean")  # build_tubes.py --fusion

# The default recipe: a narrow backbone with batch norm trained from scratch (no pretrained
# weights can be downloaded) with Adam, a warm-up and a cosine decay, the background class's
# scores started at 0.99, the original's augmentation without its zoom-out (a 4x zoom-out leaves
# the toy actors smaller than any prior) and without its colour channel permutation (which
# the Caffe SSD does not have either; it hides colour, a cue a model trained from scratch on a
# few videos needs), EPOCHS passes over the training windows, 15% of each
# class's training videos held out to choose the checkpoint, and linking only detections scoring
# at least 0.1 (so that paths end where the actors do). BENCHMARKS.md ("Training
# recipe") has what each part buys, chosen on other toy seeds and on the tracks dataset.
TOY_RECIPE = dict(width_mult=0.125, max_iter=None, optimizer="adam", lr=0.003, batch_size=8, max_expand=1.0,
                  norm="batch", lr_schedule="cosine", warmup_iters=40, background_prior=0.99, val_fraction=0.15,
                  link_score=0.1, input_type_extra="fastOF", channel_swap=False)
EPOCHS = 3.5


def stage_list(text):
    stages = text.split(",")
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown stage(s) {unknown}; stages: {', '.join(STAGES)}")
    return set(stages)


def late_fusion_list(text):
    names = tuple(v.strip().lower() for v in text.split(",") if v.strip())
    unknown = sorted(set(names) - set(LATE_FUSIONS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown late fusion(s) {unknown}; choose from {', '.join(LATE_FUSIONS)}")
    return names


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     parents=[data_args(), model_args(), train_args(), detection_args(), device_args(),
                                              tube_args()])
    parser.set_defaults(**TOY_RECIPE, val_step=None, print_step=None)  # None: a quarter and a twentieth of max_iter
    group = parser.add_argument_group("pipeline")
    group.add_argument("--epochs", type=float, default=EPOCHS,
                       help="passes over the training windows, when --max_iter is not given")
    group.add_argument("--work_dir", default="runs/pipeline", help="where the toy data and all outputs go")
    group.add_argument("--seed", type=int, default=0, help="toy dataset seed")
    group.add_argument("--toy_videos", type=int, default=ToyConfig.num_videos)
    group.add_argument("--late_fusion", default=(), type=late_fusion_list,
                       help=f"late fusions of the base and extra streams' detections to run ({', '.join(LATE_FUSIONS)})")
    group.add_argument("--stages", default=",".join(STAGES), type=stage_list,
                       help="stages to run (the later ones need the earlier ones' outputs)")
    return parser


def prepare(args, work):
    root = Path(args.data_root).expanduser() if args.data_root else work / "toy_data"
    input_types = {"rgb", args.input_type_base}
    if args.late_fusion or two_stream(args.fusion_type):
        input_types.add(args.input_type_extra)
    if args.data_root is None:
        input_types.add("fastOF")
        if layout.split_path(root, layout.ANNOT_FILE).is_file():
            log.info("toy dataset already in %s", root)
        else:
            log.info("stage data: rendering the toy dataset into %s", root)
            make_toy_dataset(root, ToyConfig(num_videos=args.toy_videos, seed=args.seed))
    summary = check_dataset(root, sorted(input_types))
    log.info("dataset %s: %d classes (%s), %d videos (%d test), %d frames, %d tubes", root,
             len(summary["classes"]), ", ".join(summary["classes"]), summary["videos"],
             summary["test_videos"], summary["frames"], summary["tubes"])
    return root


def iterations(args, root):
    """--max_iter, else --epochs passes over the training windows (at least one batch)."""
    if args.max_iter:
        return args.max_iter
    windows = len(ActionDetection(dataclasses.replace(data_config(args), data_root=str(root)), "train"))
    count = max(1, round(args.epochs * windows / args.batch_size))
    log.info("training for %d iterations: %g epochs of %d windows in batches of %d", count, args.epochs, windows,
             args.batch_size)
    return count


def train(args, root, exp_dir):
    """Train (or resume) to ``args.max_iter``; returns the checkpoint with the best validation frame-mAP."""
    final = checkpoint_path(exp_dir, args.max_iter)
    if final.is_file():
        log.info("stage train: %s exists, not training again", final)
        return best_checkpoint(exp_dir)
    argv = ["--data_root", str(root), "--save_root", str(exp_dir.parent), "--exp_name", exp_dir.name] + changed_flags(
        args, [data_args(), model_args(), train_args(), detection_args(), device_args()])
    resume = latest_checkpoint(exp_dir)
    if resume is not None:
        argv += ["--resume", str(resume)]
    log.info("stage train: python train.py %s", " ".join(argv))
    train_script.main(argv)
    setup_logging(exp_dir.parent.parent / "pipeline.log")  # train.py points the log at its experiment folder
    best = best_checkpoint(exp_dir)
    log.info("stage train: testing %s, the best on validation", best.name)
    return best


def trained(args, root, exp_dir):
    """The model of ``args`` in ``exp_dir``: trained by the train stage, else the one already there."""
    weights = train(args, root, exp_dir) if "train" in args.stages else best_checkpoint(exp_dir)
    if weights is None or not weights.is_file():
        raise SystemExit(f"no trained model in {exp_dir}: run the train stage")
    return weights


def one_stream(args, input_type, frames):
    """``args`` for a one-stream model of ``input_type`` with ``frames`` stacked frames per time step."""
    return argparse.Namespace(**{**vars(args), "input_type_base": input_type, "input_frames_base": frames,
                                 "fusion_type": "NONE", "base_weights": None, "extra_weights": None})


def run_stage(stage, script, argv, output, *inputs):
    """``script.main(argv)`` unless ``output`` is newer than ``inputs`` and was made with the same ``argv``
    (kept beside it, ``OUTPUT.argv.json``: another flag, say ``--alphas``, runs the stage again); its tables
    are printed once, at the end."""
    stamp = Path(output).with_name(f"{Path(output).name}.argv.json")
    if is_fresh(output, *inputs) and stamp.is_file() and stamp.read_text() == json.dumps(argv):
        log.info("stage %s: %s is up to date", stage, output)
        return
    log.info("stage %s: python %s.py %s", stage, script.__name__, " ".join(argv))
    with contextlib.redirect_stdout(io.StringIO()):
        script.main(argv)
    with atomic_path(stamp) as tmp:
        tmp.write_text(json.dumps(argv))


def detect(args, root, weights, det_dir):
    argv = ["--data_root", str(root), "--weights", str(weights), "--det_dir", str(det_dir)] + changed_flags(
        args, [data_args(), model_args(), detection_args(), device_args()])
    if "detect" in args.stages:
        run_stage("detect", test_script, argv, frame_map_path(det_dir), weights)
    return json.loads(frame_map_path(det_dir).read_text())


def mean_detections(args, root, weights, fuse_weights, det_dir):
    """test.py --fuse_weights: both one-stream models over the same windows, the mean of their scores per
    prior in DET_DIR/mean (what mean fusion needs); returns (DET_DIR/mean, None)."""
    argv = ["--data_root", str(root), "--weights", str(weights), "--fuse_weights", str(fuse_weights),
            "--det_dir", str(det_dir)] + changed_flags(args, [data_args(), model_args(), detection_args(), device_args()])
    if "detect" in args.stages:
        run_stage("detect", test_script, argv, frame_map_path(det_dir / "mean"), weights, fuse_weights)
    return det_dir / "mean", None


def tube_argv(args, root, det_dir, tube_dir, out_dir):
    """build_tubes.py's (and eval_online.py's) flags for ``det_dir``; the lists in ``tube_dir``."""
    return ["--det_dir", str(det_dir), "--det_format", "npz", "--annot", str(layout.split_path(root, layout.ANNOT_FILE)),
            "--out_dir", str(out_dir), "--video_list", str(tube_dir / "videos.txt"),
            "--classes", str(tube_dir / "classes.txt"), "--alphas", ",".join(f"{a:g}" for a in args.alphas),
            "--link_score", f"{args.link_score:g}", "--workers", "2"]


def link_mode(args, fusion=None):
    """``--link``: micro-tube linking links one stream (or test.py's mean fusion); boost and union fuse per frame."""
    return ["--link", "frame" if fusion in ("boost", "union") else args.link]


def tubes(args, root, det_dir, det_result, tube_dir, fuse_det_dir=None, fusion=None):
    """build_tubes.py on ``det_dir`` (late-fused with ``fuse_det_dir`` by ``fusion`` when given)."""
    for name, lines in (("videos.txt", read_video_list(layout.split_path(root, TEST_LIST))), ("classes.txt", det_result["ap"])):
        with atomic_path(tube_dir / name) as tmp:
            tmp.write_text("".join(f"{line}\n" for line in lines))
    argv = tube_argv(args, root, det_dir, tube_dir, tube_dir) + link_mode(args, fusion)
    inputs = [frame_map_path(det_dir)]
    if fusion is not None:
        argv += ["--fusion", fusion]
    if fuse_det_dir is not None:  # mean fusion reads test.py --fuse_weights's DET_DIR/mean alone
        argv += ["--fuse_det_dir", str(fuse_det_dir)]
        inputs.append(frame_map_path(fuse_det_dir))
    run_stage("tubes", build_tubes, argv, results_path(tube_dir), *inputs)
    return json.loads(results_path(tube_dir).read_text())


def online(args, root, det_dir, tube_dir, out_dir):
    """eval_online.py: early label accuracy and video-mAP against the fraction of each video observed."""
    run_stage("online", eval_online, tube_argv(args, root, det_dir, tube_dir, out_dir) + link_mode(args),
              out_dir / "online.json",
              results_path(tube_dir))
    return sorted(str(p) for p in out_dir.glob("online_*.png"))


def plots(args, root, tube_dir, eval_dir):
    tubes_file = tube_file(tube_dir, args.alphas[0])
    argv = ["--tubes", str(tubes_file), "--annot", str(layout.split_path(root, layout.ANNOT_FILE)),
            "--out_dir", str(eval_dir), "--classes", str(tube_dir / "classes.txt")]
    run_stage("plots", eval_video_ap, argv, results_path(eval_dir), tubes_file)
    return sorted(str(p) for p in eval_dir.glob("*.png"))


def annotated_video(args, root, weights, out_dir):
    video = read_video_list(layout.split_path(root, TEST_LIST))[0]
    out = out_dir / f"{video.split('/')[-1]}.mp4"
    argv = ["--video", str(layout.video_dir(root, "rgb", video)), "--weights", str(weights), "--out", str(out),
            "--device", args.device, "--link_score", f"{args.link_score:g}", *link_mode(args),
            "--backend", "torch"]  # one short clip: exporting it for onnxruntime would take longer
    run_stage("video", demo_script, argv, out, weights)
    return str(out)


class Rows:
    """The results table being built: a row per model or fusion, named as the original's table."""

    def __init__(self, args, root, work):
        self.args, self.root, self.work, self.summary, self.rows = args, root, work, {}, {}

    def model(self, name, key, args, weights):
        """Detections and tubes of one trained model: WORK/detections[_key], WORK/tubes[_key]."""
        suffix = f"_{key}" if key else ""
        det_dir, tube_dir = self.work / f"detections{suffix}", self.work / f"tubes{suffix}"
        if not self.args.stages & {"detect", "tubes"}:
            return det_dir, None
        det = detect(args, self.root, weights, det_dir)
        self.summary[name] = {"weights": str(weights), "frame_map_voc": det["frame_map_voc"], "frame_ap_voc": det["ap"],
                              "fps": det["frames"] / det["total_seconds"]}
        if "tubes" in self.args.stages:
            self.add(name, tubes(self.args, self.root, det_dir, det, tube_dir))
        return det_dir, det

    def add(self, name, results):
        self.summary.setdefault(name, {}).update(video_map=results["video_map"],
                                                 frame_map_frameap=results.get("frame_map_frameap"), table=table(results))
        self.rows[name] = summary_row(results, self.args.alphas[0])


@exits_on_input_errors(get_args_parser)
def main(argv=None):
    args = get_args_parser().parse_args(argv)
    if args.basenet:
        read_weights(args.basenet)  # a bad file stops the run here, not after the data stage
    work = Path(args.work_dir).expanduser()
    work.mkdir(parents=True, exist_ok=True)
    setup_logging(work / "pipeline.log")
    root = prepare(args, work)
    if args.stages == {"data"}:
        return 0
    args.max_iter = iterations(args, root)
    args.val_step = args.val_step or max(args.max_iter // 4, 1)
    args.print_step = args.print_step or max(args.max_iter // 20, 1)
    width, base, extra = f"w{args.width_mult:g}", args.input_type_base, args.input_type_extra
    rows = Rows(args, root, work)
    base_args = one_stream(args, base, args.input_frames_base)
    weights = trained(base_args, root, work / "train" / f"{base}_{width}")
    base_dets, det = rows.model(row_name(base), "", base_args, weights)
    if args.late_fusion or two_stream(args.fusion_type):
        extra_args = one_stream(args, extra, args.input_frames_extra)
        extra_weights = trained(extra_args, root, work / "train" / f"{extra}_{width}")
        extra_dets, _ = rows.model(row_name(extra), extra, extra_args, extra_weights)
        for fusion in args.late_fusion if "tubes" in args.stages else ():
            dets, fuse_dets = (mean_detections(base_args, root, weights, extra_weights, work / "detections_late")
                               if fusion == "mean" else (base_dets, extra_dets))
            rows.add(row_name(base, extra, fusion), tubes(args, root, dets, det, work / f"tubes_{fusion}", fuse_dets, fusion))
        if two_stream(args.fusion_type):
            fused_args = argparse.Namespace(**{**vars(args), "base_weights": weights, "extra_weights": extra_weights})
            fused = trained(fused_args, root, work / "train" / f"{base}+{extra}_{args.fusion_type}_{width}")
            rows.model(row_name(base, extra, args.fusion_type), args.fusion_type, fused_args, fused)
    summary = {"data_root": str(root), "weights": str(weights)}
    summary.update(rows.summary.get(row_name(base), {}))
    if len(rows.summary) > 1:
        summary["models"] = rows.summary
    if rows.rows:
        summary["rows"], summary["results_table"] = rows.rows, rows_table(rows.rows)
    if "plots" in args.stages:
        summary["plots"] = plots(args, root, work / "tubes", work / "eval")
    if "online" in args.stages:
        summary["online"] = online(args, root, work / "detections", work / "tubes", work / "online")
    if "video" in args.stages:
        summary["video"] = annotated_video(args, root, weights, work / "demo")
    with atomic_path(work / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    report(summary, args.alphas[0])
    log.info("results in %s", work / "summary.json")
    return 0


def row_name(base, extra=None, fusion=None):
    """The original table's row names: RGB, FastOF, RGB+FastOF boost, RGB+FastOF SUM, ..."""
    name = lambda t: "RGB" if t == "rgb" else t[0].upper() + t[1:]
    return name(base) if extra is None else f"{name(base)}+{name(extra)} {fusion}"


def report(summary, alpha):
    if "frame_map_voc" in summary:
        print(f"VOC frame-mAP@0.5 of the micro-tube detections (test.py): {100 * summary['frame_map_voc']:.2f}  "
              f"({summary['fps']:.0f} frames/s end to end)")
    if "table" in summary:
        print("video-mAP of the linked, trimmed tubes (build_tubes.py; last line: frameAp.m's frame-mAP "
              "of the linking's per-frame detections):")
        print(summary["table"])
    if len(summary.get("rows", {})) > 1:
        print(f"results table (alpha {alpha:g}; frame-mAP: frameAp.m's, of the detections each row's linking took):")
        print(summary["results_table"])
    if "video" in summary:
        print(f"annotated video (demo.py): {summary['video']}")


if __name__ == "__main__":
    sys.exit(main())
