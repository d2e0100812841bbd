"""Decode + per-class NMS + top-k of micro-tube detections (the post-processing of the
original's train.py validate() and evaluate.py test_net())."""
import torch
import torch.nn.functional as F

from layers.box_coding import VARIANCES, decode


def detect(loc, conf, priors_cxcywh, conf_thresh=0.01, nms_thresh=0.45, top_k=50, variances=VARIANCES):
    """Detections per sample from raw outputs.

    loc [B, A, 4*T], conf [B, A, C+1] (logits, background first), priors [A, 4] (cx, cy, w, h).
    Returns a list of B dicts: 'boxes' [K, T, 4] normalised x1y1x2y2 clipped to [0, 1],
    'scores' [K], 'labels' [K] in 1..C, 'class_scores' [K, C+1] (the prior's softmax row),
    sorted by decreasing score.

    As the original: softmax scores; for each class, the priors scoring above conf_thresh,
    at most top_k of them (the highest, the original nms() keeps idx[-top_k:]), are
    suppressed by NMS on their FIRST frame's decoded box (evaluate.py takes
    decoded_boxes[:, :4] for NMS), on unclipped boxes; clipping comes after NMS (the
    original clips in pixels after nms()). Each kept micro-tube carries all its T boxes.
    """
    return detect_decoded(*decode_outputs(loc, conf, priors_cxcywh, variances), conf_thresh, nms_thresh, top_k)


def decode_outputs(loc, conf, priors_cxcywh, variances=VARIANCES):
    """Every prior's decoded boxes [B, A, T, 4] (normalised, unclipped) and softmax scores [B, A, C+1]."""
    b, a, _ = conf.shape
    boxes_all = decode(loc.reshape(b, a, loc.shape[2] // 4, 4), priors_cxcywh.to(loc), variances)
    return boxes_all, F.softmax(conf, dim=2)


def detect_decoded(boxes_all, scores_all, conf_thresh=0.01, nms_thresh=0.45, top_k=50):
    """``detect`` from ``decode_outputs``' results (for callers that also need them)."""
    # imported here: torchvision's import pulls in torch._dynamo (about 2 s of demo.py's start; BENCHMARKS.md)
    from torchvision.ops import batched_nms
    b, a, c = scores_all.shape
    k = min(top_k, a)
    out = []
    for i in range(b):
        cls_scores = scores_all[i, :, 1:]  # [A, C]
        top_scores, top_idx = cls_scores.topk(k, dim=0)  # [k, C]
        cls = torch.arange(1, c, device=scores_all.device).expand(k, c - 1)
        keep = top_scores > conf_thresh
        prior_idx, scores, labels = top_idx[keep], top_scores[keep], cls[keep]
        first = boxes_all[i, prior_idx, 0]
        kept = batched_nms(first, scores, labels, nms_thresh)
        prior_idx = prior_idx[kept]
        out.append({
            "boxes": boxes_all[i, prior_idx].clamp(0, 1),
            "scores": scores[kept],
            "labels": labels[kept],
            "class_scores": scores_all[i, prior_idx],
        })
    return out
