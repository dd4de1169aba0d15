"""Flax ports of the networks the paper plugs in."""
from .dncnn import DnCNN

__all__ = ["DnCNN"]
