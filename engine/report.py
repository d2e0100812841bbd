"""``WORK/report.html``: one page on a pipeline.py run, self-contained (every image embedded as a data URI,
no network; the annotated videos it links lie beside it in ``WORK/report_videos``). It holds the results
tables in the original's format (every protocol run, every row), the per-class APs, the precision-recall
curves and video-mAP against ST-IoU (``WORK/eval``), the online curves (``WORK/online``), the error analysis
(``tubes/errors.py``), the training loss and validation frame-mAP (``WORK/train/*/training.log`` and
``validation.json``) and, for the videos with the most false-positive and missed tubes, a strip of frames with
the ground truth and the evaluated tubes in two colours, each linking to its annotated video. A section whose
inputs the run lacks names the stage that makes them. Written by ``analyze.py --report WORK`` (pipeline.py's
report stage); user guide: ``docs/report.md``. Imports no torch."""
import base64
import contextlib
import datetime
import html
import io
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from data import layout
from tubes.errors import ERROR_TYPES, FIX_LABELS, FIXES, Analysis
from tubes.protocols import PROTOCOLS
from tubes.results_table import COLUMNS, PROTOCOL_COLUMNS, protocol_tables
from utils.io import atomic_path

from .drawing import GT_COLOUR, draw_box, draw_frame_number, draw_ground_truth, draw_legend, ground_truth_boxes

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
VIDEO_DIR = "report_videos"
WORST_VIDEOS = 4  # videos shown with their frames
WORST_TABLE = 10  # videos in the table of counts
STRIP_FRAMES = 4  # frames per strip, evenly spaced over the video's GT and evaluated tubes (wide enough to read)
TUBE_COLOUR = (0, 255, 255)  # BGR yellow: the evaluated tubes (the ground truth is GT_COLOUR)
LOSS_LINE = re.compile(r"iteration (\d+)/(\d+) loc-loss (\S+)\((\S+)\) cls-loss (\S+)\((\S+)\)")
STYLE = """body{font-family:sans-serif;max-width:1200px;margin:1em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #bbb;padding:2px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}thead th{background:#eee}img{max-width:100%;height:auto}
.plots img{max-width:49%}.missing{color:#a33}.swatch{display:inline-block;width:1em;height:1em;
border:1px solid #555;vertical-align:middle;margin:0 .3em}figure{margin:0 0 1.5em}nav a{margin-right:1em}"""


def parse_training_log(path: Path) -> dict:
    """train.py's ``iteration N/M loc-loss V(A) cls-loss V(A) ...`` lines of ``path`` as arrays by iteration:
    ``iteration``, ``loc``, ``loc_avg``, ``cls``, ``cls_avg`` (the logged batch's losses and their running averages)
    and ``max_iter``; a later line of an iteration replaces an earlier one (a resumed run logs it again)."""
    rows = {}
    for line in Path(path).read_text(errors="replace").splitlines():
        if m := LOSS_LINE.search(line):
            rows[int(m[1])] = (int(m[2]), *map(float, m.groups()[2:]))
    its = sorted(rows)
    values = np.array([rows[i][1:] for i in its], np.float64).reshape(-1, 4)
    return {"iteration": np.array(its, np.int64), "max_iter": max((rows[i][0] for i in its), default=0),
            **{key: values[:, k] for k, key in enumerate(("loc", "loc_avg", "cls", "cls_avg"))}}


def read_validation(exp_dir: Path) -> dict:
    """train.py's ``validation.json`` of ``exp_dir`` as ``{iteration: frame-mAP}`` ({} without one)."""
    path = Path(exp_dir) / "validation.json"
    return {int(k): float(v) for k, v in json.loads(path.read_text()).items()} if path.is_file() else {}


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_training(experiments: dict) -> bytes:
    """PNG: per experiment (``{name: (parse_training_log, read_validation)}``) the losses against the iteration
    (thin: the logged batch's, thick: the running average) and the validation frame-mAP (the best marked)."""
    plt = _pyplot()
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(12, 4))
    for k, (name, (losses, validation)) in enumerate(experiments.items()):
        for kind, style in (("loc", "-"), ("cls", "--")):
            ax_loss.plot(losses["iteration"], losses[kind], style, color=f"C{k}", linewidth=0.6, alpha=0.5)
            ax_loss.plot(losses["iteration"], losses[f"{kind}_avg"], style, color=f"C{k}", linewidth=2,
                         label=f"{name} {kind}-loss")
        if validation:
            its = sorted(validation)
            ax_val.plot(its, [100 * validation[i] for i in its], "o-", color=f"C{k}", label=name)
            best = max(its, key=lambda i: (validation[i], i))
            ax_val.annotate(f"{100 * validation[best]:.1f}", (best, 100 * validation[best]), textcoords="offset points",
                            xytext=(0, 6), ha="center", fontsize=8)
    ax_loss.set(xlabel="iteration", ylabel="loss", title="training loss (thick: running average)")
    ax_val.set(xlabel="iteration", ylabel="frame-mAP@0.5 (%)", ylim=(0, 105), title="validation frame-mAP")
    for ax in (ax_loss, ax_val):
        ax.grid(True)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def worst_videos(summary: dict, count: int = WORST_VIDEOS) -> list:
    """The ``count`` videos of an error summary with the most false-positive and missed (not found) tubes, worst
    first (ties by name), those with any."""
    errors = {v: c["false_positives"] + c["false_negatives"] for v, c in summary["videos"].items()}
    return [v for v in sorted(errors, key=lambda v: (-errors[v], v)) if errors[v] > 0][:count]


@dataclass
class DrawnTube:
    """An evaluated tube as drawn: first frame (0-based), ``[n, 4]`` boxes in 0-based pixels, label."""
    start: int
    boxes: np.ndarray
    label: str

    @property
    def end(self) -> int:
        return self.start + len(self.boxes)


def evaluated_tubes(a: Analysis, video: str, tubes: list, class_names: list) -> list:
    """``DrawnTube`` of each tube of ``video`` (``tubes``: its ``ActionTube`` list) that the analysis evaluated,
    labelled with its class, score, and TP or its error type."""
    out = []
    for i in np.flatnonzero(a.video == a.videos.index(video)):
        tube = tubes[a.tube[i]]
        kind = "TP" if a.error[i] < 0 else ERROR_TYPES[a.error[i]]
        boxes = np.asarray(tube.boxes, np.float64) - 1  # link boxes -> 0-based pixels (as demo.py's tubes_json)
        out.append(DrawnTube(tube.start, boxes, f"{class_names[tube.class_id]} {tube.score:.2f} {kind}"))
    return out


def _annotated_frame(image: np.ndarray, frame: int, gt: dict, tubes: list, class_names: list) -> np.ndarray:
    image = image.copy()
    for tube in tubes:
        if tube.start <= frame < tube.end:
            draw_box(image, tube.boxes[frame - tube.start], TUBE_COLOUR, tube.label)
    draw_ground_truth(image, gt.get(frame, []), class_names)
    draw_frame_number(image, frame)
    return image


def _read_frame(frames_root: Path, video: str, frame: int) -> np.ndarray:
    path = layout.frame_path(frames_root, "rgb", video, frame)
    image = cv2.imread(str(path))
    if image is None:
        raise FileNotFoundError(f"{path}: no such frame (or not an image)")
    return image


def video_strip(frames_root: Path, annotation, tubes: list, class_names: list, count: int = STRIP_FRAMES) -> tuple:
    """``(JPEG bytes, frames)``: ``count`` frames evenly spaced over the span of the video's GT tubes and
    evaluated ``tubes`` (``evaluated_tubes``), side by side, each with both drawn."""
    spans = [(t.start, t.end) for t in [*annotation.tubes, *tubes]]
    first, last = (min(s for s, _ in spans), max(e for _, e in spans) - 1) if spans else (0, annotation.num_frames - 1)
    frames = sorted(set(np.linspace(first, last, min(count, last - first + 1)).round().astype(int).tolist()))
    gt = ground_truth_boxes(annotation)
    images = [_annotated_frame(_read_frame(frames_root, annotation.name, f), f, gt, tubes, class_names) for f in frames]
    gap = np.full((images[0].shape[0], 4, 3), 255, np.uint8)
    strip = np.concatenate([x for image in images for x in (image, gap)][:-1], axis=1)
    return cv2.imencode(".jpg", strip, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes(), frames


def write_annotated_video(path: Path, frames_root: Path, annotation, tubes: list, class_names: list,
                          fps: float = 25.0) -> Path:
    """The video's frames with the ground truth and the evaluated tubes drawn and a legend, as a VP8 WebM (which
    browsers play), atomically."""
    gt = ground_truth_boxes(annotation)
    first = _read_frame(frames_root, annotation.name, 0)
    legend = [("ground truth", GT_COLOUR), ("tubes: class score TP/error", TUBE_COLOUR)]
    with atomic_path(path) as tmp:
        with _quiet_stderr():
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"VP80"), fps, (first.shape[1], first.shape[0]))
        if not writer.isOpened():
            raise OSError(f"{path}: this OpenCV cannot write WebM (VP8) videos")
        for frame in range(annotation.num_frames):
            image = first if frame == 0 else _read_frame(frames_root, annotation.name, frame)
            image = _annotated_frame(image, frame, gt, tubes, class_names)
            draw_legend(image, legend)
            writer.write(image)
        writer.release()
    return path


@contextlib.contextmanager
def _quiet_stderr():
    """File descriptor 2 to /dev/null: OpenCV's FFmpeg writer says there that WebM takes no codec tag (it writes
    VP8 all the same)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# HTML ---------------------------------------------------------------------------------------------------------

def _e(text) -> str:
    return html.escape(str(text))


def _img(data: bytes, alt: str, mime: str = "image/png") -> str:
    return f'<img src="data:{mime};base64,{base64.b64encode(data).decode()}" alt="{_e(alt)}">'


def _png_file(path: Path) -> str:
    return _img(Path(path).read_bytes(), Path(path).name)


def _table(head: list, rows: list, attrs: str = "") -> str:
    cells = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table {attrs}><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def _pct(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _missing(what: str, stage: str) -> str:
    return f'<p class="missing">{_e(what)}: not in this run (pipeline.py --stages {stage} makes it)</p>'


def _swatch(bgr: tuple) -> str:
    return f'<span class="swatch" style="background:#{bgr[2]:02x}{bgr[1]:02x}{bgr[0]:02x}"></span>'


def _read_json(path: Path):
    return json.loads(Path(path).read_text()) if Path(path).is_file() else None


def _results_section(work: Path, summary: dict) -> str:
    parts = []
    if len(summary.get("rows", {})) > 1:
        rows = [[name] + [_pct(row[c]) for c in COLUMNS] for name, row in summary["rows"].items()]
        parts += ["<h3>Results table (a row per model and fusion, percent)</h3>",
                  _table(["model", *COLUMNS], rows, 'class="rows"')]
    dirs = sorted((p for p in work.glob("tubes*") if (p / "results.json").is_file()), key=lambda p: (p.name != "tubes", p.name))
    for tube_dir in dirs:
        results = json.loads((tube_dir / "results.json").read_text())
        for name, label, rows, frame in protocol_tables(results):
            parts.append(f"<h3>{_e(tube_dir.name)}/results.json: protocol {_e(name)}, {_e(label)}</h3>")
            parts.append(_table(list(PROTOCOL_COLUMNS), [[r[0]] + [_pct(v) for v in r[1:]] for r in rows],
                                f'class="protocol" data-source="{_e(tube_dir.name)}" data-protocol="{_e(name)}"'))
            if frame:
                parts.append(f"<p>{_e(frame[0])} frame-mAP@0.5 of the linking's per-frame detections: {frame[1]:.2f}</p>")
    for path in sorted(work.glob("detections*-frame_map.json")):
        det = json.loads(path.read_text())
        parts.append(f"<p>{_e(path.name)}: VOC frame-mAP@0.5 of the micro-tube detections (test.py) "
                     f"{100 * det['frame_map_voc']:.2f}, {det['frames'] / det['total_seconds']:.0f} frames/s end to end</p>")
    return "".join(parts) or _missing("results.json", "tubes")


def _per_class_section(work: Path, class_names: list) -> str:
    results, det = _read_json(work / "tubes" / "results.json"), _read_json(work / "detections-frame_map.json")
    if results is None:
        return _missing("tubes/results.json", "tubes")
    parts = []
    for name in results.get("protocol", "road").split("+"):
        protocol = PROTOCOLS[name]
        entries = results.get(protocol.video_key, [])
        alpha = entries[0]["alpha"] if entries else None
        by_iou = {round(e["iou"], 2): e["ap"] for e in entries if e["alpha"] == alpha}
        ious = [t for t in (0.2, 0.5, 0.75) if t in by_iou]
        frame = (results.get(protocol.frame_key) or {}).get("ap", {})
        head = ["class", "frame AP (test.py, VOC)", f"frame AP ({protocol.frame_label})"] + [f"video AP@{t:g}" for t in ious]
        rows = [[c, _pct(100 * det["ap"][c] if det and c in det["ap"] else None), _pct(100 * frame[c] if c in frame else None)]
                + [_pct(100 * by_iou[t][c] if c in by_iou[t] else None) for t in ious] for c in class_names]
        parts += [f"<h3>protocol {_e(name)}, alpha {_e(alpha)} (percent)</h3>",
                  _table(head, rows, f'class="per_class" data-protocol="{_e(name)}"')]
    return "".join(parts)


def _images_section(paths: list, what: str, stage: str) -> str:
    paths = [p for p in paths if Path(p).is_file()]
    if not paths:
        return _missing(what, stage)
    return '<div class="plots">' + "".join(_png_file(p) for p in paths) + "</div>"


def _errors_section(summaries: dict, plots: dict) -> str:
    parts = []
    for protocol, s in summaries.items():
        c = s["counts"]
        parts.append(f"<h3>protocol {_e(protocol)}, ST-IoU {_e(s['match'])} {s['iou']:g}: video-mAP {100 * s['mAP']:.2f}; "
                     f"{c['tubes']} tubes ({c['true_positives']} true positives), {c['gt_tubes']} GT tubes "
                     f"({c['false_negatives']} not found)</h3>")
        counts = {"false_positives": c["false_positives"], "false_negatives": c["false_negatives"]}
        rows = [[FIX_LABELS.get(f, f), counts.get(f, c.get(f)), _pct(100 * s["fixed_mAP"][f]), f"{100 * s['gain'][f]:+.2f}"]
                for f in FIXES]
        parts.append(_table(["error", "count", "mAP fixed", "gain"], rows, f'class="errors" data-protocol="{_e(protocol)}"'))
        parts.append(_images_section(plots.get(protocol, []), "error plots", "report"))
    return "".join(parts)


def _training_section(work: Path) -> str:
    experiments = {p.parent.name: (parse_training_log(p), read_validation(p.parent))
                   for p in sorted((work / "train").glob("*/training.log"))}
    if not experiments:
        return _missing("train/*/training.log", "train")
    lines = []
    for name, (losses, validation) in experiments.items():
        best = max(validation, key=lambda i: (validation[i], i)) if validation else None
        lines.append(f"<li>{_e(name)}: {len(losses['iteration'])} loss lines to iteration "
                     f"{int(losses['iteration'][-1]) if len(losses['iteration']) else 0} of {losses['max_iter']}"
                     + (f"; best validation frame-mAP {100 * validation[best]:.2f} at iteration {best}" if best else "")
                     + "</li>")
    return f"<ul>{''.join(lines)}</ul>" + _img(plot_training(experiments), "training curves")


def _videos_section(work: Path, summary: dict, analysis: Analysis, annotations: dict, tubes: dict,
                    class_names: list, frames_root: Path | None) -> str:
    videos = worst_videos(summary, WORST_TABLE)
    if not videos:
        return "<p>No video has a false-positive or missed tube.</p>"
    head = ["video", "tubes", "true positives", "false positives", "their types", "GT tubes", "not found", "missed"]
    rows = [[v, c["tubes"], c["true_positives"], c["false_positives"], ", ".join(f"{c[t]} {t}" for t in ERROR_TYPES if c[t]),
             c["gt_tubes"], c["false_negatives"], c["missed"]] for v, c in ((v, summary["videos"][v]) for v in videos)]
    parts = [f"<p>The {len(videos)} videos with the most false-positive tubes and GT tubes not found (protocol "
             f"{_e(analysis.protocol)}; missed: not found and no error's target):</p>", _table(head, rows, 'class="videos"'),
             f"<p>{_swatch(GT_COLOUR)}ground truth {_swatch(TUBE_COLOUR)}evaluated tubes (class, score, TP or the "
             "error type). Each strip links to the whole video, drawn the same way.</p>"]
    stale = set((work / VIDEO_DIR).glob("*.webm"))  # an earlier report's, of videos no longer among the worst
    for video in videos[:WORST_VIDEOS]:
        c = summary["videos"][video]
        title = (f"{video}: {c['false_positives']} false-positive tubes, {c['false_negatives']} GT tubes not found "
                 f"({c['tubes']} tubes, {c['gt_tubes']} GT tubes)")
        try:
            if frames_root is None:
                raise FileNotFoundError("no frames: the run's data root is unknown")
            drawn = evaluated_tubes(analysis, video, tubes.get(video, []), class_names)
            strip, frames = video_strip(frames_root, annotations[video], drawn, class_names)
            target = write_annotated_video(work / VIDEO_DIR / f"{video.replace('/', '__')}.webm", frames_root,
                                           annotations[video], drawn, class_names)
        except OSError as error:
            log.warning("report: %s: %s", video, error)
            parts.append(f"<h3>{_e(title)}</h3><p class=\"missing\">{_e(error)}</p>")
            continue
        stale.discard(target)
        href = target.relative_to(work).as_posix()
        parts.append(f'<figure class="video"><h3>{_e(title)}</h3><a href="{_e(href)}">'
                     f'{_img(strip, video, "image/jpeg")}</a><figcaption>frames {", ".join(str(f + 1) for f in frames)}; '
                     f'<a href="{_e(href)}">annotated video</a></figcaption></figure>')
    for path in stale:
        path.unlink()
    return "".join(parts)


def frames_root_of(work: Path, annot_path: Path) -> Path | None:
    """The run's frames: summary.json's data root, else the dataset around the annotation file
    (``ROOT/splitfiles/pyannot.pkl``), else None."""
    summary = _read_json(Path(work) / "summary.json") or {}
    for root in (summary.get("data_root"), Path(annot_path).parent.parent):
        if root and layout.images_dir(root, "rgb").is_dir():
            return Path(root)
    return None


def write_report(work: Path, analyses: dict, summaries: dict, plots: dict, annotations: dict, tubes: dict,
                 class_names: list, annot_path: Path) -> Path:
    """``WORK/report.html`` (atomically) from the run's files in ``work`` and analyze.py's error analysis:
    ``analyses`` and ``summaries`` ``{protocol: Analysis / errors.summarize}``, ``plots`` ``{protocol: [png]}``,
    the ``annotations`` and the evaluated ``tubes`` ``{video: [ActionTube]}``; the worst videos' strips from the
    first protocol's. Returns its path."""
    work = Path(work)
    summary = _read_json(work / "summary.json") or {}
    first = next(iter(summaries))
    demo = sorted((work / "demo").glob("*.mp4"))
    sections = {
        "results": ("Results", _results_section(work, summary)),
        "per-class": ("Per-class APs", _per_class_section(work, class_names)),
        "curves": ("Precision-recall and video-mAP against ST-IoU",
                   _images_section(sorted((work / "eval").glob("map_vs_iou.png")) + sorted((work / "eval").glob("pr_*.png")),
                                   "eval/*.png", "plots")),
        "online": ("Online: early label and video-mAP against the video observed",
                   _images_section([work / "online" / "online_accuracy.png", work / "online" / "online_map.png"],
                                   "online/*.png", "online")),
        "errors": ("Error analysis (docs/error-analysis.md)", _errors_section(summaries, plots)),
        "training": ("Training and validation", _training_section(work)),
        "videos": ("Worst videos", _videos_section(work, summaries[first], analyses[first], annotations, tubes,
                                                   class_names, frames_root_of(work, annot_path))),
    }
    if demo:
        sections["demo"] = ("Online demo (demo.py)", "<ul>" + "".join(
            f'<li><a href="{_e(p.relative_to(work).as_posix())}">{_e(p.name)}</a></li>' for p in demo) + "</ul>")
    facts = [("work dir", work), ("data", summary.get("data_root", "-")), ("weights", summary.get("weights", "-")),
             ("written", datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))]
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Run report: {_e(work.name)}</title>'
            f"<style>{STYLE}</style></head><body><h1>Run report: {_e(work.name)}</h1>"
            + "".join(f"<div><b>{_e(k)}</b>: {_e(v)}</div>" for k, v in facts)
            + "<nav>" + "".join(f'<a href="#{key}">{_e(title)}</a>' for key, (title, _) in sections.items()) + "</nav>"
            + "".join(f'<section id="{key}"><h2>{_e(title)}</h2>{body}</section>' for key, (title, body) in sections.items())
            + "</body></html>\n")
    path = work / REPORT_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    log.info("report: %s", path)
    return path
