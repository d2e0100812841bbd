"""The run report (engine/report.py, analyze.py --report, pipeline.py's report stage): a pipeline work dir made
around the toy set (tubes from the ground truth: found, shifted, a far-off one per video; eval_video_ap.py's
results under both protocols; train.py's log lines and validation record), the page's tables checked against
the run's files, its strips and videos against the drawing, and the page rendered by headless Chromium."""
import json
import logging
import shutil
import subprocess
from html.parser import HTMLParser
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

import eval_video_ap
import pipeline
from data import layout
from data.annotations import load_class_names, load_pyannot, read_video_list
from engine.drawing import GT_COLOUR
from engine.report import TUBE_COLOUR, WORST_VIDEOS, parse_training_log
from engine.training import TrainingMonitor
from models import ModelConfig, build_model
from tests.conftest import optional
from tubes.errors import FIX_LABELS, FIXES
from tubes.trimming import ActionTube
from tubes.tube_files import save_tubes
from utils.checkpoint import record_validation, save_checkpoint
from utils.logging_utils import setup_logging

FAR = np.array([250.0, 170.0, 305.0, 225.0])  # a link box (1-based pixels) in the bottom-right corner


class Page(HTMLParser):
    """A page's tables (attributes and rows of cell texts), images, links and h3 headings."""

    def __init__(self, text):
        super().__init__()
        self.tables, self.images, self.links, self.h3, self._cell, self._h3, self.body = [], [], [], [], None, None, {}
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append({"attrs": attrs, "rows": []})
        elif tag == "tr":
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "img":
            self.images.append(attrs)
        elif tag == "a":
            self.links.append(attrs.get("href", ""))
        elif tag == "h3":
            self._h3 = ""
        elif tag == "body":
            self.body = attrs

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1]["rows"][-1].append(self._cell.strip())
            self._cell = None
        elif tag == "h3":
            self.h3.append(self._h3)
            self._h3 = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        if self._h3 is not None:
            self._h3 += data

    def table(self, cls, protocol=None):
        found = [t["rows"] for t in self.tables if t["attrs"].get("class") == cls
                 and (protocol is None or t["attrs"].get("data-protocol") == protocol)]
        assert len(found) == 1, (cls, protocol)
        return found[0]


def training_log(exp_dir):
    """train.py's log lines (TrainingMonitor's, through the scripts' logging set-up) of a run stopped after
    iteration 3 and resumed from the checkpoint at 2, and its validation record."""
    setup_logging(exp_dir / "training.log")
    try:
        for start, losses in ((0, [(5, 4), (4, 3), (9, 9)]), (2, [(3, 2), (2, 1)])):
            monitor = TrainingMonitor(exp_dir, ["a"], start, 4, print_step=1, loss_reset_step=30)
            for i, (loc, cls) in enumerate(losses, start + 1):
                monitor.step(i, loc, cls, 0.001)
            monitor.close()
    finally:
        logging.getLogger().handlers[-1].close()
        setup_logging()
    record_validation(exp_dir, 2, 0.3)
    record_validation(exp_dir, 4, 0.5)


@pytest.fixture(scope="module")
def run(toy_root, tmp_path_factory):
    work = tmp_path_factory.mktemp("run")
    annot = layout.split_path(toy_root, layout.ANNOT_FILE)
    annotations = load_pyannot(annot)
    videos = read_video_list(layout.split_path(toy_root, "testlist01.txt"))
    classes = load_class_names(toy_root)
    (work / "tubes").mkdir()
    (work / "tubes" / "classes.txt").write_text("\n".join(classes) + "\n")
    tubes = {}
    for k, name in enumerate(videos):  # each video's first GT tube found (the first video's shifted), a far-off tube
        video = annotations[name]
        gt = video.tubes[0]
        boxes = gt.boxes.astype(np.float64)
        if k == 0:
            boxes[:, [0, 2]] += 0.4 * (boxes[:, 2:3] - boxes[:, 0:1])
        tubes[name] = [ActionTube(video.class_id, 0.9 - 0.01 * k, gt.start, boxes),
                       ActionTube(video.class_id, 0.3, 0, np.tile(FAR, (video.num_frames, 1)))]
    tube_file = work / "tubes" / "tubes_alpha3.npz"
    save_tubes(tube_file, videos, {v: {3.0: t} for v, t in tubes.items()}, 3.0)
    eval_video_ap.main(["--tubes", str(tube_file), "--annot", str(annot), "--out_dir", str(work / "eval"),
                        "--classes", str(work / "tubes" / "classes.txt"), "--protocol", "road,act"])
    shutil.copy(work / "eval" / "results.json", work / "tubes" / "results.json")
    exp = work / "train" / "rgb_w0.0625"
    exp.mkdir(parents=True)
    training_log(exp)
    torch.manual_seed(0)
    save_checkpoint(exp / "AMTNet_4.pth", build_model(ModelConfig(num_classes=len(classes) + 1, width_mult=0.0625)),
                    classes=classes)
    assert pipeline.main(["--work_dir", str(work), "--data_root", str(toy_root), "--width_mult", "0.0625",
                          "--stages", "report"]) == 0
    return SimpleNamespace(work=work, annotations=annotations, videos=videos, tubes=tubes, classes=classes,
                           results=json.loads((work / "tubes" / "results.json").read_text()),
                           errors=json.loads((work / "errors" / "errors.json").read_text()))


def _percent(value):
    return f"{100 * value:.2f}"


def check_tables(page, run):
    """The page's tables hold the run's numbers, computed here from results.json and errors.json."""
    for protocol, key in (("road", "video_map"), ("act", "video_map_act")):
        entries = {round(e["iou"], 2): e for e in run.results[key] if e["alpha"] == 3}
        rows = page.table("protocol", protocol)
        assert rows[0] == ["alpha", "mAP@0.2", "mAP@0.5", "mAP@0.75", "mAP@0.5:0.95", "accuracy"]
        average = np.mean([e["mAP"] for t, e in entries.items() if t >= 0.5])
        accuracy = _percent(entries[0.2]["accuracy"]) if "accuracy" in entries[0.2] else "-"
        assert rows[1] == ["3"] + [_percent(entries[t]["mAP"]) for t in (0.2, 0.5, 0.75)] + [_percent(average), accuracy]
        per_class = page.table("per_class", protocol)
        column = per_class[0].index("video AP@0.5")
        assert [r[column] for r in per_class[1:]] == [_percent(entries[0.5]["ap"][c]) for c in run.classes]
    assert run.errors["protocol"] == "road"  # pipeline.py's analysis: the default protocol's
    errors = run.errors["road"]
    counts = errors["counts"]
    assert page.table("errors", "road")[1:] == [
        [FIX_LABELS.get(f, f), str(counts[f]), _percent(errors["fixed_mAP"][f]), f"{100 * errors['gain'][f]:+.2f}"]
        for f in FIXES]
    assert run.errors["road"]["counts"]["spatial"] == 1 and run.errors["road"]["counts"]["background"] == len(run.videos)


def test_the_page_holds_the_run(run):
    page = Page((run.work / "report.html").read_text())
    check_tables(page, run)
    # every image embedded: the PR curves (3 per protocol), mAP against ST-IoU, the 3 error plots, the
    # training curves and a strip per worst video
    assert all(img["src"].startswith("data:image/") for img in page.images)
    assert len(page.images) == 3 * 2 + 1 + 3 + 1 + WORST_VIDEOS
    text = (run.work / "report.html").read_text()
    assert "online/*.png: not in this run (pipeline.py --stages online makes it)" in text
    assert "best validation frame-mAP 50.00 at iteration 4" in text and "4 loss lines to iteration 4 of 4" in text
    # the worst videos, worst first, as errors.json counts them
    counts = run.errors["road"]["videos"]
    worst = sorted(counts, key=lambda v: (-counts[v]["false_positives"] - counts[v]["false_negatives"], v))
    shown = [h.split(":")[0] for h in page.h3 if h.split(":")[0] in counts]
    assert shown == worst[:WORST_VIDEOS] and [r[0] for r in page.table("videos")[1:]] == worst[:10]


def test_the_linked_videos_show_ground_truth_and_tubes(run):
    """Each strip links to its video (WebM, beside the page): every frame, the GT boxes in white and the tubes in
    yellow, read back along a GT box's edge and the far-off tube's."""
    page = Page((run.work / "report.html").read_text())
    videos = [link for link in page.links if link.endswith(".webm")]
    assert len(set(videos)) == WORST_VIDEOS
    name = next(v for v in run.videos if f"report_videos/{v.replace('/', '__')}.webm" in videos)
    capture = cv2.VideoCapture(str(run.work / "report_videos" / f"{name.replace('/', '__')}.webm"))
    frames = []
    while (frame := capture.read())[0]:
        frames.append(frame[1])
    video = run.annotations[name]
    assert len(frames) == video.num_frames

    def share(image, columns, rows, colour):  # of the pixels, those within 80 of the colour in every channel
        return (np.abs(image[rows, columns].astype(int) - colour).max(axis=-1) < 80).mean()
    gt = video.tubes[0]
    f = gt.start + len(gt.boxes) // 2
    x1, y1, x2, y2 = gt.boxes[f - gt.start].round().astype(int)
    assert share(frames[f], x1, np.arange(y1 + 4, y2 - 3), GT_COLOUR) > 0.8
    x1, y1, x2, y2 = (FAR - 1).astype(int)  # drawn in 0-based pixels
    rows = np.arange(y1 + 4, y2 - 3)
    clear = [i for i in range(video.num_frames)  # frames where no GT box (or its label, under it) nears that edge
             if all(not (t.start <= i < t.end) or max(t.boxes[i - t.start][2], t.boxes[i - t.start][0] + 100) < x1
                    or t.boxes[i - t.start][0] > x1 + 8 for t in video.tubes)]
    assert clear and share(frames[clear[0]], x1, rows, TUBE_COLOUR) > 0.8


def test_training_log_lines(run):
    """A resumed run logs its iterations again from the checkpoint: the later line of each iteration counts."""
    losses = parse_training_log(run.work / "train" / "rgb_w0.0625" / "training.log")
    assert losses["iteration"].tolist() == [1, 2, 3, 4] and losses["max_iter"] == 4
    assert losses["loc"].tolist() == [5, 4, 3, 2] and losses["cls"].tolist() == [4, 3, 2, 1]
    assert losses["loc_avg"].tolist() == [5, 4.5, 3, 2.5]  # the resumed run's averages start again


CHECK = """<img id="control" src="no-such-image.png" alt="control"><script>
window.addEventListener("load", () => {
  const broken = [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  document.body.setAttribute("data-images", document.images.length);
  document.body.setAttribute("data-broken", JSON.stringify(broken));
});</script>"""


def test_the_page_renders_in_chromium(run):
    """Headless Chromium loads the page: every image decodes (a broken control image is caught), and the tables
    it renders hold the run's numbers."""
    browser = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    optional(browser is not None, "chromium (Debian's package chromium; .ci/run installs it)")
    probe = run.work / "report-probe.html"  # beside the page, so its relative links resolve the same
    probe.write_text((run.work / "report.html").read_text().replace("</body>", CHECK + "</body>"))
    try:
        result = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                                 "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    finally:
        probe.unlink()
    page = Page(result.stdout)
    assert page.body.get("data-broken") == '["control"]', result.stderr[-2000:]
    assert int(page.body["data-images"]) == len(page.images) == 3 * 2 + 1 + 3 + 1 + WORST_VIDEOS + 1
    check_tables(page, run)


def test_analyze_report_with_a_results_table(run, tmp_path):
    """analyze.py --report on a copy of the run with two rows (as pipeline.py's two-stream runs): the original's
    results table, a row per model, and each row's tables under its tubes folder."""
    import analyze
    from tubes.results_table import COLUMNS, summary_row
    work = tmp_path / "work"
    shutil.copytree(run.work, work, ignore=shutil.ignore_patterns("report*"))
    shutil.copytree(work / "tubes", work / "tubes_fastOF")
    summary = json.loads((work / "summary.json").read_text())
    rows = {"RGB": summary_row(run.results, 3.0), "FastOF": summary_row(run.results, 3.0) | {"mAP@0.5": 12.345}}
    (work / "summary.json").write_text(json.dumps(summary | {"rows": rows}))
    annot = layout.split_path(summary["data_root"], layout.ANNOT_FILE)
    analyze.main(["--tubes", str(work / "tubes" / "tubes_alpha3.npz"), "--annot", str(annot), "--classes",
                  str(work / "tubes" / "classes.txt"), "--out_dir", str(work / "errors"), "--report", str(work)])
    page = Page((work / "report.html").read_text())
    table = page.table("rows")
    assert table[0] == ["model", *COLUMNS]
    assert [r[0] for r in table[1:]] == ["RGB", "FastOF"] and table[2][2] == "12.35"
    assert table[1][1:] == ["-" if rows["RGB"][c] is None else f"{rows['RGB'][c]:.2f}" for c in COLUMNS]
    assert len([t for t in page.tables if t["attrs"].get("data-source") == "tubes_fastOF"]) == 2  # road and act
    assert len(list((work / "report_videos").glob("*.webm"))) == WORST_VIDEOS
