"""Matching ground-truth micro-tubes to priors (MatchPrior in layers/box_utils.py of the
original), vectorised over the batch and run on the tensors' device."""
import torch

from layers.box_coding import VARIANCES, encode, point_form, tube_iou


def pad_targets(targets, seq_len: int, device=None, dtype=torch.float32):
    """List (one per sample) of {'boxes': [N, T, 4], 'labels': [N]} -> boxes [B, M, T, 4],
    labels [B, M], valid [B, M] with M the largest N (at least 1); padding is invalid
    and holds the whole-image box so that its (unused) encodings stay finite."""
    num = [len(t["labels"]) for t in targets]
    m = max(max(num, default=0), 1)
    b = len(targets)
    boxes = torch.tensor([0.0, 0.0, 1.0, 1.0], device=device, dtype=dtype).repeat(b, m, seq_len, 1)
    labels = torch.zeros(b, m, dtype=torch.long, device=device)
    valid = torch.zeros(b, m, dtype=torch.bool, device=device)
    for i, t in enumerate(targets):
        n = num[i]
        if n == 0:
            continue
        tb = torch.as_tensor(t["boxes"])
        if tb.shape != (n, seq_len, 4):
            raise ValueError(f"targets[{i}]['boxes'] has shape {tuple(tb.shape)}, expected ({n}, {seq_len}, 4)")
        boxes[i, :n] = tb.to(device=device, dtype=boxes.dtype)
        labels[i, :n] = torch.as_tensor(t["labels"]).to(device)
        valid[i, :n] = True
    return boxes, labels, valid


def match(gt_boxes, gt_labels, valid, priors_cxcywh, iou_threshold=0.5, variances=VARIANCES):
    """Assign ground-truth micro-tubes to priors.

    gt_boxes [B, M, T, 4] x1y1x2y2, gt_labels [B, M] in 1..C, valid [B, M], priors [A, 4].
    Returns labels [B, A] (0 = background) and loc targets [B, A, T, 4].

    As MatchPrior: overlap = IoU averaged over the T frames; each prior takes its best
    ground truth, each ground truth keeps its best prior (overlap forced to 2; when two
    ground truths share a best prior the later one wins, as the original's loop does);
    priors under iou_threshold are background. The original adds 1 to its 0-based
    dataset labels here; this project's targets already carry labels 1..C.
    """
    b, m = gt_labels.shape
    a = priors_cxcywh.shape[0]
    dev = priors_cxcywh.device
    overlaps = tube_iou(gt_boxes, point_form(priors_cxcywh))  # [B, M, A]
    overlaps = overlaps.masked_fill(~valid.unsqueeze(-1), -1.0)
    best_prior_idx = overlaps.argmax(dim=2)  # [B, M]
    best_truth_overlap, best_truth_idx = overlaps.max(dim=1)  # [B, A]
    # Forced matches; invalid (padding) rows are sent to a spare column A and dropped.
    target_col = torch.where(valid, best_prior_idx, torch.full_like(best_prior_idx, a))
    gt_index = torch.arange(m, device=dev).expand(b, m)
    forced = torch.full((b, a + 1), -1, dtype=torch.long, device=dev)
    forced.scatter_reduce_(1, target_col, gt_index, reduce="amax")
    forced = forced[:, :a]
    is_forced = forced >= 0
    best_truth_idx = torch.where(is_forced, forced, best_truth_idx)
    best_truth_overlap = best_truth_overlap.masked_fill(is_forced, 2.0)

    labels = torch.gather(gt_labels, 1, best_truth_idx)
    labels = labels.masked_fill(best_truth_overlap < iou_threshold, 0)
    t = gt_boxes.shape[2]
    idx = best_truth_idx[:, :, None, None].expand(b, a, t, 4)
    matched = torch.gather(gt_boxes, 1, idx)  # [B, A, T, 4]
    loc = encode(matched, priors_cxcywh, variances)
    return labels, loc
