"""Cost curves: each stage's time and peak memory at 1x, 3x and 10x the work, on data shaped like UCF101-24.

  python -m bench.bench_scale                               # 5 / 15 / 50 test videos
  python -m bench.bench_scale --base 9 --out runs/scale9    # 9 / 27 / 90 test videos (a tenth of the split at 10x)

Data: real UCF101-24 videos' annotations (the shipped pyannot.pkl: 24 classes, each video's frame count, tubes and
split), frames rendered at the real 320x240 (each video a noise background, each actor's box filled with its class's
colour). Scale k takes the first k x BASE test videos and k x BASE x 2.5 training videos (the split's ratio) of one
seeded shuffle, so each scale holds the smaller ones; the longest test video of the largest scale comes first, so
every scale holds it (test.py holds one video's detections until it writes them: a peak set by the longest video).
Every stage runs as its own process, measured by ``os.wait4`` (wall seconds, CPU seconds of the process and its
children, peak resident memory of the largest of them):
  index     the train and test splits' windows indexed (train.py's and test.py's start-up); also on OUT/data_full,
            the whole annotation set without frames
  train     train.py, ITERS iterations (seconds per iteration from its log, after the first print)
  test      test.py with the 1x checkpoint at every scale (barely trained: the detections are noise, but as many
            per frame as a real model's at its score threshold or more)
  tubes     build_tubes.py;  online  eval_online.py;  video_ap  eval_video_ap.py
  pipeline  pipeline.py --stages train,detect,tubes,plots,online on the same data (end to end)
Finished stages are kept (OUT/scale.json) and not run again. Writes OUT/scale.json, OUT/scale.md and OUT/scale.png.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from data import layout
from data.annotations import load_pyannot, read_video_list
from data.prepare import write_frames
from data.toy import write_splits

REPO = Path(__file__).resolve().parents[1]
ANNOT = layout.UCF24_ANNOT_DIR / layout.ANNOT_FILE
SCALES = (1, 3, 10)
OUTPUTS = {"train": ("train",), "test": ("det",), "tubes": ("tubes",), "online": ("online",), "video_ap": ("eval",),
           "pipeline": ("pipeline",)}
STAGES = ("index", "train", "test", "tubes", "online", "video_ap", "pipeline")
TRAIN_PER_TEST = 2.5  # 2,284 training videos for 910 test videos in split 1
RECIPE = ["--width_mult", "0.125", "--norm", "batch", "--batch_size", "8", "--no-channel_swap"]


def get_args_parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/scale", help="data, outputs and the results")
    ap.add_argument("--base", type=int, default=5, help="test videos at 1x")
    ap.add_argument("--iters", type=int, default=40, help="train.py iterations per scale")
    ap.add_argument("--stages", default=",".join(STAGES), help="stages to measure (comma-separated)")
    ap.add_argument("--seed", type=int, default=0, help="the shuffle choosing the videos")
    return ap


def choose_videos(base: int, seed: int) -> tuple:
    """(database, classes, test split, chosen test videos, chosen training videos): the real annotations and each
    split's videos in one seeded order."""
    db = load_pyannot(ANNOT)
    test = all_test = sorted(set(read_video_list(ANNOT.with_name("testlist01.txt"))) & set(db))
    train = sorted(set(db) - set(test))
    classes = sorted({name.split("/")[0] for name in db})  # the class folders: what the readers use
    rng = np.random.default_rng(seed)
    count = base * max(SCALES)
    test = [test[i] for i in rng.permutation(len(test))[:count]]
    longest = max(range(count), key=lambda i: db[test[i]].num_frames)  # first: every scale holds the longest video,
    test.insert(0, test.pop(longest))  # so that a peak set by one long video does not pass for growth with the count
    return db, classes, all_test, test, [train[i] for i in rng.permutation(len(train))[:round(count * TRAIN_PER_TEST)]]


def render(video, frames_root: Path, colours: np.ndarray) -> int:
    """Write the video's frames (320x240) unless there; returns its frame count."""
    directory = frames_root / video.name
    if not directory.is_dir():
        rng = np.random.default_rng(zlib.crc32(video.name.encode()))
        background = cv2.GaussianBlur(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), (7, 7), 0)
        frames = [background.copy() for _ in range(video.num_frames)]
        for tube in video.tubes:
            for i, box in enumerate(tube.boxes.astype(int)):
                cv2.rectangle(frames[tube.start + i], tuple(box[:2]), tuple(box[2:]), colours[tube.class_id].tolist(), -1)
        directory.parent.mkdir(parents=True, exist_ok=True)
        write_frames(frames, directory)
    return video.num_frames


def make_data(args, out: Path) -> dict:
    """OUT/data_<k>x for every scale, sharing OUT/frames, and OUT/data_full (annotations only); returns
    {"<k>x" or "full": {"root", "test videos", "train videos", "test frames", "train frames"}}."""
    db, classes, all_test, test, train = choose_videos(args.base, args.seed)
    frames_root = out / "frames" / "rgb-images"
    colours = np.random.default_rng(1).integers(40, 256, (len(classes), 3))
    lengths = {name: render(db[name], frames_root, colours) for name in tqdm(test + train, desc="frames", unit="video")}
    scales = {}
    for k in SCALES:
        root = out / f"data_{k}x"
        n_test, n_train = k * args.base, round(k * args.base * TRAIN_PER_TEST)
        videos = {name: db[name] for name in test[:n_test] + train[:n_train]}
        (root / "rgb-images").parent.mkdir(parents=True, exist_ok=True)
        if not (root / "rgb-images").exists():
            (root / "rgb-images").symlink_to(frames_root, target_is_directory=True)
        write_splits(root, videos, test[:n_test], classes)
        scales[f"{k}x"] = {"root": str(root), "test videos": n_test, "train videos": n_train,
                     "test frames": sum(lengths[n] for n in test[:n_test]),
                     "train frames": sum(lengths[n] for n in train[:n_train])}
    full = out / "data_full"  # the whole annotation set, no frames: what indexing at UCF101-24's size costs
    write_splits(full, db, all_test, classes)
    scales["full"] = {"root": str(full), "test videos": len(all_test), "train videos": len(db) - len(all_test),
                      "test frames": sum(db[v].num_frames for v in all_test),
                      "train frames": sum(v.num_frames for n, v in db.items() if n not in set(all_test))}
    return scales


def measure(argv: list, log: Path, threads: int = 2) -> dict:
    """Run ``argv`` (output to ``log``); wall and CPU seconds, peak RSS (MiB) of its largest process."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.monotonic()
    with open(log, "w") as f:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{argv[1]} failed: see {log}")
    return {"wall s": wall, "cpu s": usage.ru_utime + usage.ru_stime, "peak MiB": usage.ru_maxrss / 1024}


INDEX = """import sys, time; from data.dataset import ActionDetection, DataConfig
t = time.monotonic(); cfg = DataConfig(data_root=sys.argv[1])
print(len(ActionDetection(cfg, 'train')), len(ActionDetection(cfg, 'test', full_test=True)), time.monotonic() - t)"""


def stage_argv(stage: str, root: Path, work: Path, iters: int) -> list:
    py, annot = sys.executable, str(layout.split_path(root, layout.ANNOT_FILE))
    weights = work.with_name("work_1x") / "train" / "scale" / f"AMTNet_{iters}.pth"  # one model: the same boxes per window
    tubes = ["--annot", annot, "--video_list", str(layout.split_path(root, layout.split_list_name("test", 1))), "--det_format", "npz"]
    return {
        "index": [py, "-c", INDEX, str(root)],
        "train": [py, "train.py", "--data_root", str(root), "--save_root", str(work / "train"), "--exp_name", "scale",
                  "--max_iter", str(iters), "--val_step", str(iters), "--val_samples", "8", "--print_step", str(max(iters // 8, 1)),
                  "--optimizer", "adam", "--lr", "0.003", *RECIPE],
        "test": [py, "test.py", "--data_root", str(root), "--weights", str(weights), "--det_dir", str(work / "det"),
                 *RECIPE],
        "tubes": [py, "build_tubes.py", "--det_dir", str(work / "det"), "--out_dir", str(work / "tubes"), *tubes],
        "online": [py, "eval_online.py", "--det_dir", str(work / "det"), "--out_dir", str(work / "online"), *tubes],
        "video_ap": [py, "eval_video_ap.py", "--tubes", str(work / "tubes" / "tubes_alpha3.npz"),
                     "--annot", annot, "--out_dir", str(work / "eval")],
        "pipeline": [py, "pipeline.py", "--data_root", str(root), "--work_dir", str(work / "pipeline"), "--max_iter",
                     str(iters), "--stages", "train,detect,tubes,plots,online"],
    }[stage]


def seconds_per_iteration(log: Path) -> float | None:
    found = [float(s) for s in re.findall(r"([\d.]+)s/it", log.read_text())]
    return float(np.median(found[1:])) if len(found) > 1 else None


def table(results: dict, scales: dict) -> str:
    lines = ["| stage | scale | test videos | frames | wall s | CPU s | peak MiB | note |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for stage in STAGES:
        for label in scales:
            r = results.get(f"{stage}_{label}")
            if r:
                frames = scales[label]["train frames" if stage == "train" else "test frames"]
                lines.append(f"| {stage} | {label} | {scales[label]['test videos']} | {frames} | {r['wall s']:.1f} | "
                             f"{r['cpu s']:.1f} | {r['peak MiB']:.0f} | {r.get('note', '')} |")
    return "\n".join(lines)


def plot(results: dict, scales: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for stage in STAGES:
        labels = [f"{k}x" for k in SCALES if f"{stage}_{k}x" in results]
        frames = [scales[label]["train frames" if stage == "train" else "test frames"] for label in labels]
        for ax, key in zip(axes, ("wall s", "peak MiB")):
            ax.plot(frames, [results[f"{stage}_{label}"][key] for label in labels], "o-", label=stage)
    if "test_1x" in results:  # what linear growth looks like, through test.py's first point
        x0, y0 = scales["1x"]["test frames"], results["test_1x"]["wall s"]
        axes[0].plot([x0, 10 * x0], [y0, 10 * y0], "k:", label="linear")
    for ax, label in zip(axes, ("wall seconds", "peak resident memory (MiB)")):
        ax.set(xscale="log", yscale="log", xlabel="frames (test split; train: training split)", ylabel=label)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    out = Path(args.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    record = out / "scale.json"
    saved = json.loads(record.read_text()) if record.is_file() else {}
    scales = saved.get("scales") or make_data(args, out)
    results = saved.get("results", {})
    for label in scales:
        root, work = Path(scales[label]["root"]), out / f"work_{label}"
        work.mkdir(exist_ok=True)
        for stage in [s for s in STAGES if s in args.stages.split(",") and (label != "full" or s == "index")]:
            key = f"{stage}_{label}"
            if key in results:
                continue
            print(f"{key} ...", flush=True)
            for folder in OUTPUTS.get(stage, ()):  # test.py resumes: a measurement starts from nothing
                shutil.rmtree(work / folder, ignore_errors=True)
            results[key] = measure(stage_argv(stage, root, work, args.iters), work / f"{stage}.log")
            if stage == "train":
                per_iteration = seconds_per_iteration(work / "train.log")
                results[key]["note"] = f"{per_iteration:.2f} s/iteration" if per_iteration else ""
            elif stage == "test":
                counts = [(len(d["window"]), len(d["frames"])) for d in map(np.load, (work / "det").glob("*/*.npz"))]
                results[key]["note"] = f"{sum(b for b, _ in counts) / sum(w for _, w in counts):.0f} boxes per window"
            elif stage == "index":
                windows = (work / "index.log").read_text().split()
                results[key]["note"] = f"{windows[0]} train + {windows[1]} test windows in {float(windows[2]):.2f} s"
            print(f"{key}: " + ", ".join(f"{n} {v:.1f}" if isinstance(v, float) else f"{n} {v}"
                                          for n, v in results[key].items()), flush=True)
            record.write_text(json.dumps({"argv": sys.argv[1:], "scales": scales, "results": results}, indent=1))
    (out / "scale.md").write_text(table(results, scales) + "\n")
    plot(results, scales, out / "scale.png")
    print(table(results, scales))
    return 0


if __name__ == "__main__":
    sys.exit(main())
