"""Model configuration: what a checkpoint stores so the same network can be rebuilt."""
from dataclasses import asdict, dataclass, fields

FUSION_TYPES = ("NONE", "SUM", "CAT", "MEAN")
FEAT_FUSIONS = ("cat", "sum", "mean", "mul")
NORMS = ("none", "batch", "group")


def two_stream(fusion_type: str) -> bool:
    """Whether ``fusion_type`` (any case, as the original accepts) fuses a second stream: the
    original's ``args.fusion = args.fusion_type in ['sum', 'cat', 'mean']``."""
    if str(fusion_type).upper() not in FUSION_TYPES:
        raise ValueError(f"unknown fusion_type {fusion_type!r}; choose from {', '.join(FUSION_TYPES)} (any case)")
    return str(fusion_type).upper() != "NONE"


@dataclass
class ModelConfig:
    """Options that define an AMTNet.

    num_classes counts the background (label 0), so UCF101-24 has 25.
    seq_len: frames T of a micro-tube. fusion_type: how the base and extra streams are
    fused (NONE = base stream only). feat_fusion: how one stream's features are fused over
    the T frames ('cat' is what the original always uses). input_frames_*: stacked frames
    per time step of each stream (3 channels each). width_mult scales every backbone
    width (1.0 = the paper's VGG16). image_size: only 300 (SSD300) is supported.
    """

    num_classes: int
    seq_len: int = 2
    fusion_type: str = "NONE"
    feat_fusion: str = "cat"
    input_frames_base: int = 1
    input_frames_extra: int = 5
    width_mult: float = 1.0
    image_size: int = 300
    norm: str = "none"

    def __post_init__(self):
        # The original accepts both cases (train.py lower-cases, evaluate.py upper-cases).
        self.fusion_type = str(self.fusion_type).upper()
        self.feat_fusion = str(self.feat_fusion).lower()
        if self.fusion_type not in FUSION_TYPES:
            raise ValueError(f"ModelConfig.fusion_type must be one of {FUSION_TYPES}, got {self.fusion_type!r}")
        if self.feat_fusion not in FEAT_FUSIONS:
            raise ValueError(f"ModelConfig.feat_fusion must be one of {FEAT_FUSIONS}, got {self.feat_fusion!r}")
        if self.num_classes < 2:
            raise ValueError(f"ModelConfig.num_classes counts the background and must be >= 2, got {self.num_classes}")
        if self.seq_len < 1:
            raise ValueError(f"ModelConfig.seq_len must be >= 1, got {self.seq_len}")
        if self.input_frames_base < 1 or self.input_frames_extra < 1:
            raise ValueError("ModelConfig.input_frames_base and input_frames_extra must be >= 1")
        if not self.width_mult > 0:
            raise ValueError(f"ModelConfig.width_mult must be > 0, got {self.width_mult}")
        if self.norm not in NORMS:
            raise ValueError(f"ModelConfig.norm must be one of {NORMS}, got {self.norm!r}")
        if self.image_size != 300:
            raise ValueError(f"ModelConfig.image_size: only SSD300 (300) is supported, got {self.image_size}")

    @property
    def two_stream(self) -> bool:
        return two_stream(self.fusion_type)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"ModelConfig.from_dict: unknown fields {unknown}")
        return cls(**d)
