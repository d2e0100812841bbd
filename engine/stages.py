"""pipeline.py's stages: the flags each script is given, and when it runs. A stage runs a script's
``main(argv)`` unless its output is fresh: newer than its inputs and made with the same flags
(``OUTPUT.argv.json`` beside it). The scripts are passed in (no package imports a script)."""
import argparse
import contextlib
import io
import json
import logging
from pathlib import Path
from types import ModuleType
from typing import Callable

from data.dataset import DataConfig, count_windows
from tubes.detections import frame_map_path
from tubes.fusion import late_fusion
from tubes.runner import results_path
from utils.checkpoint import best_checkpoint, checkpoint_path, latest_checkpoint
from utils.io import atomic_path, is_fresh

log = logging.getLogger(__name__)


def argv_path(output: str | Path) -> Path:
    """Where the flags that made ``output`` are kept: ``OUTPUT.argv.json`` beside it."""
    return Path(output).with_name(f"{Path(output).name}.argv.json")


def is_up_to_date(output: str | Path, argv: list, *inputs: str | Path) -> bool:
    """``output`` is newer than ``inputs`` and was made with ``argv``."""
    stamp = argv_path(output)
    return is_fresh(output, *inputs) and stamp.is_file() and stamp.read_text() == json.dumps(argv)


def run_stage(stage: str, script: ModuleType, argv: list, output: str | Path, *inputs: str | Path) -> None:
    """``script.main(argv)`` unless ``output`` is newer than ``inputs`` and was made with the same ``argv``
    (another flag, say ``--alphas``, runs the stage again); what it prints is dropped (pipeline.py
    prints its tables once, at the end)."""
    if is_up_to_date(output, argv, *inputs):
        log.info("stage %s: %s is up to date", stage, output)
        return
    log.info("stage %s: python %s.py %s", stage, script.__name__, " ".join(argv))
    with contextlib.redirect_stdout(io.StringIO()):
        script.main(argv)
    with atomic_path(argv_path(output)) as tmp:
        tmp.write_text(json.dumps(argv))


def name_list(choices: tuple, what: str = "stage") -> Callable:
    """An argparse type: comma-separated names of ``choices`` -> a set (the error names the unknown ones)."""
    def parse(text: str) -> set:
        names = {v.strip() for v in str(text).split(",") if v.strip()}
        unknown = sorted(names - set(choices))
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {what}(s) {unknown}; {what}s: {', '.join(choices)}")
        return names
    return parse


def train_stage(script: ModuleType, argv: list, exp_dir: Path, max_iter: int, run: bool = True,
                choose: str = "best") -> Path:
    """With ``run``, ``script.main(argv)`` (train.py) into ``exp_dir``, resumed from its latest checkpoint, unless
    the checkpoint of ``max_iter`` is there. Returns the checkpoint to test: ``choose`` "best", the best validation
    frame-mAP (else the latest), or "last"; FileNotFoundError when ``exp_dir`` has none."""
    final = checkpoint_path(exp_dir, max_iter)
    if run and final.is_file():
        log.info("stage train: %s exists, not training again", final)
    elif run:
        resume = latest_checkpoint(exp_dir)
        argv = argv + (["--resume", str(resume)] if resume is not None else [])
        log.info("stage train: python %s.py %s", script.__name__, " ".join(argv))
        script.main(argv)
    weights = best_checkpoint(exp_dir) if choose == "best" else latest_checkpoint(exp_dir)
    if weights is None or not weights.is_file():
        raise FileNotFoundError(f"no trained model in {exp_dir}: run the train stage")
    log.info("%s: testing %s, %s", exp_dir.name, weights.name, "the best on validation" if choose == "best" else "the last")
    return weights


def training_iterations(cfg: DataConfig, epochs: float, batch_size: int) -> int:
    """``epochs`` passes over the training windows of ``cfg`` (counted from the annotations), at least one batch."""
    windows = count_windows(cfg, "train")
    count = max(1, round(epochs * windows / batch_size))
    log.info("training for %d iterations: %g epochs of %d windows in batches of %d", count, epochs, windows, batch_size)
    return count


def detect_stage(script: ModuleType, root: Path, weights: Path, det_dir: Path, flags: list, run: bool = True,
                 fuse_weights: Path | None = None, stream: str | None = None) -> dict:
    """test.py (``script``) with ``flags`` -> ``det_dir`` unless fresh (or not ``run``); returns its frame-mAP summary.
    With ``fuse_weights`` both one-stream models run over the same windows: DET_DIR/base, /fuse and each
    prior-by-prior late fusion's, whose ``stream`` summary is returned."""
    summary = frame_map_path(det_dir / stream if stream else det_dir)
    if run:
        fuse = ["--fuse_weights", str(fuse_weights)] if fuse_weights else []
        argv = ["--data_root", str(root), "--weights", str(weights), *fuse, "--det_dir", str(det_dir)] + flags
        run_stage("detect", script, argv, summary, weights, *filter(None, [fuse_weights]))
    return json.loads(summary.read_text())


def tube_argv(annot: Path, det_dir: Path, lists_dir: Path, out_dir: Path, alphas: tuple, link_score: float,
              link: str) -> list:
    """build_tubes.py's (and eval_online.py's) flags for test.py's ``det_dir``; ``lists_dir`` holds the
    ``videos.txt`` and ``classes.txt`` that ``tubes_stage`` writes."""
    return ["--det_dir", str(det_dir), "--det_format", "npz", "--annot", str(annot), "--out_dir", str(out_dir),
            "--video_list", str(lists_dir / "videos.txt"), "--classes", str(lists_dir / "classes.txt"),
            "--alphas", ",".join(f"{a:g}" for a in alphas), "--link_score", f"{link_score:g}", "--workers", "2",
            "--link", link]


def eval_argv(tubes_file: Path, annot: Path, out_dir: Path, report: Path | None = None) -> list:
    """eval_video_ap.py's (and analyze.py's) flags for a tube file of build_tubes.py, its ``classes.txt`` beside it;
    with ``report``, analyze.py's ``--report`` (the page on the run in that work dir)."""
    return (["--tubes", str(tubes_file), "--annot", str(annot), "--out_dir", str(out_dir), "--classes",
             str(Path(tubes_file).parent / "classes.txt")] + (["--report", str(report)] if report else []))


def tubes_stage(script: ModuleType, annot: Path, videos: list, classes: list, det_dir: Path, tube_dir: Path,
                alphas: tuple, link_score: float, link: str, fusion: str | None = None,
                fuse_det_dir: Path | None = None) -> dict:
    """build_tubes.py (``script``) on ``videos`` of test.py's ``det_dir`` -> ``tube_dir`` unless fresh; returns its
    results.json. ``fusion``: late-fused with ``fuse_det_dir`` (a prior-by-prior fusion: test.py's stream alone),
    linked by ``link`` if the fusion allows it, else by the first mode it allows (boost and union: per frame)."""
    for name, lines in (("videos.txt", videos), ("classes.txt", classes)):
        with atomic_path(Path(tube_dir) / name) as tmp:
            tmp.write_text("".join(f"{line}\n" for line in lines))
    modes = late_fusion(fusion).link_modes if fusion else (link,)
    argv = tube_argv(annot, det_dir, tube_dir, tube_dir, alphas, link_score, link if link in modes else modes[0])
    argv += (["--late_fusion", fusion] if fusion else []) + (["--fuse_det_dir", str(fuse_det_dir)] if fuse_det_dir else [])
    run_stage("tubes", script, argv, results_path(tube_dir), *map(frame_map_path, filter(None, [det_dir, fuse_det_dir])))
    return json.loads(results_path(tube_dir).read_text())
