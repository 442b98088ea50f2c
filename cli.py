"""The command line of main.py: its options, and the checks that turn bad input into one line."""
import argparse
import ctypes
import logging
import os
import platform
import sys
import tempfile
from pathlib import Path

from checkpoint_files import CheckpointError, disk_full, table
from cloud_storage import StorageError, check_reachable, publish
from mnist_data import SHIPPED_DIR, DataError
from plotting import show_if_interactive
from resumable import TrainingInterrupted

BACKENDS = ("Ascend", "GPU", "CPU")
# What MindSpore 2.10.0's GPU plugin (lib/plugin/libmindspore_gpu.so.11.6) links against, read from
# its ELF header (readelf -d): CUDA 11 (NVRTC of 11.2 or later), cuDNN 8, and the NVIDIA driver. Its other
# plugin, .so.11.1, differs only in libnvrtc.so.11.1.
CUDA_LIBRARIES = {
    "libcuda.so.1": "the NVIDIA driver",
    "libcudart.so.11.0": "the CUDA 11 runtime",
    "libcublas.so.11": "cuBLAS of CUDA 11",
    "libcufft.so.10": "cuFFT of CUDA 11",
    "libcurand.so.10": "cuRAND of CUDA 11",
    "libcusolver.so.11": "cuSOLVER of CUDA 11",
    "libcusparse.so.11": "cuSPARSE of CUDA 11",
    "libnvrtc.so.11.2": "NVRTC of CUDA 11.2 or later",
    "libcudnn.so.8": "cuDNN 8",
}


class UsageError(Exception):
    """A setting that cannot work here, such as a device that is not available."""


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def device_number(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer, got {text}")
    return value


def positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


class OneLineErrorParser(argparse.ArgumentParser):
    """Reports a bad option in one line, like every other error, rather than with the usage text."""

    def error(self, message):
        self.exit(2, f"error: {message}; see python {self.prog} --help\n")


def build_parser():
    """The parser of main.py's command line, with a subparser for each command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data_url", default=str(SHIPPED_DIR),
                        help="MNIST folder: train/ and test/ with the IDX files, or the four .gz "
                             "files; obs:// or s3:// on ModelArts (default: MNIST/ next to main.py)")
    common.add_argument("--train_url", default=None,
                        help="folder, or obs:// or s3:// URL, that receives the outputs at the end: the "
                             "checkpoint files the command wrote or used, and the figures it saved "
                             "(default: none)")
    common.add_argument("--device_target", choices=BACKENDS, default=None,
                        help="backend to run on (default: the best available, in the order "
                             "Ascend, GPU, CPU)")
    common.add_argument("--device_id", type=device_number, default=None, metavar="N",
                        help="which GPU or Ascend card of this host to use, from 0; the environment "
                             "variable DEVICE_ID sets it too; ignored on CPU and under msrun, which "
                             "assigns the cards itself (default: DEVICE_ID, or 0)")
    common.add_argument("--ckpt_dir", default="ckpt", help="folder for the checkpoint files (default: ckpt)")
    common.add_argument("--no_progress", action="store_true",
                        help="no progress bars (default: bars on a terminal, none when output goes to a "
                             "file or a pipe)")
    steps = argparse.ArgumentParser(add_help=False)
    steps.add_argument("--steps_per_epoch", type=positive_int, default=None, metavar="M",
                       help="train only the first M batches of each epoch, for a quick run "
                            "(default: all 1875)")
    ckpt = argparse.ArgumentParser(add_help=False)
    ckpt.add_argument("--ckpt", default="latest",
                      help="checkpoint file, 'latest' (the newest in --ckpt_dir) or 'best' "
                           "(default: latest)")

    parser = OneLineErrorParser(
        parents=[common, steps],
        description="The MindSpore checkpoint tutorial on LeNet5 and MNIST. Without a command, "
                    "run it all: train, resume from a checkpoint, and predict.")
    commands = parser.add_subparsers(dest="command", title="commands")
    train_cmd = commands.add_parser("train", parents=[common, steps], help="train, with exact resuming",
                                    description="Train LeNet5, saving checkpoints that allow an exact "
                                                "continuation after any interruption.")
    train_cmd.add_argument("--num_epochs", type=positive_int, default=2, help="epochs to train to (default: 2)")
    train_cmd.add_argument("--lr", type=positive_float, default=0.01, help="learning rate (default: 0.01)")
    train_cmd.add_argument("--seed", type=int, default=0, help="seed for weights and data order (default: 0)")
    train_cmd.add_argument("--save_steps", type=positive_int, default=None, metavar="K",
                           help="also save every K steps (default: once per epoch)")
    train_cmd.add_argument("--auto_resume", action="store_true",
                           help="continue from the newest intact checkpoint in --ckpt_dir, if any (default: off: "
                                "refuse a folder that has checkpoints)")
    train_cmd.add_argument("--no_eval", dest="evaluate", action="store_false",
                           help="skip the test-set evaluation after each epoch, and so the best checkpoint "
                                "(default: evaluate)")
    train_cmd.add_argument("--ckpt_format", choices=("ckpt", "safetensors"), default="ckpt",
                           help="checkpoint file format (default: ckpt)")
    resume_cmd = commands.add_parser("resume", parents=[common, steps, ckpt],
                                     help="the tutorial's resume step: continue from a checkpoint",
                                     description="Continue training from a checkpoint, network and "
                                                 "optimizer state, with a new learning rate, as the "
                                                 "tutorial's resume_train does.")
    resume_cmd.add_argument("--num_epochs", type=positive_int, default=2, help="epochs to add (default: 2)")
    resume_cmd.add_argument("--lr", type=positive_float, default=0.001, help="learning rate (default: 0.001)")
    commands.add_parser("infer", parents=[common, ckpt], help="predict the whole test set and save the figures",
                        description="Predict the whole test set with a checkpoint, print the accuracy, and "
                                    "save images/prediction.png, confusion_matrix.png and misclassified.png.")
    commands.add_parser("list", parents=[common], help="list the checkpoints in --ckpt_dir",
                        description="List the checkpoints in --ckpt_dir: position, stored metrics, "
                                    "and whether each file is intact.")
    export_cmd = commands.add_parser("export", parents=[common, ckpt], help="export for deployment",
                                     description="Write LeNet5 with a checkpoint's weights as one "
                                                 "MindIR or ONNX file, for inference on batches of "
                                                 "32 images of 1x32x32.")
    export_cmd.add_argument("--file_format", choices=("MINDIR", "ONNX"), default="MINDIR",
                            help="file format (default: MINDIR)")
    export_cmd.add_argument("--file_name", default="lenet5",
                            help="path of the file to write, without its extension (default: lenet5)")
    return parser


def parse_args(argv=None):
    args, unknown = build_parser().parse_known_args(argv)  # ModelArts adds arguments of its own
    if unknown:
        print("Ignoring unknown arguments:", *unknown)
    return args


def missing_cuda_libraries(load=ctypes.CDLL):
    """The libraries of CUDA_LIBRARIES that the dynamic loader cannot find, as 'name (what)'."""
    missing = []
    for name, what in CUDA_LIBRARIES.items():
        try:
            load(name)
        except OSError:
            missing.append(f"{name} ({what})")
    return missing


def best_available():
    logging.disable(logging.WARNING)  # probing a device that is not installed logs a warning
    import mindspore as ms
    found = next(d for d in BACKENDS if getattr(ms.device_context, d.lower()).is_available())
    logging.disable(logging.NOTSET)
    return found


def check_device(args, load=ctypes.CDLL):
    """Before MindSpore starts on a device: for a GPU, say which CUDA libraries are missing; set
    args.device_id from --device_id or DEVICE_ID, or to None where it means nothing."""
    wants_gpu = args.device_target == "GPU"
    if wants_gpu and (platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64")):
        raise UsageError(f"MindSpore 2.10.0 has GPU support on Linux x86_64 only, not on "
                         f"{platform.system()} {platform.machine()}; use --device_target CPU")
    has_driver = platform.system() == "Linux" and load_ok(load, "libcuda.so.1")  # an NVIDIA GPU is there
    if wants_gpu or (args.device_target is None and has_driver):
        missing = missing_cuda_libraries(load)
        if missing:
            message = (f"MindSpore 2.10.0 on GPU needs the NVIDIA driver, CUDA 11.6 and cuDNN 8.5; "
                       f"the loader cannot find {', '.join(missing)}; install them and add their "
                       f"folder to LD_LIBRARY_PATH")
            if wants_gpu:
                raise UsageError(message + ", or use --device_target CPU")
            print(f"Not using the GPU: {message}")
    in_msrun = "MS_WORKER_NUM" in os.environ
    if args.device_id is not None and in_msrun:
        raise UsageError("msrun assigns a device to each worker itself; leave out --device_id")
    if args.device_id is None and not in_msrun and os.environ.get("DEVICE_ID", "").strip():
        try:
            args.device_id = device_number(os.environ["DEVICE_ID"])
        except (ValueError, argparse.ArgumentTypeError):
            raise UsageError(f"the environment variable DEVICE_ID must be 0 or a positive integer, "
                             f"got {os.environ['DEVICE_ID']!r}") from None
    if args.device_id and (args.device_target or best_available()) == "CPU":
        print(f"Ignoring device id {args.device_id}: MindSpore's CPU backend is one device, id 0, "
              f"which uses all the cores")
        args.device_id = None


def sink_mode_for_tests():
    """TUTORIAL_SINK_MODE=1 makes the tutorial's training ask for dataset sink mode on any device
    (tests use it on CPU); unset, run_training decides: sink mode on Ascend only."""
    return True if os.environ.get("TUTORIAL_SINK_MODE") == "1" else None


def load_ok(load, name):
    try:
        load(name)
        return True
    except OSError:
        return False


def make_writable_dir(path, option):
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):  # write access, as the checkpoints will need it
            pass
    except OSError as error:
        raise UsageError(f"cannot write to {option} {path}: {error.strerror}; "
                         f"pass a folder you can write to") from None


def save_figures(figures):
    """Save each figure of {name: figure} as images/<name>.png; return the paths."""
    paths = []
    for name, figure in figures.items():
        path = Path("images") / f"{name}.png"
        try:
            path.parent.mkdir(exist_ok=True)
            figure.savefig(path)
        except OSError as error:
            raise UsageError(f"cannot save {path}: {error.strerror}; run from a folder you can write to") from None
        print("Saved", path)
        paths.append(path)
    return paths


def run(main, argv=None):
    """Parse the command line, run `main(args)`, and copy what it returns to --train_url.

    Every error ends in one line on stderr and a non-zero exit code, without a traceback.
    """
    args = parse_args(argv)
    if args.no_progress:
        os.environ["TQDM_DISABLE"] = "1"  # tqdm's own switch, which ProgressBar follows
    try:
        check_reachable(args.data_url, "--data_url")
        if args.train_url:
            check_reachable(args.train_url, "--train_url")
        if args.command == "list":
            print(table(args.ckpt_dir))
            return
        check_device(args)
        outputs = main(args)
        if args.train_url:
            publish(outputs, args.train_url)
            print("Copied the outputs to", args.train_url)
    except (CheckpointError, DataError, StorageError, UsageError) as error:
        sys.exit(f"error: {error}")
    except TrainingInterrupted as error:
        print(f"Training {error}. To continue: python main.py train --auto_resume "
              f"--ckpt_dir {args.ckpt_dir} (with the same options)", file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.exit("Interrupted before training started; nothing was saved.")
    except OSError as error:  # such as a full disk under the tutorial's ModelCheckpoint
        where = f" ({error.filename})" if error.filename else ""
        fix = "free some space or choose another --ckpt_dir" if disk_full(error) else "check the folders you passed"
        sys.exit(f"error: {error.strerror or error}{where}, with --ckpt_dir {args.ckpt_dir}; {fix} "
                 f"(the files already saved are kept)")
    show_if_interactive()
