"""TEST STAND-IN for ModelArts' moxing: see ../README.md. Only mox.file.copy and copy_parallel."""
from . import file  # noqa: F401  (import moxing as mox; mox.file.copy(...))
