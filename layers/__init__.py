"""Priors, micro-tube box coding, matching, multibox loss and post-processing."""
from layers.box_coding import VARIANCES, decode, encode, point_form, tube_iou
from layers.loss import MultiBoxLoss, hard_negative_mask
from layers.matching import match, pad_targets
from layers.postprocess import detect
from layers.priors import SSD300_V2, PriorConfig, prior_boxes

__all__ = [
    "VARIANCES", "decode", "encode", "point_form", "tube_iou", "MultiBoxLoss", "hard_negative_mask",
    "match", "pad_targets", "detect", "SSD300_V2", "PriorConfig", "prior_boxes",
]
