"""Micro-tube pooling + heads without materialising the 3x3 neighbourhoods.

The original (FeatPooling/SpatialPool + nn.Linear) gathers, for every cell, the 3x3
replicate-padded neighbourhood of each frame's features into a vector (neighbour-major:
index k*D + d, k = 3*dy + dx), fuses the frames (cat: frame-major, t*9D + k*D + d), fuses
the streams (CAT: stream-major) and applies a Linear layer. A Linear layer over a 3x3
neighbourhood is a 3x3 convolution over the replicate-padded map whose input channels are
the (stream, frame, channel) blocks, with the weight reshaped; gathering commutes with the
element-wise frame/stream fusions (sum, mean, mul), so those are applied to the maps first.
The parameters stay in the original Linear layout.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.backbone import KD


def fuse_frames(maps: torch.Tensor, feat_fusion: str) -> torch.Tensor:
    """[B, T, D, H, W] -> [B, T*D, H, W] (cat, frame-major) or [B, D, H, W] (sum, mean, mul)."""
    if feat_fusion == "cat":
        return maps.flatten(1, 2)
    if feat_fusion == "sum":
        return maps.sum(1)
    if feat_fusion == "mean":
        return maps.mean(1)
    if feat_fusion == "mul":
        return maps.prod(1)
    raise ValueError(f"unknown feat_fusion {feat_fusion!r}")


def fuse_streams(base: torch.Tensor, extra: torch.Tensor, fusion_type: str) -> torch.Tensor:
    """Two-stream fusion of pooled features (AMTNet.forward): CAT (stream-major), SUM, MEAN."""
    if fusion_type == "CAT":
        return torch.cat((base, extra), 1)
    if fusion_type == "SUM":
        return base + extra
    if fusion_type == "MEAN":
        return (base + extra) / 2.0
    raise ValueError(f"unknown fusion_type {fusion_type!r}")


def linear_to_conv_weight(weight: torch.Tensor, depth: int) -> torch.Tensor:
    """Linear weight [O, G*9*D] (block g, neighbour k, channel d) -> conv weight [O, G*D, 3, 3]."""
    o, n = weight.shape
    g = n // (KD * KD * depth)
    if g * KD * KD * depth != n:
        raise ValueError(f"head weight with {n} inputs does not split into blocks of {KD * KD}x{depth}")
    return weight.view(o, g, KD * KD, depth).transpose(2, 3).reshape(o, g * depth, KD, KD)


def head_conv(loc: nn.Linear, conf: nn.Linear, depth: int) -> tuple:
    """The two heads as one conv: (weight [O_loc + O_conf, G*D, 3, 3], bias). Without autograd (test
    time) it is kept on ``conf`` and reused while the four parameters are the same tensors, unchanged
    (their in-place version counters, as ``load_state_dict`` and optimisers bump them, and storage)."""
    reuse = not (torch.is_grad_enabled() or torch.jit.is_tracing() or torch.compiler.is_compiling())
    if reuse:
        key = tuple((p._version, p.data_ptr(), p.dtype, p.device) for p in (loc.weight, loc.bias, conf.weight, conf.bias))
        cached = conf.__dict__.get("_head_conv")
        if cached is not None and cached[0] == (key, depth):
            return cached[1]
    weight = torch.cat((linear_to_conv_weight(loc.weight, depth), linear_to_conv_weight(conf.weight, depth)))
    out = weight, torch.cat((loc.bias, conf.bias))
    if reuse:
        conf.__dict__["_head_conv"] = ((key, depth), out)
    return out


def pooled_heads(x: torch.Tensor, loc: nn.Linear, conf: nn.Linear, depth: int):
    """Fused map x [B, G*D, H, W] -> (loc [B, H*W*O_loc], conf [B, H*W*O_conf]), cells row-major
    and each cell's outputs contiguous, as the original's Linear output viewed to [B, -1]."""
    weight, bias = head_conv(loc, conf, depth)
    y = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), weight, bias)
    y = y.permute(0, 2, 3, 1)
    n_loc = loc.weight.shape[0]
    return y[..., :n_loc].flatten(1), y[..., n_loc:].flatten(1)
