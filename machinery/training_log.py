"""The training log of 'train' (train_log.csv: the loss of every step, the test metrics of every
epoch), and the curves drawn from it."""
import csv
import os
from pathlib import Path

from mindspore.train import Callback

from .errors import UsageError
from .monitoring import step_loss
from .outputs import save_figures
from .plotting import plot_training_log

LOG_NAME = "train_log.csv"
LOG_FIELDS = ("global_step", "epoch", "loss", "test_acc", "test_loss", "run")
REQUIRED_FIELDS = ("global_step", "epoch", "run")  # the others are empty where they do not apply


def read_log(path):
    """The rows of a training log as dicts of numbers (None where empty). A row that is not whole, as
    a crash or a power cut can leave the last one (fields missing or extra, a number cut short, no
    step), is left out."""
    rows = []
    try:  # errors="replace": bytes a crash garbled fail the number check below, not the reading
        with open(path, newline="", encoding="utf-8", errors="replace") as file:
            for row in csv.DictReader(file):
                try:
                    if None in row or any(row.get(key) is None for key in LOG_FIELDS):
                        continue  # too many fields, or too few
                    values = {key: (float(row[key]) if row[key] else None) for key in LOG_FIELDS}
                except (TypeError, ValueError, KeyError):
                    continue
                if all(values[key] is not None for key in REQUIRED_FIELDS):
                    rows.append(values)
    except FileNotFoundError:
        pass
    except csv.Error:  # such as a NUL byte: the rest of the file is garbled, the rows before it are kept
        pass
    return rows


class TrainingLog(Callback):
    """Appends each step's loss and each epoch's test metrics to <ckpt_dir>/train_log.csv.

    `current_step()` is the number of steps done: put the log before the callback that counts them.

    `start(step)` cuts the log back to global step `step`, where the run continues from, so that
    it never holds a step trained twice; each process that continues the run gets a new `run`
    number, which the curves mark.
    """

    def __init__(self, ckpt_dir, current_step, steps_per_epoch):
        super().__init__()
        self.path, self.current_step, self.steps_per_epoch = Path(ckpt_dir) / LOG_NAME, current_step, steps_per_epoch
        self.file, self.writer, self.run = None, None, 1

    def start(self, step):
        kept = [row for row in read_log(self.path) if row["global_step"] <= step]
        self.run = int(max(row["run"] for row in kept)) + 1 if kept else 1
        partial = self.path.with_name("." + self.path.name)
        with open(partial, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(LOG_FIELDS)
            writer.writerows([_log_cell(row[key]) for key in LOG_FIELDS] for row in kept)
        os.replace(partial, self.path)
        self.file = open(self.path, "a", newline="", encoding="utf-8")
        self.writer = csv.writer(self.file)

    def _append(self, step, loss=None, acc=None, test_loss=None):
        epoch = (step - 1) // self.steps_per_epoch + 1
        self.writer.writerow([step, epoch, *(_log_cell(v) for v in (loss, acc, test_loss)), self.run])
        self.file.flush()

    def on_train_step_end(self, run_context):  # before the CheckpointSaver counts the step: it is the next one
        self._append(self.current_step() + 1, loss=step_loss(run_context.original_args()))

    def epoch_metrics(self, metrics):
        self._append(self.current_step(), acc=metrics.get("acc"), test_loss=metrics.get("loss"))

    def close(self):
        if self.file:
            self.file.close()


def _log_cell(value):
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))


def log_dir(ckpt_dir):
    """Where the 'train' run of `ckpt_dir` keeps its log: the folder, or rank 0's under msrun."""
    rank_0 = Path(ckpt_dir) / "rank_0"
    return rank_0 if not (Path(ckpt_dir) / LOG_NAME).exists() and (rank_0 / LOG_NAME).exists() else Path(ckpt_dir)


def save_curves(ckpt_dir, save_figure, required=False):
    """Draw the curves of the run logged in `ckpt_dir` and save them beside its log, with the lesson's
    `save_figure`, as train_curves.png (so that a run in another folder never replaces them); return
    the figure's path and the log's (none without a log, unless `required`: a folder trained before
    logs existed has none)."""
    if Path(ckpt_dir).is_file():
        raise UsageError(f"--ckpt_dir {ckpt_dir} is a file, not a folder; pass the folder of a 'train' run, "
                         f"which holds its {LOG_NAME}")
    path = log_dir(ckpt_dir) / LOG_NAME
    rows = read_log(path)
    if not rows and not required:
        return []
    if not rows and path.is_file():
        raise UsageError(f"{path} has no complete row to draw (it is empty or damaged); train on with "
                         f"'python main.py train --auto_resume', or pass another --ckpt_dir")
    if not rows:
        raise UsageError(f"no training log in {ckpt_dir} ({LOG_NAME}): run 'python main.py train' first, "
                         f"or pass --ckpt_dir")
    return [*save_figures({"train_curves": plot_training_log(rows)}, save_figure, path.parent), path]


