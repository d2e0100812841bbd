"""SSD300 v2 prior (anchor) boxes, as data/anchor_configs.py and layers/functions/prior_box.py
of the original AMTNet define them."""
import itertools
import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PriorConfig:
    image_size: int = 300
    feature_maps: tuple = (38, 19, 10, 5, 3, 1)
    steps: tuple = (8, 16, 32, 64, 100, 300)
    min_sizes: tuple = (30, 60, 111, 162, 213, 264)
    max_sizes: tuple = (60, 111, 162, 213, 264, 315)
    aspect_ratios: tuple = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))
    variances: tuple = (0.1, 0.2)
    clip: bool = True

    @property
    def anchors_per_cell(self) -> tuple:
        """Priors per feature-map cell: 2 squares plus 2 per aspect ratio (4, 6, 6, 6, 4, 4)."""
        return tuple(2 + 2 * len(ar) for ar in self.aspect_ratios)


SSD300_V2 = PriorConfig()


def prior_boxes(cfg: PriorConfig = SSD300_V2) -> torch.Tensor:
    """Priors [A, 4] as (cx, cy, w, h) in [0, 1], in the original's order.

    Order: feature map, then cell row i, cell column j, then per cell: square min_size,
    square sqrt(min_size * max_size), then w = s*sqrt(ar), h = s/sqrt(ar) and its
    transpose for each aspect ratio. The original stores each row repeated T times
    ([A, 4*T]); the priors of a micro-tube are the same box in every frame, so one
    [A, 4] table is kept and broadcast over T. Clipped to [0, 1] like the original
    (cfg['clip'] is True for v2).
    """
    rows = []
    for k, f in enumerate(cfg.feature_maps):
        f_k = cfg.image_size / cfg.steps[k]
        s_k = cfg.min_sizes[k] / cfg.image_size
        s_k_prime = math.sqrt(s_k * (cfg.max_sizes[k] / cfg.image_size))
        for i, j in itertools.product(range(f), repeat=2):
            cx = (j + 0.5) / f_k
            cy = (i + 0.5) / f_k
            rows.append((cx, cy, s_k, s_k))
            rows.append((cx, cy, s_k_prime, s_k_prime))
            for ar in cfg.aspect_ratios[k]:
                r = math.sqrt(ar)
                rows.append((cx, cy, s_k * r, s_k / r))
                rows.append((cx, cy, s_k / r, s_k * r))
    priors = torch.tensor(rows, dtype=torch.float32)
    if cfg.clip:
        priors.clamp_(min=0, max=1)
    return priors
