"""The ModelArts job end to end, with a stand-in for moxing (tests/fake_moxing, see its README)
over a local folder that plays the bucket."""
import os
import subprocess

from conftest import ROOT, script_command
import pytest

pytestmark = pytest.mark.slow  # every test here runs MindSpore for seconds or more


FAKE_MOXING = ROOT / "tests" / "fake_moxing"


def test_a_modelarts_job_reads_obs_and_writes_every_output_there(tmp_path, small_mnist):
    import shutil
    bucket_root = tmp_path / "buckets"
    shutil.copytree(small_mnist, bucket_root / "bucket" / "mnist")
    job = tmp_path / "job"
    job.mkdir()
    env = {**os.environ, "PYTHONPATH": str(FAKE_MOXING), "FAKE_MOXING_ROOT": str(bucket_root),
           "MPLBACKEND": "Agg"}
    result = subprocess.run(script_command("--data_url", "obs://bucket/mnist", "--train_url", "obs://bucket/out",
                                           "--steps_per_epoch", "3", "--some_modelarts_flag=1"),
                            cwd=job, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Ignoring unknown arguments: --some_modelarts_flag=1" in result.stdout
    # the data arrived in the cache, and training ran on it (the tutorial's four epochs)
    assert sorted(p.name for p in (job / "cache" / "data" / "train").iterdir()) == [
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte"]
    assert "epoch: 4 step: 3" in result.stdout
    # every promised output landed in the bucket: both runs' checkpoints, best and graph, the exported
    # model, the figures (not the folders of the crash demos)
    local = {p.name for p in (job / "ckpt").iterdir() if p.is_file()} | {p.name for p in (job / "images").iterdir()}
    landed = {p.name for p in (bucket_root / "bucket" / "out").iterdir()}
    assert landed == local, (landed, local)
    assert {"lenet-1_3.ckpt", "lenet-2_3.ckpt", "lenet-best.ckpt", "lenet-graph.meta", "lenet_1-4_3.ckpt",
            "lenet_1-best.ckpt", "lenet_1.mindir", "prediction.png", "confusion_matrix.png",
            "misclassified.png"} <= landed
    for name in landed:  # copied whole
        source = job / ("images" if name.endswith(".png") else "ckpt") / name
        assert (bucket_root / "bucket" / "out" / name).read_bytes() == source.read_bytes()
    calls = (bucket_root / "calls.log").read_text().splitlines()
    assert calls[0] == "copy_parallel obs://bucket/mnist cache/data"
    assert len(calls) == 1 + len(landed) and all(c.startswith("copy ") for c in calls[1:])
    assert "Copied the outputs to obs://bucket/out" in result.stdout


def test_s3_urls_go_through_moxing_too(tmp_path, small_mnist):
    import shutil
    bucket_root = tmp_path / "buckets"
    shutil.copytree(small_mnist, bucket_root / "b" / "mnist")
    env = {**os.environ, "PYTHONPATH": str(FAKE_MOXING), "FAKE_MOXING_ROOT": str(bucket_root)}
    ckpt = tmp_path / "run"
    first = subprocess.run(script_command("train", "--data_url", "s3://b/mnist", "--steps_per_epoch", "2",
                                          "--num_epochs", "1", "--no_eval", "--ckpt_dir", str(ckpt),
                                          "--train_url", "s3://b/out/"),
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert sorted(p.name for p in (bucket_root / "b" / "out").iterdir()) == ["lenet-1_2.ckpt", "train_curves.png",
                                                                           "train_log.csv"]
