"""Importers of checkpoints saved by other PixelCNN++ implementations."""
from .pclucas14 import CheckpointError, from_pclucas14, infer_pclucas14_architecture, read_pclucas14_state_dict

__all__ = ["CheckpointError", "from_pclucas14", "infer_pclucas14_architecture", "read_pclucas14_state_dict"]
