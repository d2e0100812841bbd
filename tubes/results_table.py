"""The tables of results: one run's video-mAP per protocol and alpha (``table``, build_tubes.py and
eval_video_ap.py), and the original's results table, a row per model or late fusion (``ResultsTable``,
pipeline.py: RGB, FastOF, RGB+FastOF boost, ...)."""
import numpy as np

from .protocols import DEFAULT_PROTOCOL, PROTOCOLS

COLUMNS = ("mAP@0.2", "mAP@0.5", "mAP@0.75", "mAP@0.5:0.95", "frame-mAP", "accuracy")


def _alpha_row(entries: list, alpha) -> list:
    """Percentages at one alpha of a results.json video-mAP list: mAP at 0.2, 0.5, 0.75, the mean
    over 0.5:0.95, and the accuracy (None where the protocol has none)."""
    rows = {round(r["iou"], 2): r for r in entries if r["alpha"] == alpha}
    if not rows:
        raise ValueError(f"no video-mAP at alpha {alpha} (alphas: {sorted({str(r['alpha']) for r in entries})})")
    avg = np.mean([rows[t]["mAP"] for t in rows if t >= 0.5])
    acc = 100 * rows[0.2]["accuracy"] if "accuracy" in rows[0.2] else None
    return [100 * rows[0.2]["mAP"], 100 * rows[0.5]["mAP"], 100 * rows[0.75]["mAP"], 100 * avg, acc]


def fusion_line(fusion: dict) -> str:
    """The line naming a results.json ``fusion``: its type, the original's name, its settings and streams."""
    options = (f", fuse_iou {fusion['fuse_iou']:g}{', fixed' if fusion['fixed'] else ''}"
               if fusion.get("fuse_iou") is not None else "")
    streams = (f"the streams fused by test.py in {fusion['base_det_dir']}" if fusion.get("prefused_by_test_py")
               else f"{fusion['base_det_dir']} and {fusion['fuse_det_dir']}")
    return f"late fusion: {fusion['type']} ({fusion['matlab_name']}{options}) of {streams}"


PROTOCOL_COLUMNS = ("alpha", "mAP@0.2", "mAP@0.5", "mAP@0.75", "mAP@0.5:0.95", "accuracy")


def protocol_tables(results: dict) -> list:
    """The seed's tables of a results.json, one per protocol: ``(name, label, rows, frame)``, rows as
    ``PROTOCOL_COLUMNS`` (percent, accuracy None where the protocol has none) in alpha order, ``frame`` the
    protocol's frame-mAP line ``(whose, percent)`` or None."""
    out = []
    for name in results.get("protocol", DEFAULT_PROTOCOL).split("+"):
        protocol = PROTOCOLS[name]
        entries = results.get(protocol.video_key, [])
        alphas = list(dict.fromkeys(r["alpha"] for r in entries))
        alphas = alphas if any(isinstance(a, str) for a in alphas) else sorted(alphas)
        frame = results.get(protocol.frame_key)
        out.append((name, protocol.label, [[a, *_alpha_row(entries, a)] for a in alphas],
                    (protocol.frame_label, 100 * frame["mAP"]) if frame else None))
    return out


def table(results: dict) -> str:
    """The seed's layout: mAP at 0.2, 0.5, 0.75, mean over 0.5:0.95, accuracy, per alpha (percent),
    under a line naming the protocol, for each protocol in ``results`` (after a line naming the late fusion)."""
    fusion = results.get("fusion")
    lines = [fusion_line(fusion)] if fusion else []
    for name, label, rows, frame in protocol_tables(results):
        lines += [f"protocol {name}: {label}", "  ".join(PROTOCOL_COLUMNS)]
        for a, m02, m05, m075, avg, acc in rows:
            acc = f"{'-':>8}" if acc is None else f"{acc:8.2f}"
            lines.append(f"{a!s:<6} {m02:7.2f}  {m05:7.2f}  {m075:8.2f}  {avg:12.2f}  {acc}")
        if frame:
            what = " of the fused detections" if fusion else ""
            lines.append(f"{frame[0]} frame-mAP@0.5{what}: {frame[1]:.2f}")
    return "\n".join(lines)


def summary_row(results: dict, alpha) -> dict:
    """One row of the results table (percent): video-mAP at 0.2, 0.5, 0.75 and 0.5:0.95 at ``alpha``,
    frameAp.m's frame-mAP@0.5 of the per-frame detections the linking took, the accuracy."""
    protocol = PROTOCOLS[DEFAULT_PROTOCOL]
    m02, m05, m075, avg, acc = _alpha_row(results[protocol.video_key], alpha)
    fmap = results.get(protocol.frame_key, {}).get("mAP")
    return {"alpha": alpha, "mAP@0.2": m02, "mAP@0.5": m05, "mAP@0.75": m075, "mAP@0.5:0.95": avg,
            "frame-mAP": None if fmap is None else 100 * fmap, "accuracy": acc}


def rows_table(rows: dict) -> str:
    """The original's results table: a line per model or fusion (``{name: summary_row(...)}``)."""
    width = max([len("model")] + [len(n) for n in rows])
    lines = [f"{'model':<{width}}  " + "  ".join(COLUMNS)]
    for name, row in rows.items():
        cells = ["-" if row[c] is None else f"{row[c]:.2f}" for c in COLUMNS]
        lines.append(f"{name:<{width}}  " + "  ".join(f"{v:>{len(c)}}" for v, c in zip(cells, COLUMNS)))
    return "\n".join(lines)


def row_name(base: str, extra: str | None = None, fusion: str | None = None) -> str:
    """The original table's row names: RGB, FastOF, RGB+FastOF boost, RGB+FastOF SUM, ..."""
    def name(input_type):
        return "RGB" if input_type == "rgb" else input_type[0].upper() + input_type[1:]
    return name(base) if extra is None else f"{name(base)}+{name(extra)} {fusion}"


class ResultsTable:
    """The results table being built, a row per model or fusion (``row_name``): ``summary`` holds each
    row's numbers in full, ``rows`` its ``summary_row`` at ``alpha``."""

    def __init__(self, alpha):
        self.alpha, self.summary, self.rows = alpha, {}, {}

    def add_detections(self, name: str, weights, det: dict) -> None:
        """A model's test.py summary (``DET_DIR-frame_map.json``): its VOC frame-mAP and speed."""
        self.summary[name] = {"weights": str(weights), "frame_map_voc": det["frame_map_voc"], "frame_ap_voc": det["ap"],
                              "fps": det["frames"] / det["total_seconds"]}

    def add(self, name: str, results: dict) -> None:
        """A row's build_tubes.py results (results.json)."""
        self.summary.setdefault(name, {}).update(video_map=results["video_map"],
                                                 frame_map_frameap=results.get("frame_map_frameap"), table=table(results))
        self.rows[name] = summary_row(results, self.alpha)

    def summary_of(self, first: str, **extra) -> dict:
        """summary.json: ``extra``, the ``first`` row's numbers and, with more rows, every row's and the table."""
        summary = {**extra, **self.summary.get(first, {})}
        if len(self.summary) > 1:
            summary["models"] = self.summary
        if self.rows:
            summary["rows"], summary["results_table"] = self.rows, rows_table(self.rows)
        return summary


def report(summary: dict, alpha) -> str:
    """What pipeline.py prints at the end: frame-mAP, the first row's table, the results table, the demo video."""
    lines = []
    if "frame_map_voc" in summary:
        lines.append(f"VOC frame-mAP@0.5 of the micro-tube detections (test.py): {100 * summary['frame_map_voc']:.2f}  "
                     f"({summary['fps']:.0f} frames/s end to end)")
    if "table" in summary:
        lines += ["video-mAP of the linked, trimmed tubes (build_tubes.py; last line: frameAp.m's frame-mAP "
                  "of the linking's per-frame detections):", summary["table"]]
    if len(summary.get("rows", {})) > 1:
        lines += [f"results table (alpha {alpha:g}; frame-mAP: frameAp.m's, of the detections each row's linking "
                  "took):", summary["results_table"]]
    if "video" in summary:
        lines.append(f"annotated video (demo.py): {summary['video']}")
    return "\n".join(lines)
