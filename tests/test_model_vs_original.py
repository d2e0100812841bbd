"""Comparison with the original gurkirt/AMTNet code itself, run in a subprocess (its packages
are also named layers/ and data/). Runs only where a copy of that repository is given by
AMTNET_ORIGINAL (a checkout, or a bare git directory); the tests in test_model.py compare
against models/reference.py, which this check ties to the original."""
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from layers import MultiBoxLoss, detect, match, pad_targets, prior_boxes
from models import ModelConfig
from models.weights import load_model
from models.reference import ReferenceAMTNet

ORIGINAL = os.environ.get("AMTNET_ORIGINAL")
pytestmark = pytest.mark.skipif(not ORIGINAL, reason="set AMTNET_ORIGINAL to a copy of gurkirt/AMTNet")

RUNNER = textwrap.dedent('''
    import sys, types, torch, torch.nn as nn
    torch.Tensor.cuda = lambda self, *a, **k: self  # the original moves its index tables to CUDA
    nn.Module.cuda = lambda self, *a, **k: self
    sys.path.insert(0, sys.argv[1])
    from AMTNet import AMTNet
    from data import v2
    from layers.functions.prior_box import PriorBox
    from layers.box_utils import MatchPrior, decode_seq, nms
    from layers.modules.multibox_loss import MultiboxLoss
    torch.manual_seed(0)
    T, C = 2, 25
    args = types.SimpleNamespace(fusion=True, fusion_type="cat", fusion_num_muliplier=2, input_frames_base=1,
                                 input_frames_extra=5, ssd_dim=300, seq_len=T, kd=3, num_classes=C)
    net = AMTNet(args)
    for p in net.parameters():
        p.data.normal_(0, 0.05) if p.dim() > 1 else p.data.uniform_(-0.1, 0.1)
    base, extra = torch.rand(1, T, 3, 300, 300), torch.rand(1, T, 15, 300, 300)
    with torch.no_grad():
        conf, loc = net([base, extra])
    priors = PriorBox(v2, T).forward()
    boxes = torch.tensor([[[0.1, 0.2, 0.5, 0.7], [0.15, 0.2, 0.55, 0.7]], [[0.6, 0.6, 0.7, 0.7], [0.6, 0.62, 0.7, 0.72]]])
    labels0 = torch.tensor([3, 7])  # the original's 0-based class ids, one per box row
    gl, gloc = MatchPrior(priors, v2["variance"], seq_len=T)(boxes.reshape(-1, 4), labels0.repeat_interleave(T), num_mt=2)
    conf_r = conf.clone().requires_grad_()
    loss_l, loss_c = MultiboxLoss()(conf_r, loc, gl.unsqueeze(0), gloc.unsqueeze(0))
    # detections on outputs rescaled to a sane range (random weights give offsets whose exp overflows)
    loc_d, conf_d = loc / loc.abs().max() * 3, conf / conf.abs().max() * 8
    dec = decode_seq(loc_d[0], priors, v2["variance"], T)
    scores = torch.softmax(conf_d[0], 1)
    dets = []
    for cl in range(1, C):
        s = scores[:, cl]; m = s.gt(0.01); s = s[m]
        if s.numel() == 0:
            continue
        ids, n = nms(dec[:, :4][m], s, 0.45, 50)
        dets += [(s[i].item(), cl) for i in ids[:n]]
    torch.save({"state": net.state_dict(), "base": base, "extra": extra, "conf": conf, "loc": loc, "priors": priors,
                "boxes": boxes, "labels0": labels0, "match_labels": gl, "loss": (loss_l.item(), loss_c.item()),
                "loc_d": loc_d, "conf_d": conf_d, "dets": dets}, sys.argv[2])
''')


def _original_dir(tmp_path):
    src = Path(ORIGINAL)
    dst = tmp_path / "original"
    dst.mkdir()
    if (src / "AMTNet.py").exists():
        for name in ("AMTNet.py", "layers", "data"):
            (shutil.copytree if (src / name).is_dir() else shutil.copy)(src / name, dst / name)
    else:  # a git directory
        archive = subprocess.run(["git", "--git-dir", str(src), "archive", "HEAD", "AMTNet.py", "layers", "data/anchor_configs.py"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "x", "-C", str(dst)], input=archive, check=True)
    # only the anchor config is needed from data/ (its dataset module needs OpenCV and files)
    (dst / "data" / "__init__.py").write_text("from .anchor_configs import v2\n")
    return dst


@pytest.fixture(scope="module")
def original_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("amtnet_original")
    out = tmp / "out.pth"
    subprocess.run([sys.executable, "-c", RUNNER, str(_original_dir(tmp)), str(out)], check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": ""})
    return torch.load(out, weights_only=True)


def test_original_state_dict_keys_match_reference(original_run):
    ref = ReferenceAMTNet(ModelConfig(num_classes=25, fusion_type="CAT"))
    got = {k: tuple(v.shape) for k, v in original_run["state"].items()}
    assert got == {k: tuple(v.shape) for k, v in ref.state_dict().items()}


def test_outputs_equal_the_original(original_run):
    r = original_run
    model = load_model(r["state"], cfg=ModelConfig(num_classes=25, fusion_type="CAT")).eval()
    with torch.no_grad():
        loc, conf = model(r["base"], r["extra"])
    assert ((loc - r["loc"]).abs().max() / r["loc"].abs().max()) < 1e-4
    assert ((conf - r["conf"]).abs().max() / r["conf"].abs().max()) < 1e-4


def test_priors_matching_loss_and_detections_equal_the_original(original_run):
    r = original_run
    priors = prior_boxes()
    assert torch.equal(r["priors"], priors.repeat(1, 2))
    targets = [{"boxes": r["boxes"], "labels": r["labels0"] + 1}]
    gt_boxes, gt_labels, valid = pad_targets(targets, 2)
    labels, _ = match(gt_boxes, gt_labels, valid, priors)
    assert torch.equal(labels[0], r["match_labels"]) and (labels > 0).sum() >= 2
    crit = MultiBoxLoss(priors)
    loss_l, loss_c = crit(r["loc"], r["conf"], targets)
    assert loss_l.item() == pytest.approx(r["loss"][0], rel=1e-5)
    assert loss_c.item() == pytest.approx(r["loss"][1], rel=1e-5)
    (d,) = detect(r["loc_d"], r["conf_d"], priors, conf_thresh=0.01, nms_thresh=0.45, top_k=50)
    ours = sorted(zip(d["scores"].tolist(), d["labels"].tolist()))
    theirs = sorted(r["dets"])
    assert len(ours) == len(theirs) > 10
    assert all(abs(a[0] - b[0]) < 1e-6 and a[1] == b[1] for a, b in zip(ours, theirs))
