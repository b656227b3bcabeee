"""Third-party console noise filtered at its source: each filter names one message of one module, never all warnings.

- PyTorch Lightning's ``_pytree`` helper trips torch's ``LeafSpec`` deprecation (a FutureWarning
  attributed to ``pytorch_lightning.utilities._pytree``) on every fit;
- Lightning logs an advert for its cloud logger (``💡 Tip: ... litlogger``) whenever a trainer has
  no logger, which is every medclass trainer (metrics go to ``metrics.csv``).
"""
from __future__ import annotations

import logging
import warnings

_LIGHTNING_INFO = "pytorch_lightning.utilities.rank_zero"  # the logger of Lightning's rank_zero_info


def _not_an_advert(record: logging.LogRecord) -> bool:
    return "litlogger" not in str(record.msg)


def filter_third_party_noise() -> None:
    """Install the filters (idempotent: a second call adds nothing)."""
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning, module=r"pytorch_lightning\.utilities\._pytree")
    logger = logging.getLogger(_LIGHTNING_INFO)
    if _not_an_advert not in logger.filters:
        logger.addFilter(_not_an_advert)
