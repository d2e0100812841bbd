"""Online detection on a stream of frames: reading the frames, micro-tube windows as soon as
their frames are in, per-frame detections in frame order (linked online by
``tubes.linking.OnlineTubes``); ``engine.drawing`` draws the live paths (demo.py).

The windows, the frame stacking and the per-frame detections are those of test.py on a video
of the dataset (``data/windows.py`` with ``full_test``, ``data/dataset.py`` ``stack_indices``,
``tubes/detections.py`` ``frame_detections``), so on the same frames the online linker gets
exactly what build_tubes.py gets from test.py's files. Flow streams (``fastOF``) are computed
from the frames with OpenCV's DIS flow as prepare_data.py does, without the JPEG round trip.
Late fusion runs two one-stream models over the same windows and gives the streams of test.py
``--fuse_weights`` that the fusion reads (linked by ``tubes.fusion.OnlineFusedTubes``).
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from data.dataset import RGB_TYPES, stack_indices
from data.flow import DEFAULT_CHANNELS, FlowComputer, encode_flow
from data.transforms import MEANS, TestTransform
from data.windows import window_offsets
from layers.postprocess import decode_outputs
from models import load_model
from tubes.detections import VideoDetections, frame_detections, write_video_detections
from tubes.fusion import fusion_streams
from utils.checkpoint import read_weights

from .frame_cache import FeatureMapCache
from .inference import check_classes, late_fusion_streams, linking_outputs

ONLINE_FLOW_TYPES = ("fastOF",)


def check_online(input_type: str, reader: str) -> None:
    """ValueError unless the frames give ``input_type`` online (rgb, fastOF; not brox); ``reader``: who reads it."""
    if input_type.lower() not in RGB_TYPES and input_type not in ONLINE_FLOW_TYPES:
        raise ValueError(f"{reader} reads {input_type!r} images, which cannot be computed online; "
                         f"online inputs: rgb, {', '.join(ONLINE_FLOW_TYPES)}")


@dataclass
class StreamSpec:
    """What the model reads: ``{stream: (input type, frames per time step)}``, the micro-tube
    length and the test gap between its frames (test.py and demo.py ``--eval_gaps``)."""
    streams: dict
    seq_len: int = 2
    eval_gap: int = 1
    image_size: int = 300
    means: tuple = MEANS
    flow_channels: object = field(default=DEFAULT_CHANNELS)

    def __post_init__(self):
        for stream, (input_type, _) in self.streams.items():
            check_online(input_type, f"{stream} stream")

    @property
    def span(self) -> int:
        """Frames from a window's first to its last frame."""
        return int(window_offsets(self.seq_len, self.eval_gap)[-1])

    @property
    def step(self) -> int:
        """Window starts step (data/windows.py, full_test)."""
        return max(1, self.span)


class OnlineDetector:
    """Feed BGR frames with ``push``; get ``(frame index, loc [N, 4], scores [N, C+1])`` per frame,
    in order, as soon as no later window can change them; ``finish`` flushes the end.
    ``model``: an AMTNet, or an ``engine.export.OnnxDetector`` (whole windows unless it has the per-frame graphs).
    ``frame_cache``: one backbone pass per frame (``FeatureMapCache``), not one per window and frame.

    Late fusion (demo.py ``--fuse_weights``): ``model`` and ``fuse_model``, one-stream models of the same
    ``seq_len``, read ``spec``'s ``base`` and ``extra`` streams (test.py ``--fuse_weights``'s layout), each
    through its own cache, over the same windows; ``outputs`` names the streams of
    ``tubes.fusion.fusion_streams()`` to give, each as test.py writes it: per frame
    ``(frame index, loc, scores)`` followed by the next output's ``loc, scores``."""

    def __init__(self, model: torch.nn.Module, spec: StreamSpec, device: torch.device, frame_cache: bool = True,
                 fuse_model: torch.nn.Module | None = None, outputs: tuple = ("base",)):
        models = [model] if fuse_model is None else [model, fuse_model]
        allowed = fusion_streams() if fuse_model is not None else ("base",)
        if not set(outputs) <= set(allowed):
            raise ValueError(f"outputs {tuple(outputs)}: {'with' if fuse_model is not None else 'without'} a fuse model "
                             f"only {', '.join(allowed)}")
        self.models = [m.eval() if isinstance(m, torch.nn.Module) else m for m in models]
        self.model, self.spec, self.device, self.outputs = self.models[0], spec, device, tuple(outputs)
        # each model's {its stream: the spec's stream it reads}
        self.reads = [{s: s for s in spec.streams}] if fuse_model is None else [{"base": "base"}, {"base": "extra"}]
        self.caches = [FeatureMapCache(m) if frame_cache and (isinstance(m, torch.nn.Module) or m.split) else None
                       for m in self.models]
        self.cache = self.caches[0]
        self.transform = TestTransform(spec.image_size, spec.means)
        self.is_flow = {s: t.lower() not in RGB_TYPES for s, (t, _) in spec.streams.items()}
        self.flow = {t: FlowComputer(t) for t, _ in spec.streams.values() if t in ONLINE_FLOW_TYPES}
        half = max(count // 2 for _, count in spec.streams.values())
        # A window is run once every frame it stacks, and the one after its last, are in (so the
        # stacking and window rules cannot depend on where the video ends).
        self.lookahead = spec.span + 2 + half + (1 if self.flow else 0)
        self.frames, self.flows = {}, {t: {} for t in self.flow}
        self.num_read = 0
        self.next_start = 0       # next regular window start
        self.next_frame = 0       # next frame to emit
        self.windows = []         # (frames [T], [(boxes [K, T, 4], scores [K, C+1]) per output]) still owning frames
        self.frame_size = None
        self.on_window = None     # called with (frames [T], boxes [K, T, 4], scores [K, C+1]) of each window run

    def push(self, bgr: np.ndarray) -> list:
        if self.frame_size is None:
            self.frame_size = (bgr.shape[1], bgr.shape[0])
        elif (bgr.shape[1], bgr.shape[0]) != self.frame_size:
            raise ValueError(f"frame {self.num_read + 1} is {bgr.shape[1]}x{bgr.shape[0]}, "
                             f"the video started at {self.frame_size[0]}x{self.frame_size[1]}")
        self.frames[self.num_read] = bgr
        self.num_read += 1
        out = []
        while self.next_start + self.lookahead <= self.num_read:
            self._run_window(self.next_start, None)
            self.next_start += self.spec.step
            out += self._emit(self.windows[-1][0][0])
        return out

    def finish(self) -> list:
        """The windows the end of the video decides, then every frame not yet emitted."""
        numf, step, span = self.num_read, self.spec.step, self.spec.span
        regular = range(0, max(numf - (span + 1), 0), step)  # data/windows.py candidate_starts
        starts = [s for s in regular if s >= self.next_start]
        # full_test: the window that covers the last frame (never a regular one, so not run yet;
        # it starts after every regular window)
        last = numf - step - 1
        if last >= 0 and last not in regular:
            starts.append(last)
        out = []
        for start in starts:
            if start + span < numf:
                self._run_window(start, numf)
                out += self._emit(start)
        return out + self._emit(numf)

    def _stack(self, frame, input_type, count, numf):
        indices = stack_indices(frame, count, numf if numf is not None else self.num_read + count + 1)
        if input_type in self.flow:
            return [self._flow_image(input_type, int(i), numf) for i in indices]
        return [self.frames[int(i)] for i in indices]

    def _flow_image(self, input_type, i, numf):
        """Flow image ``i``: from frame i to i + 1; the last frame repeats the one before (data/flow.py)."""
        cache = self.flows[input_type]
        if i not in cache:
            if numf is not None and i == numf - 1:
                cache[i] = self._flow_image(input_type, i - 1, numf) if i > 0 else \
                    encode_flow(np.zeros(self.frames[i].shape[:2] + (2,), np.float32), self.spec.flow_channels)
            else:
                cache[i] = encode_flow(self.flow[input_type](self.frames[i], self.frames[i + 1]), self.spec.flow_channels)
        return cache[i]

    def _inputs(self, frames, numf, streams):
        """The network inputs of time steps ``frames``: {stream: [len(frames), 3 * count, S, S]}."""
        stacks = {s: np.stack([im for f in frames for im in self._stack(int(f), *self.spec.streams[s], numf)])
                  for s in streams}
        images, _, _ = self.transform(stacks, self.is_flow, np.zeros((0, len(frames), 4)), np.zeros(0))
        return {s: torch.from_numpy(x.reshape(len(frames), -1, *x.shape[2:])).to(self.device) for s, x in images.items()}

    @torch.no_grad()
    def _run_window(self, start, numf):
        frames = start + window_offsets(self.spec.seq_len, self.spec.eval_gap)
        decoded = [self._decoded(*run, frames, numf) for run in zip(self.models, self.caches, self.reads)]
        streams = late_fusion_streams(*decoded) if len(decoded) == 2 else {"base": decoded[0]}
        self.windows.append((frames, [linking_outputs(*streams[s])[0] for s in self.outputs]))
        if self.on_window is not None:
            self.on_window(frames, *self.windows[-1][1][0])

    def _decoded(self, model, cache, reads, frames, numf):
        """``model``'s decoded (boxes [1, A, T, 4], scores [1, A, C+1]) on the window of ``frames``;
        ``reads``: {the model's stream: the spec's stream it reads}."""
        if cache is not None:
            keys = [int(f) for f in frames]
            step = lambda stream, _, t: self._inputs(frames[t:t + 1], numf, [reads[stream]])[reads[stream]][0]
            outputs = cache.outputs(step, [keys])
            cache.keep(keys)
        else:
            inputs = self._inputs(frames, numf, reads.values())
            base, extra = (inputs[reads[s]][None] if s in reads else None for s in ("base", "extra"))
            if not isinstance(model, torch.nn.Module):  # an OnnxDetector: boxes and scores decoded
                return model.decoded(base, extra)
            outputs = model(base, extra)
        return decode_outputs(*(o.float() for o in outputs), model.priors)

    def _emit(self, stop):
        """Per-frame detections of frames next_frame..stop-1 (``frame_detections``'s rule), of each output."""
        if stop <= self.next_frame:
            return []
        if not self.windows:  # a video too short for any window: frames without detections
            empty = (np.zeros((0, 4), np.float32), np.zeros((0, self.model.cfg.num_classes), np.float32))
            out = [(f, *empty * len(self.outputs)) for f in range(self.next_frame, stop)]
            self.next_frame = stop
            return out
        frames = np.stack([w[0] for w in self.windows])
        per_output = []
        for k in range(len(self.outputs)):
            parts = [w[1][k] for w in self.windows]
            det = VideoDetections(frames, np.concatenate([boxes for boxes, _ in parts]),
                                  np.concatenate([scores for _, scores in parts]),
                                  np.concatenate([np.full(len(boxes), i) for i, (boxes, _) in enumerate(parts)]), stop)
            per_output.append(frame_detections(det, self.next_frame))
        out = [(f, *(x for loc_scores in dets for x in loc_scores))
               for f, dets in enumerate(zip(*per_output), self.next_frame)]
        self.next_frame = stop
        # Keep the windows that still reach a frame to come; drop frames no stack can read again.
        self.windows = [w for w in self.windows if w[0][-1] >= stop] or self.windows[-1:]
        oldest = min(stop, self.next_start) - max(c for _, c in self.spec.streams.values())
        for store in (self.frames, *self.flows.values()):
            for f in [f for f in store if f < oldest]:
                del store[f]
        return out


def load_detector(weights: Path, classes: list | None = None, original_cfg: Callable | None = None,
                  input_types: tuple = ("rgb", "fastOF")) -> tuple:
    """(model, class names, ``StreamSpec.streams``) from a checkpoint. This project's checkpoints carry
    their config, flags and class names; an original AMTNet checkpoint needs ``original_cfg(num_classes)``
    and ``classes`` (or a num_classes-only config). ``input_types``: the base and extra streams' input
    types where the checkpoint's flags do not name them. ``classes`` overrides the checkpoint's."""
    state = read_weights(weights)
    if classes:
        check_classes(state, list(classes), weights, "--classes")
    flags = state.get("flags", {})
    classes = classes or state.get("classes")
    model_cfg = None
    if "model_config" not in state:  # an original AMTNet checkpoint: the flags describe it
        model_cfg = original_cfg(len(classes) if classes else None)
    model = load_model(state, model_cfg)
    cfg = model.cfg
    classes = classes or [f"class {i + 1}" for i in range(cfg.num_classes - 1)]
    if len(classes) != cfg.num_classes - 1:
        raise ValueError(f"{len(classes)} class names for a model of {cfg.num_classes - 1} classes")
    streams = {"base": (flags.get("input_type_base", input_types[0]), cfg.input_frames_base)}
    if cfg.two_stream:
        streams["extra"] = (flags.get("input_type_extra", input_types[1]), cfg.input_frames_extra)
    return model, list(classes), streams


def write_detections(path: Path, detections: list, frame_size: tuple) -> None:
    """Per-frame detections as a one-frame-window npz (T = 1), readable by build_tubes.py."""
    boxes = np.concatenate([loc for loc, _ in detections]).reshape(-1, 1, 4)
    scores = np.concatenate([s for _, s in detections])
    window = np.concatenate([np.full(len(loc), f) for f, (loc, _) in enumerate(detections)])
    frames = np.arange(len(detections))[:, None]
    write_video_detections(path, frames, boxes, scores, window, len(detections), frame_size)
