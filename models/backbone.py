"""VGG16-SSD300 trunk of one stream (SSD_CORE in the original AMTNet.py, without its
pooling): returns the six source maps, each divided by kd*kd."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# SSD300 v2 layouts (AMTNet.py basemodel['300'] / extras['300']); 'M' max-pool, 'C' ceil-mode
# max-pool, 'S' next extra conv has stride 2.
VGG_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "C", 512, 512, 512, "M", 512, 512, 512)
EXTRAS_CFG = (256, "S", 512, 128, "S", 256, 128, 256, 128, 256)
SOURCE_DEPTHS = (512, 1024, 512, 256, 256, 256)
FEATURE_MAPS = (38, 19, 10, 5, 3, 1)
CONV4_3_END = 23  # vgg[:23] ends with conv4_3's ReLU
KD = 3  # side of the pooled neighbourhood; sources are divided by KD*KD (AMTNet.py SSD_CORE.scale)


def scaled(width: int, width_mult: float) -> int:
    return max(1, int(round(width * width_mult)))


NORMS = ("none", "batch", "group")


def conv(in_channels: int, out_channels: int, norm: str = "none", **kwargs) -> nn.Module:
    """A convolution, followed by a normalisation layer when ``norm`` is not 'none'. The pair
    takes the convolution's place in the layer list, so layer indices stay the original's
    and a 'none' model keeps the original's parameter names (and loads its checkpoints).
    GroupNorm takes up to 32 groups (Wu & He, 2018), as many as divide the channels."""
    layer = nn.Conv2d(in_channels, out_channels, **kwargs)
    if norm == "none":
        return layer
    if norm == "batch":
        return nn.Sequential(layer, nn.BatchNorm2d(out_channels))
    if norm == "group":
        return nn.Sequential(layer, nn.GroupNorm(math.gcd(out_channels, 32), out_channels))
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def make_vgg(in_channels: int, width_mult: float = 1.0, norm: str = "none") -> list:
    """The SSD300 VGG16 layer list; indices match the original's (vgg.N keys)."""
    layers, c = [], in_channels
    for v in VGG_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        elif v == "C":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
        else:
            w = scaled(v, width_mult)
            layers += [conv(c, w, norm, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            c = w
    fc = scaled(1024, width_mult)
    layers += [
        nn.MaxPool2d(kernel_size=3, stride=1, padding=1),  # pool5
        conv(c, fc, norm, kernel_size=3, padding=6, dilation=6),  # conv6
        nn.ReLU(inplace=True),
        conv(fc, fc, norm, kernel_size=1),  # conv7
        nn.ReLU(inplace=True),
    ]
    return layers


def make_extras(in_channels: int, width_mult: float = 1.0, norm: str = "none") -> list:
    """Extra layers after conv7: alternating 1x1 and 3x3 convs; 'S' makes the 3x3 stride 2, padding 1."""
    layers, c, kernel3 = [], in_channels, False
    cfg = EXTRAS_CFG
    for k, v in enumerate(cfg):
        if c != "S":
            if v == "S":
                out = scaled(cfg[k + 1], width_mult)
                layers.append(conv(c, out, norm, kernel_size=3 if kernel3 else 1, stride=2, padding=1))
            else:
                out = scaled(v, width_mult)
                layers.append(conv(c, out, norm, kernel_size=3 if kernel3 else 1))
            kernel3 = not kernel3
        c = v if v == "S" else scaled(v, width_mult)
    return layers


class L2Norm(nn.Module):
    """Channel-wise L2 normalisation with a learned per-channel scale (initialised to 20)."""

    def __init__(self, channels: int, scale: float = 20.0):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x):
        # The original AMTNet uses F.normalize (eps 1e-12), not ssd.pytorch's norm + 1e-10.
        return F.normalize(x, p=2, dim=1) * self.weight.view(1, -1, 1, 1)


class SSDCore(nn.Module):
    """One stream's backbone. Input [N, 3*input_frames, 300, 300] -> six maps
    [N, D_k, S_k, S_k], S = 38, 19, 10, 5, 3, 1, each divided by KD*KD as the original."""

    def __init__(self, input_frames: int = 1, width_mult: float = 1.0, norm: str = "none"):
        super().__init__()
        self.input_frames = input_frames
        self.vgg = nn.ModuleList(make_vgg(3 * input_frames, width_mult, norm))
        self.L2Norm = L2Norm(scaled(512, width_mult), 20.0)
        self.extras = nn.ModuleList(make_extras(scaled(1024, width_mult), width_mult, norm))
        self.source_depths = tuple(scaled(d, width_mult) for d in SOURCE_DEPTHS)
        self.reset_parameters()

    def reset_parameters(self):
        """torchvision VGG's initialisation (Kaiming-normal, fan-out; zero biases). The original
        always loads pretrained backbone weights; this only matters when training from scratch."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x):
        sources = []
        for layer in self.vgg[:CONV4_3_END]:
            x = layer(x)
        sources.append(self.L2Norm(x))
        for layer in self.vgg[CONV4_3_END:]:
            x = layer(x)
        sources.append(x)
        for k, layer in enumerate(self.extras):
            x = F.relu(layer(x), inplace=True)
            if k % 2 == 1:
                sources.append(x)
        return [s / (KD * KD) for s in sources]
