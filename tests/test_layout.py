"""The layout's import rules (STYLE.md, "who owns what"): tubes/ is numpy only, utils/ imports no
package of ours, no package imports a script, and only pipeline.py calls other scripts."""
import argparse
import ast
import subprocess
import sys

from tests.conftest import REPO_ROOT

SCRIPTS = {"train", "test", "demo", "build_tubes", "eval_video_ap", "eval_online", "prepare_data", "pipeline", "analyze"}
PACKAGES = {"data", "layers", "models", "utils", "tubes", "engine"}


def imported(path):
    """Top-level names of the modules ``path`` imports (relative imports: its own package)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(path.parent.name if node.level else node.module.split(".")[0])
    return names


def test_import_rules():
    for package in PACKAGES:
        for path in (REPO_ROOT / package).glob("*.py"):
            names = imported(path)
            assert not names & SCRIPTS, (path, names & SCRIPTS)
            if package == "tubes":
                assert not names & {"torch", "torchvision", "models", "layers", "engine"}, (path, names)
            if package == "utils":
                assert not names & (PACKAGES - {"utils"}), (path, names)
    for script in SCRIPTS - {"pipeline"}:
        names = imported(REPO_ROOT / f"{script}.py")
        assert not names & SCRIPTS, (script, names & SCRIPTS)


def test_build_tubes_does_not_load_torch():
    code = ("import sys, time; t = time.perf_counter(); import build_tubes, eval_video_ap, analyze, tubes.cli, tubes.ap, "
            "tubes.tube_files; print(time.perf_counter() - t); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    seconds, torch_loaded = out.stdout.split()
    assert torch_loaded == "False", f"importing build_tubes loads torch ({seconds} s)"


def test_link_iou_keeps_its_old_spelling():
    """build_tubes.py's linking threshold is --link_iou; --iou_thresh, its former name, still sets it."""
    from tubes.cli import annotation_args, build_args, tube_args, tube_config
    parser = argparse.ArgumentParser(parents=[annotation_args(), tube_args(), build_args()])
    required = ["--annot", "a.pkl", "--det_dir", "d", "--out_dir", "o"]
    for flag in ("--link_iou", "--iou_thresh"):
        assert tube_config(parser.parse_args(required + [flag, "0.3"])).link_iou == 0.3
    assert tube_config(parser.parse_args(required)).link_iou == 0.1
