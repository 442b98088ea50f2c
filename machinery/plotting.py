"""Figures for the tutorial: predictions, training curves, confusion matrix, mistakes."""
import matplotlib.pyplot as plt
import numpy as np


def _show_digits(axes, images, labels, predictions, title):
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax, image, label, prediction in zip(axes.flat, images, labels, predictions):
        ax.imshow(np.squeeze(image), cmap="gray")
        ax.set_title(title.format(prediction=prediction, truth=label),
                     color="blue" if prediction == label else "red")


def plot_misclassified(images, labels, predictions, rows=4, columns=8):
    """A grid of the first test images the model gets wrong, with prediction and truth."""
    wrong = np.flatnonzero(predictions != labels)[:rows * columns]
    fig, axes = plt.subplots(rows, columns, figsize=(1.3 * columns, 1.5 * rows + 0.5))
    _show_digits(axes, images[wrong], labels[wrong], predictions[wrong], "{prediction} (true {truth})")
    for ax in axes.flat[len(wrong):]:
        ax.axis("off")
    fig.suptitle(f"{np.count_nonzero(predictions != labels)} of {len(labels)} test images wrong; "
                 f"the first {len(wrong)}: prediction (truth)")
    fig.tight_layout()
    return fig


def plot_confusion_matrix(labels, predictions, classes=10):
    """Counts of each (truth, prediction) pair over the test set."""
    counts = np.bincount(labels * classes + predictions, minlength=classes * classes).reshape(classes, classes)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    shown = ax.imshow(counts, cmap="Blues", norm="log" if counts.max() > 100 else None)
    fig.colorbar(shown, ax=ax, label="images")
    for (truth, prediction), count in np.ndenumerate(counts):
        if count:
            ax.text(prediction, truth, count, ha="center", va="center", fontsize=7,
                    color="white" if count > counts.max() / 10 else "black")
    ax.set(xticks=range(classes), yticks=range(classes), xlabel="prediction", ylabel="truth",
           title=f"Confusion matrix: accuracy {np.trace(counts) / counts.sum():.4f}")
    fig.tight_layout()
    return fig


def plot_training_log(rows):
    """The loss of every step and the test metrics of every epoch of a 'train' run, from the rows
    of its train_log.csv, in epochs; a dotted line marks each place where the run was continued."""
    steps = [row for row in rows if row["loss"] is not None]
    epochs = [row for row in rows if row["test_acc"] is not None]
    # the epoch's length: from an evaluation, or from epoch 1's last step once epoch 2 began; before
    # that it is unknown, and the x axis counts steps, not epochs
    first_done = any(row["epoch"] > 1 for row in rows)
    per_epoch = max((row["global_step"] / row["epoch"] for row in epochs), default=None) or (max(
        (row["global_step"] for row in rows if row["epoch"] == 1), default=1) if first_done else 1)
    unit = "epoch" if epochs or first_done else "step"
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4))
    loss_ax.plot([row["global_step"] / per_epoch for row in steps], [row["loss"] for row in steps], lw=0.6,
                 color="C0", label="training step")
    loss_ax.plot([row["global_step"] / per_epoch for row in epochs], [row["test_loss"] for row in epochs], "o-",
                 color="C1", label="test set, after each epoch")
    acc_ax.plot([row["global_step"] / per_epoch for row in epochs], [row["test_acc"] for row in epochs], "o-",
                color="C1")
    starts = [row["global_step"] - 1 for previous, row in zip(rows, rows[1:]) if row["run"] != previous["run"]]
    for ax in (loss_ax, acc_ax):
        for start in starts:
            ax.axvline(start / per_epoch, color="gray", linestyle=":")
    if starts:
        loss_ax.plot([], [], color="gray", linestyle=":", label="continued here")
    if not epochs:
        acc_ax.text(0.5, 0.5, "no test metrics in the log yet: the test set is evaluated at the end of each "
                    "epoch (unless --no_eval)",
                    ha="center", va="center", wrap=True, transform=acc_ax.transAxes, color="gray")
    loss_ax.set(xlabel=unit, ylabel="loss", yscale="log", title="Loss")
    acc_ax.set(xlabel=unit, ylabel="test accuracy", title="Test accuracy after each epoch")
    loss_ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def show_if_interactive():
    """Show the figures where there is a display; headless backends (Agg) have nothing to show them on."""
    if plt.get_backend().lower() != "agg":
        plt.show()
