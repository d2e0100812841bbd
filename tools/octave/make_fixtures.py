"""Make the Octave reference fixtures under tests/fixtures/octave/.

Writes small synthetic inputs (road_mat detections of a few short videos and a
finalAnnots.mat-style ground truth), runs the ORIGINAL Matlab code of
gurkirt/realtime-action-detection ``online-tubes/`` under GNU Octave through our own
driver ``reference.m`` (the Matlab files are copied to a temporary directory, never
into this repository), and stores inputs and outputs as ``<case>.npz`` (inputs) and
``<case>.json`` (the original's paths, tubes, video-mAP and frame-mAP). ``frameAp.m`` runs
as a copy whose set-up lines (hard-coded paths, its nine fusion combinations, a 14.7 GB
preallocation) are replaced by the fixture's (``patch_frameap``); its evaluation is untouched.

Usage: python tools/octave/make_fixtures.py [--src /path/to/realtime-action-detection-git]
Needs ``octave-cli`` (apt-get install octave). The test suite does not.
"""
import argparse
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import scipy.io

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "octave"
MIRROR = Path("/work/.mirror/gurkirt+realtime-action-detection/repo")
GRID_BOX = 4096.0   # boxes on a 1/4096 grid and scores on a 2^-16 grid: exact in single and double
GRID_SCORE = 65536.0

CASES = {
    # name: (classes, seed, video specs, iou_thresh, alphas); a spec is (class index, frames,
    # GT tubes as (sf1, ef1[, tube class, class of its detections])[, class of the detections in
    # the second half of each tube]); a tube's class and its detections' default to the video's
    "small": (["Basketball", "Biking", "Diving"], 0,
              [(0, 40, [(3, 36)]), (1, 50, [(1, 30), (20, 50)]), (2, 36, [(5, 36)]), (0, 30, [(1, 30)]),
               (1, 25, [(2, 20)])], 0.1, [3, 5]),
    "clutter": (["Basketball", "Biking", "Diving", "Fencing"], 1,
                [(3, 60, [(1, 60), (10, 45)]), (0, 45, [(8, 40)]), (2, 40, [(1, 40)])], 0.1, [3, 5]),
    # the detections' class changes half way through a tube: the Viterbi splits paths
    "mixed": (["Basketball", "Biking", "Diving"], 2,
              [(0, 60, [(1, 60)], 1), (1, 50, [(5, 50)], 2), (2, 40, [(1, 40)], None)], 0.2, [0.5, 3]),
}
# Cases written in single precision, off any grid, as a detector's test script writes them: the
# original then computes in single; scores are peaked (many near or at 1.0 in single: ties).
SINGLE = {
    "single": (["Basketball", "Biking", "Diving", "Fencing"], 3,
               [(1, 70, [(1, 70), (12, 50)]), (3, 45, [(4, 45)], 0), (0, 50, [(1, 50)])], 0.1, [3, 5]),
}
CASES.update(SINGLE)
# Frames with GT of two classes: frameAp.m matches a detection to any GT box of a frame that has one
# of its class (and a box covered by one class is gone for the others). Video 1's second actor is of
# class 1 but detected as class 0; video 2's actors (classes 2 and 1) are detected as their classes.
CASES["multiclass"] = (["Basketball", "Biking", "Diving"], 4,
                       [(0, 50, [(1, 50), (5, 45, 1, 0), (10, 40, 1, 1)]), (2, 45, [(1, 45), (3, 40, 1, 1)])],
                       0.1, [3])


def _walk(rng, n, start, size):
    """A box track: a random walk of x1, y1 with a slowly changing size, in pixels."""
    xy = start + np.cumsum(rng.normal(0, 2.0, (n, 2)), 0)
    wh = size + np.cumsum(rng.normal(0, 1.0, (n, 2)), 0)
    return np.concatenate([xy, xy + np.maximum(wh, 8)], 1)


def make_case(classes, seed, specs, single=False):
    rng = np.random.default_rng(seed)
    num_classes = len(classes)
    names, annot, frames_out = [], [], []
    counts = {}
    for cls, numf, gt_spans, *switch in specs:
        switch = switch[0] if switch else None
        counts[cls] = counts.get(cls, 0) + 1
        name = f"{classes[cls]}/v_{classes[cls]}_g{counts[cls]:02d}_c01"
        names.append(name)
        tubes, tracks = [], []
        for sf, ef, *classes_of in gt_spans:
            tube_cls, det_cls = classes_of or (cls, cls)
            n = ef - sf + 1
            track = _walk(rng, n, rng.uniform([20, 20], [200, 120]), rng.uniform([40, 60], [110, 110]))
            track = np.clip(np.round(track), [1, 1, 1, 1], [319, 239, 319, 239])
            xywh = np.concatenate([track[:, :2], track[:, 2:] - track[:, :2] + 1], 1)
            tubes.append({"sf": float(sf), "ef": float(ef), "class": float(tube_cls + 1), "boxes": xywh.astype(np.uint16)})
            tracks.append((sf, track, det_cls))
        annot.append({"name": name, "num_imgs": float(numf), "tubes": tubes})
        clutter = _walk(rng, numf, rng.uniform([0, 0], [250, 150]), [70, 90])
        video = []
        for f in range(1, numf + 1):
            boxes, labels = [], []
            for sf, track, det_cls in tracks:
                if sf <= f < sf + len(track) and rng.random() > 0.1:  # sometimes missed: gaps
                    for _ in range(rng.integers(1, 5)):
                        boxes.append(track[f - sf] + rng.normal(0, 6, 4))
                        late = switch is not None and f - sf > len(track) // 2
                        labels.append(switch if late else det_cls)
            for _ in range(rng.integers(0, 4)):
                boxes.append(clutter[f - 1] + rng.normal(0, 25, 4))
                labels.append(int(rng.integers(0, num_classes)))
            boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
            loc = np.clip(np.round(boxes / [320, 240, 320, 240] * GRID_BOX) / GRID_BOX, -0.05, 1.05)
            if single:
                loc = np.clip(boxes / [320, 240, 320, 240], -0.05, 1.05).astype(np.float32)
            scores = rng.dirichlet(np.ones(num_classes + 1) * 0.5, len(loc))
            for i, lab in enumerate(labels):
                scores[i, lab + 1] += rng.uniform(0.3, 1.5)
            scores /= scores.sum(1, keepdims=True)
            # a coarse grid for some rows makes equal scores, to exercise the tie rules
            coarse = rng.random(len(loc)) < 0.3
            scores[coarse] = np.round(scores[coarse] * 32) / 32
            scores = np.round(scores * GRID_SCORE) / GRID_SCORE
            if single:
                scores = scores ** 6 + 1e-9 * rng.random(scores.shape)
                scores = (scores / scores.sum(1, keepdims=True)).astype(np.float32)
            video.append((loc, scores))
        frames_out.append(video)
    return names, annot, frames_out


def write_inputs(work, classes, names, annot, frames, iou_thresh, alphas):
    for name, video in zip(names, frames):
        d = work / "dets" / name
        d.mkdir(parents=True)
        for f, (loc, scores) in enumerate(video, 1):
            scipy.io.savemat(d / f"{f:05d}.mat", {"loc": loc, "scores": scores})
    (work / "videos.txt").write_text("\n".join(names) + "\n")
    scipy.io.savemat(work / "config.mat", {"actions": np.array(classes, dtype=object),
                                           "iou_thresh": iou_thresh, "alphas": np.array(alphas, np.float64)})
    dtype = [("name", object), ("num_imgs", object), ("tubes", object)]
    arr = np.zeros(len(annot), dtype=dtype)
    for i, v in enumerate(annot):
        tdt = [("sf", object), ("ef", object), ("class", object), ("boxes", object)]
        tubes = np.zeros(len(v["tubes"]), dtype=tdt)
        for j, t in enumerate(v["tubes"]):
            tubes[j] = (t["sf"], t["ef"], t["class"], t["boxes"])
        arr[i] = (v["name"], v["num_imgs"], tubes)
    scipy.io.savemat(work / "finalAnnots.mat", {"annot": arr})


def patch_frameap(text):
    """``online-tubes/frameAp.m`` with its set-up pointed at the fixture folder ``work``."""
    def replace(old, new):
        nonlocal text
        if text.count(old) != 1:
            raise SystemExit(f"frameAp.m changed: cannot find {old!r}")
        text = text.replace(old, new)
    replace("function frameAP()", "function frameAP(work)")
    for line in ("addpath(genpath('eval/'));", "addpath(genpath('utils/'));", "addpath(genpath('actionpath/'));"):
        replace(line, "")  # reference.m has put the original folders on the path
    start = text.index("data_root = '/mnt/mars-fast/datasets';")
    end_marker = "{det_dirs1,det_dirs3,'mean'},{det_dirs1,det_dirs2,'mean'}};"
    end = text.index(end_marker) + len(end_marker)
    text = text[:start] + """iou_th = 0.5;
annot = load(fullfile(work, 'finalAnnots.mat'));
annot = annot.annot;
testlist = getVideoNames(fullfile(work, 'videos.txt'));
num_vid = length(testlist);
cfg = load(fullfile(work, 'config.mat'));
num_actions = numel(cellstr(cfg.actions));
logfile = fopen(fullfile(work, 'frameAP.log'), 'w');
combinations = {{[work, '/dets/']}};""" + text[end:]
    # Matlab skips an empty class's 0x4 block in this concatenation; Octave refuses it.
    replace("    dt_boxes = [dt_boxes; cls_boxes];", "    if ~isempty(cls_boxes)\n        dt_boxes = [dt_boxes; cls_boxes];\n    end")
    replace("allscore{a} = zeros(24*20*160000,2,'single');", "allscore{a} = zeros(100000,2,'single');")
    replace("mAP  = mean(AP);", "mAP  = mean(AP);\n    save(fullfile(work, 'frameap.mat'), 'AP', 'mAP');")
    return text


def _cells(x):
    return [x] if not isinstance(x, np.ndarray) or x.dtype != object else list(x.ravel())


def collect(work, names, classes, alphas):
    out = {"paths": {}, "tubes": {}, "results": None}
    for name in names:
        m = scipy.io.loadmat(work / "paths" / f"{name}-actionpaths.mat", squeeze_me=True, struct_as_record=False)
        per_class = []
        for cls_paths in _cells(m["allpaths"]):
            items = [] if not hasattr(cls_paths, "_fieldnames") and np.size(cls_paths) == 0 else np.atleast_1d(cls_paths)
            plist = []
            for p in items:
                if "boxes" not in p._fieldnames:
                    continue
                plist.append({"start": int(p.start), "end": int(p.end),
                              "boxes": np.atleast_2d(p.boxes).tolist(),
                              "scores": np.atleast_1d(p.scores).tolist(),
                              "allScores": np.atleast_2d(p.allScores).tolist()})
            per_class.append(plist)
        out["paths"][name] = per_class
    for alpha in alphas:
        m = scipy.io.loadmat(work / f"xmld_alpha{alpha:g}.mat", squeeze_me=True, struct_as_record=False)
        videos = {}
        for v in np.atleast_1d(m["xmld"]):
            tubes = []
            if hasattr(v, "score") and np.size(v.score):
                fr, bx = np.atleast_1d(v.framenr), np.atleast_1d(v.boxes)
                for k, (s, c) in enumerate(zip(np.atleast_1d(v.score), np.atleast_1d(getattr(v, "class")))):
                    fnr = np.atleast_1d(fr[k].fnr)
                    tubes.append({"score": float(s), "class": int(c), "sf": int(fnr[0]), "ef": int(fnr[-1]),
                                  "boxes": np.atleast_2d(bx[k].bxs).tolist()})
            videos[str(v.videoName)] = tubes
        out["tubes"][f"{alpha:g}"] = videos
    if (work / "frameap.mat").is_file():  # not for the fusion fixtures
        f = scipy.io.loadmat(work / "frameap.mat")
        out["frame_map"] = {"mAP": float(f["mAP"].squeeze()), "ap": f["AP"].ravel().tolist()}
    r = scipy.io.loadmat(work / "results.mat")
    out["results"] = {"rows": r["results"].tolist(), "aps": r["aps"].tolist(), "columns": ["alpha", "iou", "mAP", "mean_iou", "accuracy"]}
    return out


def run_reference(src_git, tmp, work, call=None, patch=None):
    """Run the original online-tubes (from the bare repository ``src_git``) on ``work`` through our
    driver: ``call`` (Octave, default ``reference('SRC', 'WORK')``, with SRC and WORK filled in);
    ``patch``: ``{original file: function of its text}``, files of the original changed in the copy."""
    src = tmp / "src"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir()
    archive = subprocess.run(["git", f"--git-dir={src_git}", "archive", "HEAD", "online-tubes"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    for driver in Path(__file__).parent.glob("*.m"):
        shutil.copy(driver, tmp / driver.name)
    frameap = src / "online-tubes" / "frameAp.m"
    (tmp / "frameAp.m").write_text(patch_frameap(frameap.read_text()))
    for name, change in (patch or {}).items():
        f = src / "online-tubes" / name
        f.write_text(change(f.read_text()))
    call = (call or "reference('SRC', 'WORK')").replace("SRC", str(src / "online-tubes")).replace("WORK", str(work))
    run = subprocess.run(["octave-cli", "--no-gui", "--eval", call], cwd=tmp, capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"{work}: octave failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")


def get_args_parser():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=str(MIRROR), help="bare git repository of gurkirt/realtime-action-detection")
    ap.add_argument("--cases", default=",".join(CASES), help="cases to (re)make")
    return ap


def main():
    args = get_args_parser().parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for case in args.cases.split(","):
        classes, seed, specs, iou_thresh, alphas = CASES[case]
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            work = tmp / "work"
            work.mkdir()
            names, annot, frames = make_case(classes, seed, specs, case in SINGLE)
            write_inputs(work, classes, names, annot, frames, iou_thresh, alphas)
            run_reference(args.src, tmp, work)
            expected = collect(work, names, classes, alphas)
            det = {"names": np.array(names), "classes": np.array(classes), "iou_thresh": iou_thresh,
                   "alphas": np.array(alphas)}
            for v, video in enumerate(frames):
                det[f"loc_{v}"] = np.concatenate([l for l, _ in video])
                det[f"scores_{v}"] = np.concatenate([s for _, s in video])
                det[f"counts_{v}"] = np.array([len(l) for l, _ in video])
            np.savez_compressed(OUT / f"{case}.npz", **det)
            shutil.copy(work / "finalAnnots.mat", OUT / f"{case}_finalAnnots.mat")
            (OUT / f"{case}.json").write_text(json.dumps(expected))
            print(case, "done:", expected["results"]["rows"][:2])


if __name__ == "__main__":
    main()
