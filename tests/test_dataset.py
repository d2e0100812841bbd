"""ActionDetection samples, frame stacking, collate and bad input, on a tiny dataset written here."""
import pickle

import cv2
import numpy as np
import pytest
import torch

from data import layout
from data.annotations import Tube, VideoAnnotation, to_pyannot_entry
from data.dataset import ActionDetection, DataConfig, FrameError, collate
from data.transforms import TrainTransform
from models.config import two_stream

MEANS = np.array([104, 117, 123], np.float32)
SIZE = 32  # network input side in these tests
NUM_FRAMES = {"Alpha/v_a1": 8, "Beta/v_b1": 8, "Alpha/v_a2": 7}
FLOW = "fastOF"


def rgb_value(frame):
    """Constant B, G, R value of rgb frame ``frame`` (0-based)."""
    return np.array([10 * frame + 20, 10 * frame + 30, 10 * frame + 40], np.float32)


def flow_value(frame):
    return np.array([200 - 10 * frame, 150, 100 + 10 * frame], np.float32)


def write_dataset(root):
    """Three 320x240 videos of constant frames; tubes as in ``TUBES``; Alpha/v_a2 is the test video."""
    for name, numf in NUM_FRAMES.items():
        for f in range(numf):
            for kind, value in (("rgb", rgb_value(f)), (FLOW, flow_value(f))):
                path = layout.frame_path(root, kind, name, f)
                path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(path), np.full((240, 320, 3), value, np.uint8))
    box = np.array([[31, 23, 95, 119]], np.float32)  # 0-based x1, y1, x2, y2
    videos = {
        "Alpha/v_a1": VideoAnnotation("Alpha/v_a1", 8, 0, [Tube(0, 0, np.repeat(box, 8, 0))]),
        "Beta/v_b1": VideoAnnotation("Beta/v_b1", 8, 1, [Tube(1, 2, np.repeat(box + 10, 4, 0))]),
        "Alpha/v_a2": VideoAnnotation("Alpha/v_a2", 7, 0, [Tube(0, 1, np.repeat(box, 5, 0))]),
    }
    split_dir = root / layout.SPLIT_DIR
    split_dir.mkdir()
    with open(split_dir / layout.ANNOT_FILE, "wb") as f:
        pickle.dump({n: to_pyannot_entry(v) for n, v in videos.items()}, f, protocol=2)
    (split_dir / "trainlist01.txt").write_text("Alpha/v_a1\nBeta/v_b1\n")
    return root


@pytest.fixture
def root(tmp_path):
    return write_dataset(tmp_path)


def config(root, **kw):
    kw = {"dataset": "ucf24", "data_root": str(root), "image_size": SIZE, "input_type_extra": FLOW, **kw}
    return DataConfig(**kw)


def network_value(bgr):
    """What a constant frame becomes: mean subtracted, channels reversed."""
    return (bgr - MEANS)[::-1]


def test_test_sample_stacks_frames_and_normalises_boxes(root):
    cfg = config(root, two_stream=True, input_frames_extra=3, seq_len=2, eval_gap=1)
    data = ActionDetection(cfg, "test", full_test=True)
    assert data.num_classes == 2 and data.classes == ["Alpha", "Beta"]
    # numf 7, eval_gap 1: step 2, starts 0, 2 (arange(0, 7 - 3, 2)) and numf - step - 1 = 4.
    assert [w.frames.tolist() for w in data.windows] == [[0, 2], [2, 4], [4, 6]]
    sample = data[2]
    assert sample["video"] == "Alpha/v_a2" and sample["video_index"] == 1 and sample["size"] == (240, 320)
    assert sample["frames"].tolist() == [4, 6] and sample["frames"].dtype == torch.int64
    base, extra = sample["images"]["base"], sample["images"]["extra"]
    assert base.shape == (2, 3, SIZE, SIZE) and extra.shape == (2, 9, SIZE, SIZE) and base.dtype == torch.float32
    for t, frame in enumerate([4, 6]):
        assert np.allclose(base[t].mean(dim=(1, 2)).numpy(), network_value(rgb_value(frame)), atol=2)
    # Stacks of 3 centred on 4 -> 3, 4, 5; on 6 (last frame) -> the last three, 4, 5, 6.
    for t, stack in enumerate([[3, 4, 5], [4, 5, 6]]):
        got = extra[t].mean(dim=(1, 2)).numpy().reshape(3, 3)
        assert np.allclose(got, [network_value(flow_value(f)) for f in stack], atol=2)
    # The tube spans frames 1..5: [2, 4] holds it; [0, 2] and [4, 6] see it half, so have no targets.
    assert data[1]["boxes"].shape == (1, 2, 4) and data[1]["labels"].tolist() == [1]
    for empty in (data[0], sample):
        assert empty["boxes"].shape == (0, 2, 4) and empty["labels"].shape == (0,)


def test_target_boxes_are_normalised_pixels_and_labels_shifted(root):
    data = ActionDetection(config(root, seq_len=2), "train", augment=False)
    sample = next(data[i] for i, w in enumerate(data.windows) if data.videos[w.video_index] == "Beta/v_b1")
    assert sample["labels"].tolist() == [2]  # class 1 -> label 2 (0 is background)
    expected = np.array([41 / 320, 33 / 240, 105 / 320, 129 / 240], np.float32)
    assert sample["boxes"].shape == (1, 2, 4)
    assert np.allclose(sample["boxes"].numpy(), expected, atol=1e-6)


def test_training_samples_and_collate(root):
    cfg = config(root, two_stream=True, input_frames_extra=5, seq_len=2)
    data = ActionDetection(cfg, "train", seed=7)
    assert isinstance(data.transform, TrainTransform)
    first = data[3]
    again = ActionDetection(cfg, "train", seed=7)[3]
    assert torch.equal(first["images"]["extra"], again["images"]["extra"])  # seeded augmentation
    assert torch.equal(first["boxes"], again["boxes"])
    loader = torch.utils.data.DataLoader(data, batch_size=3, collate_fn=collate)
    batch = next(iter(loader))
    assert batch["images"]["base"].shape == (3, 2, 3, SIZE, SIZE)
    assert batch["images"]["extra"].shape == (3, 2, 15, SIZE, SIZE)
    assert batch["frames"].shape == (3, 2) and len(batch["targets"]) == 3 and len(batch["videos"]) == 3
    for target in batch["targets"]:
        boxes = target["boxes"]
        assert boxes.shape[1:] == (2, 4) and len(target["labels"]) == len(boxes) >= 1
        assert torch.all((boxes >= 0) & (boxes <= 1)) and torch.all(boxes[..., 2:] > boxes[..., :2])


def test_collate_mixes_empty_and_full_targets(root):
    data = ActionDetection(config(root), "test", full_test=True)
    batch = collate([data[i] for i in range(len(data))])
    assert "extra" not in batch["images"]
    assert [len(t["labels"]) for t in batch["targets"]] == [len(w.class_ids) for w in data.windows]
    assert 0 in [len(t["labels"]) for t in batch["targets"]] and 1 in [len(t["labels"]) for t in batch["targets"]]


def test_each_distinct_frame_is_decoded_once(root, monkeypatch):
    reads = []
    imread = cv2.imread
    monkeypatch.setattr(cv2, "imread", lambda path, *a: reads.append(path) or imread(path, *a))
    data = ActionDetection(config(root, two_stream=True, input_frames_extra=5), "train", augment=False)
    index = next(i for i, w in enumerate(data.windows)
                 if data.videos[w.video_index] == "Alpha/v_a1" and w.frames.tolist() == [2, 3])
    reads.clear()
    data[index]
    # rgb 2, 3; flow stacks 0..4 and 1..5 share four frames: six distinct flow frames.
    assert len(reads) == len(set(reads)) == 8
    assert sum(FLOW in p for p in reads) == 6


def test_missing_frame_error_names_video_frame_and_file(root):
    missing = layout.frame_path(root, "rgb", "Alpha/v_a1", 3)
    missing.unlink()
    data = ActionDetection(config(root), "train", augment=False)
    index = next(i for i, w in enumerate(data.windows) if data.videos[w.video_index] == "Alpha/v_a1" and 3 in w.frames)
    with pytest.raises(FrameError, match=r"'Alpha/v_a1': frame 4 of rgb is missing: .*00004\.jpg"):
        data[index]
    with pytest.raises(FrameError, match=str(missing)):
        ActionDetection(config(root, check_data=True), "train")


def test_unreadable_frame_error(root):
    bad = layout.frame_path(root, FLOW, "Alpha/v_a2", 0)
    bad.write_bytes(b"not a jpeg")
    data = ActionDetection(config(root, two_stream=True, input_frames_extra=1), "test", full_test=True)
    with pytest.raises(FrameError, match=rf"frame 1 of {FLOW} cannot be decoded: {bad}"):
        data[0]


def test_bad_configuration_stops_with_a_message(root):
    with pytest.raises(ValueError, match="unknown dataset 'ucf101'"):
        ActionDetection(config(root, dataset="ucf101"), "train")
    (root / layout.SPLIT_DIR / "trainlist01.txt").write_text("Gamma/v_unknown\n")
    with pytest.raises(ValueError, match="train split .* has no annotated videos"):
        ActionDetection(config(root), "train")
    with pytest.raises(ValueError, match="unknown fusion_type"):
        two_stream("concat")
    assert two_stream("CAT") and not two_stream("NONE") and two_stream("cat")
