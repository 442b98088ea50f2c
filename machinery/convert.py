"""Convert weights between PyTorch and MindSpore (docs/pytorch.md): a checkpoint is a set of named arrays, so
converting is renaming, by the one table NAME_RULES, and writing the arrays in the other framework's file.

torch is imported only to read or write a .pth/.pt file: everything else works without it.
"""
import pickle
import re
import warnings
from pathlib import Path

import mindspore as ms
import numpy as np

from .checkpoint_files import mindspore_log_silenced, publish_durably

PYTORCH, MINDSPORE = "PyTorch", "MindSpore"
SUFFIXES = {".pth": PYTORCH, ".pt": PYTORCH, ".ckpt": MINDSPORE, ".safetensors": None}  # None: either
# The one table: MindSpore name ending <-> PyTorch name ending, and the layers that use them. Conv2d and
# Dense/Linear keep their names and layouts (weight: out x in [x kh x kw]).
NAME_RULES = (
    ("gamma", "weight", "BatchNorm, LayerNorm"),
    ("beta", "bias", "BatchNorm, LayerNorm"),
    ("moving_mean", "running_mean", "BatchNorm"),
    ("moving_variance", "running_var", "BatchNorm"),
    ("embedding_table", "weight", "Embedding"),
    ("weight", "weight", "Conv2d, Dense/Linear"),
    ("bias", "bias", "Conv2d, Dense/Linear"),
)
# PyTorch's BatchNorm step counter, used only with momentum=None: MindSpore has no place for it, so it is
# left out; going back to PyTorch it is 0, as in a fresh BatchNorm.
COUNTER = "num_batches_tracked"
MINDSPORE_ONLY = {ms_end for ms_end, pt_end, _ in NAME_RULES if ms_end != pt_end}
# What a MindSpore training checkpoint holds besides the weights: the optimizer's state (Momentum's moments,
# Adam's moment1/moment2 or adam_m/adam_v, ...) and run info (undotted names holding one number: epoch_num,
# step_num, acc, seed, ...). Left out going to PyTorch.
OPTIMIZER_PREFIXES = ("moments.", "moment.", "moment1.", "moment2.", "adam_m.", "adam_v.", "accum.", "mean_grad.",
                      "mean_square.", "linear.")
OPTIMIZER_NAMES = ("learning_rate", "momentum", "global_step", "beta1_power", "beta2_power", "scale_sense",
                   "current_iterator_step", "last_overflow_iterator_step")
OPTIMIZER_STATE, RUN_INFO = "of optimizer state", "of run info"
REGEX_CHARACTERS = set("\\^$*+?{}[]()|")  # any of them in OLD makes --rename OLD=NEW a regular expression


class ConvertError(Exception):
    """A conversion refused: one line saying what is wrong and how to fix it. Nothing was written."""


class Rename:
    """--rename OLD=NEW: a name beginning with OLD begins with NEW instead. OLD holding any of \\ ^ $ * + ? { } [ ]
    ( ) | is a regular expression, matched at the start of the name (re.match), and NEW may use its groups
    (\\1); otherwise OLD is a plain prefix, its dots literal. Split at the last '=' (names hold none)."""

    def __init__(self, rule):
        old, sep, self.new = rule.rpartition("=")
        self.rule = rule
        if not sep or not old:
            raise ConvertError(f"--rename {rule}: expected OLD=NEW, e.g. --rename 'features.0.=conv1.'")
        self.regex = bool(REGEX_CHARACTERS & set(old))
        try:
            self.pattern = re.compile(old if self.regex else re.escape(old))
        except re.error as error:
            raise ConvertError(f"--rename {rule}: {old} is not a valid regular expression ({error}); "
                               f"escape a literal character with a backslash") from None

    def __call__(self, name):
        match = self.pattern.match(name)
        if not match:
            return name, False
        return (match.expand(self.new) if self.regex else self.new) + name[match.end():], True


def pytorch_name(name):
    """The PyTorch name of the MindSpore parameter `name`: bn.gamma -> bn.weight."""
    prefix, dot, end = name.rpartition(".")
    to_pytorch = {ms_end: pt_end for ms_end, pt_end, _ in NAME_RULES}
    return prefix + dot + to_pytorch.get(end, end)


def mindspore_names(shapes, target=None):
    """{PyTorch name: MindSpore name, or None where MindSpore has no place for it} for the PyTorch names and
    shapes `shapes`. A weight or bias is ambiguous (Linear, BatchNorm, LayerNorm or Embedding): with `target`
    (the MindSpore names wanted), the candidate it holds; without, a layer with a running_mean or a 1-D weight
    is a normalisation layer (gamma, beta), any other keeps weight and bias (an Embedding needs a target)."""
    norms = {n.rpartition(".")[0] for n in shapes if n.endswith(".running_mean")}
    norms |= {n[:-len(".weight")] for n, shape in shapes.items() if n.endswith(".weight") and len(shape) == 1}
    names = {}
    for name in shapes:
        prefix, dot, end = name.rpartition(".")
        if end == COUNTER:
            names[name] = None
            continue
        candidates = [prefix + dot + ms_end for ms_end, pt_end, _ in NAME_RULES if pt_end == end] or [name]
        held = [c for c in candidates if target is not None and c in target]
        if held:
            names[name] = held[0]
        elif end in ("weight", "bias"):
            names[name] = (prefix + dot + {"weight": "gamma", "bias": "beta"}[end]) if prefix in norms else name
        else:
            names[name] = candidates[0]
    return names


def _few(names, limit=3):
    names = list(names)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _kind(name, value):
    """For an entry of a MindSpore checkpoint: OPTIMIZER_STATE, RUN_INFO or None (a weight)."""
    if name.startswith(OPTIMIZER_PREFIXES) or name in OPTIMIZER_NAMES:
        return OPTIMIZER_STATE
    if "." not in name and (not isinstance(value, np.ndarray) or value.size == 1):
        return RUN_INFO
    return None


def _read_torch(path):
    try:
        import torch
    except ImportError:
        raise ConvertError(f"{path}: reading a .pth/.pt file needs torch: install torch, or give a .safetensors "
                           f"file (safetensors.torch.save_file(model.state_dict(), ...))") from None
    try:
        with warnings.catch_warnings():  # torch's warnings about the pickle protocol: our one line says it all
            warnings.simplefilter("ignore")
            loaded = torch.load(path, map_location="cpu", weights_only=True)  # runs no code from the file
    except pickle.UnpicklingError as error:
        held = re.search(r"GLOBAL (\S+)", str(error))
        what = (f"holds a Python object ({held[1]}), not only weights: loading it would run code" if held else
                "is damaged, or not a weights-only file (torch.load with weights_only=True refused it)")
        raise ConvertError(f"{path}: not loaded: it {what}; save model.state_dict() with torch.save, or give "
                           f"a .safetensors file") from None
    except Exception:  # zip, EOF, storage errors: torch raises many kinds for a damaged file
        raise ConvertError(f"{path}: damaged or not a PyTorch file (torch.load failed); give another file") from None
    if isinstance(loaded, dict):
        for key in ("state_dict", "model_state_dict", "model"):  # a training checkpoint holding a state_dict
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not loaded or not all(torch.is_tensor(v) for v in loaded.values()):
        raise ConvertError(f"{path}: holds no state_dict (a dict of tensors, or a checkpoint dict holding one under "
                           f"'state_dict', 'model_state_dict' or 'model'); save model.state_dict() with torch.save")
    arrays = {}
    for name, tensor in loaded.items():
        if tensor.dtype == torch.bfloat16:
            raise ConvertError(f"{path}: {name} is bfloat16, which NumPy cannot hold; save the model in float32 "
                               f"(model.float()) first")
        arrays[name] = tensor.detach().cpu().numpy()
    return arrays


def _read_mindspore_format(path):
    """Arrays (and run info values) of a .ckpt or .safetensors file, by MindSpore's own reader."""
    fmt = path.suffix[1:]
    try:
        with mindspore_log_silenced():
            params = ms.load_checkpoint(str(path), crc_check=True, format=fmt)
    except Exception:  # ValueError, RuntimeError, the safetensors error: MindSpore's kinds for a bad file
        raise ConvertError(f"{path}: damaged or not a {fmt} file (reading it or its CRC check failed); "
                           f"give another file") from None
    values = {}
    for name, value in params.items():
        try:
            values[name] = value.asnumpy() if hasattr(value, "asnumpy") else value
        except TypeError:
            raise ConvertError(f"{path}: {name} is {value.dtype}, which NumPy cannot hold; save it as float32 "
                               f"first") from None
    return values


def _safetensors_framework(path, names):
    """Who wrote a .safetensors file: the "format" its metadata gives (MindSpore writes "ms", Hugging Face
    and train_lenet5.py "pt"); without one, MindSpore if a name is MindSpore's only (bn.gamma, moments.*,
    global_step, ...), else PyTorch: then every name means the same in both (conv1.weight)."""
    from safetensors import safe_open  # a MindSpore dependency: MindSpore reads and writes this format with it
    try:
        with safe_open(str(path), framework="np") as f:
            marked = (f.metadata() or {}).get("format")
    except Exception:
        raise ConvertError(f"{path}: damaged or not a safetensors file; give another file") from None
    if marked in ("ms", "pt"):
        return {"ms": MINDSPORE, "pt": PYTORCH}[marked], f"its metadata marks it \"{marked}\""
    mindspore_only = [n for n in names if n.rpartition(".")[2] in MINDSPORE_ONLY or _kind(n, 0) == OPTIMIZER_STATE]
    if mindspore_only:
        return MINDSPORE, f"{mindspore_only[0]} is a MindSpore name"
    return PYTORCH, "no MindSpore-only names"


def read(path):
    """(framework, why, {name: array}) of the weights file `path`."""
    if SUFFIXES[path.suffix] == PYTORCH:
        return PYTORCH, f"a {path.suffix} file", _read_torch(path)
    values = _read_mindspore_format(path)
    if path.suffix == ".ckpt":
        return MINDSPORE, "a .ckpt file", values
    return (*_safetensors_framework(path, values), values)


def _write(arrays, partial, framework, fmt):
    if framework == MINDSPORE:
        with mindspore_log_silenced():
            ms.save_checkpoint([{"name": n, "data": ms.Tensor(a)} for n, a in arrays.items()], str(partial),
                               crc_check=True, format=fmt)
    elif fmt == "safetensors":
        from safetensors.numpy import save_file
        save_file({n: np.array(a, order="C") for n, a in arrays.items()}, str(partial), metadata={"format": "pt"})
    else:
        import torch
        torch.save({n: torch.from_numpy(np.array(a)) for n, a in arrays.items()}, str(partial))


def convert(src, dst, renames=(), force=False, network=None, out=print):
    """Convert the weights in `src` into `dst`, from PyTorch to MindSpore or back, as their files say (see
    docs/pytorch.md); return dst's Path. `renames`: --rename rules, applied in order to the source names before
    the table; `network`: a MindSpore Cell that the weights must fill exactly. Raises ConvertError, one line,
    with nothing written; `out` gets one line on what was left out, if anything, and one on what was written."""
    src, dst = Path(src), Path(dst)
    rules = [Rename(rule) for rule in renames]
    _check_paths(src, dst)
    framework, why, values = read(src)
    target = MINDSPORE if framework == PYTORCH else PYTORCH
    if SUFFIXES[dst.suffix] == framework:
        suffixes = ".ckpt or .safetensors" if target == MINDSPORE else ".pth, .pt or .safetensors"
        raise ConvertError(f"{src} holds {framework} weights ({why}) and {dst} is a {framework} file too: nothing to "
                           f"convert; for {target} give a {suffixes} DST")
    if dst.exists() and not force:
        raise ConvertError(f"{dst} exists; pass --force to overwrite it")

    left_out = {}  # kind -> the names of that kind left out
    if framework == MINDSPORE:  # the optimizer's state and the run info
        kinds = {name: _kind(name, value) for name, value in values.items()}
        for name, kind in kinds.items():
            if kind:
                left_out.setdefault(kind, []).append(name)
        values = {name: value for name, value in values.items() if not kinds[name]}
    origin = _renamed(values, rules, src)  # renamed name -> the name in the file
    arrays = {name: values[old] for name, old in origin.items()}
    if framework == PYTORCH:
        names = mindspore_names({n: a.shape for n, a in arrays.items()},
                                network.parameters_dict() if network is not None else None)
        if None in names.values():
            left_out["BatchNorm step counters"] = [n for n, new in names.items() if new is None]
    else:
        names = {name: name for name in arrays}
    # By MindSpore name, which the network checks: the arrays, and the names they have in the file
    mindspore = {new: arrays[name] for name, new in names.items() if new is not None}
    sources = {new: origin[name] for name, new in names.items() if new is not None}
    _check_weights(mindspore, sources, network, src, left_out)

    written = mindspore if target == MINDSPORE else _pytorch_state(mindspore, src)
    _publish(written, dst, target)
    if left_out:
        kinds = " and ".join(f"{len(found)} {kind} ({_few(sorted(_grouped(found)), 4)})"
                             for kind, found in sorted(left_out.items()))
        which = "are not weights" if framework == MINDSPORE else f"{target} has no place for"
        out(f"Left out {sum(map(len, left_out.values()))} entries that {which}: {kinds}")
    restored = len(written) - len(mindspore)
    counters = f" (and {COUNTER} = 0 for its {restored} BatchNorm layers)" if restored else ""
    out(f"Converted {len(mindspore)} parameters from {framework} ({src.name}) to {target}: {dst}{counters}")
    return dst


def _check_paths(src, dst):
    if not src.is_file():
        raise ConvertError(f"{src}: no such file" + (" (a folder)" if src.is_dir() else "") + "; give a weights file")
    for path, role in ((src, "SRC"), (dst, "DST")):
        if path.suffix not in SUFFIXES:
            raise ConvertError(f"{path}: unknown kind of {role} file; give a .pth or .pt (PyTorch), .ckpt "
                               f"(MindSpore) or .safetensors (either) file")
    if not dst.parent.is_dir():
        raise ConvertError(f"{dst.parent}: no such folder for {dst.name}; create it, or choose another DST")
    if SUFFIXES[dst.suffix] == PYTORCH:
        try:
            import torch  # noqa: F401
        except ImportError:
            raise ConvertError(f"{dst}: writing a .pth/.pt file needs torch: install torch, or write a .safetensors "
                               f"file, which PyTorch reads with safetensors.torch.load_file") from None


def _renamed(values, rules, src):
    """{renamed name: name in the file}, each rule applied in order; a rule that matches nothing, or names
    that become one, refused."""
    origin, used = {}, set()
    for name in values:
        new = name
        for rule in rules:
            new, hit = rule(new)
            if hit:
                used.add(rule.rule)
        if new in origin:
            raise ConvertError(f"--rename makes {origin[new]} and {name} both {new}; make the rules tell them apart")
        origin[new] = name
    for rule in rules:
        if rule.rule not in used:
            raise ConvertError(f"--rename {rule.rule} matches no name in {src} (it has {_few(origin.values())}); "
                               f"correct OLD")
    return origin


def _check_weights(arrays, sources, network, src, left_out):
    """Some weights, all floating point, and with `network`, filling it exactly; else one line."""
    if not arrays:
        held = _grouped(name for found in left_out.values() for name in found)
        raise ConvertError(f"{src} holds no weights, only {_few(held)}; give a file with the model's weights")
    for name, array in arrays.items():
        if array.dtype.kind != "f":
            raise ConvertError(f"{src}: {sources[name]} is {array.dtype}, not floating point: only floating-point "
                               f"weights convert; leave it out of the file you save")
    if network is None:
        return
    net = type(network).__name__
    wanted = network.parameters_dict()
    extra = [sources[n] for n in arrays if n not in wanted]
    missing = [n for n in wanted if n not in arrays]
    if extra or missing:
        says = []
        if extra:
            says.append(f"{_few(extra)} in the source {'has' if len(extra) == 1 else 'have'} no place in {net}")
        if missing:
            says.append(f"{_few(missing)} of {net} {'is' if len(missing) == 1 else 'are'} not in the source")
        raise ConvertError(f"{src} does not fit {net}: {'; '.join(says)}; convert weights of this network, or "
                           f"match the names with --rename OLD=NEW")
    for name, param in wanted.items():
        shape, dtype = tuple(param.shape), param.asnumpy().dtype
        if arrays[name].shape != shape:
            raise ConvertError(f"{src} does not fit {net}: {sources[name]} has shape {arrays[name].shape} "
                               f"in the source, {name} has {shape} in {net}")
        if arrays[name].dtype != dtype:
            raise ConvertError(f"{src} does not fit {net}: {sources[name]} is {arrays[name].dtype} in the source, "
                               f"{name} is {dtype} in {net}; cast the model (model.float()) before saving it")


def _pytorch_state(arrays, src):
    """The MindSpore-named `arrays` with PyTorch's names, and a num_batches_tracked of 0 for each BatchNorm."""
    state = {pytorch_name(name): array for name, array in arrays.items()}
    if len(state) < len(arrays):
        raise ConvertError(f"{src}: two names become one PyTorch name ({_few(arrays)}); rename them apart "
                           f"with --rename OLD=NEW")
    for prefix in sorted({n.rpartition(".")[0] for n in state if n.endswith(".running_mean")}):
        state[f"{prefix}.{COUNTER}"] = np.array(0, np.int64)  # as in a fresh BatchNorm
    return state


def _publish(arrays, dst, framework):
    """Write the file next to `dst` under another name, then rename it, both on disk first: `dst` is the old
    file or the whole new one, never a part, and a failed write leaves nothing behind."""
    partial = dst.with_name(f".converting-{dst.name}")
    try:
        _write(arrays, partial, framework, dst.suffix[1:])
        publish_durably(partial, dst)
    except Exception as error:
        for leftover in (partial, partial.with_suffix(".tmp")):  # ours, and MindSpore's temporary file
            leftover.unlink(missing_ok=True)
        raise ConvertError(f"cannot write {dst}: {getattr(error, 'strerror', None) or error}; "
                           f"check the folder, or choose another DST") from None


def _grouped(names):
    """moments.conv1.weight, moments.fc1.bias, ... -> moments.*; other names as they are."""
    shown = []
    for name in names:
        group = next((p + "*" for p in OPTIMIZER_PREFIXES if name.startswith(p)), name)
        if name.endswith(COUNTER):
            group = "*." + COUNTER
        if group not in shown:
            shown.append(group)
    return shown

