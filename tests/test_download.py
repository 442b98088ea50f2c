"""Getting MNIST when the data directory has none: the shipped copy, or a download from mirrors.

The mirrors are a real HTTP server on 127.0.0.1 serving small gzip-compressed IDX files.
"""
import gzip
import hashlib
import http.server
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from conftest import ROOT, copy_project_files, free_port, write_idx
from mnist_data import MNIST_FILES, DataError, download_mnist, prepare_mnist

GZ_NAMES = [f"{name}.gz" for files in MNIST_FILES.values() for name in files]


def md5(data):
    return hashlib.md5(data).hexdigest()


@pytest.fixture(scope="module")
def tiny_gz(tmp_path_factory):
    """96 training and 64 test images as gzip files: {gz name: bytes}, their MD5s, the IDX MD5s."""
    rng = np.random.default_rng(0)
    idx_dir = tmp_path_factory.mktemp("idx")
    for split, prefix, n in [("train", "train", 96), ("test", "t10k", 64)]:
        write_idx(idx_dir / split, prefix, rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n))
    files, idx_md5s = {}, {}
    for split, names in MNIST_FILES.items():
        idx_md5s[split] = {}
        for name in names:
            raw = (idx_dir / split / name).read_bytes()
            files[f"{name}.gz"] = gzip.compress(raw, mtime=0)
            idx_md5s[split][name] = md5(raw)
    return files, {name: md5(data) for name, data in files.items()}, idx_md5s


class Mirror(http.server.BaseHTTPRequestHandler):
    """GET /<mode>/<file>: mode good, corrupt (bytes changed) or cut (closes halfway)."""

    def do_GET(self):
        mode, _, name = self.path.strip("/").partition("/")
        body = self.server.files.get(name)
        if body is None or mode not in ("good", "corrupt", "cut"):
            self.send_error(404)
            return
        if mode == "corrupt":
            body = body[:40] + bytes(b ^ 0xFF for b in body[40:80]) + body[80:]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:len(body) // 2] if mode == "cut" else body)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(tiny_gz):
    """The base URL of a local server holding the tiny files: add good/, corrupt/ or cut/."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Mirror)
    httpd.files = tiny_gz[0]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def dead_mirror():
    """A base URL on a port nothing listens on."""
    return f"http://127.0.0.1:{free_port()}/mnist/"


def assert_complete(data_dir, tiny_gz):
    """The four verified gz files and the IDX layout, and nothing else: no partial or temp file."""
    files, _, idx_md5s = tiny_gz
    assert sorted(p.name for p in data_dir.iterdir()) == sorted([*files, "test", "train"])
    for name, data in files.items():
        assert (data_dir / name).read_bytes() == data
    for split, names in idx_md5s.items():
        assert sorted(p.name for p in (data_dir / split).iterdir()) == sorted(names)
        for name, expected in names.items():
            assert md5((data_dir / split / name).read_bytes()) == expected


def download_and_prepare(data_dir, mirrors, tiny_gz):
    download_mnist(data_dir, mirrors, gz_md5s=tiny_gz[1])
    return prepare_mnist(data_dir, md5s=tiny_gz[2])


def test_a_working_mirror_fills_the_data_directory(tmp_path, server, tiny_gz, capsys):
    assert download_and_prepare(tmp_path, [f"{server}/good/"], tiny_gz) == tmp_path
    assert_complete(tmp_path, tiny_gz)
    assert capsys.readouterr().out.count("Downloading") == 4


@pytest.mark.parametrize("bad, reason", [
    ("corrupt/", "MD5 mismatch: damaged or different file"),
    ("cut/", "connection closed before the end of the file"),
    ("missing/", "HTTP 404 Not Found"),
    (None, "connection refused"),
])
def test_a_failing_mirror_is_skipped_for_the_next(tmp_path, server, dead_mirror, tiny_gz, capsys,
                                                   bad, reason):
    bad_mirror = f"{server}/{bad}" if bad else dead_mirror
    download_and_prepare(tmp_path, [bad_mirror, f"{server}/good/"], tiny_gz)
    assert_complete(tmp_path, tiny_gz)
    failures = [line for line in capsys.readouterr().out.splitlines() if "failed" in line]
    assert failures == [f"  {bad_mirror} failed ({reason}); trying the next mirror"] * 4


@pytest.mark.parametrize("bad", ["cut/", "corrupt/"])
def test_a_bad_download_never_takes_the_files_name(tmp_path, server, tiny_gz, bad):
    with pytest.raises(DataError, match="cannot download train-images-idx3-ubyte.gz from any mirror"):
        download_mnist(tmp_path, [f"{server}/{bad}"], gz_md5s=tiny_gz[1])
    assert list(tmp_path.iterdir()) == []


def test_mnist_mirrors_replaces_the_mirror_list(tmp_path, server, dead_mirror, tiny_gz, capsys, monkeypatch):
    monkeypatch.setenv("MNIST_MIRRORS", f" {dead_mirror}\n {server}/good/ ")
    download_and_prepare(tmp_path, None, tiny_gz)
    assert_complete(tmp_path, tiny_gz)
    assert capsys.readouterr().out.count(f"  {dead_mirror} failed (connection refused)") == 4


def test_a_mirror_must_be_an_http_url(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_MIRRORS", "example.com/mnist/")
    with pytest.raises(DataError, match="mirror example.com/mnist/ is not an http:// or https:// URL"):
        download_mnist(tmp_path)


def test_when_every_mirror_fails_the_error_says_where_to_put_the_files(tmp_path, server, dead_mirror,
                                                                        tiny_gz):
    # the first file downloads, the second fails everywhere: the first is removed again
    gz_md5s = dict(tiny_gz[1], **{"train-labels-idx1-ubyte.gz": "0" * 32})
    with pytest.raises(DataError) as error:
        download_mnist(tmp_path, [dead_mirror, f"{server}/good/"], gz_md5s=gz_md5s)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("cannot download train-labels-idx1-ubyte.gz from any mirror (last: MD5 mismatch")
    assert f"copy the four MNIST .gz files ({', '.join(GZ_NAMES)}) into {tmp_path.resolve()}," in message
    assert message.endswith("or set MNIST_MIRRORS")
    assert list(tmp_path.iterdir()) == []


def test_an_empty_data_dir_gets_the_shipped_copy_without_network(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MNIST_MIRRORS", "http://127.0.0.1:1/")  # any download would fail
    data_dir = tmp_path / "empty"
    data_dir.mkdir()
    assert prepare_mnist(data_dir) == data_dir
    shipped = ROOT / "MNIST"
    assert capsys.readouterr().out == f"No MNIST files in {data_dir}: unpacking the copy shipped in {shipped}\n"
    assert sorted(p.name for p in data_dir.iterdir()) == ["test", "train"]
    for split, files in MNIST_FILES.items():
        assert sorted(p.name for p in (data_dir / split).iterdir()) == sorted(files)


def test_some_mnist_files_but_not_all_is_an_error_not_a_download(tmp_path, tiny_gz):
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(tiny_gz[0]["t10k-labels-idx1-ubyte.gz"])
    with pytest.raises(DataError, match="missing .*train-images-idx3-ubyte"):
        prepare_mnist(tmp_path, md5s=tiny_gz[2])


def test_the_script_without_network_or_shipped_copy_fails_in_one_line(tmp_path, dead_mirror):
    project = tmp_path / "project"
    project.mkdir()
    copy_project_files(["main.py", "mnist_data.py", "machinery", "pytorch"], project)  # no MNIST/
    (tmp_path / "data").mkdir()
    result = subprocess.run([sys.executable, "main.py", "infer", "--data_url", str(tmp_path / "data")],
                            cwd=project, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, MNIST_MIRRORS=dead_mirror))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    [error] = result.stderr.splitlines()
    assert error.startswith("error: cannot download train-images-idx3-ubyte.gz from any mirror")
    assert f"into {tmp_path / 'data'}," in error
    assert list((tmp_path / "data").iterdir()) == []
