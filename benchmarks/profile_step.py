"""Where a training step of the port goes: every CPU kernel, the framework around them, the data.

    python benchmarks/profile_step.py [--steps 200]

Runs in four processes: one times the data pipeline alone; one times training steps through
`Model.train`, as the product trains, and counts the CPU time of each kind of thread meanwhile
(on Linux), which shows what the pipeline takes from the step on the same cores; one profiles the same
steps with MindSpore's own profiler
(`mindspore.profiler.profile`), which times every kernel; and one runs them with
ONEDNN_VERBOSE=1, which names the oneDNN implementation behind each kernel that oneDNN runs.
"""
import argparse
import collections
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARK = "PROFILE-TIMED-PART"
ONEDNN_KIND = {  # MindSpore CPU kernel -> (oneDNN primitive, direction)
    "Conv2D": ("convolution", "forward_training"),
    "Conv2DBackpropFilter": ("convolution", "backward_weights"),
    "Conv2DBackpropInput": ("convolution", "backward_data"),
    "MatMul": ("matmul", "forward_training"),
}


def worker(part, steps, scratch):
    sys.path.insert(0, str(ROOT))
    from machinery.lesson import load_definitions
    main = load_definitions()  # the lesson's definitions, not its steps
    from mindspore.train import Model
    from mnist_data import SHIPPED_DIR
    main.set_device("CPU")
    data_dir = main.prepare_mnist(SHIPPED_DIR)
    if part == "data":
        start = time.perf_counter()
        for _ in main.create_dataset(data_dir, num_samples=steps * 32).create_tuple_iterator(num_epochs=1):
            pass
        print(f"data_ms {(time.perf_counter() - start) * 1000 / steps}")
        return

    net = main.LeNet5()
    loss = main.nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    model = Model(net, loss, main.nn.Momentum(net.trainable_params(), 0.01, 0.9))
    profiler, cpu_at_warm = None, None

    def on_warm():
        nonlocal profiler, cpu_at_warm
        print(MARK, flush=True)
        cpu_at_warm = thread_cpu()
        if part == "profile":
            from mindspore.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler
            profiler = profile(activities=[ProfilerActivity.CPU], on_trace_ready=tensorboard_trace_handler(scratch),
                               schedule=schedule(wait=0, warmup=1, active=steps, repeat=1))
            profiler.start()

    steps_done, cpu_at_end = 0, None

    def on_step():
        nonlocal steps_done, cpu_at_end
        steps_done += 1
        if profiler:
            profiler.step()
        if steps_done == steps:  # the last step, while the pipeline's threads still run
            cpu_at_end = thread_cpu()

    # in the timed process, 100 batches more than timed, so that the pipeline is still at work (its threads
    # alive) at the last timed step
    batches = steps + 21 + (100 if part == "train" else 0)
    times = timed_steps(model, main.create_dataset(data_dir, num_samples=batches * 32), on_warm=on_warm,
                        on_step=on_step)[:steps]
    # the pipeline's threads end with the epoch: unnamed threads still alive afterwards are something else
    alive = thread_cpu()
    cpu_at_end = {tid: ("other" if kind == "pipeline" and tid in alive else kind, seconds)
                  for tid, (kind, seconds) in cpu_at_end.items()}
    cpu = cpu_between(cpu_at_warm, cpu_at_end)
    if profiler:
        profiler.stop()
    sys.stdout.flush()
    print(f"step_ms {statistics.median(times) * 1000}")
    for kind in ("main", "runtime", "pipeline", "other"):
        print(f"cpu_{kind}_ms {cpu[kind] * 1000 / steps}")


def thread_cpu():
    """CPU seconds so far of each thread of this process: {thread id: (kind, seconds)}. Kinds: the
    main (Python) thread, MindSpore's named runtime threads, and the unnamed others, which during
    an epoch are the data pipeline's. Linux only; elsewhere empty."""
    threads = {}
    for tid in os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else ():
        try:
            name = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        kind = "main" if int(tid) == os.getpid() else "pipeline" if name == "python" else "runtime"
        threads[tid] = kind, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # user + system
    return threads


def cpu_between(before, after):
    """CPU seconds by kind of thread between two thread_cpu() readings (a thread that ended in
    between is missed: the pipeline's threads live as long as the epoch)."""
    kinds = collections.Counter()
    for tid, (kind, seconds) in after.items():
        kinds[kind] += seconds - before.get(tid, (kind, 0))[1]
    return kinds


def timed_steps(model, dataset, warmup=20, on_warm=None, on_step=None):
    """Train `model` for one epoch of `dataset`; return the durations of the steps after `warmup`
    (the first ones include compilation). `on_warm` is called once the warm-up is over, and
    `on_step` after every step from then on."""
    from mindspore.train import Callback

    class StepEnds(Callback):
        def on_train_step_end(self, run_context):
            ends.append(time.perf_counter())
            if len(ends) == warmup and on_warm:
                on_warm()
            elif len(ends) > warmup and on_step:
                on_step()

    ends = []
    model.train(1, dataset, callbacks=[StepEnds()], dataset_sink_mode=False)
    return [b - a for a, b in zip(ends[warmup - 1:], ends[warmup:])]


def run(part, steps, scratch, verbose=False):
    env = {**os.environ, **({"ONEDNN_VERBOSE": "1"} if verbose else {})}
    result = subprocess.run([sys.executable, __file__, "--part", part, "--steps", str(steps),
                             "--scratch", scratch], capture_output=True, text=True, env=env, check=True)
    return result.stdout


def kernels_per_step(scratch, steps):
    """Milliseconds per training step and calls per step of each CPU kernel, from the profiler's table."""
    table = next(Path(scratch).rglob("cpu_op_type_info_*.csv"))
    with open(table, newline="") as f:
        return {row["op_type"]: (float(row["total_compute_time"]) / steps, int(row["type_occurrences"]) / steps)
                for row in csv.DictReader(f)}


def onednn_implementations(output):
    """The oneDNN implementation of each (primitive, direction) that ran in the timed steps."""
    found = collections.defaultdict(set)
    timed = output.split(MARK, 1)[1].split("step_ms", 1)[0]
    for line in timed.splitlines():
        fields = line.split(",")
        if line.startswith("onednn_verbose") and "exec" in fields:
            i = fields.index("exec")
            if len(fields) > i + 4:
                found[(fields[i + 2], fields[i + 4])].add(fields[i + 3])
    return found


def number(output, key):
    return float(next(line.split()[1] for line in output.splitlines() if line.startswith(key + " ")))


def main_():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="timed steps (default: 200)")
    parser.add_argument("--part", choices=("data", "train", "profile"), help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        return worker(args.part, args.steps, args.scratch)
    with tempfile.TemporaryDirectory() as scratch:
        data_ms = number(run("data", min(1875, 10 * args.steps), scratch), "data_ms")
        timed = run("train", args.steps, scratch)
        step_ms = number(timed, "step_ms")
        cpu_ms = {kind: number(timed, f"cpu_{kind}_ms") for kind in ("main", "runtime", "pipeline", "other")}
        profiled_ms = number(run("profile", args.steps, scratch), "step_ms")  # the profiler slows steps a little
        kernels = kernels_per_step(scratch, args.steps)
        implementations = onednn_implementations(run("train", args.steps, scratch, verbose=True))
    kernel_ms = sum(ms_ for ms_, _ in kernels.values())
    print(f"Training step through Model.train (median of {args.steps}): {step_ms:.2f} ms; "
          f"{profiled_ms:.2f} ms while profiled\n")
    print(f"| {'part of a step':44} | {'calls':>5} | {'ms':>6} | {'runs in':32} |")
    print(f"| {'-' * 44} | {'-' * 5} | {'-' * 6} | {'-' * 32} |")
    for op, (ms_, calls) in sorted(kernels.items(), key=lambda item: -item[1][0]):
        kind = ONEDNN_KIND.get(op)
        where = f"oneDNN {kind[0]} {', '.join(sorted(implementations.get(kind, ())))}" if kind else "MindSpore"
        print(f"| {op:44} | {calls:5.0f} | {ms_:6.2f} | {where:32} |")
    print(f"| {'all kernels (MindSpore profiler)':44} | {'':5} | {kernel_ms:6.2f} | {'':32} |")
    print(f"| {'framework between kernels, Python, callbacks':44} | {'':5} | {profiled_ms - kernel_ms:6.2f} | "
          f"{'profiled step minus its kernels':32} |")
    print(f"| {'data pipeline per batch, alone (overlaps)':44} | {'':5} | {data_ms:6.2f} | {'its own threads':32} |")
    if os.path.isdir("/proc/self/task"):
        print(f"\nCPU time per training step, by thread, while training on {os.cpu_count()} cores "
              f"(a step takes {step_ms:.2f} ms, so {os.cpu_count() * step_ms:.1f} ms of CPU are there):\n")
        print(f"| {'threads':44} | {'ms':>6} |\n| {'-' * 44} | {'-' * 6} |")
        for kind, label in (("main", "main thread: Python, Model.train, launching"),
                            ("runtime", "MindSpore's runtime threads: the kernels"),
                            ("pipeline", "the data pipeline's threads"),
                            ("other", "other threads")):
            print(f"| {label:44} | {cpu_ms[kind]:6.2f} |")


if __name__ == "__main__":
    main_()
