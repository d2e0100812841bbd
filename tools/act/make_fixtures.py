"""Make the ACT/MOC reference fixtures under tests/fixtures/act/.

Writes small synthetic inputs in ACT's formats, runs the ORIGINAL ``videoAP`` and ``frameAP`` of
MCG-NJU/MOC-Detector ``src/ACT.py`` on them (``run_act.py``, in a separate Python with numpy 1.x;
the MOC sources are read from their git mirror into a temporary folder, never into this
repository) and stores the outputs beside the inputs:

  <case>/gt.pkl                   ACT ground truth (labels, gttubes, nframes, resolution, splits)
  <case>/tubes/<Class>/<video>_tubes.pkl   ACT tube pickles {label: [(rows [n, 6] float32, score)]}
  <case>/frame_detections.pkl     ACT's alldets [N, 8] float32: video index, frame, label, score, x1, y1, x2, y2
  <case>/reference.json           ACT.py's per-class APs (percent) at each threshold and frame-AP@0.5,
                                  or the exception ACT.py raised

Boxes lie on a 1/4 pixel grid and scores on a 2^-16 grid (exact in single and double), scores are
distinct (ACT.py's ``np.argsort`` is not stable on ties).

Usage: python tools/act/make_fixtures.py --act_python /work/actvenv/bin/python [--moc_git DIR]
(the other Python needs numpy<2 only).
"""
import argparse
import json
import pickle
import subprocess
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "act"
MOC_GIT = Path("/work/.mirror/MCG-NJU+MOC-Detector/repo/.git")
FRAME = (320, 240)
THRESHOLDS = [0.2] + [0.5 + 0.05 * i for i in range(10)]  # ACT.py videpAP_050_095: 0.5 + 0.05 * i

# name: (labels, seed, videos as (label index, frames, GT tubes (sf, ef) 1-based inclusive),
#        labels given detections although they have no GT); "Idle" has neither GT nor detections
CASES = {
    "basic": (["Jump", "Run", "Wave", "Idle"], 0,
              [(0, 30, [(1, 30)]), (0, 40, [(5, 25), (12, 38)]), (1, 35, [(3, 33)]), (1, 28, [(1, 20)]),
               (2, 45, [(10, 45)]), (2, 32, [(1, 32), (4, 16)])], []),
    # a class with detections but no ground truth: ACT.py divides by zero
    "no_gt": (["Jump", "Run", "Wave"], 1, [(0, 30, [(1, 30)]), (1, 30, [(4, 26)])], [2]),
}


def q(x, step=4.0):
    return np.round(np.asarray(x, np.float64) * step) / step


def track(rng, n):
    """A box track in 0-based pixels: a random walk of the corner, slowly changing size, inside the frame."""
    w0, h0 = rng.uniform(40, 90), rng.uniform(60, 120)
    x0, y0 = rng.uniform(0, FRAME[0] - w0 - 20), rng.uniform(0, FRAME[1] - h0 - 20)
    xy = np.array([x0, y0]) + np.cumsum(rng.normal(0, 1.5, (n, 2)), 0)
    wh = np.array([w0, h0]) + np.cumsum(rng.normal(0, 0.7, (n, 2)), 0)
    return clip(q(np.concatenate([xy, xy + wh], 1)))


def clip(boxes):
    boxes = boxes.copy()
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, FRAME[0] - 1)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, FRAME[1] - 1)
    boxes[:, 2] = np.maximum(boxes[:, 2], boxes[:, 0] + 4)
    boxes[:, 3] = np.maximum(boxes[:, 3], boxes[:, 1] + 4)
    return boxes


class Scores:
    """Distinct scores on a 2^-16 grid."""
    def __init__(self, rng):
        self.rng, self.used = rng, set()

    def __call__(self, lo=0.05, hi=0.95):
        while True:
            s = round(self.rng.uniform(lo, hi) * 65536) / 65536
            if s not in self.used:
                self.used.add(s)
                return s


def make_case(name, labels, seed, specs, extra_labels):
    rng = np.random.default_rng(seed)
    score = Scores(rng)
    counts, num_gt_labels = {}, max(spec[0] for spec in specs) + 1  # other-class detections go to these
    gt, nframes, tubes, alldets = {}, {}, {}, []
    for iv, (label, n, gt_spans) in enumerate(specs):
        counts[label] = counts.get(label, 0) + 1
        video = f"{labels[label]}/v_{labels[label]}_g01_c{counts[label]:02d}"
        nframes[video] = n
        gt_tubes = []
        for sf, ef in gt_spans:
            rows = np.column_stack([np.arange(sf, ef + 1), track(rng, ef - sf + 1)])
            gt_tubes.append(rows.astype(np.float32))
        gt[video] = {label: gt_tubes}
        det = {c: [] for c in range(len(labels))}
        for g in gt_tubes:
            sf, ef = int(g[0, 0]), int(g[-1, 0])
            # good, jittered, shifted, temporally short tubes of the right class; one of a wrong class
            for shift, jitter, cls in ((0, 1.0, label), (2, 4.0, label), (-3, 8.0, label), (0, 3.0, (label + 1) % num_gt_labels),
                                       (rng.integers(-6, 6), 15.0, label)):
                s, e = max(1, sf + shift), min(n, ef + shift)
                if e - s < 2:
                    continue
                boxes = g[np.clip(np.arange(s, e + 1) - sf, 0, len(g) - 1), 1:5]
                boxes = clip(q(boxes + rng.normal(0, jitter, boxes.shape)))
                det[cls].append(_act_tube(s, boxes, score()))
            # a tube touching the GT tube in exactly one frame (its last)
            if ef < n - 3:
                det[label].append(_act_tube(ef, clip(q(np.repeat(g[-1:, 1:5], min(6, n - ef + 1), 0))), score()))
        for c in [label] + list(extra_labels):
            for _ in range(2):  # false tubes
                s = int(rng.integers(1, n - 5))
                e = int(rng.integers(s + 3, n + 1))
                det[c].append(_act_tube(s, track(rng, e - s + 1), score()))
        tubes[video] = det
        # per-frame detections: around each GT box (some of another class) and random boxes
        for f in range(1, n + 1):
            rows = []
            for g in gt_tubes:
                if g[0, 0] <= f <= g[-1, 0]:
                    box = g[f - int(g[0, 0]), 1:5]
                    for jitter, cls in ((2.0, label), (10.0, label), (4.0, (label + 2) % num_gt_labels)):
                        rows.append([iv, f, cls, score(), *clip(q(box + rng.normal(0, jitter, 4))[None])[0]])
            for c in [label] + list(extra_labels):
                rows.append([iv, f, c, score(0.01, 0.5), *track(rng, 1)[0]])
            alldets += rows
    videos = list(gt)
    content = {"labels": labels, "gttubes": gt, "nframes": nframes, "resolution": {v: (FRAME[1], FRAME[0]) for v in videos},
               "train_videos": [[]], "test_videos": [videos]}
    return content, tubes, np.array(alldets, np.float32)


def _act_tube(start, boxes, score):
    """ACT_build.py's tube: rows [frame, x1, y1, x2, y2, frame score] in single, and the tube score."""
    rows = np.zeros((len(boxes), 6), np.float32)
    rows[:, 0] = np.arange(start, start + len(boxes))
    rows[:, 1:5] = boxes
    rows[:, 5] = score
    return rows, score


def write_case(name, content, tubes, alldets):
    out = OUT / name
    (out / "tubes").mkdir(parents=True, exist_ok=True)
    with open(out / "gt.pkl", "wb") as f:
        pickle.dump(content, f, protocol=4)
    for video, res in tubes.items():
        path = out / "tubes" / f"{video}_tubes.pkl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            pickle.dump(res, f, protocol=4)
    with open(out / "frame_detections.pkl", "wb") as f:
        pickle.dump(alldets, f, protocol=4)
    return out


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--act_python", required=True, help="a Python with numpy<2 to run ACT.py in")
    parser.add_argument("--moc_git", default=MOC_GIT, type=Path)
    return parser


def main():
    args = get_args_parser().parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(f"git --git-dir={args.moc_git} archive HEAD src/ACT.py src/ACT_utils src/opts.py | tar -x -C {tmp}", shell=True, check=True)
        for name, (labels, seed, specs, extra) in CASES.items():
            out = write_case(name, *make_case(name, labels, seed, specs, extra))
            ref = subprocess.run([args.act_python, str(Path(__file__).with_name("run_act.py")), str(Path(tmp) / "src"),
                                  str(out), json.dumps(THRESHOLDS)], check=True, capture_output=True, text=True)
            (out / "reference.json").write_text(ref.stdout)
            print(name, ref.stdout[:200])


if __name__ == "__main__":
    main()
