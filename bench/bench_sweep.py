"""The default recipe over training seeds and torch thread counts: how far one run's numbers can be trusted.

  python -m bench.bench_sweep                                    # make demo's recipe and toy set, 3 seeds x {1, 2} threads
  python -m bench.bench_sweep --out runs/sweep/toy2 --toy_seed 2  # another toy set: the one to choose a recipe on
  python -m bench.bench_sweep --data_root runs/tracks_s1 --out runs/sweep/tracks1 --threads 2
  python -m bench.bench_sweep --out runs/sweep/ema -- --ema 0.999  # flags after -- go to pipeline.py
  python -m bench.bench_sweep --checkpoints best,last               # each run tested with both checkpoint choices

Each run is ``pipeline.py --man_seed S`` (stages data, train, detect, tubes) in OUT/s<S>_t<T>, with T torch threads;
runs with fewer threads than cores share the machine (two one-thread runs at once on 2 cores: the thread count,
not the load, decides the numbers). A finished run (its summary.json) is not run again, an interrupted one continues
where it stopped, so the sweep is resumable. Writes OUT/sweep.json and prints a table of every run and the
min / median / max of each column.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from utils.checkpoint import best_checkpoint, latest_checkpoint

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ("VOC frame-mAP", "frameAp", "mAP@0.2", "mAP@0.5", "mAP@0.75", "accuracy")


def get_args_parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/sweep/default", help="one folder per run, sweep.json")
    ap.add_argument("--seeds", default="123,11,12", help="train.py --man_seed values")
    ap.add_argument("--threads", default="1,2", help="torch thread counts")
    ap.add_argument("--toy_seed", type=int, default=0, help="the toy set (pipeline.py --seed) when no --data_root")
    ap.add_argument("--data_root", default=None, help="a dataset in the UCF24 layout instead of the toy set")
    ap.add_argument("--cores", type=int, default=os.cpu_count(), help="runs share this many cores")
    ap.add_argument("--repo", default=str(REPO), help="the checkout whose pipeline.py runs (a baseline's worktree)")
    ap.add_argument("--checkpoints", default="last,best", help="pipeline.py --checkpoint rules to test each run's training "
                    "with (comma-separated); the runs after the first are in OUT/<run>-<rule>, sharing the training")
    ap.add_argument("pipeline_args", nargs=argparse.REMAINDER, help="-- then flags for pipeline.py")
    return ap


def run_argv(args, seed, work, data_root, rule=None, stages="data,train,detect,tubes"):
    extra = [a for a in args.pipeline_args if a != "--"]
    rule = rule or args.checkpoints.split(",")[0]
    return [sys.executable, str(Path(args.repo) / "pipeline.py"), "--work_dir", str(work), "--data_root", str(data_root),
            "--man_seed", str(seed), "--stages", stages, "--checkpoint", rule, *extra]


def other_checkpoints(args, out, data_root, results):
    """Each finished run tested again with the other ``--checkpoints`` rules, in OUT/<run>-<rule> (no training:
    its train folder links to the run's); a rule that picks the same checkpoint shares the run's numbers."""
    for rule in args.checkpoints.split(",")[1:]:
        for name in [n for n in results if "-" not in n]:
            work, seed, threads = out / f"{name}-{rule}", *map(int, name[1:].split("_t"))
            done = work / "sweep_run.json"
            exp_dir = next((out / name / "train").iterdir())  # the run's one-stream experiment
            picked = (best_checkpoint if rule == "best" else latest_checkpoint)(exp_dir)
            if not done.is_file() and picked is not None and picked.name == results[name]["checkpoint"]:
                work.mkdir(exist_ok=True)
                done.write_text(json.dumps({**results[name], "seconds": 0.0}, indent=1))
            elif not done.is_file():
                work.mkdir(exist_ok=True)
                if not (work / "train").exists():
                    (work / "train").symlink_to(out / name / "train", target_is_directory=True)
                env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
                start = time.monotonic()
                with open(work / "sweep_run.log", "a") as log:
                    subprocess.run(run_argv(args, seed, work, data_root, rule, "train,detect,tubes"), cwd=args.repo,
                                   env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
                done.write_text(json.dumps(result(work, time.monotonic() - start), indent=1))
            results[work.name] = json.loads(done.read_text())
    return dict(sorted(results.items()))


def toy_data(args, out):
    """Render the toy set once for all runs (pipeline.py's own data stage, into OUT/toy_data)."""
    work = out / "data"
    subprocess.run([sys.executable, str(Path(args.repo) / "pipeline.py"), "--work_dir", str(work), "--seed",
                    str(args.toy_seed), "--stages", "data"], check=True, cwd=args.repo)
    return work / "toy_data"


def result(work: Path, seconds: float) -> dict:
    summary = json.loads((work / "summary.json").read_text())
    row = summary["rows"]["RGB"] if "RGB" in summary["rows"] else next(iter(summary["rows"].values()))
    return {"VOC frame-mAP": 100 * summary["frame_map_voc"], "frameAp": row["frame-mAP"], "mAP@0.2": row["mAP@0.2"],
            "mAP@0.5": row["mAP@0.5"], "mAP@0.75": row["mAP@0.75"], "accuracy": row["accuracy"],
            "checkpoint": Path(summary["weights"]).name, "seconds": seconds}


def sweep(args, out, data_root):
    """Run every (seed, threads) not yet done, up to ``--cores`` threads at once; returns {name: result}."""
    jobs = [(int(s), int(t)) for t in args.threads.split(",") for s in args.seeds.split(",")]
    results, running, pending = {}, {}, []
    for seed, threads in jobs:
        work = out / f"s{seed}_t{threads}"
        done = work / "sweep_run.json"
        if done.is_file():
            results[work.name] = json.loads(done.read_text())
        else:
            pending.append((seed, threads, work))
    while pending or running:
        busy = sum(t for t, _, _ in running.values())
        while pending and (not running or busy + pending[0][1] <= args.cores):
            seed, threads, work = pending.pop(0)
            work.mkdir(parents=True, exist_ok=True)
            env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
            log = open(work / "sweep_run.log", "a")
            proc = subprocess.Popen(run_argv(args, seed, work, data_root), cwd=args.repo, env=env, stdout=log,
                                    stderr=subprocess.STDOUT)
            running[work.name] = (threads, proc, time.monotonic())
            busy += threads
            print(f"started {work.name}", flush=True)
        time.sleep(5)
        for name, (threads, proc, start) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[name]
            if proc.returncode:
                print(f"{name} failed (exit {proc.returncode}): see {out / name / 'sweep_run.log'}", flush=True)
                continue
            # A resumed run's seconds count only its last part.
            results[name] = result(out / name, time.monotonic() - start)
            (out / name / "sweep_run.json").write_text(json.dumps(results[name], indent=1))
            print(f"{name}: " + ", ".join(f"{c} {results[name][c]:.2f}" for c in COLUMNS), flush=True)
    return dict(sorted(results.items()))


def table(results: dict) -> str:
    lines = ["| run | " + " | ".join(COLUMNS) + " | checkpoint | minutes |", "|---" * (len(COLUMNS) + 3) + "|"]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[c]:.2f}" for c in COLUMNS) +
                     f" | {r['checkpoint']} | {r['seconds'] / 60:.1f} |")
    for label, f in (("min", min), ("median", statistics.median), ("max", max)):
        lines.append(f"| **{label}** | " + " | ".join(f"{f([r[c] for r in results.values()]):.2f}" for c in COLUMNS)
                     + " | | |")
    spread = {c: max(r[c] for r in results.values()) - min(r[c] for r in results.values()) for c in COLUMNS}
    lines.append("| spread | " + " | ".join(f"{spread[c]:.2f}" for c in COLUMNS) + " | | |")
    return "\n".join(lines)


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    out = Path(args.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    data_root = Path(args.data_root).expanduser().resolve() if args.data_root else toy_data(args, out)
    results = other_checkpoints(args, out, data_root, sweep(args, out, data_root))
    if not results:
        raise SystemExit("no run finished")
    (out / "sweep.json").write_text(json.dumps({"argv": sys.argv[1:], "runs": results}, indent=1))
    for rule in args.checkpoints.split(","):
        suffix = "" if rule == args.checkpoints.split(",")[0] else f"-{rule}"
        print(f"checkpoint: {rule}\n" + table({n: r for n, r in results.items() if n.endswith(suffix) and
                                                 ("-" in n) == bool(suffix)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
