"""A stand-in for an environment without MindSpore: tests put its folder first on sys.path, and
importing mindspore then fails as it does where none is installed. It is not MindSpore."""
raise ModuleNotFoundError("No module named 'mindspore'", name="mindspore")
