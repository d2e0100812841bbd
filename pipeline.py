"""The whole chain on a dataset in the UCF24 layout (the toy set by default).

  python pipeline.py                                  # toy data, CPU, a few minutes
  python pipeline.py --data_root ~/data/ucf24 --dataset ucf24 --width_mult 1 --basenet vgg16_reducedfc.pth \\
      --max_iter 70000 --stepvalues 50000 --lr 0.0005 --max_expand 4 --batch_size 8

Stages, each skipped when its output is there, newer than its inputs and made with the same flags
(an interrupted run continues where it stopped; training resumes from its latest checkpoint):
  1. data: render the toy dataset into WORK/toy_data when no --data_root is given; check the dataset;
  2. train: train.py into WORK/train/<exp>/AMTNet_<iter>.pth;
  3. detect: test.py on every test video -> WORK/detections/<Class>/<video>.npz and frame-mAP;
  4. tubes: build_tubes.py -> online linking, temporal trimming, video-mAP (WORK/tubes);
  5. plots: eval_video_ap.py -> precision-recall curves, video-mAP against ST-IoU (WORK/eval/*.png);
  6. online: eval_online.py -> early label accuracy and video-mAP against the fraction of each video
     observed, as the ROAD paper's figures (WORK/online);
  7. video: demo.py on the first test video -> WORK/demo/<video>.mp4, the online action paths and ground truth drawn;
  8. report: analyze.py -> the error analysis (WORK/errors) and WORK/report.html, one page on the run (docs/report.md).
Two streams (the original's results table): --late_fusion boost,union,mean and/or --fusion_type SUM|CAT|MEAN also
train a one-stream model of --input_type_extra (fastOF on the toy set) and run its rows (that stream, the late
fusions, the two-stream network from the two models) in WORK/<stage>_<row>/ (detections_fastOF/, tubes_boost/, ...).
The data, model, training, detection and device flags are train.py's and test.py's (passed on when they differ
from those scripts' defaults); the defaults here are the toy recipe. The results table (a row per model and
fusion) is printed at the end and saved in WORK/summary.json.
"""
import argparse
import dataclasses
import logging
import sys
from pathlib import Path

import analyze
import build_tubes
import demo as demo_script
import eval_online
import eval_video_ap
import test as test_script
import train as train_script
from data import layout
from data.annotations import check_dataset, read_video_list
from data.toy import EXTRA_TEST_VIDEOS, ToyConfig, has_toy_dataset, make_toy_dataset
from engine.cli import (changed_flags, data_args, data_config, detection_args, device_args, model_args, one_stream_args,
                        train_args)
from engine.stages import detect_stage, eval_argv, name_list, run_stage, train_stage, training_iterations, tube_argv, tubes_stage
from engine.training import native_bfloat16
from models.config import two_stream
from tubes.cli import late_fusion_list, tube_args
from tubes.fusion import late_fusion
from tubes.results_table import ResultsTable, report, row_name
from tubes.runner import results_path, write_json
from tubes.tube_files import tube_file
from utils.checkpoint import read_weights
from utils.errors import exits_on_input_errors
from utils.logging_utils import setup_logging
from utils.version import add_version_flag

log = logging.getLogger("pipeline")
STAGES = ("data", "train", "detect", "tubes", "plots", "online", "video", "report")
TEST_LIST = layout.split_list_name("test", 1)
# The default recipe (BENCHMARKS.md, "Training recipe", says what each part buys): a narrow backbone with batch norm
# trained from scratch by Adam, warm-up and cosine decay, background scores started at 0.99, the original's augmentation
# without zoom-out (toy actors would be smaller than any prior) or colour permutation (colour is a cue), 15% of each
# class's training videos held out for validation, whole micro-tubes scoring 0.1 or more linked (AMTNet's linking).
TOY_RECIPE = dict(width_mult=0.125, max_iter=None, optimizer="adam", lr=0.003, batch_size=8, max_expand=1.0,
                  norm="batch", lr_schedule="cosine", warmup_iters=40, background_prior=0.99, val_fraction=0.15,
                  link_score=0.1, link="micro", input_type_extra="fastOF", channel_swap=False, channels_last=True,
                  amp=native_bfloat16() or None, epochs=7.0)  # channels-last, bfloat16: 7 epochs in the time of 3.5


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     parents=[data_args(), model_args(), train_args(), detection_args(), device_args(),
                                              tube_args()])
    parser.set_defaults(**TOY_RECIPE, val_step=None, print_step=None)  # None: a quarter and a twentieth of max_iter
    group = parser.add_argument_group("pipeline")
    group.add_argument("--epochs", type=float, help="passes over the training windows, without --max_iter")
    group.add_argument("--work_dir", default="runs/pipeline", help="where the toy data and all outputs go")
    group.add_argument("--seed", type=int, default=0, help="toy dataset seed")
    group.add_argument("--toy_videos", type=int, default=ToyConfig.num_videos, help="toy videos, a quarter of them test")
    group.add_argument("--toy_test_videos", type=int, default=EXTRA_TEST_VIDEOS, help="more toy videos, all test")
    group.add_argument("--late_fusion", default=(), type=late_fusion_list,
                       help="late fusions of the two streams' detections to run (build_tubes.py's, comma-separated)")
    group.add_argument("--checkpoint", default="last", choices=("best", "last"), help="test the last or the best on validation")
    group.add_argument("--stages", default=",".join(STAGES), type=name_list(STAGES),
                       help="stages to run (the later ones need the earlier ones' outputs)")
    return add_version_flag(parser)


@exits_on_input_errors(get_args_parser)
def main(argv=None):
    args = get_args_parser().parse_args(argv)
    if args.basenet:
        read_weights(args.basenet)  # a bad file stops the run here, not after the data stage
    (work := Path(args.work_dir).expanduser()).mkdir(parents=True, exist_ok=True)
    setup_logging(work / "pipeline.log")
    root = Path(args.data_root).expanduser() if args.data_root else work / "toy_data"
    toy = ToyConfig(num_videos=args.toy_videos, seed=args.seed, test_videos=args.toy_test_videos)
    if args.data_root is None and not has_toy_dataset(root, toy):  # none there, or with other videos: rendered again
        log.info("stage data: rendering the toy dataset into %s", root)
        make_toy_dataset(root, toy)
    two_streams = bool(args.late_fusion) or two_stream(args.fusion_type)
    types = {"rgb", args.input_type_base} | ({args.input_type_extra} if two_streams else set())
    check_dataset(root, sorted(types | ({"fastOF"} if args.data_root is None else set())))
    if args.stages == {"data"}:
        return 0
    data_cfg = dataclasses.replace(data_config(args), data_root=str(root))
    args.max_iter = args.max_iter or training_iterations(data_cfg, args.epochs, args.batch_size)
    args.val_step = args.val_step or max(args.max_iter // 4, 1)
    args.print_step = args.print_step or max(args.max_iter // 20, 1)
    width, base, extra, table = f"w{args.width_mult:g}", args.input_type_base, args.input_type_extra, ResultsTable(args.alphas[0])
    annot, videos = layout.split_path(root, layout.ANNOT_FILE), read_video_list(layout.split_path(root, TEST_LIST))

    def trained(model_args_, exp_dir):  # the checkpoint to test (--checkpoint), trained (or resumed) by the train stage
        flags = changed_flags(model_args_, [data_args(), model_args(), train_args(), detection_args(), device_args()])
        argv = ["--data_root", str(root), "--save_root", str(exp_dir.parent), "--exp_name", exp_dir.name] + flags
        weights = train_stage(train_script, argv, exp_dir, args.max_iter, "train" in args.stages, args.checkpoint)
        setup_logging(work / "pipeline.log")  # train.py points the log at its experiment folder
        return weights

    def detect(model_args_, weights, det_dir, fuse_weights=None, stream=None):
        flags = changed_flags(model_args_, [data_args(), model_args(), detection_args(), device_args()])
        return detect_stage(test_script, root, weights, det_dir, flags, "detect" in args.stages, fuse_weights, stream)

    def tubes(name, det_dir, tube_dir, classes, fusion=None, fuse_det_dir=None):
        table.add(name, tubes_stage(build_tubes, annot, videos, classes, det_dir, tube_dir, args.alphas, args.link_score,
                                    args.link, fusion, fuse_det_dir))

    def model_rows(name, model_args_, weights, key=""):  # a row: WORK/detections[_key], WORK/tubes[_key]
        det_dir, det = work / f"detections{key and '_'}{key}", None
        if args.stages & {"detect", "tubes"}:
            table.add_detections(name, weights, det := detect(model_args_, weights, det_dir))
            if "tubes" in args.stages:
                tubes(name, det_dir, work / f"tubes{key and '_'}{key}", det["ap"])
        return det_dir, det

    base_args = one_stream_args(args, base, args.input_frames_base)
    weights = trained(base_args, work / "train" / f"{base}_{width}")
    base_dets, det = model_rows(row_name(base), base_args, weights)
    if two_streams:
        extra_args = one_stream_args(args, extra, args.input_frames_extra)
        extra_weights = trained(extra_args, work / "train" / f"{extra}_{width}")
        extra_dets, _ = model_rows(row_name(extra), extra_args, extra_weights, extra)
        for fusion in args.late_fusion if "tubes" in args.stages else ():
            streams = (base_dets, extra_dets)
            if not late_fusion(fusion).per_frame:  # test.py --fuse_weights fuses the two models' scores prior by prior
                detect(base_args, weights, work / "detections_late", extra_weights, fusion)
                streams = (work / "detections_late" / fusion, None)
            tubes(row_name(base, extra, fusion), streams[0], work / f"tubes_{fusion}", det["ap"], fusion, streams[1])
        if two_stream(args.fusion_type):
            fused_args = argparse.Namespace(**{**vars(args), "base_weights": weights, "extra_weights": extra_weights})
            fused = trained(fused_args, work / "train" / f"{base}+{extra}_{args.fusion_type}_{width}")
            model_rows(row_name(base, extra, args.fusion_type), fused_args, fused, args.fusion_type)
    summary = table.summary_of(row_name(base), data_root=str(root), weights=str(weights))
    tubes_file = tube_file(work / "tubes", args.alphas[0])
    if "plots" in args.stages:  # precision-recall curves, video-mAP against ST-IoU
        run_stage("plots", eval_video_ap, eval_argv(tubes_file, annot, work / "eval"), results_path(work / "eval"), tubes_file)
        summary["plots"] = sorted(str(p) for p in (work / "eval").glob("*.png"))
    if "online" in args.stages:  # early label accuracy and video-mAP against the fraction of each video observed
        argv = tube_argv(annot, work / "detections", work / "tubes", work / "online", args.alphas, args.link_score, args.link)
        run_stage("online", eval_online, argv, work / "online" / "online.json", results_path(work / "tubes"))
        summary["online"] = sorted(str(p) for p in (work / "online").glob("online_*.png"))
    if "video" in args.stages:  # demo.py on the first test video (PyTorch: exporting for one short clip takes longer)
        summary["video"] = str(out := work / "demo" / f"{videos[0].split('/')[-1]}.mp4")
        run_stage("video", demo_script, ["--video", str(layout.video_dir(root, "rgb", videos[0])), "--annot", str(annot),
                                         "--weights", str(weights), "--out", str(out), "--device", args.device, "--link", args.link,
                                         "--link_score", f"{args.link_score:g}", "--backend", "torch"], out, weights)
    write_json(work / "summary.json", summary)
    if "report" in args.stages:  # after summary.json, which it reads
        run_stage("report", analyze, eval_argv(tubes_file, annot, work / "errors", work), work / "report.html", work / "summary.json")
    print(report(summary, args.alphas[0]))
    log.info("results in %s", work / "summary.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
