"""Box coding of micro-tubes against priors (layers/box_utils.py of the original:
point_form, encode, decode, decode_seq), vectorised over a trailing frame axis.

Boxes are x1,y1,x2,y2 normalised to [0, 1]; priors are (cx, cy, w, h) [A, 4] and are
the same box in every frame of a micro-tube, so they broadcast over T.
"""
import torch

VARIANCES = (0.1, 0.2)


def point_form(priors_cxcywh: torch.Tensor) -> torch.Tensor:
    """(cx, cy, w, h) -> (x1, y1, x2, y2), over the last axis."""
    cxcy, wh = priors_cxcywh[..., :2], priors_cxcywh[..., 2:]
    return torch.cat((cxcy - wh / 2, cxcy + wh / 2), dim=-1)


def encode(boxes: torch.Tensor, priors_cxcywh: torch.Tensor, variances=VARIANCES) -> torch.Tensor:
    """Regression targets of matched boxes [..., A, T, 4] against priors [A, 4] -> [..., A, T, 4].

    Per frame: ((centre - prior centre) / (v0 * prior wh), log(wh / prior wh) / v1).
    """
    p = priors_cxcywh.unsqueeze(-2)
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2
    wh = boxes[..., 2:] - boxes[..., :2]
    g_cxcy = (centre - p[..., :2]) / (variances[0] * p[..., 2:])
    g_wh = torch.log(wh / p[..., 2:]) / variances[1]
    return torch.cat((g_cxcy, g_wh), dim=-1)


def decode(loc: torch.Tensor, priors_cxcywh: torch.Tensor, variances=VARIANCES) -> torch.Tensor:
    """Predicted offsets [..., A, T, 4] and priors [A, 4] -> boxes x1,y1,x2,y2 [..., A, T, 4] (not clipped)."""
    p = priors_cxcywh.unsqueeze(-2)
    cxcy = p[..., :2] + loc[..., :2] * variances[0] * p[..., 2:]
    wh = p[..., 2:] * torch.exp(loc[..., 2:] * variances[1])
    return torch.cat((cxcy - wh / 2, cxcy + wh / 2), dim=-1)


def tube_iou(tubes: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Mean over frames of the per-frame IoU: tubes [..., N, T, 4], boxes [A, 4] or [A, T, 4] -> [..., N, A].

    AMTNet's MatchPrior averages the frames' jaccard overlaps.
    """
    if boxes.dim() == 2:
        boxes = boxes.unsqueeze(1).expand(-1, tubes.shape[-2], -1)
    a = tubes.unsqueeze(-3)  # [..., N, 1, T, 4]
    b = boxes  # [A, T, 4]
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)  # [..., N, A, T]
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    iou = inter / (area_a + area_b - inter)
    return iou.mean(-1)
