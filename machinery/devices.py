"""Which device MindSpore runs on: the checks made before it starts, so that a missing CUDA library
or a bad device id gets one line rather than MindSpore's error."""
import ctypes
import platform

from .errors import UsageError
from .options import environment_device_id, in_msrun

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


def missing_cuda_libraries(load=ctypes.CDLL):
    """The libraries of CUDA_LIBRARIES that the dynamic loader cannot find, as 'name (what)'."""
    return [f"{name} ({what})" for name, what in CUDA_LIBRARIES.items() if not load_ok(load, name)]


def check_device(args, available, load=ctypes.CDLL):
    """Before MindSpore starts on a device: for a GPU, say which CUDA libraries are missing; set
    args.device_id from --device_id or DEVICE_ID, or to None where it means nothing. `available()` lists
    the devices MindSpore has here, best first: the lesson's available_devices."""
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
    if args.device_id is not None and in_msrun():
        raise UsageError("msrun assigns a device to each worker itself; leave out --device_id")
    if args.device_id is None and not in_msrun():
        try:
            args.device_id = environment_device_id()
        except ValueError as error:
            raise UsageError(error) from None
    if args.device_id and (args.device_target or available()[0]) == "CPU":
        print(f"Ignoring device id {args.device_id}: MindSpore's CPU backend is one device, id 0, "
              f"which uses all the cores")
        args.device_id = None


def load_ok(load, name):
    try:
        load(name)
        return True
    except OSError:
        return False
