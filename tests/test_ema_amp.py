"""The weight average (--ema) and bfloat16 autocast on the CPU (--amp true)."""
import pytest
import torch
from torch import nn

from engine.training import WeightAverage, autocast_dtype, build_optimizer, train_step
from layers.loss import MultiBoxLoss
from models import ModelConfig, build_model
from tests.test_train import train
from utils.checkpoint import load_checkpoint


def test_weight_average_by_hand():
    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    average = WeightAverage(model, decay=0.5)
    for w in (2.0, 4.0, 8.0):
        model[0].weight.data.fill_(w)
        model[1].running_mean.fill_(10 * w)
        average.update(model)
    # The first update copies (2); then the decay is min(0.5, (1 + n) / (10 + n)) after n updates:
    # n = 1: 2 * 2/11 + 4 * 9/11 = 40/11; n = 2: 40/11 * 3/12 + 8 * 9/12 = 10/11 + 6 = 76/11.
    assert average.updates == 3
    assert average.module[0].weight.item() == pytest.approx(76 / 11)
    assert average.module[1].running_mean.item() == pytest.approx(760 / 11)  # batch-norm statistics averaged too
    assert model[0].weight.item() == 8.0  # the raw model is left alone


def test_weight_average_decay_caps_the_warm_up():
    model = nn.Linear(1, 1, bias=False)
    average = WeightAverage(model, decay=0.9, updates=1000)  # resumed: the warm-up is over
    model.weight.data.fill_(1.0)
    average.module.weight.data.fill_(0.0)
    average.update(model)
    assert average.module.weight.item() == pytest.approx(0.1)


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(2, 2, 3, 300, 300, generator=g)
    boxes = torch.tensor([[[0.1, 0.1, 0.5, 0.6], [0.12, 0.1, 0.52, 0.6]]])
    return {"images": {"base": images},
            "targets": [{"boxes": boxes, "labels": torch.tensor([1])}, {"boxes": boxes, "labels": torch.tensor([2])}]}


def test_bfloat16_autocast_on_cpu_runs_the_convolutions_in_bfloat16():
    assert autocast_dtype(torch.device("cpu"), True) == torch.bfloat16
    assert autocast_dtype(torch.device("cuda"), True) == torch.float16
    assert autocast_dtype(torch.device("cpu"), False) is None
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=3, width_mult=0.0625, norm="batch")).to(memory_format=torch.channels_last)
    dtypes = []
    model.core_base.vgg[0][0].register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    optimizer, scheduler = build_optimizer(model, 0.001, 0.9, 0.0, 2, (), 0.1, "adam")
    criterion = MultiBoxLoss(model.priors)
    before = model.core_base.vgg[0][0].weight.detach().clone()
    loss_l, loss_c = train_step(model, criterion, _batch(), optimizer, scheduler, torch.device("cpu"), 1,
                                amp_dtype=torch.bfloat16)
    assert dtypes == [torch.bfloat16]
    assert model.core_base.vgg[0][0].weight.dtype == torch.float32  # the weights stay float32
    assert torch.isfinite(torch.tensor([loss_l, loss_c])).all() and loss_c > 0
    assert not torch.equal(before, model.core_base.vgg[0][0].weight)
    dtypes.clear()
    train_step(model, criterion, _batch(1), optimizer, scheduler, torch.device("cpu"), 2)
    assert dtypes == [torch.float32]  # off by default


def test_ema_checkpoints_hold_the_average_and_resume_exactly(toy_root, tmp_path):
    args = ("--max_iter", "4", "--val_step", "2", "--ema", "0.9", "--norm", "batch")
    result, full = train(toy_root, tmp_path, *args, exp="full")
    assert result.returncode == 0, result.stderr
    state = load_checkpoint(full / "AMTNet_4.pth")
    assert state["ema_updates"] == 4
    assert state["train_model"].keys() == state["model"].keys()
    assert not torch.equal(state["train_model"]["conf.0.weight"], state["model"]["conf.0.weight"])
    result, resumed = train(toy_root, tmp_path, *args, "--resume", str(full / "AMTNet_2.pth"), exp="resumed")
    assert result.returncode == 0, result.stderr
    again = load_checkpoint(resumed / "AMTNet_4.pth")
    for key in ("model", "train_model"):
        for name, value in state[key].items():
            assert torch.equal(value, again[key][name]), (key, name)
    # --ema must be given again to resume an averaged run (and not given for a plain one)
    result, _ = train(toy_root, tmp_path, "--max_iter", "4", "--val_step", "2", "--norm", "batch",
                      "--resume", str(full / "AMTNet_2.pth"), exp="plain")
    assert result.returncode != 0 and "--ema" in result.stderr
