"""AMTNet model: backbone, micro-tube heads, two-stream fusion, checkpoints."""
from models.amtnet import AMTNet, build_model
from models.config import ModelConfig

__all__ = ["AMTNet", "ModelConfig", "build_model"]
