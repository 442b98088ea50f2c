"""Runs main.py with POSIX-only facilities taken away, as on Windows or macOS; for tests only.

SIMULATE (comma-separated) names what to take away once MindSpore is imported (MindSpore's own
import is not ours to change):
- O_DIRECTORY: os.O_DIRECTORY deleted (Windows has none, so no folder can be fsynced);
- SIGTERM: signal.SIGTERM deleted (on Windows it cannot be caught from another process);
- proc: /proc/cpuinfo absent (macOS, Windows);
- drives: os.path.relpath fails for paths outside the current folder, as Windows' does for a path
  on another drive (D:\\ckpt seen from C:\\work).
"""
import builtins
import os
import pathlib
import runpy
import signal
import sys

import mindspore  # noqa: F401
import mindspore.train  # noqa: F401

ROOT = pathlib.Path(__file__).resolve().parent.parent
simulate = set(filter(None, os.environ.get("SIMULATE", "").split(",")))
if "O_DIRECTORY" in simulate:
    del os.O_DIRECTORY
if "SIGTERM" in simulate:
    del signal.SIGTERM
if "proc" in simulate:
    real_exists, real_open = pathlib.Path.exists, builtins.open

    def exists(self, *args, **kwargs):
        return False if str(self).startswith("/proc/cpuinfo") else real_exists(self, *args, **kwargs)

    def guarded_open(file, *args, **kwargs):
        if str(file).startswith("/proc/cpuinfo"):
            raise FileNotFoundError(2, "No such file or directory", str(file))
        return real_open(file, *args, **kwargs)

    pathlib.Path.exists, builtins.open = exists, guarded_open
if "drives" in simulate:
    real_relpath = os.path.relpath

    def relpath(path, start=None):
        if not os.path.abspath(path).startswith(os.getcwd() + os.sep):
            raise ValueError("path is on mount 'D:', start on mount 'C:'")
        return real_relpath(path, start)

    os.path.relpath = relpath
print("Simulated:", ", ".join(sorted(simulate)) or "nothing", flush=True)
sys.path.insert(0, str(ROOT))
sys.argv = [str(ROOT / "main.py"), *sys.argv[1:]]
runpy.run_path(str(ROOT / "main.py"), run_name="__main__")
