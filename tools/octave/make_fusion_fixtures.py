"""Make the Octave reference fixtures of the late fusion (``fusion*.json`` under tests/fixtures/octave/).

Two detection streams per video that differ in boxes and scores but share their rows (as the
original's per-prior files do, which its ``readDetections`` needs for every fusion type: it
averages the score matrices whatever the type): the base stream is a ``make_fixtures`` case's
detections; the flow stream moves each box (a few far) and mixes other scores in. Some frames
of each stream have nothing the filtering keeps (every class score below 0.001). The ORIGINAL
``fusedActionPaths.m`` then runs under GNU Octave for each fusion type through our driver
``fusion_reference.m``, followed by the original trimming and evaluation, and
``<fixture>_<type>.json`` keeps the paths, tubes and video-mAP; ``<fixture>.npz`` the inputs
(``fusion``: double on the 2^-12 / 2^-16 grids; ``fusion_single``: float32 off them).
``boost_fixed``: the original with the covered-box test mended (``fix_boost``), for
``--fuse_fixed``.

Usage: python tools/octave/make_fusion_fixtures.py [--src /path/to/realtime-action-detection-git]
"""
import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import scipy.io

from make_fixtures import CASES, GRID_BOX, GRID_SCORE, MIRROR, OUT, SINGLE, collect, make_case, run_reference, \
    write_inputs

# fixture: make_fixtures' case whose detections are the base stream (the single one: float32 files, off the
# grid, which the original computes in single)
FIXTURE_CASES = {"fusion": "small", "fusion_single": "single"}
SEED = 7
# fixture name: (Matlab fusion type, fuseiouth as I02genFusedTubes.m passes it, mend boost)
RUNS = {"boost": ("nwsum-plus", 0.25, False), "union": ("cat", 0.0, False), "mean": ("mean", 0.0, False),
        "boost_fixed": ("nwsum-plus", 0.25, True)}


def fix_boost(text):
    """fusedActionPaths.m with boost's covered tests as meant: a flow box boosts one base box at most."""
    for old, new in (("isempty(ismember(coveredboxes,maxind))", "~any(coveredboxes==maxind)"),
                     ("~ismember(coveredboxes,i)", "~any(coveredboxes==i)")):
        if text.count(old) != 1:
            raise SystemExit(f"fusedActionPaths.m changed: cannot find {old!r}")
        text = text.replace(old, new)
    return text


def nothing(scores):
    """The rows with every class score at 2^-16 (below the filtering's 0.001), background the rest."""
    out = np.full_like(scores, 1 / GRID_SCORE)
    out[:, 0] = 1 - (scores.shape[1] - 1) / GRID_SCORE
    return out


def no_single_rows(frames):
    """Frames of exactly one row get a second (a clutter box): the original's ``dofilter`` indexes a
    1 x 1 score with a false mask, which gives a 0 x 0 array, and its ``boxes(:,5)`` then fails."""
    out = []
    for loc, scores in frames:
        if len(loc) == 1:
            loc = np.concatenate([loc, np.clip(loc + 0.25, -0.05, 1.05)])
            scores = np.concatenate([scores, scores[:, ::-1]])
        out.append((loc, scores))
    return out


def flow_stream(rng, frames, single):
    """The second stream: the same rows, boxes moved (a fifth of them far), scores mixed with others;
    on the grids, or float32 off them (``single``)."""
    out = []
    for f, (loc, scores) in enumerate(frames):
        move = rng.normal(0, 0.03, loc.shape)
        move[rng.random(len(loc)) < 0.2] += 0.3
        mix = rng.dirichlet(np.ones(scores.shape[1]) * 0.5, len(loc))
        if single:
            loc2 = np.clip(loc + move, -0.05, 1.05).astype(np.float32)
            scores2 = (0.6 * scores + 0.4 * mix).astype(np.float32)
        else:
            loc2 = np.clip(np.round((loc + move) * GRID_BOX) / GRID_BOX, -0.05, 1.05)
            scores2 = np.round((0.6 * scores + 0.4 * mix) * GRID_SCORE) / GRID_SCORE
        if f % 7 == 3:
            scores2 = nothing(scores2)
        out.append((loc2, scores2))
    return out


def make_fixture(src, fixture, case):
    classes, seed, specs, iou_thresh, alphas = CASES[case]
    single = case in SINGLE
    names, annot, base = make_case(classes, seed, specs, single)
    rng = np.random.default_rng(SEED)
    base = [no_single_rows(video) for video in base]
    top = [flow_stream(rng, video, single) for video in base]
    base = [[(loc, nothing(s) if f % 11 == 5 else s) for f, (loc, s) in enumerate(video)] for video in base]
    det = {"names": np.array(names), "classes": np.array(classes), "iou_thresh": iou_thresh, "alphas": np.array(alphas)}
    for stream, frames in (("", base), ("top_", top)):
        for v, video in enumerate(frames):
            det[f"{stream}loc_{v}"] = np.concatenate([l for l, _ in video])
            det[f"{stream}scores_{v}"] = np.concatenate([s for _, s in video])
            det[f"{stream}counts_{v}"] = np.array([len(l) for l, _ in video])
    for run, (fusion, fuse_iou, fixed) in RUNS.items():
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            work = tmp / "work"
            work.mkdir()
            write_inputs(work, classes, names, annot, base, iou_thresh, alphas)
            for name, video in zip(names, top):
                for f, (loc, scores) in enumerate(video, 1):
                    (work / "dets_top" / name).mkdir(parents=True, exist_ok=True)
                    scipy.io.savemat(work / "dets_top" / name / f"{f:05d}.mat", {"loc": loc, "scores": scores})
            run_reference(src, tmp, work, f"fusion_reference('SRC', 'WORK', '{fusion}', {fuse_iou})",
                          {"actionpath/fusedActionPaths.m": fix_boost} if fixed else None)
            expected = collect(work, names, classes, alphas)
            expected.update(fusion=fusion, fuse_iou=fuse_iou, fixed=fixed)
            (OUT / f"{fixture}_{run}.json").write_text(json.dumps(expected))
            if run == "boost":
                shutil.copy(work / "finalAnnots.mat", OUT / f"{fixture}_finalAnnots.mat")
            print(fixture, run, "done:", expected["results"]["rows"][:2])
    np.savez_compressed(OUT / f"{fixture}.npz", **det)


def get_args_parser():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=str(MIRROR), help="bare git repository of gurkirt/realtime-action-detection")
    return ap


def main():
    args = get_args_parser().parse_args()
    for fixture, case in FIXTURE_CASES.items():
        make_fixture(args.src, fixture, case)


if __name__ == "__main__":
    main()
