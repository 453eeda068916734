"""Model families behind the :class:`fcs.denoiser.Denoiser` contract."""

from fcs.families.unet import UNetDenoiser

__all__ = ["UNetDenoiser"]
