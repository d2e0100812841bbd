"""Average precision as the original Matlab computes it: ``xVOCap.m`` (VOC 2011 all-point AP),
``get_PR_curve.m``'s ranking (scores as single, stable descending) and precision/recall curves."""
from pathlib import Path

import numba
import numpy as np

from utils.io import atomic_path


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """``xVOCap.m`` (PASCAL VOC 2011): all-point interpolated AP.

    The precision envelope uses Matlab's ``max``, which ignores NaN (``np.fmax``).
    A NaN result (a class without ground truth) is returned as NaN; callers map it to 0.
    """
    mrec = np.concatenate([[0.0], np.asarray(recall, np.float64), [1.0]])
    mpre = np.concatenate([[0.0], np.asarray(precision, np.float64), [0.0]])
    mpre = np.fmax.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    terms = (mrec[i] - mrec[i - 1]) * mpre[i]
    return float(np.cumsum(terms)[-1]) if len(terms) else 0.0


def descending_order(scores: np.ndarray) -> np.ndarray:
    """``np.argsort(-scores, kind="stable")`` of float32 scores, several times as fast.

    Each score's bits become an unsigned 32-bit key that sorts in descending score order
    (-0.0 and 0.0 alike), and a stable radix sort of the keys keeps ties in index order.
    """
    scores = np.ascontiguousarray(scores, np.float32) + np.float32(0)  # -0.0 -> +0.0, equal as floats
    if np.isnan(scores).any():
        return np.argsort(-scores, kind="stable")
    bits = scores.view(np.uint32)
    ascending = np.where(bits >> 31, ~bits, bits | np.uint32(1 << 31))  # IEEE order as unsigned
    return _radix_order(~ascending)


@numba.njit(cache=True)
def _radix_order(keys):
    """Stable ascending order of uint32 ``keys``: LSD radix sort, a byte per pass."""
    n = len(keys)
    order, order_out = np.arange(n), np.empty(n, np.int64)
    keys, keys_out = keys.copy(), np.empty_like(keys)
    for shift in range(0, 32, 8):
        start = np.zeros(257, np.int64)
        for i in range(n):
            start[((keys[i] >> shift) & 255) + 1] += 1
        for d in range(256):
            start[d + 1] += start[d]
        for i in range(n):
            d = (keys[i] >> shift) & 255
            keys_out[start[d]], order_out[start[d]] = keys[i], order[i]
            start[d] += 1
        keys, keys_out = keys_out, keys
        order, order_out = order_out, order
    return order


def hits_ap(scores: np.ndarray, hits: np.ndarray, num_gt: float) -> float:
    """``voc_ap(*pr_curve(scores, hits, num_gt))`` without the curves, from the ranks of the hits alone.

    Recall changes only at a hit, and the precision envelope there is the highest precision of that
    hit and the later ones (a miss has a lower precision than the hit before it): the AP's terms are
    the hits', in rank order, with the same numbers.
    """
    if not num_gt > 0:  # recall NaN or infinite: the curves' own arithmetic
        return voc_ap(*pr_curve(scores, hits, num_gt))
    rank = np.flatnonzero(np.asarray(hits, bool)[descending_order(np.asarray(scores, np.float32))])
    if not len(rank):
        return 0.0  # voc_ap: recall stays 0, its one term is (1 - 0) * 0
    found = np.arange(1, len(rank) + 1, dtype=np.float64)  # true positives at the k-th hit: k
    precision = found / (rank + 1.0)  # tp / (fp + tp), fp + tp the rank's count (exact)
    recall = found / num_gt
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    terms = (recall - np.concatenate([[0.0], recall[:-1]])) * envelope
    return float(np.cumsum(terms)[-1])


def pr_curve(scores: np.ndarray, is_tp: np.ndarray, num_gt: float) -> tuple:
    """Recall and precision as get_PR_curve.m: scores as single, stable descending sort."""
    return pr_curve_ranked(np.asarray(is_tp, bool)[descending_order(np.asarray(scores, np.float32))], num_gt)


def pr_curve_ranked(labels: np.ndarray, num_gt: float) -> tuple:
    """Recall and precision of TP flags already in rank order."""
    tp = np.cumsum(labels).astype(np.float64)
    fp = np.cumsum(~labels).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = tp / num_gt
        precision = tp / (fp + tp)
    return recall, precision



def plot_pr_curves(path: Path, results: "VideoAPResult", class_names: list, title: str) -> None:
    """One figure: PR curve per class (Agg backend)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 7))
    for name, (recall, precision), ap in zip(class_names, results.curves, results.ap):
        if len(recall):
            ax.plot(np.nan_to_num(recall), np.nan_to_num(precision), label=f"{name} {100 * ap:.1f}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=f"{title}: mAP {100 * results.mAP:.2f}")
    ax.grid(True)
    ax.legend(fontsize=6, ncol=2, loc="lower left")
    save_figure(fig, path)


def save_figure(fig, path: Path) -> None:
    """Write a matplotlib figure atomically, then close it."""
    import matplotlib.pyplot as plt
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def plot_map_vs_iou(path: Path, entries_by_protocol: dict, line_styles: dict | None = None) -> None:
    """One figure: video-mAP (percent) against the ST-IoU threshold, a line per protocol and alpha.

    ``entries_by_protocol``: ``{protocol: results.json video-mAP entries (alpha, iou, mAP)}``; ``line_styles``:
    ``{protocol: matplotlib line style}`` (``Protocol.line_style``; default solid).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 5))
    for protocol, entries in entries_by_protocol.items():
        for alpha in dict.fromkeys(e["alpha"] for e in entries):
            rows = sorted((e["iou"], 100 * e["mAP"]) for e in entries if e["alpha"] == alpha)
            ax.plot(*zip(*rows), marker="o", linestyle=(line_styles or {}).get(protocol, "-"),
                    label=f"{protocol}, {alpha if isinstance(alpha, str) else f'alpha {alpha}'}")
    ax.set(xlabel="ST-IoU threshold", ylabel="video-mAP (%)", ylim=(0, 100),
           title=f"video-mAP against ST-IoU ({' and '.join(entries_by_protocol)} protocol)")
    ax.grid(True)
    ax.legend()
    save_figure(fig, path)
