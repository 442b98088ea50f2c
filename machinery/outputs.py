"""Where the script's outputs go: checks that a folder can be written before any work, the figures'
folder, and the exported model's file."""
import errno
import os
import shutil
import tempfile
from pathlib import Path

from .checkpoint_files import shown
from .errors import UsageError

FIGURES_DIR = "images"  # in the working folder, where the lesson's save_figure writes


def check_writable(path, what, fix):
    """Fail with one line unless `path` is a folder that can be written, or can be created: checked before
    any work, so that nothing is found unwritable only at the end. Creates nothing."""
    existing = Path(path)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(existing))
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        where = f" ({error.filename} is a file)" if isinstance(error, NotADirectoryError) else ""
        raise UsageError(f"cannot write to {what} {path}: {error.strerror}{where}; {fix}") from None


def make_writable_dir(path, option):
    if Path(path).is_file():
        raise UsageError(f"cannot write to {option} {path}: it is a file, not a folder; pass a folder you can "
                         f"write to")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):  # write access, as the checkpoints will need it
            pass
    except OSError as error:
        raise UsageError(f"cannot write to {option} {path}: {error.strerror}; "
                         f"pass a folder you can write to") from None


def export_file(args, export, ckpt_file):
    """Run `export(name)`, which writes the model of `ckpt_file` as name + its extension, and give
    the file the path --file_name asks for (with the extension added if missing). MindSpore accepts
    only some characters in a name, so it writes into a temporary folder first; an existing file is
    never replaced. Return the path."""
    file_name, file_format = args.file_name, args.file_format
    if file_format == "ONNX":
        from .compat import add_onnx_export
        add_onnx_export()  # MindSpore 2.7.x has no ms.onnx
    suffix = "." + file_format.lower()
    if file_name.endswith(("/", os.sep)) or Path(file_name).is_dir():
        raise UsageError(f"--file_name {file_name} is a folder; give a file name, such as "
                         f"{Path(file_name) / 'lenet5'}")
    path = Path(file_name if file_name.lower().endswith(suffix) else file_name + suffix)
    if path.exists():
        raise UsageError(f"{path} already exists; pass another --file_name, or move the file away")
    try:
        scratch_dir = tempfile.TemporaryDirectory()
        written = Path(export(os.path.join(scratch_dir.name, "model")))
    except OSError as error:  # a full or unwritable TMPDIR: the user's folders are not to blame
        raise UsageError(f"cannot write the {file_format} file in the temporary folder {tempfile.gettempdir()}: "
                         f"{error.strerror}; free some space there, or set TMPDIR to a folder with room") from None
    with scratch_dir:
        if not written.is_file():
            raise UsageError(f"MindSpore could not write the {file_format} file; see its message above")
        try:
            if not path.parent.exists():
                path.parent.mkdir(parents=True)
            with open(written, "rb") as source, open(path, "xb") as target:  # x: never over a file
                shutil.copyfileobj(source, target)
        except OSError as error:
            raise UsageError(f"cannot write {path}: {error.strerror}; pass a --file_name in a folder "
                             f"you can write to") from None
    print(f"Exported {shown(ckpt_file)} to {path}, input shape (32, 1, 32, 32)")
    return path


def save_figures(figures, save_figure, folder=FIGURES_DIR):
    """Save each figure of {name: figure} with the lesson's `save_figure(figure, name, folder)`, as
    <folder>/<name>.png; return the paths."""
    paths = []
    for name, figure in figures.items():
        path = Path(folder) / f"{name}.png"
        try:
            save_figure(figure, name, str(folder))
        except OSError as error:
            raise UsageError(f"cannot save {path}: {error.strerror}; check that you can write to {folder}") from None
        paths.append(path)
    return paths


# MindSpore's ModelCheckpoint refuses a folder whose absolute path is longer (_make_dir's MAX_PATH_LENGTH)
MINDSPORE_MAX_PATH = 1024


def check_path_length(ckpt_dir):
    """Fail with one line, before anything is created, if MindSpore's ModelCheckpoint would refuse
    `ckpt_dir` for the length of its path."""
    length = len(os.path.realpath(ckpt_dir))
    if length > MINDSPORE_MAX_PATH:
        raise UsageError(f"--ckpt_dir is {length} characters long as an absolute path, and MindSpore's "
                         f"ModelCheckpoint takes at most {MINDSPORE_MAX_PATH}; pass a shorter --ckpt_dir")


