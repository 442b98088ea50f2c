"""Draw a left-to-right architecture diagram of LeNet5 and save it as lenet5.png."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, Rectangle

OUT = Path(__file__).resolve().parent / "lenet5.png"
MID_Y = 2.0
SHEET_STEP = 0.07

# (kind, channels or units, spatial side, face colour, caption)
STAGES = [
    ("map", 1, 32, "#d9d9d9", "input\n1x32x32"),
    ("map", 6, 28, "#9ecae1", "conv1\n6x28x28"),
    ("map", 6, 14, "#a1d99b", "pool1\n6x14x14"),
    ("map", 16, 10, "#9ecae1", "conv2\n16x10x10"),
    ("map", 16, 5, "#a1d99b", "pool2\n16x5x5"),
    ("bar", 400, None, "#fdd0a2", "flattened\n400"),
    ("bar", 120, None, "#fdae6b", "fc1\n120"),
    ("bar", 84, None, "#fdae6b", "fc2\n84"),
    ("bar", 10, None, "#fb6a4a", "fc3\n10 logits"),
]
# (operation, trainable parameters) for each arrow between consecutive stages
OPS = [
    ("conv 5x5\n+ ReLU", 150),
    ("max-pool\n2x2", 0),
    ("conv 5x5\n+ ReLU", 2400),
    ("max-pool\n2x2", 0),
    ("flatten", 0),
    ("dense", 48120),
    ("dense", 10164),
    ("dense", 850),
]
LEFT, RIGHT = 0.3, 0.55


def size(kind, n, side):
    """Return (width, height) of a stage's drawing in inches."""
    if kind == "bar":
        return 0.22, 0.35 + 0.11 * n ** 0.5
    s = 0.15 + 0.04 * side + SHEET_STEP * (min(n, 4) - 1)
    return s, s


def draw_stage(ax, x, kind, n, side, color):
    w, h = size(kind, n, side)
    sheets = 1 if kind == "bar" else min(n, 4)
    sw, sh = w - SHEET_STEP * (sheets - 1), h - SHEET_STEP * (sheets - 1)
    for i in reversed(range(sheets)):
        ax.add_patch(Rectangle((x + i * SHEET_STEP, MID_Y - h / 2 + i * SHEET_STEP), sw, sh,
                               facecolor=color, edgecolor="#333333", lw=0.8))
    return w, h


def draw_arrow(ax, x0, x1, label, params):
    ax.add_patch(FancyArrowPatch((x0 + 0.06, MID_Y), (x1 - 0.06, MID_Y), arrowstyle="-|>",
                                 mutation_scale=10, color="#444444", lw=1))
    xm = (x0 + x1) / 2
    ax.text(xm, MID_Y + 0.12, label, ha="center", va="bottom", fontsize=8)
    if params:
        ax.text(xm, MID_Y - 0.12, f"{params:,}\nparams", ha="center", va="top",
                fontsize=7, color="#666666")


def main():
    fig = plt.figure(figsize=(12, 4), dpi=150, facecolor="white")
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, 12)
    ax.set_ylim(0, 4)
    ax.axis("off")
    widths = sum(size(k, n, s)[0] for k, n, s, _, _ in STAGES)
    gap = (12 - LEFT - RIGHT - widths) / len(OPS)
    x, right_edges = LEFT, []
    for kind, n, side, color, caption in STAGES:
        w, h = draw_stage(ax, x, kind, n, side, color)
        ax.text(x + w / 2, MID_Y - h / 2 - 0.1, caption, ha="center", va="top", fontsize=8.5)
        if right_edges:
            draw_arrow(ax, right_edges[-1], x, *OPS[len(right_edges) - 1])
        right_edges.append(x + w)
        x += w + gap
    total = sum(p for _, p in OPS)
    ax.text(6, 3.75, f"LeNet5 on MNIST (32x32 input): {total:,} trainable parameters",
            ha="center", va="center", fontsize=12, weight="bold")
    fig.savefig(OUT, dpi=150, facecolor="white")
    print(f"saved {OUT}")


if __name__ == "__main__":
    main()
