"""The augmentation presets applied to a whole batch on the training device (a GPU never waits for data).

The CPU path (:class:`~.transforms.ImageTransform` inside :class:`~.dataset.ImageDataset`) augments
one image at a time in the DataLoader workers. With ``train.augment_on=device`` the workers only
serve resized, unaugmented **uint8** images (:class:`FeedTransform`: four times fewer bytes to pin
and copy than float32) and :class:`BatchAugment` augments and normalises the batch where the model
runs, with the same presets and the same per-sample seeding rule:

* :func:`draw_params` draws the parameters of one sample from a generator seeded with
  ``sample_seed(seed, epoch, index)`` by making the very same random calls, in the same order, as
  torchvision's ``RandomHorizontalFlip``, ``RandomVerticalFlip``, ``RandomAffine`` and
  ``ColorJitter`` do on the CPU path after ``torch.manual_seed(sample_seed(...))``: a sample gets
  the same flips, angle, translation, scale, shear, brightness, contrast and jitter order on both
  paths (``tests/test_batch_augment.py`` checks this against the CPU transforms themselves).
  :class:`FeedDataset` draws them in the DataLoader workers (``batch["augment_params"]``),
  so the training process spends no time on them.
* :meth:`BatchAugment.augment_batch` applies them to a float batch with batched ops that compute what
  torchvision's per-image kernels compute: flips; one ``affine_grid`` + ``grid_sample`` with a
  per-sample matrix (torchvision's inverse affine matrix about the centre, bilinear, fill 0, the
  border attenuated by the sampled mask exactly as ``F.affine`` does); brightness and contrast in
  the sample's own order; clamp to [0, 1]. Results equal the CPU path's to float rounding
  (measured max abs difference below 1e-5 on [0, 1] images; the tests allow 1e-4).

Without an image cache, the served images are quantised to 8 bits after the resize (at most half a
grey level, as the cache itself does); with the cache (``data.cache``) both paths start from the
same pixels.

Example::

    aug = BatchAugment(PRESETS["xray"], image_size=64, mean=[0.5], std=[0.25], seed=42)
    ds = FeedDataset(table, aug, in_chans=1, seed=42, cache=cache)  # served by the DataLoader
    x = aug(batch["image"].cuda(), batch["augment_params"], train=True)  # normalised float32 on the GPU
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from .dataset import ImageDataset, Key, sample_seed
from .table import DataTable
from .transforms import AugmentParams, prepare_image, quantize_uint8

# columns of the parameter matrix returned by draw_params / BatchAugment.params
PARAM_NAMES = ("hflip", "vflip", "angle", "tx", "ty", "scale", "shear", "brightness", "contrast", "brightness_first")
_COL = {name: i for i, name in enumerate(PARAM_NAMES)}


@dataclass(frozen=True)
class FeedTransform:
    """Reader output -> resized, unaugmented uint8 ``(in_chans, image_size, image_size)``.

    The dataset transform of the device path; deterministic (``random`` is False, so the dataset
    does not seed the RNG for it). ``image_size`` and ``in_chans`` let the dataset check its cache.
    A uint8 ``(C, S, S)`` array (a row of the image cache, see :class:`FeedDataset`) is already
    prepared: it is copied as it is.

    >>> FeedTransform(16, 1)(np.ones((30, 60, 3), np.float32)).dtype
    torch.uint8
    """

    image_size: int  # square side after the resize
    in_chans: int  # 1 or 3 channels served
    keep_aspect: bool = False  # pad to a square instead of stretching

    @property
    def random(self) -> bool:
        """Always False: nothing random happens here (ImageDataset then does not seed the RNG)."""
        return False

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        if image.dtype == np.uint8:
            return torch.from_numpy(np.array(image))  # a cache row: copied out of the memory map
        return quantize_uint8(prepare_image(image, self.image_size, self.in_chans, self.keep_aspect))


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return float(torch.empty(1).uniform_(lo, hi, generator=g).item())


def draw_params(augment: AugmentParams, image_size: int, seed: int) -> list[float]:
    """The augmentation parameters of one sample, as the CPU path draws them after ``torch.manual_seed(seed)``.

    Returns one value per :data:`PARAM_NAMES` entry: flips as 0/1, the affine angle (degrees),
    integer translation in pixels, scale, x shear (degrees), brightness and contrast factors (1 when
    the step is off) and whether brightness comes before contrast (ColorJitter's random order).

    >>> draw_params(AugmentParams(), 32, 0)
    [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0]
    """
    g = torch.Generator().manual_seed(int(seed))
    p = dict.fromkeys(PARAM_NAMES, 0.0) | {"scale": 1.0, "brightness": 1.0, "contrast": 1.0, "brightness_first": 1.0}
    # v2.RandomHorizontalFlip / RandomVerticalFlip: one draw each, applied when rand < p
    if augment.hflip:
        p["hflip"] = float(torch.rand(1, generator=g).item() < augment.hflip)
    if augment.vflip:
        p["vflip"] = float(torch.rand(1, generator=g).item() < augment.vflip)
    # v2.RandomAffine.make_params: angle, then translation, scale and x shear when switched on
    if augment.has_affine:
        p["angle"] = _uniform(g, -augment.rotation, augment.rotation)
        if augment.translate:
            max_d = float(augment.translate * image_size)
            p["tx"] = float(int(round(_uniform(g, -max_d, max_d))))
            p["ty"] = float(int(round(_uniform(g, -max_d, max_d))))
        if tuple(augment.scale) != (1.0, 1.0):
            p["scale"] = _uniform(g, *augment.scale)
        if augment.shear:
            p["shear"] = _uniform(g, -augment.shear, augment.shear)
    # v2.ColorJitter.make_params: the order of its four steps, then brightness and contrast factors
    if augment.brightness or augment.contrast:
        order = torch.randperm(4, generator=g).tolist()
        p["brightness_first"] = float(order.index(0) < order.index(1))
        if augment.brightness:
            p["brightness"] = _uniform(g, max(0.0, 1 - augment.brightness), 1 + augment.brightness)
        if augment.contrast:
            p["contrast"] = _uniform(g, max(0.0, 1 - augment.contrast), 1 + augment.contrast)
    return [p[k] for k in PARAM_NAMES]


def affine_theta(params: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(B, 2, 3)`` matrices for ``F.affine_grid`` (``align_corners=False``) from parameter rows.

    torchvision's ``_get_inverse_affine_matrix`` about the image centre (rotation, x shear, scale,
    then translation; float64), rescaled from centred pixel coordinates to ``[-1, 1]``.
    """
    p = params.to(torch.float64)
    rot, sx = torch.deg2rad(p[:, _COL["angle"]]), torch.deg2rad(p[:, _COL["shear"]])
    tx, ty, scale = p[:, _COL["tx"]], p[:, _COL["ty"]], p[:, _COL["scale"]]
    a, c = torch.cos(rot), torch.sin(rot)
    b = -(a * torch.tan(sx) + c)
    d = torch.cos(rot) - c * torch.tan(sx)
    m = torch.stack([d, -b, torch.zeros_like(a), -c, a, torch.zeros_like(a)], 1) / scale[:, None]
    m[:, 2] = -m[:, 0] * tx - m[:, 1] * ty
    m[:, 5] = -m[:, 3] * tx - m[:, 4] * ty
    # pixel -> normalised coordinates: x_pix = x_n * w / 2 and y_pix = y_n * h / 2 (align_corners=False)
    theta = torch.stack([m[:, 0], m[:, 1] * height / width, m[:, 2] * 2 / width,
                         m[:, 3] * width / height, m[:, 4], m[:, 5] * 2 / height], 1)
    return theta.view(-1, 2, 3)


def _brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return (x * f).clamp_(0.0, 1.0)


def _contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    gray = TF.rgb_to_grayscale(x) if x.shape[1] == 3 else x
    mean = gray.mean(dim=(-3, -2, -1), keepdim=True)
    return (x * f + mean * (1 - f)).clamp_(0.0, 1.0)


class BatchAugment:
    """A preset applied to a batch on its own device, then ``Normalize(mean, std)``.

    Args:
        augment: the preset's parameters (:data:`~.transforms.PRESETS`).
        image_size: side of the served images (the translation range is a fraction of it).
        mean, std: per-channel normalisation, as on the CPU path.
        seed: base seed of the per-sample rule ``sample_seed(seed, epoch, index)``.
    """

    def __init__(self, augment: AugmentParams, image_size: int, mean: Sequence[float], std: Sequence[float],
                 seed: int = 0) -> None:
        self.augment, self.image_size, self.seed = augment, int(image_size), int(seed)
        self.mean, self.std = list(mean), list(std)

    def params(self, epoch: int, indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """``(B, len(PARAM_NAMES))`` float64 parameters of the samples ``indices`` in ``epoch`` (on the CPU)."""
        rows = [draw_params(self.augment, self.image_size, sample_seed(self.seed, epoch, int(i)))
                for i in torch.as_tensor(indices).tolist()]
        return torch.tensor(rows, dtype=torch.float64).reshape(len(rows), len(PARAM_NAMES))

    def augment_batch(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Float ``(B, C, H, W)`` in [0, 1] -> augmented, clamped to [0, 1] (not normalised)."""
        a = self.augment
        p = params.to(device=x.device, dtype=x.dtype)
        col = {k: p[:, i].view(-1, 1, 1, 1) for k, i in _COL.items()}
        if a.hflip:
            x = torch.where(col["hflip"] > 0.5, x.flip(-1), x)
        if a.vflip:
            x = torch.where(col["vflip"] > 0.5, x.flip(-2), x)
        if a.has_affine:
            x = self._affine(x, params)
        if a.brightness and a.contrast:
            bc = _contrast(_brightness(x, col["brightness"]), col["contrast"])
            cb = _brightness(_contrast(x, col["contrast"]), col["brightness"])
            x = torch.where(col["brightness_first"] > 0.5, bc, cb)
        elif a.brightness:
            x = _brightness(x, col["brightness"])
        elif a.contrast:
            x = _contrast(x, col["contrast"])
        return x.clamp_(0.0, 1.0)

    @staticmethod
    def _affine(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Bilinear, fill 0, like ``F.affine``: the sampled image times the sampled all-ones mask."""
        n, c, h, w = x.shape
        theta = affine_theta(params, h, w).to(device=x.device, dtype=x.dtype)
        grid = F.affine_grid(theta, [n, c + 1, h, w], align_corners=False)
        with_mask = torch.cat([x, x.new_ones(n, 1, h, w)], dim=1)
        out = F.grid_sample(with_mask, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out[:, :c] * out[:, c:]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` per channel."""
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return (x - mean) / std

    def __call__(self, images: torch.Tensor, params: torch.Tensor | None = None, train: bool = True) -> torch.Tensor:
        """uint8 ``(B, C, H, W)`` -> float32 normalised; augmented with ``params`` (rows of :meth:`params`) when ``train``."""
        x = images.float().div_(255.0)
        if train and not self.augment.is_identity:
            if params is None:
                raise ValueError("BatchAugment needs the per-sample parameters of a training batch (batch['augment_params'], "
                                 "served by FeedDataset); got none.")
            x = self.augment_batch(x, params)
        return self.normalize(x)

    def __repr__(self) -> str:
        return f"BatchAugment(augment={self.augment}, image_size={self.image_size}, seed={self.seed})"




class FeedDataset(ImageDataset):
    """The training dataset of the device path: uint8 images plus their augmentation parameters.

    An :class:`~.dataset.ImageDataset` with :class:`FeedTransform`; with an image cache the stored
    uint8 rows are served directly (no float round trip). Each sample gains ``augment_params``
    (float64, one value per :data:`PARAM_NAMES`) for the key's epoch and the sample's index, drawn
    in the worker that loads it; unreadable samples stay ``None``.

    Args:
        table: the rows to serve (the training split).
        augment: the :class:`BatchAugment` that will augment the batches (its preset, size, seed).
        in_chans: channels served.
        **kwargs: ``classes``, ``window``, ``seed``, ``cache``, ``reader`` as for ImageDataset.
    """

    def __init__(self, table: DataTable, augment: BatchAugment, in_chans: int, **kwargs: Any) -> None:
        super().__init__(table, transform=FeedTransform(augment.image_size, in_chans), **kwargs)
        self.augment = augment

    def load(self, index: int) -> np.ndarray:
        """uint8 ``(C, S, S)`` from the cache, else the reader's float image (may raise ImageReadError)."""
        return self.cache.pixels(index) if self.cache is not None else super().load(index)

    def __getitem__(self, key: Key) -> dict[str, Any] | None:
        sample = super().__getitem__(key)
        if sample is not None:
            epoch = int(key[0]) if isinstance(key, tuple) else 0
            sample["augment_params"] = self.augment.params(epoch, [sample["index"]])[0]
        return sample
