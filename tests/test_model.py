"""AMTNet shapes, fidelity to the original's explicit-gather formulation, devices, overfitting."""
from pathlib import Path

import pytest
import torch

from layers import MultiBoxLoss
from models import ModelConfig, build_model
from models.weights import load_original_amtnet
from models.reference import ReferenceAMTNet

SMALL = 1 / 16  # width multiplier: same head arithmetic, cheap backbone


def _randomise(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            scale = 0.1 if p.dim() > 1 else 0.05
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)


def _inputs(cfg, batch, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    size = (batch, cfg.seq_len)
    base = torch.rand(*size, 3 * cfg.input_frames_base, 300, 300, generator=g, dtype=dtype)
    extra = torch.rand(*size, 3 * cfg.input_frames_extra, 300, 300, generator=g, dtype=dtype) if cfg.two_stream else None
    return base, extra


def _rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def test_full_size_shapes_priors_heads_and_fidelity_float32():
    cfg = ModelConfig(num_classes=25)
    model = build_model(cfg).eval()
    assert model.priors.shape == (8732, 4)
    assert [l.in_features for l in model.loc] == [d * 9 * 2 for d in (512, 1024, 512, 256, 256, 256)]
    assert [l.out_features for l in model.loc] == [n * 4 * 2 for n in (4, 6, 6, 6, 4, 4)]
    assert [l.out_features for l in model.conf] == [n * 25 for n in (4, 6, 6, 6, 4, 4)]
    assert all(torch.all(l.bias == 0) for l in (*model.loc, *model.conf))
    ref = ReferenceAMTNet(cfg)
    missing, unexpected = ref.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and all("featPool" in k for k in missing)
    x = torch.rand(1, 2, 3, 300, 300)
    with torch.no_grad():
        loc, conf = model(x)
        conf_ref, loc_ref = ref([x])
    assert loc.shape == (1, 8732, 8) and conf.shape == (1, 8732, 25)
    assert torch.isfinite(loc).all() and torch.isfinite(conf).all()
    assert _rel_err(loc, loc_ref) < 1e-4 and _rel_err(conf, conf_ref) < 1e-4


def test_config_round_trip_and_errors():
    cfg = ModelConfig(num_classes=25, fusion_type="cat", seq_len=3, width_mult=0.5)
    assert cfg.fusion_type == "CAT"  # the original accepts either case
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="fusion_type"):
        ModelConfig(num_classes=25, fusion_type="max")
    with pytest.raises(ValueError, match="unknown fields"):
        ModelConfig.from_dict({**cfg.to_dict(), "kd": 3})
    with pytest.raises(ValueError, match="image_size"):
        ModelConfig(num_classes=25, image_size=512)


@pytest.mark.parametrize("fusion_type,seq_len,feat_fusion", [
    ("NONE", 2, "cat"), ("SUM", 2, "cat"), ("CAT", 2, "cat"), ("MEAN", 2, "cat"),
    ("NONE", 3, "cat"), ("CAT", 3, "cat"), ("NONE", 2, "mul"), ("SUM", 3, "mean"), ("CAT", 2, "sum"),
])
def test_fidelity_to_gather_formulation_float64(fusion_type, seq_len, feat_fusion):
    cfg = ModelConfig(num_classes=6, seq_len=seq_len, fusion_type=fusion_type, feat_fusion=feat_fusion,
                      input_frames_extra=2, width_mult=SMALL)
    ref = ReferenceAMTNet(cfg).double()
    _randomise(ref, seed=seq_len)
    model = build_model(cfg).double()
    load_original_amtnet(model, ref.state_dict())
    base, extra = _inputs(cfg, 2, torch.float64)
    with torch.no_grad():
        conf_ref, loc_ref = ref([base, extra])
        loc, conf = model(base, extra)
    assert loc.shape == loc_ref.shape == (2, 8732, 4 * seq_len)
    assert conf.shape == conf_ref.shape == (2, 8732, 6)
    assert conf_ref.abs().max() > 1e-3  # a non-trivial function
    assert _rel_err(loc, loc_ref) < 1e-5 and _rel_err(conf, conf_ref) < 1e-5


def test_fidelity_float32_and_gradients():
    cfg = ModelConfig(num_classes=4, fusion_type="CAT", input_frames_extra=2, width_mult=SMALL)
    ref = ReferenceAMTNet(cfg)
    _randomise(ref, seed=7)
    model = build_model(cfg)
    load_original_amtnet(model, ref.state_dict())
    base, extra = _inputs(cfg, 1, torch.float32)
    conf_ref, loc_ref = ref([base, extra])
    loc, conf = model(base, extra)
    assert _rel_err(loc, loc_ref) < 1e-4 and _rel_err(conf, conf_ref) < 1e-4
    (loc_ref.square().sum() + conf_ref.square().sum()).backward()
    (loc.square().sum() + conf.square().sum()).backward()
    for name in ("loc.1.weight", "conf.0.weight", "core_extra.vgg.0.weight"):
        g_ref = ref.get_parameter(name).grad
        assert _rel_err(model.get_parameter(name).grad, g_ref) < 1e-3, name


def test_model_follows_the_device_and_dtype_it_is_given():
    cfg = ModelConfig(num_classes=3, fusion_type="SUM", input_frames_extra=2, width_mult=SMALL)
    model = build_model(cfg).to(device="meta")
    assert model.priors.device.type == "meta"
    loc, conf = model(torch.empty(2, 2, 3, 300, 300, device="meta"), torch.empty(2, 2, 6, 300, 300, device="meta"))
    assert loc.device.type == "meta" and loc.shape == (2, 8732, 8) and conf.shape == (2, 8732, 3)
    assert build_model(cfg).double().priors.dtype == torch.float64
    root = Path(__file__).resolve().parents[1]
    for pkg in ("models", "layers"):
        for f in (root / pkg).glob("*.py"):
            assert ".cuda(" not in f.read_text(), f


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_model_and_loss_on_cuda():
    cfg = ModelConfig(num_classes=3, width_mult=SMALL)
    model = build_model(cfg).to("cuda")
    loc, conf = model(torch.rand(1, 2, 3, 300, 300, device="cuda"))
    crit = MultiBoxLoss(model.priors).to("cuda")
    loss_l, loss_c = crit(loc, conf, [{"boxes": torch.tensor([[[0.1, 0.1, 0.5, 0.6]] * 2], device="cuda"),
                                       "labels": torch.tensor([1], device="cuda")}])
    assert loss_l.device.type == "cuda" and torch.isfinite(loss_l + loss_c)


def test_bad_input_shapes_are_named():
    model = build_model(ModelConfig(num_classes=3, fusion_type="CAT", width_mult=SMALL))
    with pytest.raises(ValueError, match="base must have shape"):
        model(torch.rand(1, 3, 3, 300, 300))
    with pytest.raises(ValueError, match="extra must have shape"):
        model(torch.rand(1, 2, 3, 300, 300), torch.rand(1, 2, 3, 300, 300))


def test_small_model_overfits_one_batch():
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=3, width_mult=1 / 32))
    crit = MultiBoxLoss(model.priors)
    base = torch.rand(1, 2, 3, 300, 300)
    targets = [{"boxes": torch.tensor([[[0.5, 0.5, 0.9, 0.8], [0.5, 0.45, 0.9, 0.75]],
                                       [[0.05, 0.05, 0.3, 0.3], [0.05, 0.1, 0.3, 0.35]]]),
                "labels": torch.tensor([2, 1])}]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(130):
        loss_l, loss_c = crit(*model(base), targets)
        loss = loss_l + loss_c
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[0] > 5.0
    assert sum(losses[-10:]) / 10 < 0.05, losses[-10:]


def test_test_time_head_weights_follow_every_change_of_the_parameters():
    """Without autograd the heads' conv weights are derived once and reused (models/heads.py head_conv):
    outputs equal the freshly derived ones after an in-place change, load_state_dict, a dtype change."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=3, width_mult=0.0625)).eval()
    x = torch.randn(1, 2, 3, 300, 300)

    def check():
        with torch.no_grad():
            cached = model(x)
        fresh = model(x)  # autograd on: derived again, nothing kept
        for a, b in zip(cached, fresh):
            torch.testing.assert_close(a, b.detach(), rtol=0, atol=0)
        return cached

    first = check()
    with torch.no_grad():
        model.conf[0].weight.mul_(2)
    changed = check()
    assert not torch.equal(first[1], changed[1])
    other = build_model(ModelConfig(num_classes=3, width_mult=0.0625))
    model.load_state_dict(other.state_dict())
    check()
    model.double()
    x = x.double()
    assert check()[0].dtype == torch.float64
