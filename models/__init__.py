"""AMTNet model: backbone, micro-tube heads, two-stream fusion, checkpoints."""
from models.amtnet import AMTNet, build_model
from models.checkpoints import (CheckpointError, checkpoint_state, convert_torchvision_vgg16, load_backbone,
                                load_model, load_original_amtnet, save_checkpoint)
from models.config import ModelConfig

__all__ = [
    "AMTNet", "build_model", "ModelConfig", "CheckpointError", "checkpoint_state", "convert_torchvision_vgg16",
    "load_backbone", "load_model", "load_original_amtnet", "save_checkpoint",
]
