"""The errors that end a command with one line: each module raises its own, and script.py prints them."""
import sys


class UsageError(Exception):
    """A setting that cannot work here, such as a device that is not available."""


def say(line):
    """Write `line` and its newline to stderr in one write: MindSpore's threads write to the same file
    as a run stops, and between two writes their messages would split the line from its end."""
    sys.stderr.flush()
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def end(line, exit_code=1):
    """End the script with `line` on stderr and `exit_code`."""
    say(line)
    sys.exit(exit_code)
