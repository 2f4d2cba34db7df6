"""A PyTorch Lightning callback that records every training step (``pip install
hardstat[lightning]``).

Return the recorder's per-step arguments from ``training_step`` under ``"hardstat"``::

    def training_step(self, batch, batch_idx):
        ...
        return {"loss": loss, "hardstat": dict(query_ids=ids, pos_similarity=l_pos,
                neg_similarity=l_neg, neg_ids=neg_ids, losses=losses, in_band=mask)}

    recorder = Recorder.create("runs/x", negatives="in_batch", ...)
    trainer = Trainer(callbacks=[RecorderCallback(recorder)])

After each optimizer step the callback calls ``recorder.log_step(trainer.global_step - 1,
epoch=trainer.current_epoch, lr=<first param group's lr>, loss=outputs["loss"], **hardstat)``
(your dict may override ``lr`` and ``loss``). The recorder's :meth:`~hardstat.record.Recorder.state`
travels in Lightning's checkpoints; to resume, build the callback on
``Recorder.open(run_dir)`` and pass ``ckpt_path`` to ``fit``. The recorder is closed at the end
of ``fit`` (``finished``) or on an exception (``interrupted``). Uses ``pytorch_lightning``, or
``lightning.pytorch`` when only that is installed. Needs one optimizer step per batch
(``accumulate_grad_batches=1``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hardstat.errors import RecordError
from hardstat.record import Recorder

try:
    from pytorch_lightning import Callback
except ImportError:  # the unified package only
    from lightning.pytorch import Callback  # type: ignore[no-redef]


class RecorderCallback(Callback):
    """Calls ``recorder.log_step`` after every training batch (module docstring)."""

    def __init__(self, recorder: Recorder, *, key: str = "hardstat") -> None:
        self.recorder = recorder
        self.key = key

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.accumulate_grad_batches != 1:
            raise RecordError(
                "accumulate_grad_batches: RecorderCallback records one row per optimizer step; "
                "use accumulate_grad_batches=1"
            )

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not isinstance(outputs, Mapping) or self.key not in outputs:
            raise RecordError(
                f"outputs: training_step must return a dict with the loss and {self.key!r} (the "
                "recorder's per-step arguments)"
            )
        fields = dict(outputs[self.key])
        fields.setdefault("loss", outputs.get("loss"))
        if "lr" not in fields:
            fields["lr"] = trainer.optimizers[0].param_groups[0]["lr"]
        self.recorder.log_step(trainer.global_step - 1, epoch=trainer.current_epoch, **fields)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self.recorder.close()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.recorder.close("interrupted")

    def state_dict(self) -> dict[str, Any]:
        return self.recorder.state()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.recorder.load_state(state_dict)
