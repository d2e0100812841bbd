"""Loading weights: the original AMTNet's checkpoints, this project's checkpoints, and
pretrained backbones (ROAD / ssd.pytorch SSD300, vgg16_reducedfc, torchvision vgg16).
Saving is ``utils.checkpoint.save_checkpoint``.

Every loader lists unknown, missing and mis-shaped keys in one clear error instead of
skipping them (the original's load_my_state_dict prints and goes on).
"""
import logging
import re


from models.amtnet import AMTNet, build_model
from models.backbone import SSDCore
from models.config import ModelConfig
from utils.checkpoint import CheckpointError, read_weights

log = logging.getLogger(__name__)

# Index tables the original stores as buffers; they carry no learned values.
_INDEX_BUFFER = re.compile(r"(^|\.)featPool\d+\.(ffm_index|spatial_pool\.counts)$")


def _strip_module(state_dict):
    """Remove the 'module.' prefix nn.DataParallel / DDP add (the original trains with DataParallel)."""
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state_dict.items()}


def _problems(what, unknown=(), missing=(), shapes=()):
    lines = [f"cannot load {what}:"]
    if unknown:
        lines.append(f"  unknown keys ({len(unknown)}): {', '.join(sorted(unknown))}")
    if missing:
        lines.append(f"  missing keys ({len(missing)}): {', '.join(sorted(missing))}")
    for name, want, got in shapes:
        lines.append(f"  {name}: model has shape {tuple(want)}, checkpoint has {tuple(got)}")
    return "\n".join(lines)


def _is_project_checkpoint(obj) -> bool:
    return isinstance(obj, dict) and "model_config" in obj and "model" in obj


def load_original_amtnet(model: AMTNet, state_dict) -> None:
    """Load an original AMTNet state dict (AMTNet_<iter>.pth, optionally 'module.'-prefixed)
    or this project's checkpoint dict into model, strictly.

    The names are the same; the featPoolK.ffm_index and featPoolK.spatial_pool.counts index
    buffers of the original are dropped. Unknown, missing and mis-shaped keys raise
    CheckpointError with the full list.
    """
    if _is_project_checkpoint(state_dict):
        saved = ModelConfig.from_dict(state_dict["model_config"])
        if saved != model.cfg:
            raise CheckpointError(f"checkpoint model_config {saved} differs from the model's {model.cfg}")
        state_dict = state_dict["model"]
    sd = {k: v for k, v in _strip_module(state_dict).items() if not _INDEX_BUFFER.search(k)}
    own = model.state_dict()
    unknown = set(sd) - set(own)
    missing = set(own) - set(sd)
    shapes = [(k, own[k].shape, sd[k].shape) for k in sorted(set(sd) & set(own)) if own[k].shape != sd[k].shape]
    if unknown or missing or shapes:
        raise CheckpointError(_problems("AMTNet checkpoint", unknown, missing, shapes))
    model.load_state_dict(sd)


def load_model(obj, cfg: ModelConfig = None, map_location="cpu") -> AMTNet:
    """Build and load an AMTNet from a checkpoint path or loaded object.

    This project's checkpoints carry their ModelConfig; the original's do not, so cfg must
    be given for them (and must match, e.g. ModelConfig(num_classes=25, fusion_type='CAT')).
    """
    if not isinstance(obj, dict):
        obj = read_weights(obj, map_location)
    if _is_project_checkpoint(obj):
        cfg = ModelConfig.from_dict(obj["model_config"])
    elif cfg is None:
        raise CheckpointError("an original AMTNet checkpoint stores no model config: pass cfg=ModelConfig(...)")
    model = build_model(cfg)
    load_original_amtnet(model, obj)
    return model


def convert_torchvision_vgg16(state_dict) -> dict:
    """torchvision vgg16 state dict -> vgg16_reducedfc layout ('N.weight', 'N.bias', N = the
    SSD vgg list index).

    The conv layers keep their indices (0..28 are the same in both lists). fc6 [4096, 512*7*7]
    becomes conv6 (index 31) [1024, 512, 3, 3] by keeping every 4th filter and every 3rd
    tap of its 7x7 kernel; fc7 becomes the 1x1 conv7 (index 33) [1024, 1024, 1, 1] by keeping
    every 4th output and input; the classifier fc8 is dropped. This is SSD's reduced-fc
    subsampling (conv6 is dilated by 6 to keep fc6's field of view).
    """
    sd = _strip_module(state_dict)
    out, unknown = {}, []
    for k, v in sd.items():
        m = re.fullmatch(r"features\.(\d+)\.(weight|bias)", k)
        if m:
            out[f"{m.group(1)}.{m.group(2)}"] = v
        elif not k.startswith("classifier."):
            unknown.append(k)
    needed = ["classifier.0.weight", "classifier.0.bias", "classifier.3.weight", "classifier.3.bias"]
    missing = [k for k in needed if k not in sd]
    if unknown or missing:
        raise CheckpointError(_problems("torchvision vgg16 state dict", unknown, missing))
    fc6_w, fc7_w = sd["classifier.0.weight"], sd["classifier.3.weight"]
    if tuple(fc6_w.shape) != (4096, 512 * 7 * 7) or tuple(fc7_w.shape) != (4096, 4096):
        raise CheckpointError(f"torchvision vgg16: unexpected fc6/fc7 shapes {tuple(fc6_w.shape)}, {tuple(fc7_w.shape)}")
    out["31.weight"] = fc6_w.view(4096, 512, 7, 7)[::4, :, ::3, ::3].contiguous()
    out["31.bias"] = sd["classifier.0.bias"][::4].contiguous()
    out["33.weight"] = fc7_w[::4, ::4].reshape(1024, 1024, 1, 1).contiguous()
    out["33.bias"] = sd["classifier.3.bias"][::4].contiguous()
    return out


def _backbone_keys(state_dict, prefix):
    """Normalise a backbone source to keys 'vgg.*', 'L2Norm.*', 'extras.*' (+ ignorable)."""
    if _is_project_checkpoint(state_dict):
        state_dict = state_dict["model"]
    sd = _strip_module(state_dict)
    if any(k.startswith("features.") for k in sd):
        sd = convert_torchvision_vgg16(sd)
    if prefix is None:
        has_base = any(k.startswith("core_base.") for k in sd)
        if any(k.startswith("core_extra.") for k in sd):
            raise CheckpointError("two-stream AMTNet checkpoint: say which stream with prefix='core_base.' or 'core_extra.'")
        prefix = "core_base." if has_base else ""
    if prefix:
        sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if not sd:
            raise CheckpointError(f"no keys start with {prefix!r}")
    if all(re.fullmatch(r"\d+\.(weight|bias)", k) for k in sd):
        sd = {f"vgg.{k}": v for k, v in sd.items()}  # vgg16_reducedfc.pth: the bare vgg ModuleList
    return sd


def load_backbone(stream: SSDCore, state_dict, prefix: str = None) -> dict:
    """Load pretrained weights into one stream's backbone (model.core_base / core_extra).

    Accepts a ROAD / ssd.pytorch SSD300 state dict (vgg.*, L2Norm.*, extras.*; its loc/conf
    heads are ignored), a vgg16_reducedfc.pth state dict (N.weight: vgg only, L2Norm and
    extras keep their initialisation), a torchvision vgg16 state dict (converted), or an
    AMTNet checkpoint (original or this project's; prefix 'core_base.' / 'core_extra.',
    its heads and index buffers ignored). Keys may carry 'module.'.

    When the stream stacks k times the checkpoint's input channels (flow: 5 frames), the first
    convolution's weights are repeated k times over the input channels and divided by k,
    as the original's load_my_state_dict does. Returns {'loaded': [...], 'ignored': [...]}.
    """
    sd = _backbone_keys(state_dict, prefix)
    own = stream.state_dict()
    ignored = [k for k in sd if re.match(r"(loc|conf)\.\d+\.(weight|bias)$", k) or _INDEX_BUFFER.search(k)]
    sd = {k: v for k, v in sd.items() if k not in ignored}
    unknown = set(sd) - set(own)
    required = set(own) if any(not k.startswith("vgg.") for k in sd) else {k for k in own if k.startswith("vgg.")}
    missing = required - set(sd)
    load, shapes = {}, []
    for k in sorted(set(sd) & set(own)):
        v, want = sd[k], own[k].shape
        if v.dim() == 4 and v.shape[1] != want[1] and v.shape[0] == want[0] and v.shape[2:] == want[2:] \
                and want[1] % v.shape[1] == 0:
            rep = want[1] // v.shape[1]
            v = v.repeat(1, rep, 1, 1) / float(rep)
        if v.shape != want:
            shapes.append((k, want, v.shape))
        load[k] = v
    if unknown or missing or shapes:
        raise CheckpointError(_problems("backbone weights", unknown, missing, shapes))
    stream.load_state_dict(load, strict=False)
    log.info("backbone: loaded %d tensors, ignored %d head/index entries", len(load), len(ignored))
    return {"loaded": sorted(load), "ignored": sorted(ignored)}
