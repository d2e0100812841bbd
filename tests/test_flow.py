"""Flow encoding: channel order in the file, round trip, and DIS flow sign and magnitude."""
import cv2
import matplotlib.image
import numpy as np
import pytest

from data.flow import FLOW_CENTRE, FLOW_SCALE, FlowChannels, FlowComputer, decode_flow, encode_flow, flow_images


def _texture(seed=0):
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur((rng.random((240, 320)) * 255).astype(np.uint8), (0, 0), 2)
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)


def test_encoding_by_hand():
    flow = np.array([[[1.0, -2.0], [10.0, 0.0]]], np.float32)  # 1x2 pixels
    image = encode_flow(flow)
    # x = 1 -> 128 + 16 = 144, y = -2 -> 96, magnitude sqrt(5) -> 128 + 35.78 = 164
    assert image[0, 0, 2] == 144 and image[0, 0, 1] == 96 and image[0, 0, 0] == 164
    # x = 10 -> 288 clips at 255; magnitude likewise
    assert image[0, 1, 2] == 255 and image[0, 1, 1] == 128 and image[0, 1, 0] == 255


def test_file_holds_x_y_magnitude_as_rgb(tmp_path):
    flow = np.zeros((16, 16, 2), np.float32)
    flow[..., 0], flow[..., 1] = 3.0, -1.0
    path = str(tmp_path / "flow.png")
    cv2.imwrite(path, encode_flow(flow))
    rgb = matplotlib.image.imread(path)  # RGB order, floats in [0, 1]
    assert round(rgb[0, 0, 0] * 255) == FLOW_CENTRE + 3 * FLOW_SCALE  # R = x
    assert round(rgb[0, 0, 1] * 255) == FLOW_CENTRE - 1 * FLOW_SCALE  # G = y
    assert round(rgb[0, 0, 2] * 255) == round(FLOW_CENTRE + np.sqrt(10) * FLOW_SCALE)  # B = magnitude


def test_round_trip_through_jpeg(tmp_path):
    rng = np.random.default_rng(0)
    flow = cv2.GaussianBlur(rng.uniform(-6, 6, (64, 64, 2)).astype(np.float32), (0, 0), 4)
    path = str(tmp_path / "flow.jpg")
    cv2.imwrite(path, encode_flow(flow), [cv2.IMWRITE_JPEG_QUALITY, 95])
    decoded = decode_flow(cv2.imread(path))
    error = np.abs(decoded - flow)
    # 1/16 px quantisation plus JPEG's chroma loss: a few grey levels at most, under one on average
    assert error.max() < 6 / FLOW_SCALE and error.mean() < 1 / FLOW_SCALE


def test_other_channel_orders():
    channels = FlowChannels.parse("yxm")
    assert (channels.x, channels.y, channels.magnitude) == (1, 2, 0)
    flow = np.full((2, 2, 2), [2.0, -3.0], np.float32)
    np.testing.assert_allclose(decode_flow(encode_flow(flow, channels), channels), flow, atol=1 / FLOW_SCALE)
    with pytest.raises(ValueError, match="permutation"):
        FlowChannels.parse("xyz")


@pytest.mark.parametrize("shift", [(3, 0), (0, -2), (2, 4)])
def test_known_translation_gives_flow_sign_and_magnitude(shift):
    dx, dy = shift
    first = _texture()
    second = np.roll(first, (dy, dx), axis=(0, 1))  # content moves right by dx, down by dy
    flow = FlowComputer("fastOF")(first, second)[30:-30, 30:-30]
    assert np.median(flow[..., 0]) == pytest.approx(dx, abs=0.2)
    assert np.median(flow[..., 1]) == pytest.approx(dy, abs=0.2)
    decoded = decode_flow(encode_flow(flow))
    assert np.median(decoded[..., 0]) == pytest.approx(dx, abs=0.2)


def test_one_flow_image_per_frame():
    frames = [np.roll(_texture(), (0, 2 * i), axis=(0, 1)) for i in range(4)]
    images = list(flow_images(frames))
    assert len(images) == 4
    np.testing.assert_array_equal(images[3], images[2])  # the last frame repeats the previous flow
    assert abs(np.median(decode_flow(images[0])[..., 0]) - 2) < 0.2
    single = list(flow_images(frames[:1]))
    assert len(single) == 1 and (single[0][..., 2] == 128).all()  # zero flow for a one-frame video
    with pytest.raises(ValueError, match="unknown flow method"):
        FlowComputer("brox")
