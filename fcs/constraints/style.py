"""Style: match Gram matrices of early CLIP vision features of a reference image (a non-linear constraint)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from fcs.constraints.pixel import ImageLoss

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def gram(features: Tensor) -> Tensor:
    """(B, N, D) token features -> (B, D, D) Gram matrices normalised by N."""
    return features.transpose(1, 2) @ features / features.shape[1]


class Style(ImageLoss):
    """Match a reference image's style: residual(x̂0) = Σ over ``layers`` of the mean squared difference
    between Gram matrices of CLIP vision hidden states of D(x̂0) and of the item's reference (B,).

    Args:
        decode: maps x̂0 (B, C, h, w) to images (B, 3, H, W) in [0, 1] (``Denoiser.decode``).
        clip: a transformers ``CLIPVisionModel`` (frozen here). references: one (3, H, W) image in
            [0, 1] per item (a sequence, sizes may differ, or a (B, 3, H, W) tensor).
        layers: which hidden states (0 = embeddings); early layers carry texture and colour.
    Each item runs through CLIP on its own, so item i's residual depends on item i only.
    """

    def __init__(self, decode: Callable[[Tensor], Tensor], clip: torch.nn.Module, references: Sequence[Tensor],
                 layers: Sequence[int] = (1, 2, 3)) -> None:
        self.clip = clip.requires_grad_(False).eval()
        self.layers = tuple(layers)
        self.size = clip.config.image_size
        with torch.no_grad():
            self.targets = [[g.detach() for g in self._grams(ref[None])] for ref in references]
        super().__init__(decode, self.distance)

    def _grams(self, images: Tensor) -> list[Tensor]:
        param = next(self.clip.parameters())
        x = F.interpolate(images.float(), size=(self.size, self.size), mode="bilinear", antialias=True,
                          align_corners=False)
        mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
        hidden = self.clip(pixel_values=((x - mean) / std).to(param.dtype), output_hidden_states=True).hidden_states
        return [gram(hidden[i].float()) for i in self.layers]

    def distance(self, images: Tensor) -> Tensor:
        """images (B, 3, H, W) in [0, 1], one per reference -> (B,) Gram distances (the residual of
        decoded images)."""
        return torch.cat([self._distance(images[k: k + 1], targets) for k, targets in enumerate(self.targets)])

    def _distance(self, image: Tensor, targets: list[Tensor]) -> Tensor:
        return sum((g - t).pow(2).flatten(1).mean(1) for g, t in zip(self._grams(image), targets, strict=True))


def load_clip_vision(model: str, device: str | torch.device = "cpu",
                     dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A transformers ``CLIPVisionModel`` from a hub id or local folder (safetensors only)."""
    from transformers import CLIPVisionModel

    return CLIPVisionModel.from_pretrained(model, use_safetensors=True, dtype=dtype).to(device)
