import gzip
import hashlib
import http.server
import threading
from functools import partial

import numpy as np
import pytest
import torch

from aevae import DataError, MissingData, MissingModel, UserError, data, download, run_command

from helpers import MNIST, idx_bytes, needs_mnist


@pytest.fixture
def small_mnist(tmp_path):
    """A folder of four tiny IDX files in MNIST's names (train gzipped, test plain) and their checksums."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(5),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (3, 28, 28)),
        "t10k-labels-idx1-ubyte": np.array([7, 2, 1]),
    }
    folder = tmp_path / "mirror"
    folder.mkdir()
    sha = {}
    for name, array in arrays.items():
        raw = idx_bytes(array)
        sha[name] = hashlib.sha256(raw).hexdigest()
        if name.startswith("train"):
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return folder, sha, arrays


def test_parse_idx_reads_shape_and_values():
    array = np.arange(24).reshape(2, 3, 4)
    assert np.array_equal(data.parse_idx(idx_bytes(array)), array)


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"\x00\x00\x0d\x03" + bytes(12), "not an IDX file of unsigned bytes"),  # float32 IDX
        (b"<!DOCTYPE html>", "not an IDX file"),
        (idx_bytes(np.zeros((2, 28, 28)))[:-1], r"IDX shape \(2, 28, 28\) needs 1,568 values, file has 1,567"),
        (b"\x00\x00\x08\x03\x00", "IDX header truncated"),
    ],
)
def test_parse_idx_rejects_what_is_not_idx(raw, message):
    with pytest.raises(DataError, match=message):
        data.parse_idx(raw)


def test_fetch_from_folder_gz_and_plain_then_load(tmp_path, small_mnist):
    folder, sha, arrays = small_mnist
    download.fetch([str(folder)], tmp_path / "out", sha)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(sha)
    x, y = data.load(tmp_path / "out", "test")
    assert x.shape == (3, 784) and x.dtype == torch.float32
    assert torch.equal(x, torch.from_numpy(arrays["t10k-images-idx3-ubyte"].reshape(3, -1) / 255).float())
    assert y.tolist() == [7, 2, 1]
    assert data.load(tmp_path / "out", "train", limit=2)[0].shape == (2, 784)


def test_fetch_takes_each_file_from_the_first_source_that_has_it(tmp_path, small_mnist, capsys):
    folder, sha, _ = small_mnist
    download.fetch([str(tmp_path / "missing"), str(folder)], tmp_path / "out", sha)
    assert f"<- {folder}/t10k-images-idx3-ubyte" in capsys.readouterr().out


def test_fetch_over_http(tmp_path, small_mnist):
    folder, sha, _ = small_mnist
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        download.fetch([f"http://127.0.0.1:{server.server_port}/"], tmp_path / "out", sha)
    finally:
        server.shutdown()
    assert len(list((tmp_path / "out").iterdir())) == 4


def test_a_download_cut_short_moves_on_to_the_next_source(tmp_path, small_mnist, capsys):
    """http.client.IncompleteRead is no OSError: the server promises more bytes than it sends."""
    folder, sha, _ = small_mnist

    class CutShort(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = (folder / self.path.lstrip("/")).read_bytes() if (folder / self.path.lstrip("/")).exists() else b""
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body) + 1000))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CutShort)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        download.fetch([url, str(folder)], tmp_path / "out", sha)
        assert f"<- {folder}/train-images-idx3-ubyte.gz" in capsys.readouterr().out
        with pytest.raises(UserError, match=r"ubyte.gz: the connection broke off \(IncompleteRead\)"):
            download.fetch([url], tmp_path / "again", sha)
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[: len(b) // 2], "truncated or corrupt gzip"),
        (lambda b: gzip.compress(gzip.decompress(b)[:-1] + b"\x01"), "checksum mismatch: got 3,936 bytes"),
        (lambda b: b"<html><body>Sign in to continue</body></html>", "checksum mismatch: got an HTML page"),
    ],
)
def test_a_bad_file_fails_naming_every_source_and_leaves_no_output(tmp_path, small_mnist, damage, message):
    folder, sha, _ = small_mnist
    gz = folder / "train-images-idx3-ubyte.gz"
    gz.write_bytes(damage(gz.read_bytes()))
    with pytest.raises(UserError) as e:
        download.fetch([str(tmp_path / "nowhere"), str(folder)], tmp_path / "data" / "mnist", sha)
    text = str(e.value)
    assert text.startswith("fetch: no source gave a valid train-images-idx3-ubyte; tried ")
    assert f"{tmp_path}/nowhere/train-images-idx3-ubyte[.gz]: not found" in text
    assert f"{gz}: {message}" in text
    assert f"{folder}/train-images-idx3-ubyte: not found" in text
    assert text.endswith("; offline? set MNIST_MIRROR to a folder (or base URL) holding the four MNIST files, .gz or not")
    assert list((tmp_path / "data").iterdir()) == []  # not even a partial folder


def test_a_failed_fetch_keeps_the_previous_output(tmp_path, small_mnist):
    folder, sha, _ = small_mnist
    download.fetch([str(folder)], tmp_path / "out", sha)
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte"):
        download.fetch([str(folder)], tmp_path / "out", sha)
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before


def test_load_raises_typed_errors_that_name_a_missing_or_damaged_file(tmp_path, small_mnist):
    folder, sha, _ = small_mnist
    with pytest.raises(MissingData, match=r"train-images-idx3-ubyte: not found$") as e:
        data.load(tmp_path, "train")
    assert e.value.path == tmp_path / "train-images-idx3-ubyte"
    download.fetch([str(folder)], tmp_path / "out", sha)
    images = tmp_path / "out" / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-5])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: IDX shape \(3, 28, 28\) needs 2,352 values, file has 2,347$"):
        data.load(tmp_path / "out", "test")
    images.write_bytes(idx_bytes(np.zeros((3, 14, 56))))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: shape \(3, 14, 56\), expected \(3, 28, 28\)"):
        data.load(tmp_path / "out", "test")


@pytest.mark.parametrize("error, line", [
    (MissingData("data/mnist/t10k-images-idx3-ubyte"),
     "error: data/mnist/t10k-images-idx3-ubyte: not found; run the fetch stage ('dvc repro fetch') first"),
    (DataError("data/mnist/t10k-images-idx3-ubyte: IDX header truncated"),
     ("error: data/mnist/t10k-images-idx3-ubyte: IDX header truncated; restore the fetched files with "
      "'dvc checkout data/mnist', or fetch them anew with 'dvc repro -f fetch'")),
    (MissingModel("models/vae.pt"), "error: models/vae.pt: not found; train it first: dvc repro train_vae"),
    (UserError("train.lr = 0 is not accepted; expected a number > 0"),
     "error: train.lr = 0 is not accepted; expected a number > 0"),
])
def test_a_stage_words_the_next_action_for_each_typed_error(capsys, error, line):
    def main():
        raise error

    with pytest.raises(SystemExit) as e:
        run_command(main)
    assert e.value.code == 2 and capsys.readouterr().err == line + "\n"


@needs_mnist
@pytest.mark.slow
def test_real_mnist_fetches_verified_and_loads(tmp_path):
    download.fetch([str(MNIST)], tmp_path / "mnist")
    x, y = data.load(tmp_path / "mnist", "train")
    assert x.shape == (60000, 784) and y.shape == (60000,)
    assert 0.0 == x.min() and x.max() == 1.0
    assert torch.bincount(y).tolist()[:2] == [5923, 6742]  # the published class counts of digits 0 and 1
    x, y = data.load(tmp_path / "mnist", "test")
    assert x.shape == (10000, 784) and y[:3].tolist() == [7, 2, 1]


def test_binarised_input_is_one_fixed_draw_and_training_draws_anew():
    x = torch.full((4, 784), 0.5)
    assert data.eval_images(x, "none", "train") is x and data.batch_transform("none") is None
    fixed = data.eval_images(x, "dynamic", "test")
    assert set(fixed.unique().tolist()) == {0.0, 1.0} and torch.equal(fixed, data.eval_images(x, "dynamic", "test"))
    # each set its own stream: equal grey levels in the training and test sets are drawn apart
    assert not torch.equal(data.eval_images(x, "dynamic", "train"), fixed)
    draw = data.batch_transform("dynamic")
    assert not torch.equal(draw(x), draw(x))
