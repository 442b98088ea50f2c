"""A stand-in for MindSpore 2.6.0, older than the tutorial supports: tests put its folder first on
sys.path, since wheels older than 2.7 cannot be installed here. It is not MindSpore."""
__version__ = "2.6.0"
