"""One backbone pass per frame: each time step's six source feature maps, per stream, kept while a later
window may still use them, so that a window runs only the micro-tube pooling and the heads.

With ``seq_len`` 2 the test windows (data/windows.py, ``full_test``) share their end frames (window
s holds s and s + gap + 1, the next starts there), so every frame but the first and last is in two
windows and the plain path runs the backbone on it twice. A time step's input (its stack of
frames) depends only on the frame, so its maps do too; the cached path gives the plain path's
outputs to float rounding (the backbone sees other batches).
"""
from typing import Callable

import torch


class FeatureMapCache:
    """``outputs(inputs, keys)`` = ``model(inputs['base'], inputs.get('extra'))``, each key's backbone
    run once. ``keys`` [B][T] name each window's time steps (hashable, e.g. (video, frame));
    ``inputs`` {stream: [B, T, C, 300, 300]}, or a callable ``(stream, b, t) -> [C, 300, 300]`` that
    is asked only for the time steps not in the cache (so the caller need not prepare them).
    ``keep(keys)`` forgets every other key."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.streams = ("base", "extra") if model.cfg.two_stream else ("base",)
        self.maps = {s: {} for s in self.streams}  # stream -> key -> six [D_k, S_k, S_k]
        self.backbone_runs = 0                     # time steps the backbone ran on (all streams)

    def outputs(self, inputs: dict | Callable, keys: list) -> tuple:
        b, t = len(keys), len(keys[0])
        stream_maps = {}
        for stream in self.streams:
            store = self.maps[stream]
            missing = {}
            for i, row in enumerate(keys):
                for j, key in enumerate(row):
                    if key not in store and key not in missing:
                        missing[key] = (i, j)
            if missing:
                images = torch.stack([inputs[stream][i, j] if not callable(inputs) else inputs(stream, i, j)
                                      for i, j in missing.values()])
                maps = self.model.feature_maps(images, stream)
                for n, key in enumerate(missing):
                    store[key] = [m[n] for m in maps]
                self.backbone_runs += len(missing)
            stream_maps[stream] = [torch.stack([store[key][k] for row in keys for key in row]).view(b, t, *m.shape)
                                   for k, m in enumerate(store[keys[0][0]])]
        return self.model.forward_maps(stream_maps["base"], stream_maps.get("extra"))

    def keep(self, keys: list) -> None:
        """Forget the maps of every key not in ``keys``."""
        keys = set(keys)
        for store in self.maps.values():
            for key in [k for k in store if k not in keys]:
                del store[key]
