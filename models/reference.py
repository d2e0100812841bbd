"""The original AMTNet's explicit-gather formulation, kept for tests and benchmarks only.

ReferenceAMTNet reproduces the module tree (and so the state-dict keys, index buffers
included) and the forward computation of gurkirt/AMTNet AMTNet.py with
layers/modules/feat_pooling.py and spatial_pooling.py: every 3x3 replicate-padded
neighbourhood is gathered into a 9x larger tensor per frame and map (SpatialPool), frames
are fused with index_select (FeatPooling), streams are fused, and nn.Linear heads are
applied. It returns (conf, loc) in the original's order. Written from that code's
description, without its CUDA-only calls; the fast model in models/amtnet.py must match it.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.amtnet import ANCHORS_PER_CELL, head_input_blocks
from models.backbone import CONV4_3_END, FEATURE_MAPS, KD, L2Norm, make_extras, make_vgg, scaled
from models.config import ModelConfig


class SpatialPool(nn.Module):
    """Gathers each cell's 3x3 neighbourhood of the replicate-padded map: [N, D, S, S] -> [N, S*S, 9*D]."""

    def __init__(self, size: int):
        super().__init__()
        p = size + 2
        cells = [[(h + dy) * p + (w + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
                 for h in range(1, size + 1) for w in range(1, size + 1)]
        self.register_buffer("counts", torch.tensor(cells, dtype=torch.long))

    def forward(self, fm):
        fm = F.pad(fm, (1, 1, 1, 1), mode="replicate")
        fm = fm.permute(0, 2, 3, 1).reshape(fm.shape[0], -1, fm.shape[1])
        return torch.cat([fm.index_select(1, self.counts[:, k]) for k in range(KD * KD)], 2)


class FeatPooling(nn.Module):
    """Spatial pooling then fusion over the T frames of a micro-tube; the original's
    affinity matrix is the identity, so ffm_index[s] is 0..S*S-1."""

    def __init__(self, size: int, seq_len: int, fusion: str):
        super().__init__()
        self.seq_len = seq_len
        self.fusion = fusion
        self.register_buffer("ffm_index", torch.arange(size * size).repeat(seq_len, 1))
        self.spatial_pool = SpatialPool(size)

    def forward(self, fm):
        pfm = self.spatial_pool(fm)
        pfm = pfm.view(-1, self.seq_len, pfm.shape[1], pfm.shape[2]).permute(1, 0, 2, 3)
        frames = [pfm[s].index_select(1, self.ffm_index[s]) for s in range(self.seq_len)]
        out = frames[0]
        for f in frames[1:]:
            if self.fusion == "cat":
                out = torch.cat((out, f), 2)
            elif self.fusion == "mul":
                out = out * f
            else:
                out = out + f
        if self.fusion == "mean":
            out = out / float(self.seq_len)
        return out


class ReferenceSSDCore(nn.Module):
    def __init__(self, input_frames, seq_len, fusion, width_mult):
        super().__init__()
        self.vgg = nn.ModuleList(make_vgg(3 * input_frames, width_mult))
        self.L2Norm = L2Norm(scaled(512, width_mult), 20.0)
        self.extras = nn.ModuleList(make_extras(scaled(1024, width_mult), width_mult))
        for k, size in enumerate(FEATURE_MAPS):
            self.add_module(f"featPool{k}", FeatPooling(size, seq_len, fusion))

    def forward(self, x):
        x = x.reshape(-1, *x.shape[2:])
        sources = []
        for k in range(CONV4_3_END):
            x = self.vgg[k](x)
        sources.append(self.L2Norm(x))
        for k in range(CONV4_3_END, len(self.vgg)):
            x = self.vgg[k](x)
        sources.append(x)
        for k, v in enumerate(self.extras):
            x = F.relu(v(x))
            if k % 2 == 1:
                sources.append(x)
        return [getattr(self, f"featPool{k}")(s / (KD * KD)) for k, s in enumerate(sources)]


def linear_heads(model, pooled_base, pooled_extra=None):
    """Stream fusion and the Linear heads of model (model.cfg, model.loc, model.conf) over
    pooled features [B, S*S, F] per source -> (conf [B, A, C+1], loc [B, A, 4*T])."""
    cfg = model.cfg
    locs, confs = [], []
    for k, (lin_l, lin_c) in enumerate(zip(model.loc, model.conf)):
        x = pooled_base[k]
        if pooled_extra is not None:
            x2 = pooled_extra[k]
            if cfg.fusion_type == "CAT":
                x = torch.cat((x, x2), 2)
            elif cfg.fusion_type == "SUM":
                x = x + x2
            else:
                x = (x + x2) / 2.0
        locs.append(lin_l(x).reshape(x.shape[0], -1))
        confs.append(lin_c(x).reshape(x.shape[0], -1))
    b = pooled_base[0].shape[0]
    conf = torch.cat(confs, 1).view(b, -1, cfg.num_classes)
    loc = torch.cat(locs, 1).view(b, -1, 4 * cfg.seq_len)
    return conf, loc


class ReferenceAMTNet(nn.Module):
    """forward([base, extra]) -> (conf [B, A, C+1], loc [B, A, 4*T]), the original's order."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.core_base = ReferenceSSDCore(cfg.input_frames_base, cfg.seq_len, cfg.feat_fusion, cfg.width_mult)
        if cfg.two_stream:
            self.core_extra = ReferenceSSDCore(cfg.input_frames_extra, cfg.seq_len, cfg.feat_fusion, cfg.width_mult)
        blocks = head_input_blocks(cfg)
        depths = [scaled(d, cfg.width_mult) for d in (512, 1024, 512, 256, 256, 256)]
        self.loc = nn.ModuleList(nn.Linear(d * KD * KD * blocks, n * 4 * cfg.seq_len)
                                 for d, n in zip(depths, ANCHORS_PER_CELL))
        self.conf = nn.ModuleList(nn.Linear(d * KD * KD * blocks, n * cfg.num_classes)
                                  for d, n in zip(depths, ANCHORS_PER_CELL))

    def forward(self, x):
        pooled_base = self.core_base(x[0])
        pooled_extra = self.core_extra(x[1]) if self.cfg.two_stream else None
        return linear_heads(self, pooled_base, pooled_extra)


def reference_pool_heads(model: nn.Module, base_maps, extra_maps=None):
    """The gather formulation of pooling + heads, over a model's Linear heads (a fast AMTNet or
    a ReferenceAMTNet): base_maps / extra_maps are per source [B*T, D, S, S] (already
    divided by kd*kd). Returns (conf, loc). Used by the benchmark."""
    cfg = model.cfg
    pools = [FeatPooling(s, cfg.seq_len, cfg.feat_fusion).to(base_maps[0].device) for s in FEATURE_MAPS]
    pooled_base = [p(m) for p, m in zip(pools, base_maps)]
    pooled_extra = None if extra_maps is None else [p(m) for p, m in zip(pools, extra_maps)]
    return linear_heads(model, pooled_base, pooled_extra)
