"""Augmentations keep boxes on the pixels they frame, act jointly on frames and streams, and
mirror negates the flow's x component."""
import cv2
import numpy as np
import pytest

from data.flow import FlowChannels, decode_flow, encode_flow
from data.transforms import (MEANS as BGR_MEANS, Augmentation, Photometric, TrainTransform, crop_resize, draw_crop, draw_expand,
                             expanded_crop, resize_frames)
from data.transforms import TestTransform as BaseTransform

H, W, S = 240, 320, 300
MEANS = np.array(BGR_MEANS, np.float32)
Y = 1  # cv2 channel of the flow's y component: stays at index 1 after the channel reversal


def flow_frames_with_objects(boxes):
    """[T, H, W, 3] flow-like frames: y channel 255 inside each tube's box, 0 elsewhere."""
    frames = np.zeros((boxes.shape[1], H, W, 3), np.uint8)
    frames[..., 2] = 128
    for tube in boxes:
        for t, (x1, y1, x2, y2) in enumerate(tube.astype(int)):
            frames[t, y1:y2 + 1, x1:x2 + 1, Y] = 255
    return frames


def file_order(image):
    """Network input [3, S, S] back to the file's channel order and values, [S, S, 3]."""
    return image[::-1].transpose(1, 2, 0) + MEANS


def object_box(image):
    """Normalised box around the drawn object in a network input [3, S, S]."""
    mask = image[Y] + MEANS[Y] > (255 + MEANS[Y]) / 2
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]) / S


# Two tubes moving over three frames, 0-based pixel boxes.
BOXES = np.array([[[40, 50, 119, 169], [48, 52, 127, 171], [56, 54, 135, 173]],
                  [[200, 20, 259, 99], [196, 24, 255, 103], [192, 28, 251, 107]]], np.float32)


def assert_boxes_frame_objects(out, boxes, keep_ids, class_ids):
    assert boxes.shape[1:] == (3, 4) and len(boxes) == len(class_ids) >= 1
    for tube, class_id in zip(boxes, class_ids):
        # Draw this tube alone to find its pixels (tubes may overlap after the crop).
        alone = keep_ids[class_id]
        for t in range(3):
            assert np.allclose(object_box(alone[t]), tube[t], atol=0.025), (t, object_box(alone[t]), tube[t])


@pytest.mark.parametrize("aug", [
    Augmentation(),
    Augmentation(expand=(800, 500, 130, 70)),
    Augmentation(crop=(np.array([30, 10, 230, 200]), np.array([True, False]))),
    Augmentation(expand=(640, 480, 100, 60), crop=(np.array([120, 50, 420, 330]), np.array([True, True])), mirror=True),
    Augmentation(mirror=True),
])
def test_each_augmentation_keeps_boxes_on_the_object(aug):
    transform = TrainTransform(S)
    class_ids = np.array([0, 1])
    # One stream per tube, so each tube's pixels can be found alone.
    streams = {str(k): flow_frames_with_objects(BOXES[k:k + 1]) for k in range(2)}
    out, boxes, kept = transform.apply(streams, {"0": True, "1": True}, BOXES, class_ids, aug)
    assert out["0"].shape == (3, 3, S, S) and out["0"].dtype == np.float32
    assert_boxes_frame_objects(out, boxes, {0: out["0"], 1: out["1"]}, kept)


def test_random_augmentation_keeps_boxes_on_the_object():
    transform = TrainTransform(S)
    streams = {str(k): flow_frames_with_objects(BOXES[k:k + 1]) for k in range(2)}
    mirrored = 0
    for seed in range(25):
        out, boxes, kept = transform(streams, {"0": True, "1": True}, BOXES, np.array([0, 1]), np.random.default_rng(seed))
        assert_boxes_frame_objects(out, boxes, {0: out["0"], 1: out["1"]}, kept)
        mirrored += boxes[0, 1, 0] < boxes[0, 0, 0]  # tube 0 moves right; mirrored it moves left
    assert 0 < mirrored < 25


def test_crop_keeps_a_tube_only_if_its_centres_stay_inside_in_every_frame():
    boxes = BOXES + np.array([40, 30, 40, 30], np.float32)
    for seed in range(40):
        crop = draw_crop(np.random.default_rng(seed), boxes, 400, 300)
        if crop is None:
            continue
        rect, keep = crop
        centres = (boxes[..., :2] + boxes[..., 2:]) / 2
        inside = np.all((centres > rect[:2]) & (centres < rect[2:]), axis=-1)  # [N, T]
        assert keep.tolist() == inside.all(axis=1).tolist() and keep.any()
        assert 0.3 * 400 - 1 <= rect[2] - rect[0] <= 400 and 0.3 * 300 - 1 <= rect[3] - rect[1] <= 300


def test_mirror_negates_flow_x_and_flag_restores_the_original():
    flow = np.zeros((H, W, 2), np.float32)
    flow[..., 0], flow[..., 1] = 2.0, -1.0
    frames = encode_flow(flow)[None]  # x = 160, y = 112
    out, _, _ = TrainTransform(S).apply({"f": frames}, {"f": True}, BOXES[:1, :1], np.array([0]), Augmentation(mirror=True))
    decoded = decode_flow(file_order(out["f"][0]))
    assert np.allclose(decoded[..., 0], -2.0, atol=1 / 16 + 1e-4)  # 255 - x: -2 - 1/16
    assert np.allclose(decoded[..., 1], -1.0, atol=1e-4)
    original = TrainTransform(S, mirror_flow_pixels_only=True)
    out, _, _ = original.apply({"f": frames}, {"f": True}, BOXES[:1, :1], np.array([0]), Augmentation(mirror=True))
    assert np.allclose(decode_flow(file_order(out["f"][0]))[..., 0], 2.0, atol=1e-4)
    # Flow made elsewhere with x in the G plane: the flag moves the negation there.
    yx = FlowChannels.parse("yxm")
    swapped = encode_flow(flow, yx)[None]
    out, _, _ = TrainTransform(S, flow_channels=yx).apply({"f": swapped}, {"f": True}, BOXES[:1, :1], np.array([0]),
                                                          Augmentation(mirror=True))
    assert np.allclose(decode_flow(file_order(out["f"][0]), yx)[..., 0], -2.0, atol=1 / 16 + 1e-4)


def test_mirror_of_rgb_does_not_touch_values():
    frames = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3)).astype(np.uint8)
    out, _, _ = TrainTransform(64).apply({"r": frames}, {"r": False}, BOXES[:1, :2] / 5, np.array([0]),
                                         Augmentation(mirror=True))
    # Square frames of the output size: the resize is the identity, output = flipped - mean, reversed.
    expected = (frames[:, :, ::-1].astype(np.float32) - MEANS)[..., ::-1].transpose(0, 3, 1, 2)
    assert np.allclose(out["r"], expected)


def test_photometric_distortion_is_shared_by_frames_and_rgb_streams_and_skips_flow():
    grey = np.full((2, H, W, 3), 100, np.uint8)
    aug = Augmentation(photometric=Photometric(brightness=20.0, contrast=1.25, contrast_first=False))
    streams = {"a": grey, "b": grey.copy(), "flow": grey.copy()}
    out, _, _ = TrainTransform(S).apply(streams, {"a": False, "b": False, "flow": True}, BOXES[:1, :2],
                                        np.array([0]), aug)
    # Grey survives the HSV round trip: (100 + 20) * 1.25 = 150.
    assert np.allclose(out["a"] + MEANS[::-1, None, None], 150, atol=0.01)
    assert np.array_equal(out["a"], out["b"])
    assert np.allclose(out["flow"] + MEANS[::-1, None, None], 100)
    drawn = [Photometric.draw(np.random.default_rng(s)) for s in range(200)]
    for name in ("brightness", "contrast", "saturation", "hue", "swap"):
        assert 70 < sum(getattr(p, name) is None for p in drawn) < 130, name  # each step with probability 1/2
    colour = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3)).astype(np.float32)
    colour[1] = colour[0]
    assert np.allclose(Photometric().apply(colour), colour, atol=1e-3)  # the bare HSV round trip
    distorted = Photometric(saturation=0.6, hue=10.0, swap=(2, 0, 1)).apply(colour)
    assert np.array_equal(distorted[0], distorted[1]) and not np.allclose(distorted, colour, atol=1)


def test_expanded_crop_equals_building_the_canvas():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 24, 32, 3)).astype(np.float32)
    canvas = np.empty((2, 60, 90, 3), np.float32)
    canvas[:] = MEANS
    canvas[:, 20:44, 30:62] = frames
    for rect in ([0, 0, 90, 60], [25, 15, 70, 50], [40, 30, 50, 40], [0, 0, 20, 10], [30, 20, 62, 44]):
        got = expanded_crop(frames, (90, 60), (30, 20), np.array(rect), MEANS)
        assert np.array_equal(got, canvas[:, rect[1]:rect[3], rect[0]:rect[2]])


def _original_order(frames, aug, size, flow_x=None):
    """Expand canvas -> crop -> mirror -> resize -> mean -> reverse, step by step as the original."""
    num, height, width = frames.shape[:3]
    canvas_w, canvas_h, left, top = aug.expand or (width, height, 0, 0)
    rect = aug.crop[0] if aug.crop is not None else np.array([0, 0, canvas_w, canvas_h])
    x = expanded_crop(frames.astype(np.float32), (canvas_w, canvas_h), (left, top), rect, MEANS)
    if aug.mirror:
        x = x[:, :, ::-1].copy()
        if flow_x is not None:
            x[..., flow_x] = 255 - x[..., flow_x]
    x = np.stack([cv2.resize(f, (size, size)) for f in x])
    return (x - MEANS)[..., ::-1].transpose(0, 3, 1, 2)


@pytest.mark.parametrize("aug", [
    Augmentation(expand=(800, 500, 130, 70)),
    Augmentation(expand=(800, 500, 130, 70), crop=(np.array([100, 60, 300, 200]), np.array([True, True])), mirror=True),
    Augmentation(crop=(np.array([30, 10, 230, 200]), np.array([True, True]))),
    Augmentation(crop=(np.array([0, 0, 320, 100]), np.array([True, True])), mirror=True),
    Augmentation(expand=(1000, 900, 600, 10), crop=(np.array([550, 0, 1000, 400]), np.array([True, True]))),
    Augmentation(expand=(1000, 900, 600, 10), crop=(np.array([0, 300, 500, 800]), np.array([True, True]))),
])
@pytest.mark.parametrize("flow", [False, True])
def test_one_warp_per_frame_equals_the_original_order(aug, flow):
    rng = np.random.default_rng(0)
    frames = cv2.GaussianBlur(rng.integers(0, 256, (2 * H, W, 3)).astype(np.uint8), (0, 0), 1.5).reshape(2, H, W, 3)
    out, _, _ = TrainTransform(S).apply({"x": frames}, {"x": flow}, BOXES[:, :2], np.array([0, 1]), aug)
    expected = _original_order(frames, aug, S, flow_x=2 if flow else None)
    assert np.allclose(out["x"], expected, atol=0.01)


def test_crop_resize_of_an_empty_intersection_is_the_fill():
    frames = np.zeros((1, 24, 32, 3), np.float32)
    out = crop_resize(frames, (40, 40), np.array([0, 0, 30, 30]), 16, MEANS)
    assert out.shape == (1, 16, 16, 3) and np.all(out == MEANS)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_resizing_all_frames_at_once_equals_one_by_one(dtype):
    frames = np.random.default_rng(0).integers(0, 256, (4, 24, 40, 3)).astype(dtype)
    expected = np.stack([cv2.resize(f, (S, S)) for f in frames])
    # uint8 is exact; float differs by rounding only (OpenCV's many-channel path).
    assert np.allclose(resize_frames(frames, S), expected, rtol=0, atol=0 if dtype == np.uint8 else 1e-3)


def test_test_transform_resizes_and_subtracts_the_mean_only():
    frames = np.full((2, H, W, 3), (10, 20, 30), np.uint8)
    out, boxes, ids = BaseTransform(S)({"r": frames}, {"r": False}, BOXES[:, :2], np.array([0, 1]))
    assert out["r"].shape == (2, 3, S, S)
    assert np.allclose(out["r"], np.array([30 - 123, 20 - 117, 10 - 104], np.float32)[None, :, None, None])
    assert np.allclose(boxes, BOXES[:, :2] / np.array([W, H, W, H])) and ids.tolist() == [0, 1]


def test_max_expand_bounds_the_canvas_and_keeps_the_random_stream():
    """--max_expand: the same draws as the original's Expand (so the crop and mirror that follow
    are unchanged), the canvas at most max_expand times the frame, 1 = no zoom-out."""
    for seed in range(40):
        full = draw_expand(np.random.default_rng(seed), 320, 240)
        half = draw_expand(np.random.default_rng(seed), 320, 240, 1.5)
        none = draw_expand(np.random.default_rng(seed), 320, 240, 1.0)
        assert (full is None) == (half is None) == (none is None)
        if full is not None:
            assert full[0] <= 4 * 320 and half[0] <= 1.5 * 320 and half[1] <= 1.5 * 240
            assert none == (320, 240, 0, 0)
            # one uniform draw for the ratio: the rescaled ratios agree
            np.testing.assert_allclose((full[0] / 320 - 1) / 3, (half[0] / 320 - 1) / 0.5, atol=0.02)


def test_no_channel_swap_drops_only_the_permutation_and_keeps_the_random_stream():
    """--no-channel_swap: the same draws as the original's PhotometricDistort, the permutation not applied,
    so the expand, crop and mirror drawn after it are unchanged."""
    frames = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    swapped = 0
    for seed in range(40):
        rng_on, rng_off = np.random.default_rng(seed), np.random.default_rng(seed)
        on, off = Photometric.draw(rng_on), Photometric.draw(rng_off, channel_swap=False)
        assert off.swap is None
        assert (on.brightness, on.contrast, on.contrast_first, on.saturation, on.hue) == \
            (off.brightness, off.contrast, off.contrast_first, off.saturation, off.hue)
        assert rng_on.random() == rng_off.random()
        if on.swap is not None:
            swapped += on.swap != (0, 1, 2)
            np.testing.assert_array_equal(on.apply(frames), off.apply(frames)[..., list(on.swap)])
    assert swapped > 5
    boxes, ids = np.array([[[8, 8, 40, 40]]], np.float32), np.array([0])
    streams = {"rgb": np.random.default_rng(1).integers(0, 255, (1, 64, 64, 3), dtype=np.uint8)}
    seeds = [s for s in range(40) if Photometric.draw(np.random.default_rng(s)).swap not in (None, (0, 1, 2))]
    a = TrainTransform(64)(streams, {"rgb": False}, boxes, ids, np.random.default_rng(seeds[0]))
    b = TrainTransform(64, channel_swap=False)(streams, {"rgb": False}, boxes, ids, np.random.default_rng(seeds[0]))
    np.testing.assert_array_equal(a[1], b[1])  # same boxes: same expand, crop and mirror
    assert not np.array_equal(a[0]["rgb"], b[0]["rgb"])
