"""Box maths in the Matlab's conventions, as ROAD's ``online-tubes/`` computes it.

Link boxes (``loc_to_link_boxes``): ``loc * [W H W H]``, clipped, then ``+1``
(``actionPaths.m`` ``readDetections``). Widths are ``x2 - x1 + 1`` in the linking
(``incremental_linking.m`` ``inters_union``, with Matlab's ``rectint`` and ``+ eps``) and
in frame-mAP (``frameAp.m`` ``compute_spatial_iou``, without eps); the VOC-style frame-mAP of
test.py uses continuous areas (``box_iou_np``).
"""
import numpy as np

from data.annotations import UCF_FRAME_SIZE

EPS = np.finfo(np.float64).eps  # Matlab's eps in inters_union


def loc_to_link_boxes(loc: np.ndarray, frame_size: tuple = UCF_FRAME_SIZE) -> np.ndarray:
    """Normalised x1, y1, x2, y2 -> link boxes, as ``actionPaths.m`` ``readDetections``.

    ``loc .* [320 240 320 240]``; only x1, y1 < 0 and x2 > 319, y2 > 239 are clipped;
    then ``+1`` on all four. Computed and returned in the input's precision (float32 or
    float64; Matlab keeps single data single).
    """
    loc = np.asarray(loc)
    if loc.dtype not in (np.float32, np.float64):
        loc = loc.astype(np.float64)
    width, height = frame_size
    b = loc * np.array([width, height, width, height], dtype=loc.dtype)
    b[:, 0] = np.where(b[:, 0] < 0, 0, b[:, 0])
    b[:, 1] = np.where(b[:, 1] < 0, 0, b[:, 1])
    b[:, 2] = np.where(b[:, 2] > width - 1, width - 1, b[:, 2])
    b[:, 3] = np.where(b[:, 3] > height - 1, height - 1, b[:, 3])
    return b + loc.dtype.type(1)


def link_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """``[..., A, B]`` IoU as ``incremental_linking.m`` ``inters_union``, over leading batch dims.

    Boxes become ``[x1 y1 x2-x1+1 y2-y1+1]``; Matlab's ``rectint``; union + eps.
    """
    xa, xb = boxes_a[..., :2], boxes_b[..., :2]
    wa = boxes_a[..., 2:] - xa + 1
    wb = boxes_b[..., 2:] - xb + 1
    d = np.minimum((xa + wa)[..., :, None, :], (xb + wb)[..., None, :, :]) - np.maximum(xa[..., :, None, :], xb[..., None, :, :])
    d[d < 0] = 0
    inter = d[..., 0] * d[..., 1]
    union = (wa[..., 0] * wa[..., 1])[..., :, None] + (wb[..., 0] * wb[..., 1])[..., None, :] - inter
    return inter / (union + EPS)


def rectint(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Matlab/Octave ``rectint`` of ``[A, 4]`` and ``[B, 4]`` x, y, w, h rectangles."""
    ea = a[:, :2] + a[:, 2:]
    eb = b[:, :2] + b[:, 2:]
    d = np.minimum(ea[:, None], eb[None]) - np.maximum(a[:, None, :2], b[None, :, :2])
    d[d < 0] = 0
    return d[..., 0] * d[..., 1]


def spatial_iou_inclusive(det_boxes: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    """``frameAp.m`` ``compute_spatial_iou``: x1 y1 x2 y2 boxes with width ``x2-x1+1``, no eps."""
    def xywh(b):
        return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2] + 1], 1)
    gt, dt = xywh(gt_boxes), xywh(det_boxes)
    inter = rectint(dt, gt)
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / ((gt[:, 2] * gt[:, 3])[None] + (dt[:, 2] * dt[:, 3])[:, None] - inter)


def box_iou_np(det_boxes: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    """IoU of x1 y1 x2 y2 boxes with continuous areas (no +1), ``[K, N]``."""
    x1 = np.maximum(det_boxes[:, None, 0], gt_boxes[None, :, 0])
    y1 = np.maximum(det_boxes[:, None, 1], gt_boxes[None, :, 1])
    x2 = np.minimum(det_boxes[:, None, 2], gt_boxes[None, :, 2])
    y2 = np.minimum(det_boxes[:, None, 3], gt_boxes[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_d = (det_boxes[:, 2] - det_boxes[:, 0]) * (det_boxes[:, 3] - det_boxes[:, 1])
    area_g = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / (area_d[:, None] + area_g[None] - inter)
