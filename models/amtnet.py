"""AMTNet: one or two VGG16-SSD300 streams, micro-tube pooling and linear heads (AMTNet.py)."""
import math

import torch
import torch.nn as nn

from layers.priors import SSD300_V2, prior_boxes
from models.backbone import KD, SSDCore
from models.config import ModelConfig
from models.heads import fuse_frames, fuse_streams, pooled_heads

ANCHORS_PER_CELL = SSD300_V2.anchors_per_cell  # (4, 6, 6, 6, 4, 4)


def head_input_blocks(cfg: ModelConfig) -> int:
    """Number of D-channel blocks a head sees: T frames when frames are concatenated, times
    2 when the two streams are concatenated (the original's fusion_num_muliplier)."""
    frames = cfg.seq_len if cfg.feat_fusion == "cat" else 1
    return frames * (2 if cfg.fusion_type == "CAT" else 1)


class AMTNet(nn.Module):
    """Action micro-tube detector.

    forward(base, extra=None): base [B, T, 3*input_frames_base, 300, 300]; extra
    [B, T, 3*input_frames_extra, 300, 300] when cfg.two_stream. Returns
    (loc [B, A, 4*T], conf [B, A, C+1], background first) with A = 8732 priors in the original's order; loc
    holds, per prior, the T frames' (dx, dy, dw, dh) one frame after the other. (The
    original forward returns (conf, loc); this one returns loc first.)

    Parameter names are the original's (core_base.vgg.N, core_base.L2Norm.weight,
    core_base.extras.N, core_extra.*, loc.N, conf.N) so its checkpoints load directly.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.core_base = SSDCore(cfg.input_frames_base, cfg.width_mult, cfg.norm)
        if cfg.two_stream:
            self.core_extra = SSDCore(cfg.input_frames_extra, cfg.width_mult, cfg.norm)
        depths = self.core_base.source_depths
        blocks = head_input_blocks(cfg)
        self.loc = nn.ModuleList(nn.Linear(d * KD * KD * blocks, n * 4 * cfg.seq_len)
                                 for d, n in zip(depths, ANCHORS_PER_CELL))
        self.conf = nn.ModuleList(nn.Linear(d * KD * KD * blocks, n * cfg.num_classes)
                                  for d, n in zip(depths, ANCHORS_PER_CELL))
        self.reset_head_parameters()
        self.register_buffer("priors_cxcywh", prior_boxes(SSD300_V2), persistent=False)

    @property
    def priors(self) -> torch.Tensor:
        """Priors [A, 4] (cx, cy, w, h), on the model's device."""
        return self.priors_cxcywh

    def reset_head_parameters(self, background_prior=None):
        """Xavier-uniform weights, zero biases (train.py weights_init on net.loc / net.conf).

        ``background_prior`` (not in the original): the background bias of every prior's class
        scores is set so that the softmax starts at that background probability, the rest shared by
        the classes (the prior initialisation of Lin et al., ICCV 2017, for softmax). Hard-negative
        mining trains only the hardest background priors, so from scratch the easy ones keep scores
        near their initial 1/(C+1), which links background boxes into the tubes; started low, they
        stay low."""
        for layer in (*self.loc, *self.conf):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        if background_prior is not None:
            if not 0 < background_prior < 1:
                raise ValueError(f"background_prior must be in (0, 1), got {background_prior}")
            classes = self.cfg.num_classes - 1
            with torch.no_grad():
                for layer in self.conf:
                    layer.bias.view(-1, self.cfg.num_classes)[:, 0] = math.log(
                        background_prior * classes / (1 - background_prior))

    def _check_input(self, x, name, input_frames):
        want = (self.cfg.seq_len, 3 * input_frames, self.cfg.image_size, self.cfg.image_size)
        if x is None or x.dim() != 5 or tuple(x.shape[1:]) != want:
            got = None if x is None else tuple(x.shape)
            raise ValueError(f"AMTNet.forward: {name} must have shape [B, {', '.join(map(str, want))}], got {got}")

    def _stream_maps(self, core, x):
        b, t = x.shape[:2]
        return [s.view(b, t, *s.shape[1:]) for s in core(x.flatten(0, 1))]

    def forward(self, base, extra=None):
        cfg = self.cfg
        self._check_input(base, "base", cfg.input_frames_base)
        maps = [fuse_frames(s, cfg.feat_fusion) for s in self._stream_maps(self.core_base, base)]
        if cfg.two_stream:
            self._check_input(extra, "extra", cfg.input_frames_extra)
            if extra.shape[0] != base.shape[0]:
                raise ValueError(f"AMTNet.forward: base batch {base.shape[0]} != extra batch {extra.shape[0]}")
            extra_maps = self._stream_maps(self.core_extra, extra)
            maps = [fuse_streams(m, fuse_frames(e, cfg.feat_fusion), cfg.fusion_type)
                    for m, e in zip(maps, extra_maps)]
        elif extra is not None:
            raise ValueError("AMTNet.forward: extra given but fusion_type is NONE")
        locs, confs = [], []
        for m, d, l, c in zip(maps, self.core_base.source_depths, self.loc, self.conf):
            lo, co = pooled_heads(m, l, c, d)
            locs.append(lo)
            confs.append(co)
        b = base.shape[0]
        loc = torch.cat(locs, 1).view(b, -1, 4 * cfg.seq_len)
        conf = torch.cat(confs, 1).view(b, -1, cfg.num_classes)
        return loc, conf

    def feature_maps(self, images, stream="base"):
        """One stream's backbone on single time steps: images [N, 3*input_frames, 300, 300] -> the six
        source maps [N, D_k, S_k, S_k]. forward runs this on each of a window's T time steps; a caller
        that sees a frame in several windows can run it once per frame and call ``forward_maps``."""
        if stream not in ("base", "extra") or (stream == "extra" and not self.cfg.two_stream):
            raise ValueError(f"AMTNet.feature_maps: no {stream!r} stream in a model of fusion_type {self.cfg.fusion_type}")
        return (self.core_base if stream == "base" else self.core_extra)(images)

    def forward_maps(self, base_maps, extra_maps=None):
        """forward from the streams' source maps: ``base_maps`` (and ``extra_maps`` when two-stream)
        six [B, T, D_k, S_k, S_k], ``feature_maps`` of each time step; returns forward's (loc, conf)."""
        cfg = self.cfg
        if len(base_maps) != len(ANCHORS_PER_CELL) or (extra_maps is None) == cfg.two_stream:
            raise ValueError(f"AMTNet.forward_maps: give six base maps{' and six extra maps' if cfg.two_stream else ''}")
        maps = [fuse_frames(s, cfg.feat_fusion) for s in base_maps]
        if cfg.two_stream:
            maps = [fuse_streams(m, fuse_frames(e, cfg.feat_fusion), cfg.fusion_type) for m, e in zip(maps, extra_maps)]
        return self._heads(maps, base_maps[0].shape[0])

    def _heads(self, maps, b):
        locs, confs = zip(*(pooled_heads(m, l, c, d) for m, d, l, c in
                            zip(maps, self.core_base.source_depths, self.loc, self.conf)))
        return (torch.cat(locs, 1).view(b, -1, 4 * self.cfg.seq_len),
                torch.cat(confs, 1).view(b, -1, self.cfg.num_classes))


def build_model(cfg: ModelConfig) -> AMTNet:
    """AMTNet for cfg (heads Xavier-initialised, backbone PyTorch default-initialised)."""
    return AMTNet(cfg)
