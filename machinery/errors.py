"""The errors that end a command with one line: each module raises its own, and script.py prints them."""


class UsageError(Exception):
    """A setting that cannot work here, such as a device that is not available."""
