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
  5. plots: eval_video_ap.py -> precision-recall curves (WORK/eval/*.png);
  6. video: demo.py on the first test video -> WORK/demo/<video>.mp4 with the online action paths drawn.
The data, model, training, detection and device flags are train.py's and test.py's (passed on to
them when they differ from those scripts' defaults); the defaults here are the toy recipe.
The results table is printed at the end and saved in WORK/summary.json.
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
import eval_video_ap
import test as test_script
import train as train_script
from data import layout
from data.annotations import check_dataset, read_video_list
from data.dataset import ActionDetection
from data.toy import ToyConfig, make_toy_dataset
from engine.cli import changed_flags, data_args, data_config, detection_args, device_args, model_args, train_args
from tubes.cli import tube_args
from tubes.detections import frame_map_path
from tubes.runner import results_path, table
from tubes.tube_files import tube_file
from utils.checkpoint import best_checkpoint, checkpoint_path, latest_checkpoint
from utils.io import atomic_path, is_fresh
from utils.logging_utils import setup_logging

log = logging.getLogger("pipeline")
STAGES = ("data", "train", "detect", "tubes", "plots", "video")
TEST_LIST = layout.split_list_name("test", 1)

# The default recipe: a narrow backbone with batch norm trained from scratch (no pretrained
# weights can be downloaded) with Adam, a warm-up and a cosine decay, the background class's
# scores started at 0.99, the original's augmentation without its zoom-out (a 4x zoom-out leaves
# the toy actors smaller than any prior), EPOCHS passes over the training windows, 15% of each
# class's training videos held out to choose the checkpoint, and linking only detections scoring
# at least 0.1 (so that paths end where the actors do). BENCHMARKS.md ("Training
# recipe") has what each part buys, chosen on other toy seeds and on the tracks dataset.
TOY_RECIPE = dict(width_mult=0.125, max_iter=None, optimizer="adam", lr=0.003, batch_size=8, max_expand=1.0,
                  norm="batch", lr_schedule="cosine", warmup_iters=40, background_prior=0.99, val_fraction=0.15,
                  link_score=0.1)
EPOCHS = 3.5


def stage_list(text):
    stages = text.split(",")
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown stage(s) {unknown}; stages: {', '.join(STAGES)}")
    return set(stages)


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
    group.add_argument("--stages", default=",".join(STAGES), type=stage_list,
                       help="stages to run (the later ones need the earlier ones' outputs)")
    return parser


def prepare(args, work):
    root = Path(args.data_root).expanduser() if args.data_root else work / "toy_data"
    input_types = {"rgb", args.input_type_base}
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
    best = best_checkpoint(exp_dir)
    log.info("stage train: testing %s, the best on validation", best.name)
    return best


def run_stage(stage, script, argv, output, *inputs):
    """``script.main(argv)`` unless ``output`` is newer than ``inputs``; its tables are printed once, at the end."""
    if is_fresh(output, *inputs):
        log.info("stage %s: %s is up to date", stage, output)
        return
    log.info("stage %s: python %s.py %s", stage, script.__name__, " ".join(argv))
    with contextlib.redirect_stdout(io.StringIO()):
        script.main(argv)


def detect(args, root, weights, det_dir):
    argv = ["--data_root", str(root), "--weights", str(weights), "--det_dir", str(det_dir)] + changed_flags(
        args, [data_args(), model_args(), detection_args(), device_args()])
    run_stage("detect", test_script, argv, frame_map_path(det_dir), weights)
    return json.loads(frame_map_path(det_dir).read_text())


def tubes(args, root, det_dir, det_result, tube_dir):
    videos, classes = tube_dir / "videos.txt", tube_dir / "classes.txt"
    for path, lines in ((videos, read_video_list(layout.split_path(root, TEST_LIST))), (classes, det_result["ap"])):
        with atomic_path(path) as tmp:
            tmp.write_text("".join(f"{line}\n" for line in lines))
    argv = ["--det_dir", str(det_dir), "--det_format", "npz", "--annot", str(layout.split_path(root, layout.ANNOT_FILE)),
            "--out_dir", str(tube_dir), "--video_list", str(videos), "--classes", str(classes),
            "--alphas", ",".join(f"{a:g}" for a in args.alphas), "--link_score", f"{args.link_score:g}", "--workers", "2"]
    run_stage("tubes", build_tubes, argv, results_path(tube_dir), frame_map_path(det_dir))
    return json.loads(results_path(tube_dir).read_text())


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
            "--device", args.device, "--link_score", f"{args.link_score:g}"]
    run_stage("video", demo_script, argv, out, weights)
    return str(out)


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    work = Path(args.work_dir).expanduser()
    work.mkdir(parents=True, exist_ok=True)
    setup_logging(work / "pipeline.log")
    root = prepare(args, work)
    if args.stages == {"data"}:
        return 0
    args.max_iter = iterations(args, root)
    args.val_step = args.val_step or max(args.max_iter // 4, 1)
    args.print_step = args.print_step or max(args.max_iter // 20, 1)
    exp_dir = work / "train" / f"{args.input_type_base}_w{args.width_mult:g}"
    weights = train(args, root, exp_dir) if "train" in args.stages else best_checkpoint(exp_dir)
    setup_logging(work / "pipeline.log")  # train.py points the log at its experiment folder
    if weights is None or not weights.is_file():
        raise SystemExit(f"no trained model in {exp_dir}: run the train stage")
    summary = {"data_root": str(root), "weights": str(weights)}
    det_dir = work / "detections"
    if args.stages & {"detect", "tubes"}:
        det = detect(args, root, weights, det_dir) if "detect" in args.stages else \
            json.loads(frame_map_path(det_dir).read_text())
        summary.update(frame_map_voc=det["frame_map_voc"], frame_ap_voc=det["ap"],
                       fps=det["frames"] / det["total_seconds"])
    if "tubes" in args.stages:
        results = tubes(args, root, det_dir, det, work / "tubes")
        summary.update(video_map=results["video_map"], frame_map_frameap=results.get("frame_map_frameap"),
                       table=table(results))
    if "plots" in args.stages:
        summary["plots"] = plots(args, root, work / "tubes", work / "eval")
    if "video" in args.stages:
        summary["video"] = annotated_video(args, root, weights, work / "demo")
    with atomic_path(work / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    if "frame_map_voc" in summary:
        print(f"VOC frame-mAP@0.5 of the micro-tube detections (test.py): {100 * summary['frame_map_voc']:.2f}  "
              f"({summary['fps']:.0f} frames/s end to end)")
    if "table" in summary:
        print("video-mAP of the linked, trimmed tubes (build_tubes.py; last line: frameAp.m's frame-mAP "
              "of the linking's per-frame detections):")
        print(summary["table"])
    if "video" in summary:
        print(f"annotated video (demo.py): {summary['video']}")
    log.info("results in %s", work / "summary.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
