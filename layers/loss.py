"""Multibox loss over micro-tubes (layers/modules/multibox_loss.py of the original), with
matching done inside on the model's device."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from layers.box_coding import VARIANCES
from layers.matching import match, pad_targets


def hard_negative_mask(bg_loss: torch.Tensor, labels: torch.Tensor, neg_pos_ratio: int) -> torch.Tensor:
    """Positives plus, per sample, the neg_pos_ratio * num_pos negatives with the largest
    background loss (box_utils.hard_negative_mining). bg_loss, labels: [B, A] -> mask [B, A]."""
    pos = labels > 0
    num_neg = pos.sum(dim=1, keepdim=True) * neg_pos_ratio
    bg_loss = bg_loss.masked_fill(pos, -float("inf"))
    order = bg_loss.argsort(dim=1, descending=True)
    rank = order.argsort(dim=1)
    return pos | (rank < num_neg)


class MultiBoxLoss(nn.Module):
    """loss_l: smooth-L1 (beta 1) over the 4*T offsets of positive priors; loss_c: cross
    entropy over positives and 3:1 hard negatives; both summed over the batch and divided
    by the batch's number of positives (as the original). When a batch has no positive
    the original divides 0 by 0; here the divisor is at least 1, so both losses are 0.
    """

    def __init__(self, priors_cxcywh: torch.Tensor, iou_threshold=0.5, neg_pos_ratio=3, variances=VARIANCES):
        super().__init__()
        self.register_buffer("priors_cxcywh", priors_cxcywh.clone(), persistent=False)
        self.iou_threshold = iou_threshold
        self.neg_pos_ratio = neg_pos_ratio
        self.variances = tuple(variances)

    def forward(self, loc: torch.Tensor, conf: torch.Tensor, targets):
        """loc [B, A, 4*T], conf [B, A, C+1]; targets: list of B dicts {'boxes': [N, T, 4]
        normalised x1y1x2y2, 'labels': [N] in 1..C}. Returns (loss_l, loss_c)."""
        sum_l, sum_c, num_pos = self.sums(loc, conf, targets)
        num_pos = num_pos.clamp(min=1)
        return sum_l / num_pos, sum_c / num_pos

    def sums(self, loc: torch.Tensor, conf: torch.Tensor, targets):
        """The two losses summed over the batch, and the number of positive priors, before
        the division: with several processes the divisor is the whole batch's positives."""
        b, a, c = conf.shape
        t = loc.shape[2] // 4
        if len(targets) != b:
            raise ValueError(f"MultiBoxLoss: {len(targets)} targets for a batch of {b}")
        priors = self.priors_cxcywh.to(device=loc.device, dtype=loc.dtype)
        if priors.shape[0] != a:
            raise ValueError(f"MultiBoxLoss: model gives {a} priors, loss holds {priors.shape[0]}")
        with torch.no_grad():
            gt_boxes, gt_labels, valid = pad_targets(targets, t, device=loc.device, dtype=loc.dtype)
            if valid.any() and (gt_labels[valid].min() < 1 or gt_labels[valid].max() >= c):
                raise ValueError(f"MultiBoxLoss: target labels must be in 1..{c - 1}")
            labels, loc_t = match(gt_boxes, gt_labels, valid, priors, self.iou_threshold, self.variances)
            bg_loss = -F.log_softmax(conf, dim=2)[:, :, 0]
            mask = hard_negative_mask(bg_loss, labels, self.neg_pos_ratio)
        pos = labels > 0
        loss_c = F.cross_entropy(conf[mask], labels[mask], reduction="sum")
        loss_l = F.smooth_l1_loss(loc[pos], loc_t.reshape(b, a, 4 * t)[pos], reduction="sum")
        return loss_l, loss_c, pos.sum()
