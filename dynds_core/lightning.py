"""A Lightning callback that runs DynDS in a ``lightning.Trainer`` (the ``dynds[lightning]`` extra).

    from dynds_core.lightning import DynDSCallback
    trainer = lightning.Trainer(max_epochs=12, callbacks=[DynDSCallback(schedule={"kind": "stochastic", "p": 0.5})])
    trainer.fit(module, train_loader)

On a reduced step the callback downsamples the input of the LightningModule's own forward (what
``training_step`` calls as ``self(x)``) and runs that forward under :func:`~dynds_core.reduced_pass`;
the pass ends before ``backward``, which fills the original parameters' gradients. Settings are
:class:`~dynds_core.DynDS`'s; ``total_steps`` defaults to the trainer's estimated stepping batches and
the seed to 0. Validation and test steps always run full.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

try:
    import lightning.pytorch as pl
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError("dynds_core.lightning needs Lightning: pip install 'dynds[lightning]'") from exc

from .method import DynDS


class DynDSCallback(pl.Callback):
    def __init__(self, *, total_steps: int | None = None, seed: int = 0, **settings: Any):
        self.total_steps, self.seed, self.settings = total_steps, seed, settings
        self.dynds: DynDS | None = None
        self._pass: contextlib.ExitStack | None = None
        self._hook = None
        self._started = 0.0
        self.reduced_steps = 0

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        total = self.total_steps or int(trainer.estimated_stepping_batches)
        self.dynds = DynDS(total_steps=total, seed=self.seed, **self.settings)
        self.dynds.prepare(pl_module)  # bn="separate": before configure_optimizers builds the optimizer

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        assert self.dynds is not None
        self._started = time.perf_counter()
        step = min(trainer.global_step, self.dynds.total_steps - 1)
        self.dynds.last = self.dynds.decide(step, trainer.current_epoch)
        if self.dynds.last != "reduced":
            return
        d = self.dynds.settings
        from .ops import downsample_input
        from .reduced import reduced_pass

        def shrink(module, args):
            return (downsample_input(args[0], d.input.factor, d.input.mode), *args[1:])

        self._pass = contextlib.ExitStack()
        self._pass.callback(pl_module.register_forward_pre_hook(shrink).remove)
        self._pass.enter_context(reduced_pass(pl_module, d.kernel, d.bn))
        self.reduced_steps += 1

    def _end_pass(self) -> None:
        if self._pass is not None:
            self._pass.close()
            self._pass = None

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self._end_pass()  # the forward is done; backward needs no mode

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._end_pass()
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and self.dynds is not None and self.dynds.schedule.kind == "adaptive":
            self.dynds.observe(float(loss), time.perf_counter() - self._started)

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._end_pass()
