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
The results table is printed at the end and saved in WORK/summary.json.
"""
import argparse
import contextlib
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
from data.dataset import ActionDetection
from data.annotations import check_dataset, read_video_list
from data.toy import ToyConfig, make_toy_dataset
from utils.args import tube_args
from utils.distributed import DEVICE_CHOICES
from utils.checkpoint import best_checkpoint, checkpoint_path, latest_checkpoint
from utils.io import atomic_path, is_fresh
from utils.logging_utils import setup_logging

log = logging.getLogger("pipeline")
STAGES = ("data", "train", "detect", "tubes", "plots", "video")
TEST_LIST = layout.split_list_name("test", 1)

# The toy recipe: a narrow backbone trained from scratch with Adam (SGD barely moves a VGG
# without batch norm in a few hundred iterations), the original's augmentation without its
# zoom-out (the toy actors are small: a 4x zoom-out leaves them smaller than any prior), and
# no learning-rate drop within the 400 iterations (a drop at 300 gave 35.8 instead of 43.1
# frame-mAP on the toy test set).
TOY_RECIPE = dict(width_mult=0.125, epochs=3.5, optimizer="adam", lr=0.001, stepvalues="1000", batch_size=8,
                  max_expand=1.0, norm="batch", lr_schedule="cosine", warmup_iters=40, val_fraction=0.15,
                  background_prior=0.99)


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     parents=[tube_args()])
    parser.add_argument("--data_root", default=None, help="dataset in the UCF24 layout (default: make the toy set)")
    parser.add_argument("--dataset", default="toy", help="dataset name passed to train.py / test.py")
    parser.add_argument("--work_dir", default="runs/pipeline", help="where the toy data and all outputs go")
    parser.add_argument("--seed", type=int, default=0, help="toy dataset seed")
    parser.add_argument("--toy_videos", type=int, default=ToyConfig.num_videos)
    parser.add_argument("--input_type_base", default="rgb", help="input of the one-stream model (rgb, fastOF, brox)")
    parser.add_argument("--input_frames_base", default=1, type=int)
    for name, value in TOY_RECIPE.items():
        parser.add_argument(f"--{name}", default=value, type=type(value), help=f"training (default {value})")
    parser.add_argument("--max_iter", default=None, type=int,
                        help="training iterations (default: --epochs passes over the training windows)")
    parser.add_argument("--basenet", default=None, help="pretrained backbone weights (default: from scratch)")
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    parser.add_argument("--num_workers", default=2, type=int)
    parser.add_argument("--stages", default=",".join(STAGES),
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


def common_flags(args, root):
    return ["--dataset", args.dataset, "--data_root", str(root), "--input_type_base", args.input_type_base,
            "--input_frames_base", str(args.input_frames_base), "--width_mult", str(args.width_mult),
            "--device", args.device, "--num_workers", str(args.num_workers)]


def iterations(args, root):
    """--max_iter, else --epochs passes over the training windows (at least one batch)."""
    if args.max_iter:
        return args.max_iter
    cfg = train_script.data_config(train_script.get_args_parser().parse_args(common_flags(args, root) + [
        "--val_fraction", str(args.val_fraction)]))
    windows = len(ActionDetection(cfg, "train"))
    count = max(1, round(args.epochs * windows / args.batch_size))
    log.info("training for %d iterations: %g epochs of %d windows in batches of %d", count, args.epochs, windows,
             args.batch_size)
    return count


def train(args, root, exp_dir):
    max_iter = iterations(args, root)
    final = checkpoint_path(exp_dir, max_iter)
    if final.is_file():
        log.info("stage train: %s exists, not training again", final)
        return best_checkpoint(exp_dir)
    argv = common_flags(args, root) + [
        "--save_root", str(exp_dir.parent), "--exp_name", exp_dir.name, "--max_iter", str(max_iter),
        "--optimizer", args.optimizer, "--lr", str(args.lr), "--stepvalues", args.stepvalues, "--batch_size", str(args.batch_size),
        "--max_expand", str(args.max_expand), "--norm", args.norm, "--lr_schedule", args.lr_schedule,
        "--warmup_iters", str(args.warmup_iters), "--val_fraction", str(args.val_fraction),
        "--background_prior", str(args.background_prior), "--val_step", str(max(max_iter // 4, 1)), "--print_step", str(max(max_iter // 20, 1))]
    if args.basenet:
        argv += ["--basenet", args.basenet]
    resume = latest_checkpoint(exp_dir)
    if resume is not None:
        argv += ["--resume", str(resume)]
    log.info("stage train: python train.py %s", " ".join(argv))
    train_script.main(argv)
    best = best_checkpoint(exp_dir)
    log.info("stage train: %s has the best validation frame-mAP", best)
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
    result_file = det_dir.parent / f"{det_dir.name}-frame_map.json"
    run_stage("detect", test_script, common_flags(args, root) + ["--weights", str(weights), "--det_dir", str(det_dir)],
              result_file, weights)
    return json.loads(result_file.read_text())


def tubes(args, root, det_dir, det_result, tube_dir):
    videos, classes = tube_dir / "videos.txt", tube_dir / "classes.txt"
    for path, lines in ((videos, read_video_list(layout.split_path(root, TEST_LIST))), (classes, det_result["ap"])):
        with atomic_path(path) as tmp:
            tmp.write_text("".join(f"{line}\n" for line in lines))
    argv = ["--det_dir", str(det_dir), "--det_format", "npz", "--annot", str(layout.split_path(root, layout.ANNOT_FILE)),
            "--out_dir", str(tube_dir), "--video_list", str(videos), "--classes", str(classes),
            "--alphas", ",".join(f"{a:g}" for a in args.alphas), "--workers", "2"]
    run_stage("tubes", build_tubes, argv, tube_dir / "results.json", det_dir.parent / f"{det_dir.name}-frame_map.json")
    return json.loads((tube_dir / "results.json").read_text())


def plots(args, root, tube_dir, eval_dir):
    alpha = args.alphas[0]
    tube_file = tube_dir / f"tubes_alpha{alpha:g}.npz"
    argv = ["--tubes", str(tube_file), "--annot", str(layout.split_path(root, layout.ANNOT_FILE)),
            "--out_dir", str(eval_dir), "--classes", str(tube_dir / "classes.txt")]
    run_stage("plots", eval_video_ap, argv, eval_dir / "results.json", tube_file)
    return sorted(str(p) for p in eval_dir.glob("*.png"))


def annotated_video(args, root, weights, out_dir):
    video = read_video_list(layout.split_path(root, TEST_LIST))[0]
    out = out_dir / f"{video.split('/')[-1]}.mp4"
    argv = ["--video", str(layout.video_dir(root, "rgb", video)), "--weights", str(weights), "--out", str(out),
            "--device", args.device]
    run_stage("video", demo_script, argv, out, weights)
    return str(out)


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    work = Path(args.work_dir).expanduser()
    work.mkdir(parents=True, exist_ok=True)
    setup_logging(work / "pipeline.log")
    stages = set(args.stages.split(","))
    unknown = stages - set(STAGES)
    if unknown:
        raise SystemExit(f"--stages: unknown stage(s) {sorted(unknown)}")
    root = prepare(args, work)
    if stages == {"data"}:
        return 0
    exp_dir = work / "train" / f"{args.input_type_base}_w{args.width_mult:g}"
    weights = train(args, root, exp_dir) if "train" in stages else best_checkpoint(exp_dir)
    setup_logging(work / "pipeline.log")  # train.py points the log at its experiment folder
    if weights is None or not weights.is_file():
        raise SystemExit(f"no trained model in {exp_dir}: run the train stage")
    summary = {"data_root": str(root), "weights": str(weights)}
    det_dir = work / "detections"
    if stages & {"detect", "tubes"}:
        det = detect(args, root, weights, det_dir) if "detect" in stages else \
            json.loads((det_dir.parent / f"{det_dir.name}-frame_map.json").read_text())
        summary.update(frame_map=det["frame_map"], frame_ap=det["ap"], fps=det["frames"] / det["total_seconds"])
    if "tubes" in stages:
        results = tubes(args, root, det_dir, det, work / "tubes")
        summary.update(video_map=results["video_map"], tubes_frame_map=results.get("frame_map"), table=build_tubes.tr.table(results))
    if "plots" in stages:
        summary["plots"] = plots(args, root, work / "tubes", work / "eval")
    if "video" in stages:
        summary["video"] = annotated_video(args, root, weights, work / "demo")
    with atomic_path(work / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    if "frame_map" in summary:
        print(f"frame-mAP@0.5 of the micro-tube detections (test.py): {100 * summary['frame_map']:.2f}  "
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
