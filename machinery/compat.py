"""Differences between the MindSpore releases the tutorial supports, 2.7.0 to 2.10.0, each handled
by one function here, so that the lesson's cells are written for 2.10 alone.

The two that the notebook's first cell meets live in mnist_data.py, the one helper a learner copies
along with the notebook: check_mindspore (no MindSpore, or one older than 2.7.0) and
print_plain_numbers (NumPy 1.x, which MindSpore 2.7 to 2.9 require, has no legacy="1.25").

Found by running everything on each release (tests/test_versions_matrix.py): checkpoints in both
formats, their CRC checks, Model.fit, BackupAndRestore, OnRequestExit, export to MindIR and the
device API (ms.device_context, ms.set_device) behave the same from 2.7.0 to 2.10.0, and files
written by 2.7.0 and 2.10.0 load in the other."""
import types

import mindspore as ms


def add_onnx_export():
    """MindSpore 2.8.0 added ms.onnx.export, and 2.10.0 deprecates ms.export(file_format="ONNX")
    in its favour; 2.7.0 to 2.7.2 have only ms.export. There, give ms an `onnx.export` that calls
    it (the same exporter underneath), so that main.py's export_model reads as written for 2.10."""
    if not hasattr(ms, "onnx"):
        def export(net, *inputs, file_name):
            ms.export(net, *inputs, file_name=file_name, file_format="ONNX")
        ms.onnx = types.SimpleNamespace(export=export)
