"""Figures for the tutorial."""
import matplotlib.pyplot as plt
import numpy as np


def plot_predictions(images, labels, predictions, count=4):
    """A 2x2 grid of test images titled with prediction and truth: blue if right, red if wrong."""
    fig, axes = plt.subplots(2, count // 2, figsize=(6, 6))
    for ax, image, label, prediction in zip(axes.flat, images, labels, predictions):
        ax.imshow(np.squeeze(image), cmap="gray")
        ax.set_title(f"prediction: {prediction}, truth: {label}",
                     color="blue" if prediction == label else "red")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def show_if_interactive():
    """Show the figures where there is a display; headless backends (Agg) have nothing to show them on."""
    if plt.get_backend().lower() != "agg":
        plt.show()
