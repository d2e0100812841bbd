"""One backbone pass per frame (engine/frame_cache.py): the cached path gives the plain path's
outputs, to float rounding, on the model, on test.py's windows of a dataset video and on demo.py's
online windows, for one-stream and two-stream models; and it runs the backbone once per frame."""
import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from data import layout
from data.annotations import read_video_list
from data.dataset import ActionDetection, DataConfig, collate
from data.windows import candidate_starts
from engine.frame_cache import FeatureMapCache
from engine.inference import batch_inputs, detect_videos, run_windows
from engine.online import OnlineDetector, StreamSpec
from models import ModelConfig, build_model
from tubes.detections import read_video_detections

TINY = dict(num_classes=5, width_mult=0.0625)
MODELS = {"rgb": dict(), "rgb+fastOF CAT": dict(fusion_type="CAT", input_frames_extra=3),
          "rgb+fastOF SUM": dict(fusion_type="SUM", input_frames_extra=3)}


def tiny_model(**kwargs):
    torch.manual_seed(5)
    return build_model(ModelConfig(**TINY, **kwargs)).eval()


@pytest.mark.parametrize("kind", MODELS)
def test_forward_maps_of_feature_maps_equals_forward(kind):
    model = tiny_model(**MODELS[kind])
    cfg = model.cfg
    g = torch.Generator().manual_seed(0)
    base = torch.rand(2, 2, 3, 300, 300, generator=g)
    extra = torch.rand(2, 2, 3 * cfg.input_frames_extra, 300, 300, generator=g) if cfg.two_stream else None
    with torch.no_grad():
        want = model(base, extra)
        maps = [[m.view(2, 2, *m.shape[1:]) for m in model.feature_maps(x.flatten(0, 1), s)]
                for s, x in (("base", base), ("extra", extra)) if x is not None]
        got = model.forward_maps(*maps)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="six base maps"):
        model.forward_maps(maps[0][:5], *maps[1:])
    if not cfg.two_stream:
        with pytest.raises(ValueError, match="no 'extra' stream"):
            model.feature_maps(base[0], "extra")


@pytest.mark.parametrize("kind", ["rgb", "rgb+fastOF CAT"])
def test_test_py_windows_cached_equal_plain(toy_root, kind):
    """test.py's windows of a toy test video, in batches of 3, as detect_videos runs them."""
    model = tiny_model(**MODELS[kind])
    cfg = DataConfig(dataset="toy", data_root=str(toy_root), input_type_extra="fastOF", two_stream=model.cfg.two_stream,
                     input_frames_extra=model.cfg.input_frames_extra)
    dataset = ActionDetection(cfg, "test", full_test=True)
    video = dataset.windows[0].video_index
    first = [i for i, w in enumerate(dataset.windows) if w.video_index == video][:8]
    loader = DataLoader(torch.utils.data.Subset(dataset, first), batch_size=3, collate_fn=collate)
    cache = FeatureMapCache(model)
    frames = set()
    with torch.no_grad():
        for batch in loader:
            base, extra, _ = batch_inputs(batch, torch.device("cpu"))
            got, want = run_windows(model, cache, base, extra, batch), run_windows(model, None, base, extra, batch)
            for a, b in zip(got, want):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
            frames |= {(v, int(f)) for v, fs in zip(batch["video_indices"], batch["frames"]) for f in fs}
    streams = 2 if model.cfg.two_stream else 1
    assert cache.backbone_runs == streams * len(frames) < streams * 2 * len(first) * 0.8  # ~half the plain path's


def toy_frames(toy_root):
    video = read_video_list(layout.split_path(toy_root, "testlist01.txt"))[0]
    return [cv2.imread(str(p)) for p in sorted(layout.video_dir(toy_root, "rgb", video).glob("*.jpg"))]


def online(model, spec, frames, frame_cache):
    detector = OnlineDetector(model, spec, torch.device("cpu"), frame_cache)
    out = [d for image in frames for d in detector.push(image)] + detector.finish()
    return out, detector


@pytest.mark.parametrize("kind", ["rgb", "rgb+fastOF SUM"])
def test_online_cached_equals_plain(toy_root, kind):
    model = tiny_model(**MODELS[kind])
    streams = {"base": ("rgb", 1)}
    if model.cfg.two_stream:
        streams["extra"] = ("fastOF", model.cfg.input_frames_extra)
    frames = toy_frames(toy_root)[:13]  # windows (0, 2) ... (8, 10) and the last one, (10, 12)
    spec = StreamSpec(streams)
    got, detector = online(model, spec, frames, True)
    want, _ = online(model, spec, frames, False)
    assert [f for f, _, _ in got] == [f for f, _, _ in want] == list(range(len(frames)))
    for (_, loc_a, scores_a), (_, loc_b, scores_b) in zip(got, want):
        np.testing.assert_allclose(loc_a, loc_b, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(scores_a, scores_b, rtol=1e-4, atol=1e-5)
    # test.py's windows (0, 2), (2, 4), ... and the last one: the backbone ran once on each of their frames
    starts = candidate_starts(len(frames), 2, 1, 2, full_test=True)
    distinct = {int(s + o) for s in starts for o in (0, 2)}
    assert detector.cache.backbone_runs == len(streams) * len(distinct) < len(streams) * 2 * len(starts) * 0.8


def test_detect_videos_files_with_and_without_the_cache(toy_root, tmp_path):
    """test.py's detect_videos on a toy test video: the cached run (the default) writes the detections and
    frame-mAP of the plain run (test.py --no-frame_cache)."""
    model = tiny_model()
    dataset = ActionDetection(DataConfig(dataset="toy", data_root=str(toy_root)), "test", full_test=True)
    mine = [i for i, w in enumerate(dataset.windows) if w.video_index == dataset.windows[0].video_index]
    results = {}
    for name, cached in (("cached", True), ("plain", False)):
        loader = DataLoader(torch.utils.data.Subset(dataset, mine), batch_size=4, collate_fn=collate)
        results[name] = detect_videos(model, loader, dataset, torch.device("cpu"), tmp_path / name, window_indices=mine,
                                      frame_cache=cached)[0].compute()[0]
    assert results["cached"] == pytest.approx(results["plain"], abs=1e-6)
    video = dataset.videos[dataset.windows[0].video_index]
    got, want = (read_video_detections(tmp_path / name / f"{video}.npz") for name in ("cached", "plain"))
    np.testing.assert_array_equal(got.frames, want.frames)
    np.testing.assert_array_equal(got.window, want.window)
    np.testing.assert_allclose(got.boxes, want.boxes, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-4, atol=1e-5)
