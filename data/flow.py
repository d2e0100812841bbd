"""Optical flow: computation (OpenCV DIS, named ``fastOF``) and the 3-channel JPEG encoding.

Encoding, as the released UCF101-24 / J-HMDB-21 flow images (the Gkioxari & Malik
"Finding Action Tubes" ``compute_flow.m`` convention): each flow component and the
magnitude are scaled by 16 (= 128 / 8, so +-8 pixels span the range), shifted by 128
and clipped to [0, 255]. The image file holds x, y and magnitude as its R, G and B
planes (Matlab's ``imwrite`` order). ``cv2.imread`` returns B, G, R, so in the array
it gives: channel 2 = x, channel 1 = y, channel 0 = magnitude. These constants are
the only place that order is written down; flow made elsewhere with another order
is described with ``FlowChannels``.
"""
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

FLOW_SCALE = 16.0
FLOW_CENTRE = 128.0


@dataclass(frozen=True)
class FlowChannels:
    """Which channel of a ``cv2.imread`` array holds x, y and magnitude."""
    x: int = 2
    y: int = 1
    magnitude: int = 0

    @classmethod
    def parse(cls, text: str) -> "FlowChannels":
        """``'xym'``-style order of the file's R, G, B planes, e.g. ``'xym'`` (default) or ``'yxm'``."""
        text = text.lower()
        if sorted(text) != ["m", "x", "y"]:
            raise ValueError(f"flow channel order must be a permutation of 'xym', got {text!r}")
        # File plane i (R, G, B) is array channel 2 - i after cv2.imread's BGR order.
        return cls(**{{"x": "x", "y": "y", "m": "magnitude"}[c]: 2 - i for i, c in enumerate(text)})


DEFAULT_CHANNELS = FlowChannels()
CHANNEL_ORDERS = ("xym", "xmy", "yxm", "ymx", "mxy", "myx")  # what FlowChannels.parse accepts (any case)

FLOW_METHODS = ("fastOF",)


def encode_flow(flow: np.ndarray, channels: FlowChannels = DEFAULT_CHANNELS) -> np.ndarray:
    """``[H, W, 2]`` float flow (x, y in pixels) -> ``[H, W, 3]`` uint8 image for ``cv2.imwrite``."""
    flow = np.asarray(flow, dtype=np.float32)
    magnitude = np.sqrt(flow[..., 0] ** 2 + flow[..., 1] ** 2)
    image = np.empty(flow.shape[:2] + (3,), dtype=np.uint8)
    for channel, plane in ((channels.x, flow[..., 0]), (channels.y, flow[..., 1]), (channels.magnitude, magnitude)):
        image[..., channel] = np.clip(np.round(plane * FLOW_SCALE + FLOW_CENTRE), 0, 255).astype(np.uint8)
    return image


def decode_flow(image: np.ndarray, channels: FlowChannels = DEFAULT_CHANNELS) -> np.ndarray:
    """Inverse of ``encode_flow`` (up to quantisation and clipping): ``[H, W, 2]`` flow in pixels."""
    image = np.asarray(image, dtype=np.float32)
    return np.stack([(image[..., channels.x] - FLOW_CENTRE) / FLOW_SCALE,
                     (image[..., channels.y] - FLOW_CENTRE) / FLOW_SCALE], axis=-1)


class FlowComputer:
    """Flow between consecutive BGR frames with OpenCV's DIS optical flow (``fastOF``).

    DIS (Kroeger et al., ECCV 2016) is the real-time flow ROAD used; the ``MEDIUM``
    preset trades a little speed for accuracy on 320x240 frames.
    """

    def __init__(self, method: str = "fastOF"):
        if method not in FLOW_METHODS:
            raise ValueError(f"unknown flow method {method!r}; choose from {FLOW_METHODS}")
        self.method = method
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def __call__(self, previous_bgr, next_bgr):
        prev_gray = cv2.cvtColor(previous_bgr, cv2.COLOR_BGR2GRAY)
        next_gray = cv2.cvtColor(next_bgr, cv2.COLOR_BGR2GRAY)
        return self._dis.calc(prev_gray, next_gray, None)


def flow_images(frames: Iterable, method: str = "fastOF", channels: FlowChannels = DEFAULT_CHANNELS) -> Iterator:
    """Yield one encoded flow image per frame of a sequence of BGR frames.

    Image ``i`` is the flow from frame ``i`` to frame ``i + 1``; the last frame,
    which has no successor, repeats the previous flow, so every frame has a flow
    image of the same number (as in the released datasets).
    """
    compute = FlowComputer(method)
    previous, last = None, None
    for frame in frames:
        if previous is not None:
            last = encode_flow(compute(previous, frame), channels)
            yield last
        previous = frame
    if previous is not None:
        yield last if last is not None else encode_flow(np.zeros(previous.shape[:2] + (2,), np.float32), channels)
