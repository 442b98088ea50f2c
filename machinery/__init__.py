"""The machinery around the tutorial in main.py: what would get in the way of the lesson.

- options: the command line's options and commands, parsed before MindSpore loads.
- cli: running a command, and the checks that turn bad input or a stop into one line.
- resumable: train_resumable, the engine of `train --auto_resume` (exact resume to the step).
- checkpoint_files: writing, finding, checking and listing checkpoint files.
- cloud_storage: copying to and from ModelArts object storage (--data_url, --train_url).
- monitoring: progress bars for training and evaluation.
- plotting: the figures beyond the tutorial's own (curves, confusion matrix, mistakes).
- compat: the differences between the MindSpore releases supported (2.7.0 to 2.10.0).
"""
