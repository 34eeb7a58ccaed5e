"""Augmentation of a training batch where it lies (CPU or GPU): each image rotated and shifted by its
own random amount, in one affine resampling of the whole batch. torchvision's v2 transforms take
batched tensors too, but draw one set of parameters per call, i.e. the same rotation for every image
of a batch; here every image gets its own."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from experiments.data import N_FEATURES

SIDE = math.isqrt(N_FEATURES)


def augment(x: torch.Tensor, generators: list[torch.Generator], degrees: float, shift: float) -> torch.Tensor:
    """x: (seeds, batch, 784) pixels; each seed's draws come from its own CPU generator, so that the
    numbers are the same on every device and in the plain and vectorised paths. Pixels that come in
    from outside the image are 0 (background)."""
    seeds, batch = x.shape[:2]
    draws = torch.stack([torch.rand(batch, 3, generator=g) for g in generators]) * 2 - 1  # (seeds, batch, 3) in [-1, 1)
    angle = draws[..., 0] * math.radians(degrees)
    offset = draws[..., 1:] * (2 * shift / SIDE)  # affine_grid's coordinates span 2 over the image's side
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([torch.stack([cos, -sin, offset[..., 0]], -1), torch.stack([sin, cos, offset[..., 1]], -1)], -2)
    theta = theta.reshape(seeds * batch, 2, 3).to(x.device, x.dtype)
    images = x.reshape(seeds * batch, 1, SIDE, SIDE)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, align_corners=False, padding_mode="zeros").reshape(seeds, batch, N_FEATURES)
