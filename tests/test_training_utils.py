"""Sampling, checkpoints and the device helper used by train.py."""
import numpy as np
import pytest
import torch

from utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from utils.distributed import DistInfo, all_reduce_sum, init_distributed, resolve_device
from utils.sampling import IterationBatchSampler, SeededDataset


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
    with pytest.raises(CheckpointError, match="not found: .*missing.pth"):
        load_checkpoint(tmp_path / "missing.pth")
    (tmp_path / "bad.pth").write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match="bad.pth is corrupt"):
        load_checkpoint(tmp_path / "bad.pth")
    torch.save({"model": {}}, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match="partial.pth lacks model_config"):
        load_checkpoint(tmp_path / "partial.pth")


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
