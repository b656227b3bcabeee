"""One transform factory: reader output (float32 HWC in [0, 1]) -> normalised float CHW tensor.

Order of the steps (cheap first, so that augmentation works on the small image):

1. check the input: a float array of shape ``(H, W)`` or ``(H, W, C)`` with values in [0, 1]
   (the pixel convention of :func:`medclass.data.io.read_image`); anything else raises
   ``ValueError`` naming the expected range;
2. channels -> ``in_chans`` (1 -> 3 repeats the gray plane; 3 -> 1 is ITU-R 601 luma);
3. resize to a square ``image_size`` (bilinear, antialiased). By default the aspect ratio is
   **not** kept (a plain resize, the usual choice for radiographs); ``keep_aspect=True`` resizes
   the longer side and pads the shorter one with black;
4. augmentation, only when ``train=True`` (validation and test are never augmented);
5. ``Normalize(mean, std)``.

Steps 1-3 are :func:`prepare_image`, shared with the memory-mapped cache so a cached image equals
a freshly decoded one. Random augmentations use torchvision ``transforms.v2``, which draws from
torch's global RNG only: seeding ``torch`` before a call fixes the result (see
:class:`medclass.data.dataset.ImageDataset`).

Example:
    >>> tf = build_transform("xray", image_size=64, in_chans=1, mean=[0.5], std=[0.25], train=True)
    >>> tf(np.random.rand(224, 224, 3).astype(np.float32)).shape
    torch.Size([1, 64, 64])
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ..artifacts.meta import Preprocessing
from ..config import Augment, choices
from ..errors import ConfigError, check_choice
from ..utils import PIXEL_TOLERANCE


@dataclass(frozen=True)
class AugmentParams:
    """Random augmentation of one preset; a value of 0 (or ``(1, 1)``) switches a step off."""

    hflip: float = 0.0  # probability of a horizontal (left-right) flip
    vflip: float = 0.0  # probability of a vertical (up-down) flip
    rotation: float = 0.0  # maximum rotation in degrees, drawn uniformly in [-rotation, rotation]
    shear: float = 0.0  # maximum shear angle in degrees (x axis), uniform in [-shear, shear]
    scale: tuple[float, float] = (1.0, 1.0)  # zoom factor range, e.g. (0.9, 1.1)
    translate: float = 0.0  # maximum shift as a fraction of the side, in x and y
    brightness: float = 0.0  # brightness factor drawn in [1 - brightness, 1 + brightness]
    contrast: float = 0.0  # contrast factor drawn in [1 - contrast, 1 + contrast]

    @property
    def is_identity(self) -> bool:
        """True when no step is switched on (the ``none`` preset)."""
        return self == AugmentParams()

    @property
    def has_affine(self) -> bool:
        """True when rotation, shear, translation or scaling is switched on (one ``RandomAffine`` step)."""
        return bool(self.rotation or self.shear or self.translate or tuple(self.scale) != (1.0, 1.0))


#: the parameters of each ``train.augment`` choice (``medclass.config.Augment``)
PRESETS: dict[Augment, AugmentParams] = {
    # no augmentation at all (also what every eval transform uses)
    "none": AugmentParams(),
    # generic: left-right flip and a small affine jitter
    "light": AugmentParams(hflip=0.5, rotation=5.0, scale=(0.95, 1.05), translate=0.05),
    # chest radiographs: small geometric changes and exposure differences
    "xray": AugmentParams(hflip=0.5, rotation=10.0, shear=10.0, scale=(0.9, 1.1), brightness=0.2, contrast=0.2),
    # retina photographs: round field of view with no canonical orientation, so any rotation and
    # both flips; strong brightness and some contrast changes (illumination varies a lot between cameras)
    "fundus": AugmentParams(hflip=0.5, vflip=0.5, rotation=180.0, brightness=0.3, contrast=0.2),
}


def check_image(image: np.ndarray, where: str = "image") -> torch.Tensor:
    """Validate a reader output and return it as a float32 CHW tensor (a view when possible).

    Raises ``ValueError`` unless ``image`` is a float array ``(H, W)`` or ``(H, W, C)``, C in
    {1, 3}, with values in [0, 1].

    >>> check_image(np.zeros((4, 5, 1), np.float32)).shape
    torch.Size([1, 4, 5])
    """
    if not isinstance(image, np.ndarray) or not np.issubdtype(image.dtype, np.floating):
        kind = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(
            f"{where}: expected a float32 numpy array with values in [0, 1] (the read_image convention), "
            f"got {kind}; convert 8-bit pixels with `img.astype(np.float32) / 255`."
        )
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise ValueError(f"{where}: expected shape (H, W, C) with C in {{1, 3}}, got {image.shape}.")
    lo, hi = float(image.min()), float(image.max())
    if not (lo >= -PIXEL_TOLERANCE and hi <= 1 + PIXEL_TOLERANCE):  # also catches NaN
        raise ValueError(
            f"{where}: pixel values must lie in [0, 1] (the model expects reader output, normalised "
            f"afterwards by mean/std), got min {lo:.4g}, max {hi:.4g}; rescale to [0, 1] before the transform."
        )
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1).clamp(0.0, 1.0)


def prepare_image(image: np.ndarray, image_size: int, in_chans: int, keep_aspect: bool = False) -> torch.Tensor:
    """The deterministic part: check, convert channels, resize to ``image_size`` square.

    Returns a float32 tensor ``(in_chans, image_size, image_size)`` in [0, 1].

    >>> prepare_image(np.ones((30, 60, 3), np.float32), 16, 1).shape
    torch.Size([1, 16, 16])
    """
    x = check_image(image)
    if x.shape[0] != in_chans:
        x = x.expand(3, -1, -1) if in_chans == 3 else F.rgb_to_grayscale(x, num_output_channels=1)
    h, w = x.shape[1:]
    if keep_aspect:
        side = max(h, w)
        size = [max(1, round(h * image_size / side)), max(1, round(w * image_size / side))]
    else:
        size = [image_size, image_size]
    if [h, w] != size:
        x = F.resize(x, size, interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
    if keep_aspect and size != [image_size, image_size]:
        x = F.center_crop(x, [image_size, image_size])  # pads the short side with zeros
    # luma weights and antialiased resampling round bright pixels to 1 + 1e-7: keep the promise of [0, 1]
    return x.clamp(0.0, 1.0).contiguous()


def quantize_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float pixels in [0, 1] -> uint8 (rounded to the nearest of 256 levels), as the image cache stores them.

    >>> quantize_uint8(torch.tensor([0.0, 0.5, 1.0])).tolist()
    [0, 128, 255]
    """
    return x.mul(255).round_().to(torch.uint8)


def augmentations(params: AugmentParams) -> list[v2.Transform]:
    """The torchvision v2 steps of ``params`` (empty for the identity).

    >>> [type(t).__name__ for t in augmentations(PRESETS["light"])]
    ['RandomHorizontalFlip', 'RandomAffine']
    """
    steps: list[v2.Transform] = []
    if params.hflip:
        steps.append(v2.RandomHorizontalFlip(params.hflip))
    if params.vflip:
        steps.append(v2.RandomVerticalFlip(params.vflip))
    if params.has_affine:
        steps.append(v2.RandomAffine(
            degrees=params.rotation,
            translate=(params.translate, params.translate) if params.translate else None,
            scale=tuple(params.scale) if tuple(params.scale) != (1.0, 1.0) else None,
            shear=params.shear or None,
            interpolation=v2.InterpolationMode.BILINEAR,
            fill=0.0,
        ))
    if params.brightness or params.contrast:
        steps.append(v2.ColorJitter(brightness=params.brightness or None, contrast=params.contrast or None))
    return steps


class ImageTransform:
    """Callable built by :func:`build_transform`; exposes its settings as attributes."""

    def __init__(self, image_size: int, in_chans: int, mean: Sequence[float], std: Sequence[float],
                 augment: AugmentParams, keep_aspect: bool = False) -> None:
        self.image_size, self.in_chans, self.keep_aspect = image_size, in_chans, keep_aspect
        self.mean, self.std, self.augment = list(mean), list(std), augment
        self._augment = v2.Compose(augmentations(augment)) if not augment.is_identity else None
        self._normalize = v2.Normalize(self.mean, self.std)

    @property
    def random(self) -> bool:
        """True when the transform draws random numbers (training with a non-identity preset)."""
        return self._augment is not None

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        """Float HWC numpy in [0, 1] -> normalised float32 ``(in_chans, image_size, image_size)``."""
        x = prepare_image(image, self.image_size, self.in_chans, self.keep_aspect)
        if self._augment is not None:
            x = self._augment(x).clamp_(0.0, 1.0)
        return self._normalize(x)

    def __repr__(self) -> str:
        return (f"ImageTransform(image_size={self.image_size}, in_chans={self.in_chans}, mean={self.mean}, "
                f"std={self.std}, keep_aspect={self.keep_aspect}, augment={asdict(self.augment)})")


def build_transform(preset: str, image_size: int, in_chans: int, mean: Sequence[float], std: Sequence[float],
                    train: bool, params: AugmentParams | None = None, keep_aspect: bool = False) -> ImageTransform:
    """The transform of one split: ``preset`` augmentation when ``train`` else none.

    Args:
        preset: a name of :data:`PRESETS` (``none``, ``light``, ``xray``, ``fundus``).
        image_size: square output side in pixels.
        in_chans: 1 (grayscale) or 3 (RGB) model input channels.
        mean, std: per-channel normalisation, each of length ``in_chans``.
        train: augment (``True``) or not (validation, test, inference).
        params: explicit augmentation parameters that replace the preset's.
        keep_aspect: pad to a square instead of stretching.

    >>> tf = build_transform("none", 32, 3, [0.5] * 3, [0.25] * 3, train=False)
    >>> tf(np.zeros((40, 50, 1), np.float32)).shape
    torch.Size([3, 32, 32])
    """
    check_choice("augmentation preset (train.augment)", preset, choices(Augment))
    if in_chans not in (1, 3):
        raise ConfigError(f"in_chans must be 1 or 3 (model.in_chans), got {in_chans}.")
    if image_size < 1:
        raise ConfigError(f"image_size must be a positive number of pixels (model.image_size), got {image_size}.")
    if len(mean) != in_chans or len(std) != in_chans or min(std) <= 0:
        raise ConfigError(f"mean and std need {in_chans} value(s) each with std > 0 (one per input channel), "
                          f"got mean={list(mean)}, std={list(std)}.")
    augment = (params or PRESETS[preset]) if train else PRESETS["none"]
    return ImageTransform(image_size, in_chans, mean, std, augment, keep_aspect)


def inference_transform(pre: Preprocessing) -> ImageTransform:
    """The transform of a checkpoint's :class:`~medclass.artifacts.meta.Preprocessing`: exactly training's, no augmentation.

    Every consumer of a checkpoint (prediction, evaluation, explanation) builds its input this way.

    >>> from medclass.artifacts import Preprocessing
    >>> inference_transform(Preprocessing(32, 1, (0.5,), (0.25,)))(np.zeros((40, 50, 1), np.float32)).shape
    torch.Size([1, 32, 32])

    A volume checkpoint (``pre.volume``) gets its :class:`~medclass.data.volumes.prepare.VolumeTransform`,
    whose ``reader`` the datasets then use to read and prepare each volume.
    """
    if pre.volume:
        from .volumes.prepare import VolumePrep, VolumeTransform

        return VolumeTransform(VolumePrep.from_dict(dict(pre.volume)))
    return build_transform("none", pre.image_size, pre.in_chans, pre.mean, pre.std, train=False)
