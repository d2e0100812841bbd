"""Training augmentation and test-time transform, applied jointly to every frame of a window
and to both input streams.

Input: ``streams`` ``{name: uint8 [F, H, W, 3]}`` (the distinct frames of each stream as
``cv2.imread`` returns them, BGR for RGB frames), ``is_flow`` ``{name: bool}``, ``boxes``
[N, T, 4] pixels x1, y1, x2, y2 and ``class_ids`` [N]. Output: ``streams`` as float32
[F, 3, S, S] and ``boxes`` normalised to [0, 1] (tubes dropped by the crop removed).

The training chain is the original's ``SSDAugmentation`` (``utils/augmentations.py``):
photometric distortion, expand with the mean, random crop, mirror, resize, mean
subtraction. Each random decision is drawn once per window. Differences on purpose:

- photometric distortion applies to RGB streams only (the original also distorted flow);
- mirror negates the flow's x component (``255 - x``); the original only flipped the
  pixels, so mirrored flow pointed the wrong way. ``mirror_flow_pixels_only=True``
  restores the original;
- expand, crop and resize are one bilinear warp per frame from the original pixels (the
  4x canvas is never built), and mirror acts on the resized frames; both are equal to the
  original order up to float rounding (``tests/test_transforms.py``).

As in the original (``data/dataset.py``: ``aug_imgs[:, :, :, (2, 1, 0)]`` after the BGR
mean subtraction), the output channel order is the reverse of the file's: R, G, B for RGB
frames; for flow in the default encoding x, y, magnitude.
"""
from dataclasses import dataclass

import cv2
import numpy as np

from .flow import DEFAULT_CHANNELS, FlowChannels

MEANS = (104, 117, 123)  # BGR, as the original's args.means
CROP_MODES = (None, (0.1, None), (0.3, None), (0.5, None), (0.7, None), (0.9, None), (None, None))
CHANNEL_PERMUTATIONS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))
CROP_TRIALS = 50
MAX_CV_CHANNELS = 512  # OpenCV's CV_CN_MAX


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """[F, H, W, 3] -> [F, size, size, 3], bilinear, one OpenCV call for all frames."""
    num, height, width, channels = frames.shape
    if (height, width) == (size, size):
        return frames
    if num * channels > MAX_CV_CHANNELS:
        return np.stack([cv2.resize(f, (size, size)) for f in frames])
    stacked = np.ascontiguousarray(frames.transpose(1, 2, 0, 3)).reshape(height, width, num * channels)
    out = cv2.resize(stacked, (size, size))
    return out.reshape(size, size, num, channels).transpose(2, 0, 1, 3)


def to_network(frames: np.ndarray, means: tuple) -> np.ndarray:
    """[F, H, W, 3] in the file's channel order -> float32 [F, 3, H, W]: BGR means subtracted,
    channels reversed (the original's ``aug_imgs[:, :, :, (2, 1, 0)]``)."""
    num, height, width, _ = frames.shape
    out = np.empty((num, 3, height, width), np.float32)
    for f in range(num):
        for c, plane in enumerate(cv2.split(np.ascontiguousarray(frames[f]))):
            np.subtract(plane, np.float32(means[c]), out=out[f, 2 - c], casting="unsafe")
    return out


def normalise_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    return (np.asarray(boxes, np.float32) / np.array([width, height, width, height], np.float32)).astype(np.float32)


class TestTransform:
    """Resize and mean subtraction only (the original's ``BaseTransform``)."""
    __test__ = False  # not a pytest class

    def __init__(self, size: int = 300, means: tuple = MEANS):
        self.size, self.means = size, means

    def __call__(self, streams, is_flow, boxes, class_ids, rng=None):
        height, width = next(iter(streams.values())).shape[1:3]
        # BaseTransform resizes the uint8 frames, then converts to float.
        out = {name: to_network(resize_frames(frames, self.size), self.means) for name, frames in streams.items()}
        return out, normalise_boxes(boxes, width, height), class_ids


@dataclass
class Photometric:
    """One draw of the original's ``PhotometricDistort``; ``None`` = step not applied."""
    brightness: float = None
    contrast: float = None
    contrast_first: bool = True
    saturation: float = None
    hue: float = None
    swap: tuple = None

    @classmethod
    def draw(cls, rng: np.random.Generator, channel_swap: bool = True) -> "Photometric":
        """``channel_swap=False`` makes the same draws and drops the channel permutation (ssd.pytorch's
        ``RandomLightingNoise``, which the original keeps; the Caffe SSD sets its ``random_order_prob`` to 0)."""
        p = cls()
        if rng.integers(2):
            p.brightness = rng.uniform(-32, 32)
        p.contrast_first = bool(rng.integers(2))
        if rng.integers(2):
            p.contrast = rng.uniform(0.5, 1.5)
        if rng.integers(2):
            p.saturation = rng.uniform(0.5, 1.5)
        if rng.integers(2):
            p.hue = rng.uniform(-18.0, 18.0)
        if rng.integers(2):
            p.swap = CHANNEL_PERMUTATIONS[rng.integers(len(CHANNEL_PERMUTATIONS))]
            if not channel_swap:
                p.swap = None
        return p

    def apply(self, frames: np.ndarray) -> np.ndarray:
        """float32 BGR [F, H, W, 3] -> distorted copy."""
        x = frames.copy()
        if self.brightness is not None:
            x += self.brightness
        if self.contrast_first and self.contrast is not None:
            x *= self.contrast
        for f in range(len(x)):
            # The original converts to HSV and back whether or not saturation or hue change.
            hsv = cv2.cvtColor(x[f], cv2.COLOR_BGR2HSV)
            if self.saturation is not None:
                hsv[..., 1] *= self.saturation
            if self.hue is not None:
                h = hsv[..., 0]
                h += self.hue
                h[h > 360.0] -= 360.0
                h[h < 0.0] += 360.0
            x[f] = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
        if not self.contrast_first and self.contrast is not None:
            x *= self.contrast
        if self.swap is not None:
            x = x[..., list(self.swap)]
        return x


def jaccard(boxes: np.ndarray, rect: np.ndarray) -> np.ndarray:
    """IoU of boxes [K, 4] with one rectangle [4] (areas without +1, as the original)."""
    lt = np.maximum(boxes[:, :2], rect[:2])
    rb = np.minimum(boxes[:, 2:], rect[2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return inter / (area + np.prod(rect[2:] - rect[:2]) - inter)


def draw_expand(rng: np.random.Generator, width: int, height: int, max_ratio: float = 4.0) -> tuple | None:
    """Expand: ``None`` (half the time) or (canvas width, canvas height, left, top) in integers.
    The original's canvas is up to 4 times the frame (``max_ratio``); the draws are the same
    whatever ``max_ratio``, and 1 leaves the frame as it is."""
    if rng.integers(2):
        return None
    ratio = rng.uniform(1, max_ratio)
    left = rng.uniform(0, width * ratio - width)
    top = rng.uniform(0, height * ratio - height)
    return int(width * ratio), int(height * ratio), int(left), int(top)


def draw_crop(rng: np.random.Generator, boxes: np.ndarray, width: int, height: int) -> tuple | None:
    """Random crop of the original's ``RandomSampleCrop``: ``None`` or (rect [4] int, keep [N] bool).

    A micro-tube is kept only if its box centres lie inside the crop in every frame; the
    overlap constraint is on each tube's IoU with the crop averaged over its frames.
    """
    num_tubes, seq_len = boxes.shape[:2]
    if num_tubes == 0:
        return None  # the original would retry until it drew "no crop"
    flat = boxes.reshape(-1, 4)
    centres = (boxes[..., :2] + boxes[..., 2:]) / 2.0
    while True:
        mode = CROP_MODES[rng.integers(len(CROP_MODES))]
        if mode is None:
            return None
        min_iou = -np.inf if mode[0] is None else mode[0]
        max_iou = np.inf if mode[1] is None else mode[1]
        for _ in range(CROP_TRIALS):
            w = rng.uniform(0.3 * width, width)
            h = rng.uniform(0.3 * height, height)
            if h / w < 0.5 or h / w > 2:
                continue
            # The original calls numpy's random.uniform(width - w): low = width - w, high = 1.0.
            left = (width - w) + (1.0 - (width - w)) * rng.random()
            top = (height - h) + (1.0 - (height - h)) * rng.random()
            rect = np.array([int(left), int(top), int(left + w), int(top + h)])
            overlap = jaccard(flat, rect).reshape(num_tubes, seq_len).mean(axis=1)
            if overlap.min() < min_iou or overlap.max() > max_iou:
                continue
            inside = np.all((rect[:2] < centres) & (centres < rect[2:]), axis=-1)
            keep = inside.all(axis=1)
            if keep.any():
                return rect, keep


def expanded_crop(frames: np.ndarray, canvas: tuple, offset: tuple, rect: tuple, fill: tuple) -> np.ndarray:
    """Pixels of ``rect`` (x1, y1, x2, y2) in a canvas of size ``canvas`` (w, h) filled with
    ``fill`` and holding ``frames`` [F, H, W, 3] at ``offset`` (left, top): the original's
    ``Expand`` followed by the crop, materialised (the reference for ``crop_resize``)."""
    num, height, width, channels = frames.shape
    x1, y1, x2, y2 = (int(v) for v in rect)
    left, top = offset
    out = np.empty((num, y2 - y1, x2 - x1, channels), dtype=frames.dtype)
    out[:] = np.asarray(fill, dtype=frames.dtype)
    ix1, iy1 = max(x1, left), max(y1, top)
    ix2, iy2 = min(x2, left + width), min(y2, top + height)
    if ix2 > ix1 and iy2 > iy1:
        out[:, iy1 - y1:iy2 - y1, ix1 - x1:ix2 - x1] = frames[:, iy1 - top:iy2 - top, ix1 - left:ix2 - left]
    return out


def crop_resize(frames: np.ndarray, offset: tuple, rect: tuple, size: int, fill: tuple) -> np.ndarray:
    """``resize(expanded_crop(...), size)`` without building the canvas.

    One bilinear ``warpAffine`` per frame from the part of the image inside the crop,
    padded by one pixel: with the edge pixels where the crop cuts the image (as
    ``cv2.resize`` clamps at the crop's border) and with ``fill`` where the image ends
    inside the crop (the expand canvas). Equal to the reference up to float rounding.
    """
    num, height, width, channels = frames.shape
    left, top = offset
    x1, y1, x2, y2 = (int(v) for v in rect)
    x1, x2, y1, y2 = x1 - left, x2 - left, y1 - top, y2 - top  # crop in image pixels
    if (x1, y1, x2, y2) == (0, 0, width, height):
        return resize_frames(frames, size)
    ix1, iy1, ix2, iy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
    fill = np.asarray(fill, np.float32)
    if ix2 <= ix1 or iy2 <= iy1:
        return np.broadcast_to(fill, (num, size, size, channels)).astype(frames.dtype)
    src = np.empty((num, iy2 - iy1 + 2, ix2 - ix1 + 2, channels), frames.dtype)
    src[:] = fill
    src[:, 1:-1, 1:-1] = frames[:, iy1:iy2, ix1:ix2]
    if x1 >= 0:
        src[:, 1:-1, 0] = src[:, 1:-1, 1]
    if x2 <= width:
        src[:, 1:-1, -1] = src[:, 1:-1, -2]
    if y1 >= 0:
        src[:, 0] = src[:, 1]
    if y2 <= height:
        src[:, -1] = src[:, -2]
    scale_x, scale_y = (x2 - x1) / size, (y2 - y1) / size
    # Destination pixel centre (u + 0.5) * scale - 0.5 in crop pixels, as cv2.resize; +1 for the pad.
    matrix = np.array([[scale_x, 0, 0.5 * scale_x - 0.5 + x1 - ix1 + 1],
                       [0, scale_y, 0.5 * scale_y - 0.5 + y1 - iy1 + 1]])
    border = tuple(float(v) for v in fill)
    return np.stack([cv2.warpAffine(f, matrix, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=border) for f in src])


@dataclass
class Augmentation:
    """The random decisions for one window. ``expand``: (canvas w, canvas h, left, top) or
    ``None``; ``crop``: (rect [4] in canvas pixels, keep [N] bool) or ``None``."""
    photometric: Photometric = None
    expand: tuple = None
    crop: tuple = None
    mirror: bool = False


class TrainTransform:
    """The original's ``SSDAugmentation``, drawn once per window (see module doc)."""

    def __init__(self, size: int = 300, means: tuple = MEANS, flow_channels: FlowChannels = DEFAULT_CHANNELS,
                 mirror_flow_pixels_only: bool = False, max_expand: float = 4.0, channel_swap: bool = True):
        self.size, self.means = size, means
        self.channel_swap = channel_swap
        self.flow_channels = flow_channels
        self.mirror_flow_pixels_only = mirror_flow_pixels_only
        self.max_expand = max_expand

    def __call__(self, streams, is_flow, boxes, class_ids, rng):
        height, width = next(iter(streams.values())).shape[1:3]
        photometric = Photometric.draw(rng, self.channel_swap)
        expand = draw_expand(rng, width, height, self.max_expand)
        canvas_w, canvas_h, left, top = expand or (width, height, 0, 0)
        shifted = np.asarray(boxes, np.float32) + np.array([left, top, left, top], np.float32)
        crop = draw_crop(rng, shifted, canvas_w, canvas_h)
        mirror = bool(rng.integers(2))
        return self.apply(streams, is_flow, boxes, class_ids, Augmentation(photometric, expand, crop, mirror))

    def apply(self, streams: dict, is_flow: dict, boxes: np.ndarray, class_ids: np.ndarray, aug: Augmentation) -> tuple:
        """Apply the decisions ``aug`` (an ``Augmentation``) to every frame of every stream."""
        height, width = next(iter(streams.values())).shape[1:3]
        boxes = np.asarray(boxes, np.float32).copy()
        class_ids = np.asarray(class_ids)
        frames = {}
        for name, x in streams.items():
            x = x.astype(np.float32)
            frames[name] = aug.photometric.apply(x) if aug.photometric is not None and not is_flow[name] else x

        canvas_w, canvas_h, left, top = aug.expand or (width, height, 0, 0)
        boxes += np.array([left, top, left, top], np.float32)
        rect = np.array([0, 0, canvas_w, canvas_h])
        if aug.crop is not None:
            rect, keep = aug.crop
            boxes, class_ids = boxes[keep], class_ids[keep]
            boxes[..., :2] = np.maximum(boxes[..., :2], rect[:2]) - rect[:2]
            boxes[..., 2:] = np.minimum(boxes[..., 2:], rect[2:]) - rect[:2]
        width, height = int(rect[2] - rect[0]), int(rect[3] - rect[1])
        out = {name: crop_resize(x, (left, top), rect, self.size, self.means) for name, x in frames.items()}

        if aug.mirror:
            # Mirroring after the resize equals the original's mirror-then-resize (the sampling is symmetric).
            out = {name: self._mirror(x, is_flow[name]) for name, x in out.items()}
            # RandomMirror: boxes[:, 0::2] = width - boxes[:, 2::-2]
            boxes[..., 0], boxes[..., 2] = width - boxes[..., 2], width - boxes[..., 0]

        out = {name: to_network(x, self.means) for name, x in out.items()}
        return out, normalise_boxes(boxes, width, height), class_ids

    def _mirror(self, frames, flow):
        flipped = np.stack([cv2.flip(f, 1) for f in frames])
        if flow and not self.mirror_flow_pixels_only:
            x = self.flow_channels.x
            flipped[..., x] = 255.0 - flipped[..., x]
        return flipped
