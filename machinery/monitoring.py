"""Watching training: progress bars for the epochs and evaluations, in a terminal or in Jupyter."""
import os
import sys

import mindspore as ms
import numpy as np
from mindspore.train import Callback
from tqdm.auto import tqdm

# tqdm.auto picked its Jupyter widget; asked of the class, since importing tqdm.notebook (and
# ipywidgets) to compare with would add 0.1 s to every script start
IN_NOTEBOOK = any(cls.__module__ == "tqdm.notebook" for cls in tqdm.__mro__)


def progress_enabled():
    """Bars in Jupyter and in terminals; none in logs, or with TQDM_DISABLE=1 (--no_progress)."""
    if os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true"):
        return False
    return IN_NOTEBOOK or sys.stderr.isatty()


def step_loss(cb_params):
    """The loss of the step just done, as a Python float, from what the training network returned."""
    outputs = cb_params.net_outputs
    if isinstance(outputs, (tuple, list)):
        outputs = outputs[0]
    return float(np.mean(outputs.asnumpy())) if isinstance(outputs, ms.Tensor) else float(outputs)


class ProgressBar(Callback):
    """One bar per training epoch (step, loss, steps/s, ETA) and one per evaluation."""

    def __init__(self, num_epochs=None):
        super().__init__()
        self.num_epochs, self.bar, self.enabled = num_epochs, None, progress_enabled()
        self.last_epoch = None

    def _open(self, total, description):
        if not self.enabled:
            return
        if IN_NOTEBOOK:
            from IPython.display import display
            self.bar = tqdm(total=total, desc=description, unit="step", display=False)
            self.display = display(self.bar.container, display_id=True)
        else:
            self.bar = tqdm(total=total, desc=description, unit="step", dynamic_ncols=True)

    def _advance(self, steps=1, **postfix):
        self.bar.update(steps)
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)
        if self.bar.n >= self.bar.total:
            self._close()  # now, so that the epoch's LossMonitor line starts on a line of its own

    def _close(self):
        if self.bar is not None:
            self.bar.close()
            if IN_NOTEBOOK:  # the widget's text version, which a viewer without widgets shows, was
                self.display.update(self.bar.container)  # drawn at 0%: draw it again, finished
            self.bar = None

    def on_train_begin(self, run_context):
        self.last_epoch = None

    def on_train_epoch_begin(self, run_context):
        params = run_context.original_args()
        if self.last_epoch is None:  # epoch_num counts the epochs of this call, from initial_epoch on
            self.last_epoch = params.cur_epoch_num - 1 + params.epoch_num
        self._open(params.batch_num, f"epoch {params.cur_epoch_num}/{self.num_epochs or self.last_epoch}")

    def on_train_step_end(self, run_context):
        if self.bar is not None:
            # To the step reached in this epoch: in dataset sink mode (Ascend) this callback fires once per
            # sink of many steps, and cur_step_num, which counts from the start of the call, grows by the sink size.
            params = run_context.original_args()
            reached = (params.cur_step_num - 1) % params.batch_num + 1
            self._advance(reached - self.bar.n, loss=f"{step_loss(params):.4f}")

    def on_eval_begin(self, run_context):
        self._open(run_context.original_args().batch_num, "test")

    def on_eval_step_end(self, run_context):
        if self.bar is not None:  # once per batch, in sink mode too
            self._advance()

    def on_train_epoch_end(self, run_context):
        self._close()  # a stopped epoch ends early

    on_train_end = on_train_epoch_end

    def on_eval_end(self, run_context):
        if self.bar is not None:  # an evaluation always ends complete
            self.bar.update(self.bar.total - self.bar.n)
        self._close()
