"""Train (or resume) a run in this process and kill it at a chosen point: the subprocess of the
resume-after-kill tests.

    python tests/_interrupt.py new CONFIG.yaml POINT
    python tests/_interrupt.py resume RUN_DIR POINT

POINT is where the process sends itself SIGKILL (or SIGINT, as Ctrl-C does):

* ``batch:E:B``       before training batch B of epoch E (mid-epoch)
* ``sigint:E:B``      Ctrl-C before training batch B of epoch E (Lightning shuts down and exits 1)
* ``validation:E``    before the first validation batch of epoch E
* ``epoch_start:E``   when epoch E starts (between epochs: epoch E-1 is saved)
* ``export:E``        after best/last.safetensors of epoch E are written, before its training state
* ``checkpoint:E``    halfway through writing the training state of epoch E (a truncated file)
* ``fit_end``         when training has ended, before the threshold is chosen
* ``none``            no kill: the run ends normally
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytorch_lightning as pl


class KillAt(pl.Callback):
    """Sends this process ``signal`` at one point of the training loop (see the module docstring)."""

    def __init__(self, point: str) -> None:
        kind, *numbers = point.split(":")
        self.kind, self.at = kind, tuple(int(n) for n in numbers)

    def _die(self, sig: int = signal.SIGKILL) -> None:
        os.kill(os.getpid(), sig)

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:  # noqa: D102
        if self.kind in ("batch", "sigint") and (trainer.current_epoch, batch_idx) == self.at:
            self._die(signal.SIGINT if self.kind == "sigint" else signal.SIGKILL)

    def on_validation_batch_start(self, trainer, module, batch, batch_idx, dataloader_idx=0) -> None:  # noqa: D102
        if self.kind == "validation" and (trainer.current_epoch,) == self.at and not trainer.sanity_checking:
            self._die()

    def on_train_epoch_start(self, trainer, module) -> None:  # noqa: D102
        if self.kind == "epoch_start" and (trainer.current_epoch,) == self.at:
            self._die()

    def on_save_checkpoint(self, trainer, module, checkpoint) -> None:  # noqa: D102
        if self.kind == "export" and (trainer.current_epoch,) == self.at:
            self._die()

    def on_fit_end(self, trainer, module) -> None:  # noqa: D102
        if self.kind == "fit_end":
            self._die()

    def patch_checkpoint_writer(self) -> None:
        """For ``checkpoint:E``: the training state of epoch E is cut in half on disk, then the process dies."""
        if self.kind != "checkpoint":
            return
        original = pl.Trainer.save_checkpoint

        def save_half_then_die(trainer, filepath, *args, **kwargs):
            original(trainer, filepath, *args, **kwargs)
            if (trainer.current_epoch,) == self.at:
                data = Path(filepath).read_bytes()
                Path(filepath).write_bytes(data[: len(data) // 2])
                self._die()

        pl.Trainer.save_checkpoint = save_half_then_die


def main() -> None:
    """Entry point of the subprocess (arguments: see the module docstring)."""
    from medclass.config import load_config
    from medclass.training import train

    mode, path, point = sys.argv[1:4]
    killer = KillAt(point)
    killer.patch_checkpoint_writer()
    if mode == "resume":
        train(resume=path, progress=False, extra_callbacks=[killer])
    else:
        train(load_config(path), progress=False, extra_callbacks=[killer])


if __name__ == "__main__":
    main()
