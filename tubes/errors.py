"""Error analysis of action tubes: why each false-positive tube is wrong, which ground-truth tubes are missed,
and how much video-mAP each kind of error costs (TIDE, Bolya et al., ECCV 2020, adapted to tubes), with AP by
tube length, actors per video and box size (DETAD, Alwassel et al., ECCV 2018). User guide:
``docs/error-analysis.md``.

The matching is the evaluator's own, at one ST-IoU threshold ``iou``: ROAD's ``get_PR_curve.m``
(``tubes/video_map.py``: a match needs ST-IoU ``> iou``) or ACT.py's ``videoAP`` (``tubes/act.py``: tube NMS
first, then ``>= iou``). The same functions compute the ST-IoU and its two factors and match, and the same AP
is computed, so the mAP without fixes is the evaluator's. "Passes" below is the protocol's match test.

Each false-positive tube gets one type, the first of these that holds:

1. ``duplicate``: its ST-IoU with a GT tube of its class passes, but a better-ranked tube took each such GT tube;
2. ``classification``: its ST-IoU with a GT tube of another class passes (target: the best such GT tube);
3. to 5., its best ST-IoU with a GT tube of its class (the target) is at least ``background_iou`` (TIDE's 0.1)
   but fails; ST-IoU is the temporal IoU times the mean spatial IoU over the common frames, and
   3. ``spatial``: the temporal IoU with the target passes (the boxes fail it),
   4. ``temporal``: the mean spatial IoU passes (the start and end fail it),
   5. ``both``: neither passes;
6. ``background``: the rest, an ST-IoU under ``background_iou`` with every GT tube of its class (and passing with
   none of another class; one that overlaps another class's GT tube less is TIDE's "both classification and
   localisation", counted here).

A GT tube that no tube matched is a false negative; it is ``missed`` (TIDE's Miss) when no classification,
spatial, temporal or both error targets it. The oracles, each the mAP with one type fixed:

- ``duplicate``, ``background``: those tubes removed;
- ``classification`` (relabelled to the target's class), ``spatial`` (boxes replaced by the target's over the
  common frames), ``temporal`` (start and end set to the target's, its boxes over the added frames), ``both``
  (the tube replaced by the target): each fix makes a tube pass with its target, so, as TIDE's ``BestGTMatch``,
  the best-ranked tube of that type targeting a GT tube no tube matched becomes its true positive, at its score;
  the others of that type are removed;
- ``missed``: the missed GT tubes removed from the ground-truth count (TIDE's fix: recall rises);
- ``false_positives``: every false positive removed; ``false_negatives``: every unmatched GT tube removed from the
  count (TIDE's special errors).

Ranking ties keep the evaluator's order (a relabelled tube keeps its place among the video's tubes).
"""
from dataclasses import dataclass, field

import numpy as np

from .ap import save_figure
from .protocols import PROTOCOLS
from .video_map import greedy_match

ERROR_TYPES = ("duplicate", "classification", "spatial", "temporal", "both", "background")
RETARGETED = ERROR_TYPES[1:5]  # fixed by becoming the true positive of their target
FIXES = ERROR_TYPES + ("missed", "false_positives", "false_negatives")
FIX_LABELS = {"false_positives": "all FPs", "false_negatives": "all misses"}
BACKGROUND_IOU = 0.1  # TIDE's background threshold
CHARACTERISTICS = ("length", "actors", "box_size")  # DETAD's sensitivity, per GT tube (and tube)
ACTOR_EDGES = (1, 2)  # videos with <= 1, 2, >= 3 GT tubes


def _mean_area(boxes):
    """Mean box area in pixels, widths ``x2 - x1 + 1`` (0-based or link boxes alike)."""
    b = np.asarray(boxes, np.float64)
    return float(np.mean((b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1))) if len(b) else 0.0


@dataclass
class Analysis:
    """One protocol's matching of a run, flattened: P evaluated tubes in the evaluator's order (videos in list
    order), G ground-truth tubes (videos in list order). GT indices are into the G arrays; ``error`` indexes
    ``ERROR_TYPES`` (-1: a true positive); ``target`` is the GT tube a retargeted error would take (else -1) and
    ``t_iou``, ``s_iou`` its two IoU factors with the tube (NaN without a target)."""
    protocol: str
    iou: float
    background_iou: float
    num_classes: int
    videos: list
    video: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [P]
    tube: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [P] index in the video's tube list
    class_id: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [P]
    score: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [P]
    matched: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [P] GT tube taken, -1 none
    error: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [P]
    target: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [P]
    t_iou: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [P]
    s_iou: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [P]
    features: dict = field(default_factory=dict)  # CHARACTERISTICS -> [P] of the tubes
    gt_video: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [G]
    gt_class: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [G]
    gt_features: dict = field(default_factory=dict)  # CHARACTERISTICS -> [G]
    gt_found: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # [G] matched by a tube
    gt_missed: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # [G] unmatched and targeted by no error

    def counts(self, tubes=slice(None), gts=slice(None)) -> dict:
        """Tubes, true and false positives, each error type, GT tubes, false negatives and missed, over the
        selected tubes and GT tubes (all by default)."""
        error, found = self.error[tubes], self.gt_found[gts]
        out = {"tubes": len(error), "true_positives": int((error < 0).sum()), "false_positives": int((error >= 0).sum())}
        out.update({name: int((error == k).sum()) for k, name in enumerate(ERROR_TYPES)})
        out.update(gt_tubes=len(found), false_negatives=int((~found).sum()), missed=int(self.gt_missed[gts].sum()))
        return out


def _type_errors(rules, t_iou, s_iou, same, iou, background_iou):
    """One video: ``[K]`` the GT tube each evaluated tube matches (-1 none), its error type (-1 a true positive) and
    target (-1 none), for the ``[K, N]`` IoU factors of its tubes (evaluator's order) and GT tubes of the same class."""
    k = len(t_iou)
    st = t_iou * s_iou
    matched = greedy_match(np.where(same, st, -np.inf), iou, rules.inclusive)
    error, target = np.full(k, 5), np.full(k, -1)
    if same.shape[1]:
        passes = rules.passes(st, iou)
        own = np.where(same, st, -np.inf)
        near = own.argmax(1)  # the best GT tube of its class, taken or not (TIDE)
        rows = np.arange(k)
        loc = own[rows, near] >= background_iou
        error = np.select([(passes & same).any(1), (passes & ~same).any(1), loc & rules.passes(t_iou[rows, near], iou),
                           loc & rules.passes(s_iou[rows, near], iou), loc], range(5), 5)
        target = np.where(error == 1, np.where(same, -np.inf, st).argmax(1), np.where(error < 5, near, -1))
        target[error == 0] = -1
    error[matched >= 0] = -1
    target[matched >= 0] = -1
    return matched, error, target


def analyze(annotations: list, detections: dict, num_classes: int, protocol: str = "road", iou: float = 0.5,
            background_iou: float = BACKGROUND_IOU) -> Analysis:
    """Match a run's tubes to the ground truth as ``protocol``'s evaluator does at ``iou`` and type its errors.

    annotations: the videos' ``VideoAnnotation`` in the list's order; detections: ``{video: [ActionTube]}`` (a
    missing video has no tubes). Tubes of a class >= ``num_classes`` are left out (no AP counts them).
    """
    rules = PROTOCOLS[protocol]
    if rules.error_tubes is None:
        raise ValueError(f"protocol {protocol!r} has no error analysis (its record gives no error_tubes)")
    tubes_out, gts_out = [], []
    first_gt = 0
    for v, annotation in enumerate(annotations):
        source = [i for i, t in enumerate(detections.get(annotation.name, [])) if 0 <= t.class_id < num_classes]
        tubes = [detections[annotation.name][i] for i in source]
        idx, t_iou, s_iou = rules.error_tubes(annotation, tubes)
        tubes = [tubes[i] for i in idx]
        gcls = np.array([g.class_id for g in annotation.tubes], np.int64)
        tcls = np.array([t.class_id for t in tubes], np.int64)
        matched, error, target = _type_errors(rules, t_iou, s_iou, tcls[:, None] == gcls[None], iou, background_iou)
        has = target >= 0
        pick = (np.flatnonzero(has), target[has])
        found, aimed = np.zeros(len(gcls), bool), np.zeros(len(gcls), bool)
        found[matched[matched >= 0]] = True
        aimed[target[has]] = True
        tubes_out.append(dict(
            video=np.full(len(tubes), v), tube=np.array(source, np.int64)[idx], class_id=tcls,
            score=np.array([t.score for t in tubes], np.float64), error=error,
            matched=np.where(matched >= 0, matched + first_gt, -1), target=np.where(has, target + first_gt, -1),
            t_iou=_scatter(len(tubes), has, t_iou[pick]), s_iou=_scatter(len(tubes), has, s_iou[pick]),
            **_features(annotation, [t.boxes for t in tubes])))
        gts_out.append(dict(gt_video=np.full(len(gcls), v), gt_class=gcls, gt_found=found, gt_missed=~found & ~aimed,
                            **_features(annotation, [g.boxes for g in annotation.tubes])))
        first_gt += len(gcls)
    a = Analysis(protocol, iou, background_iou, num_classes, [x.name for x in annotations])
    for name, parts in (("", tubes_out), ("gt_", gts_out)):
        for key in parts[0] if parts else ():
            values = np.concatenate([p[key] for p in parts])
            if key in CHARACTERISTICS:
                getattr(a, f"{name}features")[key] = values.astype(np.float64)
            else:
                setattr(a, key, values.astype(getattr(a, key).dtype))
    return a


def _scatter(n, where, values):
    out = np.full(n, np.nan)
    out[where] = values
    return out


def _features(annotation, boxes):
    """CHARACTERISTICS of tubes (or GT tubes) of a video, given their boxes: frames, the video's GT tubes, mean box area."""
    return {"length": np.array([len(b) for b in boxes], np.float64),
            "actors": np.full(len(boxes), len(annotation.tubes), np.float64),
            "box_size": np.array([_mean_area(b) for b in boxes], np.float64)}


def class_aps(a: Analysis, fix: str | None = None, tubes: np.ndarray | None = None,
              gts: np.ndarray | None = None) -> np.ndarray:
    """``[C]`` the evaluator's APs with the errors of ``fix`` (one of ``FIXES``; None: as matched) fixed by its
    oracle (module doc), over the tubes and GT tubes selected by the boolean masks ``tubes`` and ``gts`` (all by
    default; a true positive counts only where its GT tube is selected)."""
    rules = PROTOCOLS[a.protocol]
    tp, cls = a.matched >= 0, a.class_id.copy()
    keep = np.ones(len(tp), bool) if tubes is None else np.where(tp, False, tubes)
    gts = np.ones(len(a.gt_class), bool) if gts is None else gts
    keep[tp] = gts[a.matched[tp]]
    counted = gts.copy()
    if fix in ("duplicate", "background"):
        keep &= a.error != ERROR_TYPES.index(fix)
    elif fix in RETARGETED:
        mine = np.flatnonzero(keep & (a.error == ERROR_TYPES.index(fix)))
        keep[mine] = False
        mine = mine[~a.gt_found[a.target[mine]] & gts[a.target[mine]]]
        mine = mine[rules.rank(a.score[mine])]
        best = mine[np.unique(a.target[mine], return_index=True)[1]]  # the best-ranked per target
        keep[best], tp[best], cls[best] = True, True, a.gt_class[a.target[best]]
    elif fix == "missed":
        counted &= ~a.gt_missed
    elif fix == "false_positives":
        keep &= tp
    elif fix == "false_negatives":
        counted &= a.gt_found
    elif fix is not None:
        raise ValueError(f"unknown fix {fix!r}; expected one of {FIXES}")
    num_gt = np.bincount(a.gt_class[counted], minlength=a.num_classes)
    ap = np.zeros(a.num_classes)
    for c in range(a.num_classes):
        idx = np.flatnonzero(keep & (cls == c))
        ap[c] = rules.class_ap(tp[idx[rules.rank(a.score[idx])]], num_gt[c])
    return ap


def _bins(name: str, gt_values: np.ndarray) -> tuple:
    """Bin edges (a value ``x`` is in bin ``searchsorted(edges, x)``: ``x <= e0``, ``e0 < x <= e1``, ``x > e1``) and
    labels: terciles of the GT tubes' values, fixed counts for actors."""
    if name == "actors":
        return np.array(ACTOR_EDGES, np.float64), ["0-1", "2", "3+"]
    edges = np.quantile(gt_values, [1 / 3, 2 / 3]) if len(gt_values) else np.zeros(2)
    unit = " frames" if name == "length" else " px2"
    return edges, [f"<= {edges[0]:.0f}{unit}", f"{edges[0]:.0f}-{edges[1]:.0f}{unit}", f"> {edges[1]:.0f}{unit}"]


def sensitivity(a: Analysis) -> dict:
    """DETAD's sensitivity: per characteristic, per bin, the GT tubes in it and the mAP over the classes with one
    there, counting the GT tubes of the bin, their true positives and the false positives whose own value is in it."""
    out = {}
    for name in CHARACTERISTICS:
        edges, labels = _bins(name, a.gt_features[name])
        gt_bin = np.searchsorted(edges, a.gt_features[name])
        tube_bin = np.searchsorted(edges, a.features[name])
        rows = []
        for b, label in enumerate(labels):
            gts = gt_bin == b
            present = np.bincount(a.gt_class[gts], minlength=a.num_classes) > 0
            ap = class_aps(a, tubes=tube_bin == b, gts=gts)
            rows.append({"bin": label, "gt_tubes": int(gts.sum()), "false_positives": int(((tube_bin == b) & (a.error >= 0)).sum()),
                         "mAP": float(ap[present].mean()) if present.any() else None})
        out[name] = {"edges": edges.tolist(), "bins": rows}
    return out


def summarize(a: Analysis, class_names: list) -> dict:
    """errors.json's entry of one protocol (APs as fractions): counts, mAP (the evaluator's, over all classes, and
    over the classes with GT tubes, as the sensitivity's bins) and the mAP each oracle gives (and its gain), per
    class, per video (counts) and the sensitivity."""
    base = class_aps(a)
    fixed = {f: class_aps(a, f) for f in FIXES}
    per_class = {}
    for c, name in enumerate(class_names):
        counts = a.counts(a.class_id == c, a.gt_class == c)
        per_class[name] = {"ap": float(base[c]), **counts, "fixed_ap": {f: float(ap[c]) for f, ap in fixed.items()}}
    videos = {name: a.counts(a.video == v, a.gt_video == v) for v, name in enumerate(a.videos)}
    present = np.bincount(a.gt_class, minlength=a.num_classes) > 0
    return {"protocol": a.protocol, "iou": a.iou, "match": PROTOCOLS[a.protocol].match,
            "background_iou": a.background_iou, "mAP": float(base.mean()),
            "mAP_gt_classes": float(base[present].mean()) if present.any() else None, "counts": a.counts(),
            "fixed_mAP": {f: float(ap.mean()) for f, ap in fixed.items()},
            "gain": {f: float(ap.mean() - base.mean()) for f, ap in fixed.items()},
            "per_class": per_class, "videos": videos, "sensitivity": sensitivity(a)}


def table(summary: dict) -> str:
    """The error table of one protocol's summary (percent)."""
    c = summary["counts"]
    lines = [f"protocol {summary['protocol']}, ST-IoU {summary['match']} {summary['iou']:g}: video-mAP "
             f"{100 * summary['mAP']:.2f}; {c['tubes']} tubes ({c['true_positives']} true positives), "
             f"{c['gt_tubes']} GT tubes ({c['false_negatives']} not found)",
             f"{'error':<16}{'count':>7}{'mAP fixed':>11}{'gain':>8}"]
    for f in FIXES:
        count = {"false_positives": c["false_positives"], "false_negatives": c["false_negatives"]}.get(f, c.get(f))
        label = FIX_LABELS.get(f, f)
        lines.append(f"{label:<16}{count:>7}{100 * summary['fixed_mAP'][f]:>11.2f}{100 * summary['gain'][f]:>+8.2f}")
    for name, s in summary["sensitivity"].items():
        cells = "  ".join(f"{b['bin']}: {_percent(b['mAP'])} ({b['gt_tubes']})" for b in s["bins"])
        lines.append(f"mAP by {name.replace('_', ' ')} (GT tubes): {cells}")
    return "\n".join(lines)


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_summary(path, summary: dict, title: str) -> None:
    """TIDE's summary: the mAP each oracle gains (percent points), the six types and the misses, then the specials."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    gains = [100 * summary["gain"][f] for f in FIXES]
    colors = [f"C{i}" for i in range(len(ERROR_TYPES) + 1)] + ["0.45", "0.7"]
    bars = ax.barh(range(len(FIXES))[::-1], gains, color=colors)
    ax.bar_label(bars, fmt="%.2f", padding=2, fontsize=8)
    ax.set_yticks(range(len(FIXES))[::-1], [FIX_LABELS.get(f, f) for f in FIXES])
    ax.set(xlabel="video-mAP gained when fixed (points)",
           title=f"{title}: video-mAP {100 * summary['mAP']:.2f} at ST-IoU {summary['match']} {summary['iou']:g}")
    ax.margins(x=0.15)
    fig.tight_layout()
    save_figure(fig, path)


def plot_per_class(path, summary: dict, title: str) -> None:
    """Per class with GT tubes or tubes: the false positives by type and the missed GT tubes (stacked), its AP."""
    plt = _pyplot()
    names = [n for n, c in summary["per_class"].items() if c["gt_tubes"] or c["tubes"]]
    fig, ax = plt.subplots(figsize=(10, 1.8 + 0.3 * len(names)))
    left = np.zeros(len(names))
    y = np.arange(len(names))[::-1]
    for k, kind in enumerate(ERROR_TYPES + ("missed",)):
        values = np.array([summary["per_class"][n][kind] for n in names], np.float64)
        ax.barh(y, values, left=left, color=f"C{k}", label=kind)
        left += values
    ax.set_yticks(y, [f"{n} (AP {100 * summary['per_class'][n]['ap']:.1f})" for n in names], fontsize=7)
    ax.set(xlabel="false-positive tubes by type, and missed GT tubes", title=title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    save_figure(fig, path)


def plot_sensitivity(path, summary: dict, title: str) -> None:
    """DETAD's sensitivity: mAP per bin of tube length, actors per video and box size."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(CHARACTERISTICS), figsize=(12, 4), sharey=True)
    for ax, name in zip(axes, CHARACTERISTICS):
        bins = summary["sensitivity"][name]["bins"]
        values = [0.0 if b["mAP"] is None else 100 * b["mAP"] for b in bins]
        bars = ax.bar(range(len(bins)), values, color="C0")
        ax.bar_label(bars, labels=[f"{_percent(b['mAP'])}\n({b['gt_tubes']} GT)" for b in bins], fontsize=7)
        ax.set_xticks(range(len(bins)), [b["bin"] for b in bins], fontsize=7)
        if summary["mAP_gt_classes"] is not None:
            ax.axhline(100 * summary["mAP_gt_classes"], color="0.4", linestyle="--", linewidth=1)
        ax.set(title=name.replace("_", " "), ylim=(0, 110))
    axes[0].set_ylabel("mAP (%) of the classes with GT tubes")
    fig.suptitle(f"{title}: mAP by bin (dashed: all)")
    fig.tight_layout()
    save_figure(fig, path)
