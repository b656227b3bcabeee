"""Kill (or Ctrl-C) a training run at an exact point of its loop: the subprocess of the resume-after-kill tests,
and ``interrupt_at``, the test side that starts it and sends the signal.

    python tests/_interrupt.py new CONFIG.yaml POINT MARKER
    python tests/_interrupt.py resume RUN_DIR POINT MARKER

When the run reaches POINT, the subprocess writes the file MARKER and waits there, in the training loop, until it
is killed: the test waits for MARKER (an event, not a time), then sends SIGKILL, or SIGINT as Ctrl-C does. So the
signal always lands at POINT, however fast or slow the machine is, and a run that ends without reaching POINT is
reported as such. POINT is one of:

* ``batch:E:B``       before training batch B of epoch E (mid-epoch)
* ``sigint:E:B``      Ctrl-C before training batch B of epoch E (Lightning shuts down and exits 1)
* ``validation:E``    before the first validation batch of epoch E
* ``epoch_start:E``   when epoch E starts (between epochs: epoch E-1 is saved)
* ``export:E``        after best/last.safetensors of epoch E are written, before its training state
* ``checkpoint:E``    halfway through writing the training state of epoch E (a truncated file)
* ``fit_end``         when training has ended, before the threshold is chosen
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytorch_lightning as pl

POLL_S = 0.05  # how often each side looks for the other's event; the outcome does not depend on it


class StopAt(pl.Callback):
    """At one point of the training loop (see the module docstring), writes ``marker`` and waits to be killed."""

    def __init__(self, point: str, marker: Path) -> None:
        kind, *numbers = point.split(":")
        self.kind, self.at, self.marker = kind, tuple(int(n) for n in numbers), marker

    def _reached(self) -> None:
        self.marker.write_text(str(os.getpid()))
        while True:  # in the main thread, so that SIGINT raises KeyboardInterrupt here, inside the training loop
            time.sleep(POLL_S)

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:  # noqa: D102
        if self.kind in ("batch", "sigint") and (trainer.current_epoch, batch_idx) == self.at:
            self._reached()

    def on_validation_batch_start(self, trainer, module, batch, batch_idx, dataloader_idx=0) -> None:  # noqa: D102
        if self.kind == "validation" and (trainer.current_epoch,) == self.at and not trainer.sanity_checking:
            self._reached()

    def on_train_epoch_start(self, trainer, module) -> None:  # noqa: D102
        if self.kind == "epoch_start" and (trainer.current_epoch,) == self.at:
            self._reached()

    def on_save_checkpoint(self, trainer, module, checkpoint) -> None:  # noqa: D102
        if self.kind == "export" and (trainer.current_epoch,) == self.at:
            self._reached()

    def on_fit_end(self, trainer, module) -> None:  # noqa: D102
        if self.kind == "fit_end":
            self._reached()

    def patch_checkpoint_writer(self) -> None:
        """For ``checkpoint:E``: the training state of epoch E is cut in half on disk, then the run stops there."""
        if self.kind != "checkpoint":
            return
        original = pl.Trainer.save_checkpoint

        def save_half_then_stop(trainer, filepath, *args, **kwargs):
            original(trainer, filepath, *args, **kwargs)
            if (trainer.current_epoch,) == self.at:
                data = Path(filepath).read_bytes()
                Path(filepath).write_bytes(data[: len(data) // 2])
                self._reached()

        pl.Trainer.save_checkpoint = save_half_then_stop


def interrupt_at(args: list[str], point: str, folder: Path, timeout_s: float = 600) -> tuple[int, str]:
    """Run ``_interrupt.py ARGS POINT MARKER`` in a subprocess, wait until it reaches ``point``, send the signal;
    return its exit status (1 after Ctrl-C, -9 after SIGKILL) and the end of its output. Fails the test if the
    run ends before reaching ``point``."""
    import pytest

    marker, log = folder / f"reached-{point.replace(':', '-')}", folder / f"interrupt-{point.replace(':', '-')}.log"
    marker.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__)), *args, point, str(marker)]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[1], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout_s  # a hang guard only: the test waits for the marker, not a time
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"{point}: the run ended (exit {proc.returncode}) before reaching {point}\n"
                            f"{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{point}: not reached within {timeout_s:.0f} s\n{log.read_text()[-3000:]}")
            time.sleep(POLL_S)
        os.kill(proc.pid, signal.SIGINT if point.startswith("sigint") else signal.SIGKILL)
        return proc.wait(timeout=timeout_s), log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def main() -> None:
    """Entry point of the subprocess (arguments: see the module docstring)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's medclass, as the tests import it
    from medclass.config import load_config
    from medclass.training import train

    mode, path, point, marker = sys.argv[1:5]
    stopper = StopAt(point, Path(marker))
    stopper.patch_checkpoint_writer()
    if mode == "resume":
        train(resume=path, progress=False, extra_callbacks=[stopper])
    else:
        train(load_config(path), progress=False, extra_callbacks=[stopper])


if __name__ == "__main__":
    main()
