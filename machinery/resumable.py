"""Exact resuming: the engine of `python main.py train`, which continues an interrupted run bit
for bit, from the step it stopped at and with the same data order.

The notebook's section "Surviving a crash" shows what it adds to MindSpore's own
BackupAndRestore and OnRequestExit callbacks.
"""
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import mindspore as ms
import mindspore.dataset as ds
import numpy as np
from mindspore import nn
from mindspore.train import Callback, Model

from .checkpoint_files import FORMATS, CheckpointError, all_checkpoints, all_finite, check_shapes, \
    read_checkpoint, regular_checkpoints, run_info, shown, write_checkpoint
from .errors import say
from .monitoring import ProgressBar, step_loss
from .stops import STOP_SIGNALS
from .training_log import TrainingLog


@dataclass
class TrainConfig:
    """What defines a training run; a continued run must use the same values."""
    num_epochs: int = 2
    lr: float = 0.01
    seed: int = 0
    steps_per_epoch: int = None  # None: the whole training set
    save_steps: int = None  # None: save once per epoch only
    evaluate: bool = True  # evaluate after each epoch and keep the best checkpoint
    ckpt_format: str = "ckpt"  # or "safetensors"
    keep_checkpoint_max: int = 5

    @classmethod
    def from_args(cls, args):
        """The configuration of `python main.py train` with the options in `args`."""
        return cls(args.num_epochs, args.lr, args.seed, args.steps_per_epoch, args.save_steps, args.evaluate,
                   args.ckpt_format)


def epoch_dataset(create_dataset, data_dir, seed, epoch, steps_per_epoch=None, skip=0, shard=(0, 1)):
    """The training batches of `epoch` in an order fixed by `seed` and `epoch`, from batch `skip` on.

    A pipeline built anew replays its first epoch's order, so each epoch gets a seed of its own.
    `shard` is (rank, number of workers): each data-parallel worker gets its own part.
    """
    ds.config.set_seed((seed * 100_000 + epoch) % 2**32)  # MindSpore takes 0 to 2**32 - 1
    rank, workers = shard
    dataset = create_dataset(data_dir, num_samples=steps_per_epoch * 32 if steps_per_epoch else None,
                             **({"num_shards": workers, "shard_id": rank} if workers > 1 else {}))
    return dataset.skip(skip) if skip else dataset


class CheckpointSaver(Callback):
    """Writes checkpoints: every `save_steps` steps by itself, and whenever `save` is called.

    Each file stores, beside the parameters and the optimizer state, the epoch, the global step,
    the seed, the epoch size and the best accuracy so far. The most accurate parameters are also
    kept as <prefix>-best; rotation keeps the newest `keep_checkpoint_max` regular files and never
    touches the best one.
    """

    def __init__(self, train_network, ckpt_dir, config, steps_per_epoch, prefix="lenet", workers=1):
        super().__init__()
        self.network, self.ckpt_dir, self.config = train_network, Path(ckpt_dir), config
        self.steps_per_epoch, self.prefix, self.workers = steps_per_epoch, prefix, workers
        self.step, self.best_acc = 0, -1.0
        self.saved_step, self.last_saved = 0, None

    def on_train_step_end(self, run_context):
        self.step += 1
        save_steps, at_epoch_end = self.config.save_steps, self.step % self.steps_per_epoch == 0
        if save_steps and self.step % save_steps == 0 and not at_epoch_end:
            self.save()

    def position(self):
        """(epoch, step in epoch), both from 1, of the last step done."""
        epoch, step = divmod(self.step - 1, self.steps_per_epoch)
        return epoch + 1, step + 1

    def save(self, **metrics):
        epoch, step = self.position()
        path = self.ckpt_dir / f"{self.prefix}-{epoch}_{step}.{self.config.ckpt_format}"
        self._write(path, metrics)
        self.saved_step, self.last_saved = self.step, path
        for old in regular_checkpoints(self.ckpt_dir, self.prefix)[self.config.keep_checkpoint_max:]:
            old.unlink()
        return path

    def save_if_best(self, acc, loss):
        acc = float(np.float32(acc))  # as stored, so that a continued run compares the same numbers
        if acc > self.best_acc:
            self.best_acc = acc
            best = self.ckpt_dir / f"{self.prefix}-best.{self.config.ckpt_format}"
            self._write(best, {"acc": acc, "loss": loss})

    def _write(self, path, metrics):
        if not all_finite(self.network):  # StopOnNonFinite stops first; this is the last line of defence
            raise Diverged(f"the parameters are no longer finite at global step {self.step}", self.last_saved)
        info = {"epoch_num": self.position()[0], "step_num": self.step, "seed": self.config.seed,
                "steps_per_epoch": self.steps_per_epoch, "best_acc": self.best_acc, "workers": self.workers,
                **metrics}
        write_checkpoint(self.network, path, info, self.config.ckpt_format)

    def restore(self, auto_resume, source_dir=None):
        """Continue from the newest intact checkpoint in `source_dir` (default: our folder) if
        `auto_resume`; say what happened."""
        source_dir = Path(source_dir or self.ckpt_dir)
        existing = regular_checkpoints(source_dir, self.prefix)
        if existing and not auto_resume:
            raise CheckpointError(f"{source_dir} already has checkpoints (newest: {existing[0].name}); pass "
                                  f"--auto_resume to continue from them, or choose another --ckpt_dir")
        if not self._continue_from(existing, source_dir):
            self._check_new_run_may_start()
            print("Starting a new run" + (": no intact checkpoint to continue from" if existing else ""))

    def _check_new_run_may_start(self):
        """A new run writes <prefix>-best and <prefix>-<epoch>_<step>: never over another run's files."""
        for fmt in FORMATS:
            best = self.ckpt_dir / f"{self.prefix}-best.{fmt}"
            if best.exists():
                raise CheckpointError(f"{best} belongs to an earlier run, and a new run would overwrite it; "
                                      f"choose another --ckpt_dir, or move the file away")

    def _continue_from(self, existing, source_dir):
        """Load the newest intact checkpoint of `existing`; return whether there was one."""
        for path in existing:
            try:
                params = read_checkpoint(path)
            except CheckpointError as error:
                if source_dir == self.ckpt_dir:
                    path.rename(path.with_name(path.name + ".damaged"))  # out of the way of new saves, but kept
                    error = f"{error} (kept as {path.name}.damaged)"
                print(f"Skipping {error}")
                continue
            check_shapes(params, self.network, path)
            self._check_compatible(path, params)
            ms.load_param_into_net(self.network, params)
            info = run_info(params)
            self.step = self.saved_step = info["step_num"]
            self.last_saved = path
            self.best_acc = info["best_acc"]
            epoch, step = self.position()
            best = f", best acc {self.best_acc:.4f}" if self.best_acc >= 0 else ""
            print(f"Continuing from {shown(path)}: epoch {epoch}, step {step}{best}")
            return True
        return False

    def _check_compatible(self, path, params):
        info = run_info(params)
        if "seed" not in info:
            raise CheckpointError(f"{path} has no run position (it was not saved by 'train'); "
                                  f"choose another --ckpt_dir (train's default is ckpt/train)")
        stored = {"--seed": info["seed"], "--steps_per_epoch": info["steps_per_epoch"],
                  "--lr": float(params["learning_rate"].asnumpy())}
        asked = {"--seed": self.config.seed, "--steps_per_epoch": self.steps_per_epoch,
                 "--lr": float(np.float32(self.config.lr))}
        for option, value in stored.items():
            if asked[option] != value:
                raise CheckpointError(f"{path} was trained with {option} {value:g}, not {asked[option]:g}; "
                                      f"pass the same value to continue it exactly")


class Diverged(Exception):
    """The loss or the parameters stopped being finite: training cannot go on."""

    def __init__(self, what, kept=None):
        kept = (f"the last checkpoint saved, {shown(kept)}, is finite and kept" if kept
                else "no checkpoint was saved")
        super().__init__(f"{what}: training diverged and stopped without saving it; {kept} "
                         f"(a smaller --lr avoids this)")


class StopOnNonFinite(Callback):
    """Stops training with `Diverged` as soon as a step's loss is NaN or Inf, or the parameters are
    at the end of an epoch, where the tutorial's ModelCheckpoint and SaveBest save: before any later
    callback can save them. Put it first. (Reading every parameter costs about a tenth of a step,
    so it is not done every step; a step that leaves them non-finite makes the next loss NaN, and
    CheckpointSaver checks its own saves.)

    `position()` gives (epoch, step in epoch, global step); by default, from MindSpore's counts.
    `kept()` gives the last checkpoint saved, to name in the message.
    """

    def __init__(self, position=None, kept=lambda: None):
        super().__init__()
        self.position, self.kept = position, kept

    def on_train_step_end(self, run_context):
        cb_params = run_context.original_args()
        loss = step_loss(cb_params)
        epoch_end = cb_params.cur_step_num % cb_params.batch_num == 0
        if np.isfinite(loss) and (not epoch_end or all_finite(cb_params.train_network)):
            return
        if self.position:
            epoch, step, global_step = self.position()
        else:
            global_step = cb_params.cur_step_num
            epoch, step = cb_params.cur_epoch_num, (global_step - 1) % cb_params.batch_num + 1
        what = f"the loss is {loss}" if not np.isfinite(loss) else f"the loss is {loss:.4g}, the parameters not finite,"
        raise Diverged(f"{what} at epoch {epoch}, step {step} (global step {global_step})", self.kept())


class StopOnSignal(Callback):
    """Turns SIGINT, SIGTERM and SIGHUP into a stop after the current step, or after step `stop_after_step`.

    The signal handler only raises a flag: the step finishes, its state is saved, and the run
    ends with `TrainingInterrupted`. (While a step runs, MindSpore's runtime catches SIGINT and
    passes it on as SIGTERM, so Ctrl-C usually reports SIGTERM.)
    """

    def __init__(self, current_step, stop_after_step=None):
        super().__init__()
        self.current_step, self.stop_after_step = current_step, stop_after_step
        self.received, self.previous = [], {}

    SIGNALS = STOP_SIGNALS

    def install(self):
        for sig in self.SIGNALS:
            self.previous[sig] = signal.getsignal(sig)
            signal.signal(sig, lambda signum, _: self.received.append(signum))

    def uninstall(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def should_stop(self, step):
        return bool(self.received) or step == self.stop_after_step

    def on_train_step_end(self, run_context):
        if self.should_stop(self.current_step()):
            run_context.request_stop()


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving its state."""

    def __init__(self, signum, path):
        self.exit_code = 128 + signum
        super().__init__(f"stopped by {signal.Signals(signum).name} at {path.name.rsplit('.', 1)[0]}; "
                         f"saved {shown(path)}")


def workers_of_run(ckpt_dir):
    """How many workers trained the run whose checkpoints are in `ckpt_dir`, or None if there are none:
    the number its newest checkpoint stores, or where none does (saved before the number was stored),
    1 for checkpoints in the folder itself and the number of rank_<id>/ folders for an msrun. (An
    msrun killed while saving may leave a checkpoint in rank_0/ only: the stored number still counts
    rank_1.)"""
    root = Path(ckpt_dir)
    ranks = sorted(int(path.name[5:]) for path in root.glob("rank_*")
                   if path.name[5:].isdigit() and path.is_dir() and all_checkpoints(path))
    folder = root / f"rank_{ranks[0]}" if ranks else root
    for path in all_checkpoints(folder) if folder.is_dir() else []:
        try:
            info = run_info(read_checkpoint(path))
        except CheckpointError:
            continue  # damaged: the next newest tells
        if "workers" in info:
            return int(info["workers"])
        break
    if ranks:
        return max(ranks) + 1
    return 1 if folder.is_dir() and all_checkpoints(folder) else None


def check_worker_count(ckpt_dir, workers):
    """Fail with one line if `ckpt_dir` holds a run of another number of workers: its global batch, its
    epoch size and its data order depend on that number, so it continues only with the same one."""
    earlier = workers_of_run(ckpt_dir)
    if earlier is None or earlier == workers:
        return
    def described(count):
        return "1 process" if count == 1 else f"{count} workers under msrun"
    how = ("python main.py train --auto_resume, in one process" if earlier == 1 else
           f"msrun --worker_num={earlier} --join=True ... main.py train --auto_resume")
    raise CheckpointError(f"{shown(ckpt_dir)} holds a run trained by {described(earlier)}, and this is "
                          f"{described(workers)}; a run continues only with the number of workers it started "
                          f"with (it sets the global batch and the data order): continue it with {how}, "
                          f"or choose another --ckpt_dir")


def train_resumable(network, create_dataset, data_dir, ckpt_dir, config, auto_resume=False,
                    stop_after_step=None, shard=(0, 1), when_complete=None):
    """Train `network()` to `config.num_epochs`, continuing exactly from `ckpt_dir` if `auto_resume`.

    `create_dataset(data_dir, training, batch_size=, num_samples=, num_shards=, shard_id=)` makes
    the batches. One `Model.train` call per epoch, on that epoch's batches; after each, an
    evaluation (in batches of 1000: fewer calls, the same result), the best checkpoint and a
    save. `stop_after_step` simulates an interruption. `shard` is (rank, number of workers) under
    msrun. `when_complete()`, once the last step is saved, takes the stop signals over from the
    run's own handlers at once (stops.mark_complete: a signal then stops nothing). Returns the last
    checkpoint saved.
    """
    rank, workers = shard
    check_worker_count(ckpt_dir, workers)
    steps_per_epoch = epoch_dataset(create_dataset, data_dir, config.seed, 0, config.steps_per_epoch,
                                    shard=shard).get_dataset_size()
    ms.set_seed(config.seed)
    net = network()
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    model = Model(net, loss, nn.Momentum(net.trainable_params(), config.lr, 0.9), metrics={"acc", "loss"})
    if workers > 1:  # every worker saves its own copy; all continue from rank 0's, so they agree
        ckpt_dir, source_dir = Path(ckpt_dir) / f"rank_{rank}", Path(ckpt_dir) / "rank_0"
    else:
        source_dir = ckpt_dir
    Path(ckpt_dir).mkdir(parents=True, exist_ok=True)
    saver = CheckpointSaver(model.train_network, ckpt_dir, config, steps_per_epoch, workers=workers)
    saver.restore(auto_resume, source_dir)
    if saver.step >= config.num_epochs * steps_per_epoch:
        done = saver.step // steps_per_epoch
        beyond = f", beyond --num_epochs {config.num_epochs}" if done > config.num_epochs else ""
        print(f"Already trained for {done} epoch{'s' if done > 1 else ''}{beyond}; nothing to do")
        return saver.last_saved
    stopper, progress = StopOnSignal(lambda: saver.step, stop_after_step), ProgressBar(config.num_epochs)
    # the guard runs before the saver has counted the step: the step it checks is saver.step + 1
    guard = StopOnNonFinite(lambda: (saver.step // steps_per_epoch + 1, saver.step % steps_per_epoch + 1,
                                     saver.step + 1), lambda: saver.last_saved)
    log = TrainingLog(ckpt_dir, lambda: saver.step, steps_per_epoch)
    log.start(saver.step)
    stopper.install()
    try:
        start = time.perf_counter()
        while saver.step < config.num_epochs * steps_per_epoch and not stopper.should_stop(saver.step):
            epoch, done = divmod(saver.step, steps_per_epoch)
            data = epoch_dataset(create_dataset, data_dir, config.seed, epoch, config.steps_per_epoch, done, shard)
            model.train(epoch + 1, data, callbacks=[guard, log, progress, saver, stopper], initial_epoch=epoch,
                        dataset_sink_mode=False)
            if saver.step % steps_per_epoch:
                break  # stopped mid-epoch
            metrics = {}
            if config.evaluate and rank == 0:  # the test set is the same for every worker
                test_set = create_dataset(data_dir, training=False, batch_size=1000)
                # sorted: Model.eval returns them in the order of the set of metric names, which changes
                # from process to process, and the checkpoint stores them in the order given
                results = model.eval(test_set, callbacks=progress)
                metrics = {name: float(results[name]) for name in sorted(results)}
                log.epoch_metrics(metrics)
                saver.save_if_best(metrics["acc"], metrics["loss"])
            saver.save(**metrics)
            print(f"epoch {epoch + 1}/{config.num_epochs}: {time.perf_counter() - start:.1f} s, "
                  + "".join(f"{name} {value:.4f}, " for name, value in sorted(metrics.items()))
                  + f"saved {saver.last_saved.name}")
        if saver.saved_step != saver.step:
            saver.save()
    finally:
        if when_complete and saver.step >= config.num_epochs * steps_per_epoch:
            when_complete()  # no moment without a handler, when a signal would stop a finished run
        else:
            stopper.uninstall()
        log.close()
    if stopper.received and saver.step >= config.num_epochs * steps_per_epoch:
        say(f"{signal.Signals(stopper.received[0]).name} arrived after the last step: training is complete, "
            f"saved {shown(saver.last_saved)}")
    elif stopper.received:
        raise TrainingInterrupted(stopper.received[0], saver.last_saved)
    if saver.step < config.num_epochs * steps_per_epoch:
        print(f"Stopped after step {saver.step} as asked; saved {shown(saver.last_saved)}")
    return saver.last_saved
