"""Loading the original AMTNet's checkpoints, this project's checkpoints and pretrained backbones."""
import pytest
import torch
import torchvision

from models import ModelConfig, build_model
from models.backbone import SSDCore
from models.reference import ReferenceAMTNet
from models.weights import convert_torchvision_vgg16, load_backbone, load_model, load_original_amtnet
from utils.checkpoint import CheckpointError, save_checkpoint

SMALL = 1 / 16


def _randomise(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def _original_state(cfg, seed=0):
    """A state dict in the original's layout (as DataParallel saves it: 'module.' prefix)."""
    ref = ReferenceAMTNet(cfg)
    _randomise(ref, seed)
    return ref, {f"module.{k}": v for k, v in ref.state_dict().items()}


def test_original_checkpoint_loads_and_reproduces_outputs():
    cfg = ModelConfig(num_classes=5, fusion_type="CAT", input_frames_extra=5, width_mult=SMALL)
    ref, sd = _original_state(cfg)
    assert "module.core_base.featPool0.ffm_index" in sd
    assert "module.core_extra.featPool5.spatial_pool.counts" in sd
    assert "module.core_base.L2Norm.weight" in sd and "module.loc.5.weight" in sd
    model = load_model(sd, cfg=cfg)
    base, extra = torch.rand(1, 2, 3, 300, 300), torch.rand(1, 2, 15, 300, 300)
    with torch.no_grad():
        conf_ref, loc_ref = ref([base, extra])
        loc, conf = model(base, extra)
    assert torch.allclose(loc, loc_ref, rtol=1e-4, atol=1e-5 * loc_ref.abs().max().item())
    assert torch.allclose(conf, conf_ref, rtol=1e-4, atol=1e-5 * conf_ref.abs().max().item())


def test_original_checkpoint_problems_are_listed():
    cfg = ModelConfig(num_classes=5, width_mult=SMALL)
    _, sd = _original_state(cfg)
    sd = dict(sd)
    del sd["module.core_base.extras.3.bias"]
    sd["module.core_base.something.weight"] = torch.zeros(1)
    sd["module.conf.2.weight"] = torch.zeros(3, 3)
    model = build_model(cfg)
    with pytest.raises(CheckpointError) as e:
        load_original_amtnet(model, sd)
    msg = str(e.value)
    assert "core_base.extras.3.bias" in msg and "core_base.something.weight" in msg
    assert "conf.2.weight: model has shape" in msg
    with pytest.raises(CheckpointError, match="no model config"):
        load_model(sd)


def test_project_checkpoint_round_trip(tmp_path):
    cfg = ModelConfig(num_classes=4, seq_len=3, fusion_type="MEAN", input_frames_extra=2, width_mult=SMALL)
    model = build_model(cfg)
    _randomise(model, 3)
    path = tmp_path / "ckpt" / "amtnet_000010.pth"
    save_checkpoint(path, model, iteration=10)
    assert sorted(torch.load(path, weights_only=True)) == ["iteration", "model", "model_config"]
    loaded = load_model(path)
    assert loaded.cfg == cfg
    base, extra = torch.rand(1, 3, 3, 300, 300), torch.rand(1, 3, 6, 300, 300)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(model(base, extra), loaded(base, extra)))
    other = build_model(ModelConfig(num_classes=4, seq_len=3, fusion_type="SUM", input_frames_extra=2, width_mult=SMALL))
    with pytest.raises(CheckpointError, match="differs"):
        load_original_amtnet(other, torch.load(path, weights_only=True))


def _ssd300_state(width_mult, seed):
    """A ROAD / ssd.pytorch SSD300 state dict: vgg.*, L2Norm.*, extras.* and conv heads loc.* / conf.*."""
    core = SSDCore(1, width_mult)
    _randomise(core, seed)
    sd = {k: v for k, v in core.state_dict().items()}
    sd["loc.0.weight"] = torch.zeros(16, 32, 3, 3)
    sd["conf.0.bias"] = torch.zeros(100)
    return core, sd


def test_ssd300_checkpoint_into_five_frame_flow_stream():
    core1, sd = _ssd300_state(SMALL, 1)
    flow = SSDCore(5, SMALL)
    report = load_backbone(flow, sd)
    assert report["ignored"] == ["conf.0.bias", "loc.0.weight"]
    w1 = core1.vgg[0].weight
    assert flow.vgg[0].weight.shape == (w1.shape[0], 15, 3, 3)
    assert torch.allclose(flow.vgg[0].weight, w1.repeat(1, 5, 1, 1) / 5)
    assert torch.equal(flow.extras[7].weight, core1.extras[7].weight)
    assert torch.equal(flow.L2Norm.weight, core1.L2Norm.weight)
    # Repeat-and-divide makes a 5-frame stack of one image behave like the 1-frame network.
    img = torch.rand(1, 3, 300, 300)
    with torch.no_grad():
        for a, b in zip(core1(img), flow(img.repeat(1, 5, 1, 1))):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_backbone_from_amtnet_checkpoint_stream():
    cfg = ModelConfig(num_classes=5, fusion_type="SUM", input_frames_extra=5, width_mult=SMALL)
    _, sd = _original_state(cfg, seed=4)
    model = build_model(cfg)
    with pytest.raises(CheckpointError, match="prefix"):
        load_backbone(model.core_base, sd)
    load_backbone(model.core_extra, sd, prefix="core_extra.")
    assert torch.equal(model.core_extra.extras[2].weight, sd["module.core_extra.extras.2.weight"])


def test_vgg16_reducedfc_layout_loads_vgg_only():
    core1, _ = _ssd300_state(SMALL, 2)
    reduced = {k[len("vgg."):]: v for k, v in core1.state_dict().items() if k.startswith("vgg.")}
    assert "31.weight" in reduced and "33.bias" in reduced
    flow = SSDCore(5, SMALL)
    l2_before = flow.L2Norm.weight.clone()
    report = load_backbone(flow, reduced)
    assert all(k.startswith("vgg.") for k in report["loaded"])
    assert torch.equal(flow.vgg[31].weight, core1.vgg[31].weight)
    assert torch.allclose(flow.vgg[0].weight, core1.vgg[0].weight.repeat(1, 5, 1, 1) / 5)
    assert torch.equal(flow.L2Norm.weight, l2_before)


def test_backbone_problems_are_listed():
    _, sd = _ssd300_state(SMALL, 3)
    del sd["extras.5.weight"]
    sd["fc8.weight"] = torch.zeros(2)
    with pytest.raises(CheckpointError) as e:
        load_backbone(SSDCore(1, SMALL), sd)
    assert "extras.5.weight" in str(e.value) and "fc8.weight" in str(e.value)
    _, sd = _ssd300_state(SMALL, 3)
    with pytest.raises(CheckpointError, match="vgg.2.weight: model has shape"):
        load_backbone(SSDCore(1, 2 * SMALL), sd)


def test_torchvision_vgg16_converted_to_reduced_fc():
    tv = torchvision.models.vgg16().state_dict()
    out = convert_torchvision_vgg16(tv)
    assert out["31.weight"].shape == (1024, 512, 3, 3) and out["33.weight"].shape == (1024, 1024, 1, 1)
    fc6 = tv["classifier.0.weight"].view(4096, 512, 7, 7)
    # filter i of conv6 is fc6 filter 4i; tap (a, b) is fc6 tap (3a, 3b)
    assert out["31.weight"][5, 7, 1, 2] == fc6[20, 7, 3, 6]
    assert out["31.bias"][9] == tv["classifier.0.bias"][36]
    assert out["33.weight"][3, 10, 0, 0] == tv["classifier.3.weight"][12, 40]
    assert torch.equal(out["28.weight"], tv["features.28.weight"])
    core = SSDCore(5, 1.0)
    load_backbone(core, tv)  # converted on the fly
    assert torch.allclose(core.vgg[0].weight, tv["features.0.weight"].repeat(1, 5, 1, 1) / 5)
    assert torch.equal(core.vgg[31].weight, out["31.weight"])
    with pytest.raises(CheckpointError, match="classifier.3.weight"):
        convert_torchvision_vgg16({k: v for k, v in tv.items() if k != "classifier.3.weight"})
