"""The machinery around the tutorial in main.py: what would get in the way of the lesson.

- commands: the table of main.py's commands, each declared once, and their handlers.
- options: the command line's options, built from that table and parsed before MindSpore loads.
- script: main.py as a script: a command, or the whole lesson; every error in one line.
- lesson: the lesson's definitions (functions, classes), loaded without running its steps.
- devices: the checks made before MindSpore starts on a device (CUDA libraries, device ids).
- stops: stop signals turned into one line and the command that continues.
- outputs: the folders a run writes to, its figures and its exported model.
- folder_lock: one run at a time in a checkpoint folder, from the script or a notebook.
- training_log: train's log of every step, and the curves drawn from it.
- convert: weights between PyTorch and MindSpore.
- errors: the error that means a setting cannot work here.
- resumable: train_resumable, the engine of `train --auto_resume` (exact resume to the step).
- checkpoint_files: writing, finding, checking and listing checkpoint files.
- cloud_storage: copying to and from ModelArts object storage (--data_url, --train_url).
- monitoring: progress bars for training and evaluation.
- plotting: the figures beyond the tutorial's own (curves, confusion matrix, mistakes).
- compat: the differences between the MindSpore releases supported (2.7.0 to 2.10.0).
"""
