"""AMTNet model: backbone, micro-tube heads, two-stream fusion, loading weights."""
from models.amtnet import AMTNet, build_model
from models.config import ModelConfig
from models.weights import CheckpointError, convert_torchvision_vgg16, load_backbone, load_model, load_original_amtnet

__all__ = [
    "AMTNet", "build_model", "ModelConfig", "CheckpointError", "convert_torchvision_vgg16",
    "load_backbone", "load_model", "load_original_amtnet",
]
