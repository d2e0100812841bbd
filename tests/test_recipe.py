"""The from-scratch training recipe: backbone normalisation, learning-rate schedule, the
validation split of the training videos and choosing the checkpoint by validation."""
import math
import re

import numpy as np
import pytest
import torch

from data.annotations import DatasetAnnotations, Tube, VideoAnnotation
from models import ModelConfig, build_model
from utils.checkpoint import best_checkpoint, checkpoint_path, record_validation
from engine.training import build_optimizer, lr_factor


def test_lr_factor_warmup_cosine_and_steps_by_hand():
    # warm-up: (it + 1) / warmup
    assert lr_factor(0, 100, 4, "cosine") == 0.25
    assert lr_factor(3, 100, 4, "cosine") == 1.0
    # cosine over the 96 steps after warm-up: 1 at the start, 1/2 halfway, 0 at the end and after
    assert lr_factor(4, 100, 4, "cosine") == 1.0
    assert lr_factor(52, 100, 4, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, 4, "cosine") == pytest.approx(0.0)
    assert lr_factor(28, 100, 4, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 24 / 96)))
    # step: gamma per passed step value, after an optional warm-up
    assert [lr_factor(i, 100, 0, "step", (3, 5), 0.1) for i in (0, 2, 3, 4, 5, 9)] == \
        pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    assert lr_factor(1, 100, 2, "step", (3,), 0.1) == 1.0


def test_scheduler_follows_lr_factor_per_group():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    optimizer, scheduler = build_optimizer(model, 0.01, 0.9, 0.0, 2, [], 0.1, "adam", "cosine", max_iter=10,
                                           warmup_iters=2)
    seen = []
    for _ in range(10):
        seen.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    for it, lrs in enumerate(seen):
        # the weight at lr, the bias at 2 x lr (the original's groups)
        assert lrs == pytest.approx([0.01 * lr_factor(it, 10, 2, "cosine"), 0.02 * lr_factor(it, 10, 2, "cosine")])
    # without warm-up the original's MultiStepLR is kept
    _, plain = build_optimizer(model, 0.01, 0.9, 0.0, 2, [5], 0.1)
    assert isinstance(plain, torch.optim.lr_scheduler.MultiStepLR)


def _annotations(per_class):
    videos, train = {}, []
    for c, n in enumerate(per_class):
        for k in range(n):
            name = f"C{c}/v_{k:02d}"
            videos[name] = VideoAnnotation(name, 10, c, [Tube(c, 0, np.zeros((10, 4), np.float32))])
            train.append(name)
    videos["C0/test"] = VideoAnnotation("C0/test", 10, 0, [])
    return DatasetAnnotations(["C0", "C1", "C2"], videos, sorted(train), ["C0/test"])


def test_hold_out_takes_spread_videos_of_every_class_and_keeps_one_to_train():
    ann = _annotations([6, 2, 1])
    held = ann.hold_out(0.2)
    # class 0: ceil(1.2) = 2 of 6, evenly spread inside the sorted list (not the ends); class 1: 1 of 2;
    # class 2: its only video stays in training
    assert held.val_videos == ["C0/v_02", "C0/v_03", "C1/v_00"]
    assert set(held.val_videos).isdisjoint(held.train_videos)
    assert sorted(held.val_videos + held.train_videos) == ann.train_videos
    assert "C2/v_00" in held.train_videos
    assert held.test_videos == ann.test_videos and held.split_videos("val") == held.val_videos
    assert ann.hold_out(0.0).val_videos == [] and ann.split_videos("val") == []
    with pytest.raises(ValueError, match="validation fraction"):
        ann.hold_out(1.0)
    with pytest.raises(ValueError, match="split must be one of"):
        ann.split_videos("dev")


def test_norm_option_adds_layers_without_moving_the_original_names():
    plain = build_model(ModelConfig(num_classes=3, width_mult=0.05))
    batch = build_model(ModelConfig(num_classes=3, width_mult=0.05, norm="batch"))
    group = build_model(ModelConfig(num_classes=3, width_mult=0.05, norm="group"))
    names = set(plain.state_dict())
    assert "core_base.vgg.0.weight" in names and "core_base.extras.0.weight" in names  # the original's keys
    # each convolution sits at the same index, followed by its normalisation
    conv_keys = {re.sub(r"^(core_base\.(?:vgg|extras)\.\d+)\.0\.", r"\1.", k) for k in batch.state_dict()
                 if not re.match(r"^core_base\.(?:vgg|extras)\.\d+\.1\.", k)}
    assert conv_keys == names
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in plain.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in batch.modules()) == convs
    assert sum(isinstance(m, torch.nn.GroupNorm) for m in group.modules()) == convs
    x = torch.rand(2, 2, 3, 300, 300)
    for model in (plain, batch, group):
        loc, conf = model.eval()(x)
        assert loc.shape == (2, 8732, 8) and conf.shape == (2, 8732, 3)
    # checkpoints written before the option rebuild the original network
    old = plain.cfg.to_dict()
    del old["norm"]
    assert ModelConfig.from_dict(old).norm == "none"
    with pytest.raises(ValueError, match="norm"):
        ModelConfig(num_classes=3, norm="layer")


def test_best_checkpoint_by_validation(tmp_path):
    assert best_checkpoint(tmp_path) is None
    for it in (100, 200, 300):
        checkpoint_path(tmp_path, it).write_bytes(b"x")
    assert best_checkpoint(tmp_path) == checkpoint_path(tmp_path, 300)  # nothing validated: the latest
    for it, score in ((100, 0.4), (200, 0.7), (300, 0.6)):
        record_validation(tmp_path, it, score)
    assert best_checkpoint(tmp_path) == checkpoint_path(tmp_path, 200)
    record_validation(tmp_path, 300, 0.7)  # a tie goes to the later one
    assert best_checkpoint(tmp_path) == checkpoint_path(tmp_path, 300)
    checkpoint_path(tmp_path, 300).unlink()  # a validated checkpoint that is gone is not chosen
    assert best_checkpoint(tmp_path) == checkpoint_path(tmp_path, 200)


def test_link_score_ends_paths_where_the_class_scores_drop():
    from tubes.linking import link_frames, linking_filter
    # One box that stays put for 20 frames: class 1 scores 0.9 for 10 frames, then 0.05 (as a
    # detector trained for minutes scores the background where an actor was).
    loc = np.array([[0.2, 0.2, 0.5, 0.8]], np.float64)
    frames = [(loc, np.array([[1 - s - 0.01, s, 0.01]])) for s in [0.9] * 10 + [0.05] * 10]
    paths, _ = link_frames(frames, 2)  # actionPaths.m's 0.001: the path runs to the end
    assert [(p.start, len(p.boxes)) for p in paths[0]] == [(0, 20)]
    paths, _ = link_frames(frames, 2, link_score=0.1)
    assert [(p.start, len(p.boxes)) for p in paths[0]] == [(0, 10)]
    assert paths[1] == []  # class 2 at 0.01 is below 0.1 everywhere
    with pytest.raises(ValueError, match="minimum class score"):
        linking_filter(1.0)


def test_background_prior_flag_takes_a_probability_or_none():
    from engine.cli import train_args
    parser = train_args()
    assert parser.parse_args([]).background_prior is None  # the original's zero biases
    assert parser.parse_args(["--background_prior", "0.99"]).background_prior == 0.99
    assert parser.parse_args(["--background_prior", "None"]).background_prior is None
    for bad in ("1", "0", "x"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--background_prior", bad])


def test_train_stage_tests_the_best_or_the_last_checkpoint(tmp_path):
    from engine.stages import train_stage
    for it, score in ((100, 0.4), (200, 0.7), (300, 0.6)):
        checkpoint_path(tmp_path, it).write_bytes(b"x")
        record_validation(tmp_path, it, score)
    assert train_stage(None, [], tmp_path, 300, run=False) == checkpoint_path(tmp_path, 200)
    assert train_stage(None, [], tmp_path, 300, run=False, choose="last") == checkpoint_path(tmp_path, 300)
    with pytest.raises(FileNotFoundError, match="no trained model"):
        train_stage(None, [], tmp_path / "empty", 300, run=False, choose="last")
