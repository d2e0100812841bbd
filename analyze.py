"""Error analysis of action tubes: each false-positive tube's error type, the missed GT tubes, the video-mAP
when an oracle fixes each type, and the mAP by tube length, actors per video and box size (docs/error-analysis.md).

python analyze.py --tubes OUT/tubes_alpha3.npz|xmldata.mat|ACT_TUBE_DIR --annot finalAnnots.mat|pyannot.pkl|GT.pkl|ucf24
    [--protocol road|act|road,act] [--iou 0.5] [--background_iou 0.1] [--video_list FILE] [--classes FILE]
    [--num_classes C] --out_dir DIR
Tube files as eval_video_ap.py reads them. Writes DIR/errors.json (an entry per protocol) and per protocol
DIR/errors_[act_]summary.png (the mAP each fix gains), errors_[act_]per_class.png and errors_[act_]sensitivity.png;
prints the error table. With --report WORK (a pipeline.py work dir), also WORK/report.html: one page on the run,
with this analysis and the frames of the worst videos (docs/report.md).
"""
import argparse
import logging
from pathlib import Path

from engine.report import write_report
from tubes import errors
from tubes import runner as tr
from tubes.protocols import PROTOCOLS
from tubes.cli import annotation_args, class_args, error_args, protocol_args, strict_args
from utils.errors import exits_on_input_errors
from utils.version import add_version_flag

ERRORS_FILE = "errors.json"
PLOTS = {"summary": errors.plot_summary, "per_class": errors.plot_per_class, "sensitivity": errors.plot_sensitivity}


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], parents=[
        annotation_args(), class_args(num_classes=True), protocol_args(), error_args(), strict_args()])
    p.add_argument("--tubes", required=True, type=Path,
                   help="a tube file: build_tubes.py's .npz, a .mat with xmldata, or a folder of ACT/MOC tube pickles")
    p.add_argument("--out_dir", required=True, type=Path)
    p.add_argument("--report", type=Path, default=None, metavar="WORK",
                   help="also write WORK/report.html, the page on the pipeline.py run in WORK (docs/report.md)")
    return add_version_flag(p)


def plot_path(out_dir: Path, protocol: str, plot: str) -> Path:
    """``DIR/errors_<plot>.png`` (road) or ``DIR/errors_<protocol>_<plot>.png``."""
    return Path(out_dir) / f"errors_{PROTOCOLS[protocol].file_prefix}{plot}.png"


@exits_on_input_errors(get_args_parser)
def main(argv=None):
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    annotations, loaded, videos, num_classes, names, _ = tr.evaluation_inputs(
        args.annot, [args.tubes], args.video_list, args.num_classes, args.classes, args.strict)
    tubes = next(iter(loaded.values()))
    analyses = {p: errors.analyze([annotations[v] for v in videos], tubes, num_classes, p, args.iou, args.background_iou)
                for p in args.protocol}
    summaries = {p: errors.summarize(a, names) for p, a in analyses.items()}
    out = {"tubes": str(args.tubes), "protocol": "+".join(args.protocol), **summaries}
    tr.write_json(args.out_dir / ERRORS_FILE, out)
    plots = {p: [plot_path(args.out_dir, p, plot) for plot in PLOTS] for p in summaries}
    for protocol, summary in summaries.items():
        for draw, path in zip(PLOTS.values(), plots[protocol]):
            draw(path, summary, f"{args.tubes.name}, {protocol} protocol")
    if args.report:
        write_report(args.report, analyses, summaries, plots, annotations, tubes, names, args.annot)
    print("\n\n".join(errors.table(s) for s in summaries.values()))
    return out


if __name__ == "__main__":
    main()
