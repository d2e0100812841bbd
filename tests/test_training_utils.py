"""Sampling, checkpoints and the device helper used by train.py."""
import numpy as np
import pytest
import torch

from data.sampling import IterationBatchSampler, SeededDataset
from engine.training import build_optimizer
from utils.checkpoint import CheckpointError, checkpoint_path, latest_checkpoint, load_checkpoint, save_checkpoint
from utils.distributed import DistInfo, all_reduce_sum, init_distributed, place_model, resolve_device


def test_batches_are_a_function_of_the_iteration():
    full = list(IterationBatchSampler(10, 4, seed=5, start=0, stop=7))
    resumed = list(IterationBatchSampler(10, 4, seed=5, start=3, stop=7))
    assert resumed == full[3:]
    # one epoch is 10 // 4 = 2 batches: each epoch is a permutation prefix without repeats
    for epoch in range(3):
        indices = [i for batch in full[2 * epoch:2 * epoch + 2] for i, _ in batch]
        assert len(set(indices)) == 8 and set(indices) <= set(range(10))
    assert [i for i, _ in full[0]] != [i for i, _ in full[2]]  # a new order each epoch
    assert list(IterationBatchSampler(10, 4, seed=6, start=0, stop=1)) != full[:1]


def test_processes_split_the_same_global_batch():
    single = list(IterationBatchSampler(12, 4, seed=1, start=0, stop=5))
    halves = [list(IterationBatchSampler(12, 4, seed=1, start=0, stop=5, rank=r, world_size=2)) for r in range(2)]
    for it in range(5):
        assert halves[0][it] + halves[1][it] == single[it]  # same indices and same sample seeds
    with pytest.raises(ValueError, match="not divisible"):
        IterationBatchSampler(12, 3, seed=1, start=0, stop=1, world_size=2)
    with pytest.raises(ValueError, match="fewer than one batch"):
        IterationBatchSampler(3, 4, seed=1, start=0, stop=1)


def test_seeded_dataset_reproduces_random_augmentation():
    class Random:
        def __len__(self):
            return 3

        def __getitem__(self, index):
            return index, np.random.rand(), torch.rand(1).item()

    data = SeededDataset(Random())
    assert data[(1, 99)] == data[(1, 99)]
    assert data[(1, 99)] != data[(1, 100)]


def test_checkpoint_round_trip_and_errors(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [5])
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    path = save_checkpoint(tmp_path / "ck.pth", model=model, model_config={"width": 3}, optimizer=optimizer,
                           scheduler=scheduler, iteration=7, flags={"lr": 0.1})
    state = load_checkpoint(path)
    assert state["iteration"] == 7 and state["model_config"] == {"width": 3} and state["flags"]["lr"] == 0.1
    assert torch.equal(state["model"]["weight"], model.weight.detach())
    assert state["optimizer"]["state"][0]["momentum_buffer"].shape == (2, 3)
    assert not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(CheckpointError, match="missing.pth: no such checkpoint file"):
        load_checkpoint(tmp_path / "missing.pth")
    (tmp_path / "bad.pth").write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match="bad.pth: not a PyTorch checkpoint"):
        load_checkpoint(tmp_path / "bad.pth")
    torch.save({"model": {}}, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match="partial.pth: not a training checkpoint of this project, it lacks model_config"):
        load_checkpoint(tmp_path / "partial.pth")


def test_latest_checkpoint_is_the_highest_iteration_not_the_last_name(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    for iteration in (200, 1000, 90):
        checkpoint_path(tmp_path, iteration).write_bytes(b"")
    for ignored in ("AMTNet_best.pth", "AMTNet_2000_old.pth", ".AMTNet_2000.k3j2.tmp.pth"):  # the last: a save in progress
        (tmp_path / ignored).write_bytes(b"")
    assert checkpoint_path(tmp_path, 200).name == "AMTNet_200.pth"
    assert latest_checkpoint(tmp_path) == tmp_path / "AMTNet_1000.pth"  # "AMTNet_200" sorts after it by name


def test_single_process_device_helper(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    info = init_distributed("cpu")
    assert info == DistInfo(torch.device("cpu"), 0, 1, 0) and info.is_main and not info.distributed
    assert all_reduce_sum(3, info).item() == 3
    with pytest.raises(ValueError, match="--device"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            resolve_device("cuda")


def test_channels_last_gives_the_same_outputs_and_gradients():
    from models import ModelConfig, build_model
    torch.manual_seed(0)
    plain = build_model(ModelConfig(num_classes=3, width_mult=0.0625)).double()
    fast = build_model(ModelConfig(num_classes=3, width_mult=0.0625)).double()
    fast.load_state_dict(plain.state_dict())
    place_model(plain, torch.device("cpu"))  # default on CPU: unchanged layout
    place_model(fast, torch.device("cpu"), channels_last=True)
    first_conv = next(p for p in fast.parameters() if p.dim() == 4)
    assert first_conv.is_contiguous(memory_format=torch.channels_last)
    tested = build_model(ModelConfig(num_classes=3, width_mult=0.0625))
    place_model(tested, torch.device("cpu"), inference=True)  # test.py and demo.py: channels-last on CPU too
    assert next(p for p in tested.parameters() if p.dim() == 4).is_contiguous(memory_format=torch.channels_last)
    assert next(p for p in plain.parameters() if p.dim() == 4).is_contiguous()
    x = torch.randn(2, 2, 3, 300, 300, dtype=torch.float64)
    outputs = [m(x) for m in (plain, fast)]
    for a, b in zip(*outputs):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    for m, (loc, conf) in zip((plain, fast), outputs):
        (loc.square().sum() + conf.square().sum()).backward()
    torch.testing.assert_close(first_conv.grad, next(p for p in plain.parameters() if p.dim() == 4).grad,
                               rtol=1e-9, atol=1e-12)


def test_optimizers_keep_the_original_parameter_groups():
    from models import ModelConfig, build_model
    model = build_model(ModelConfig(num_classes=3, width_mult=0.0625))
    for name, kind in (("sgd", torch.optim.SGD), ("adam", torch.optim.Adam)):
        optimizer, scheduler = build_optimizer(model, 0.01, 0.9, 1e-4, 2, [5], 0.1, name)
        assert isinstance(optimizer, kind)
        by_name = {g["name"]: g for g in optimizer.param_groups}
        assert by_name["core_base.vgg.0.weight"]["lr"] == pytest.approx(0.005)  # backbone: lr / seq_len
        assert by_name["core_base.vgg.0.bias"]["lr"] == pytest.approx(0.01)  # and biases twice that
        assert by_name["conf.0.bias"]["weight_decay"] == 0 and by_name["conf.0.weight"]["weight_decay"] == 1e-4
        for _ in range(5):
            optimizer.step()
            scheduler.step()
        assert by_name["conf.0.weight"]["lr"] == pytest.approx(0.001)
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        build_optimizer(model, 0.01, 0.9, 1e-4, 2, [5], 0.1, "rmsprop")
