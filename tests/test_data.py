import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gd_torch.core.data import Split, activations, load_mnist, shuffled_batches
from gd_torch.core.errors import GdTorchError
from gd_torch.core.mnist_files import MNIST_FILES, check_report, raw_folder
from tests.fakes import synthetic_digits, write_mnist_files


def test_each_epoch_visits_every_training_example_exactly_once():
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        batches = shuffled_batches(1003, 10, generator)
        assert [len(b) for b in batches] == [10] * 100 + [3]
        assert torch.equal(torch.cat(batches).sort().values, torch.arange(1003))


def test_batch_order_is_seeded_and_changes_every_epoch():
    first = shuffled_batches(100, 10, torch.Generator().manual_seed(4))
    again = shuffled_batches(100, 10, torch.Generator().manual_seed(4))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    generator = torch.Generator().manual_seed(4)
    epoch1, epoch2 = (
        torch.cat(shuffled_batches(100, 10, generator)),
        torch.cat(shuffled_batches(100, 10, generator)),
    )
    assert not torch.equal(epoch1, epoch2)


def test_idx_files_load_as_torchvision_reads_them_without_importing_it(fake_mnist_root):
    import torchvision

    data = load_mnist(str(fake_mnist_root), download=False)
    for train, split in ((True, data.train), (False, data.test)):
        dataset = torchvision.datasets.MNIST(str(fake_mnist_root), train=train, download=False)
        assert torch.equal(split.pixels, dataset.data.reshape(len(dataset.data), 784))
        assert torch.equal(split.labels, dataset.targets)
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from gd_torch.core.data import load_mnist; "
            "from gd_torch.core.run_dir import library_versions; "
            f"load_mnist({str(fake_mnist_root)!r}, download=False); library_versions(); "
            "print(sorted(m for m in sys.modules if m.startswith('torchvision')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"  # importing torchvision takes seconds


def test_missing_files_are_downloaded_by_torchvision(tmp_path, monkeypatch):
    import torchvision

    asked = []

    class Download:  # torchvision.datasets.MNIST, downloading the fake digits into root
        def __init__(self, root, train, download):
            asked.append((root, train, download))
            write_mnist_files(Path(root))
            self.data, self.targets = synthetic_digits(600 if train else 200, seed=2 - train)

    monkeypatch.setattr(torchvision.datasets, "MNIST", Download)
    data = load_mnist(str(tmp_path), download=True)
    assert asked == [(str(tmp_path), True, True)]  # it fetches all four files at once
    assert torch.equal(data.train.labels, synthetic_digits(600, seed=1)[1])
    assert torch.equal(data.test.labels, synthetic_digits(200, seed=2)[1])  # read from raw/


def test_idx_files_load_as_flat_tensors_in_0_1(fake_mnist_root):
    data = load_mnist(str(fake_mnist_root), download=False)
    images, labels = synthetic_digits(600, seed=1)
    assert data.train.images.shape == (600, 784) and data.train.images.dtype == torch.float32
    assert data.test.images.shape == (200, 784)
    torch.testing.assert_close(data.train.images, images.reshape(600, 784).float() / 255)
    assert torch.equal(data.train.labels, labels)
    assert 0 <= data.train.images.min() and data.train.images.max() <= 1
    assert data.train.targets.sum(1).eq(1).all() and data.train.targets.argmax(1).equal(labels)
    assert torch.equal(
        data.train.pixels, images.reshape(600, 784)
    )  # the bytes as read, which --compile gathers


def test_validation_split_holds_out_the_last_training_images(fake_mnist_root):
    full = load_mnist(str(fake_mnist_root), download=False)
    split = load_mnist(str(fake_mnist_root), download=False, validation_size=100)
    assert len(split.train) == 500 and len(split.validation) == 100
    assert torch.equal(split.validation.images, full.train.images[500:])
    assert torch.equal(split.train.labels, full.train.labels[:500])
    assert torch.equal(split.train.pixels, full.train.pixels[:500]) and torch.equal(
        split.validation.pixels, full.train.pixels[500:]
    )
    with pytest.raises(GdTorchError, match="leaves no training images"):
        load_mnist(str(fake_mnist_root), download=False, validation_size=600)


def test_missing_data_names_the_files_and_where_they_go(tmp_path):
    with pytest.raises(GdTorchError) as error:
        load_mnist(str(tmp_path), download=False)
    message = str(error.value)
    assert str(raw_folder(tmp_path)) in message and all(f.name in message for f in MNIST_FILES)
    assert "\n" not in message


@pytest.mark.parametrize(
    "damage,problem",
    [
        (lambda data: data[:1000], "truncated"),
        (lambda data: b"\x00\x00\x08\x01" + data[4:], "wrong magic number"),
        (
            lambda data: data[:8] + (27).to_bytes(4, "big") + data[12:],
            "images are 27x28, expected 28x28",
        ),
    ],
)
def test_broken_image_file_is_refused_naming_it(fake_mnist_root, damage, problem):
    path = raw_folder(fake_mnist_root) / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(GdTorchError, match=problem) as error:
        load_mnist(str(fake_mnist_root), download=False)
    assert str(path) in str(error.value)


def test_labels_out_of_range_are_refused(fake_mnist_root):
    path = raw_folder(fake_mnist_root) / "t10k-labels-idx1-ubyte"
    data = bytearray(path.read_bytes())
    data[20] = 11
    path.write_bytes(bytes(data))
    with pytest.raises(GdTorchError, match="label 11 out of range 0..9"):
        load_mnist(str(fake_mnist_root), download=False)


def test_image_and_label_counts_must_agree(fake_mnist_root):
    from tests.fakes import idx_bytes

    path = raw_folder(fake_mnist_root) / "train-labels-idx1-ubyte"
    path.write_bytes(idx_bytes(synthetic_digits(599, seed=1)[1], 0x801))
    with pytest.raises(GdTorchError, match="600 images but .* 599 labels"):
        load_mnist(str(fake_mnist_root), download=False)


def test_real_mnist_has_the_official_shapes(mnist):
    assert mnist.train.images.shape == (60_000, 784) and mnist.test.images.shape == (10_000, 784)
    assert (
        mnist.train.labels.bincount().tolist()[1] == 6742
    )  # the well-known count of 1s in MNIST's training set


def test_a_part_of_a_split_keeps_images_labels_and_pixels_together():
    pixels, labels = torch.randint(0, 256, (10, 784), dtype=torch.uint8), torch.arange(10)
    split = Split.from_pixels(pixels, labels)
    assert torch.equal(split.images, activations(pixels)) and split.images.max() <= 1
    part = split[3:7]
    assert (
        torch.equal(part.images, split.images[3:7])
        and torch.equal(part.labels, labels[3:7])
        and torch.equal(part.pixels, pixels[3:7])
    )
    assert torch.equal(part.targets, split.targets[3:7])
    assert Split(split.images, labels)[:2].pixels is None  # images given as floats have no pixels


def _legacy(root, train_images, train_labels, test_images=None, test_labels=None):
    """torchvision's legacy layout: (images, labels) in MNIST/processed/{training,test}.pt."""
    folder = root / "MNIST" / "processed"
    folder.mkdir(parents=True, exist_ok=True)
    test_images, test_labels = (
        synthetic_digits(200, seed=2) if test_images is None else (test_images, test_labels)
    )
    torch.save((train_images, train_labels), folder / "training.pt")
    torch.save((test_images, test_labels), folder / "test.pt")


def test_legacy_files_that_differ_from_raw_are_refused_not_read_silently(fake_mnist_root):
    _legacy(fake_mnist_root, *synthetic_digits(50, seed=7))  # what torchvision would read instead
    with pytest.raises(GdTorchError) as error:
        load_mnist(str(fake_mnist_root), download=False)
    message = str(error.value)
    assert "processed/training.pt (torchvision's legacy layout" in message
    assert "holds 50 training images that differ from the 600 of" in message
    lines, problem = check_report(fake_mnist_root)  # check-data describes what training reads
    assert "training reads" in lines[0] and "50 images" in lines[1] and problem == message


def test_legacy_files_alone_are_read_checked_and_named_as_the_source(tmp_path):
    _legacy(tmp_path, *synthetic_digits(300, seed=7))
    data = load_mnist(str(tmp_path), download=False)
    assert len(data.train) == 300 and "processed (torchvision's legacy layout" in data.source
    lines, problem = check_report(tmp_path)
    assert problem is None and "sound, but not the official MNIST" in lines[1]
    assert lines[-1] == "both legacy files are present and sound; 2 differ from the official MNIST."


def test_legacy_files_equal_to_raw_are_read(fake_mnist_root):
    _legacy(fake_mnist_root, *synthetic_digits(600, seed=1))
    assert torch.equal(
        load_mnist(str(fake_mnist_root), download=False).train.labels, synthetic_digits(600, 1)[1]
    )


@pytest.mark.parametrize(
    "images, labels, problem",
    [
        (torch.zeros(5, 28, 28), torch.zeros(5, dtype=torch.int64), "images are a torch.float32"),
        (
            torch.zeros(5, 27, 28, dtype=torch.uint8),
            torch.zeros(5),
            "images are (27, 28), not 28x28",
        ),
        (torch.zeros(0, 28, 28, dtype=torch.uint8), torch.zeros(0), "it holds no images"),
        (
            torch.zeros(5, 28, 28, dtype=torch.uint8),
            torch.zeros(4),
            "one integer label for each of",
        ),
        (torch.zeros(5, 28, 28, dtype=torch.uint8), torch.full((5,), 12), "label 12 out of range"),
        (torch.zeros(5, 28, 28, dtype=torch.uint8), torch.full((5,), -1), "label -1 out of range"),
    ],
)
def test_what_is_loaded_is_checked_whatever_file_it_came_from(tmp_path, images, labels, problem):
    _legacy(tmp_path, images, labels)
    with pytest.raises(GdTorchError, match=re.escape(problem)):
        load_mnist(str(tmp_path), download=False)
    assert check_report(tmp_path)[1] is not None


def test_a_legacy_file_of_python_objects_is_not_unpickled(tmp_path):
    _legacy(tmp_path, *synthetic_digits(10, seed=7))
    torch.save({"not": Path("a tensor")}, tmp_path / "MNIST" / "processed" / "training.pt")
    with pytest.raises(GdTorchError, match="holds Python objects other than tensors"):
        load_mnist(str(tmp_path), download=False)


def test_a_download_that_would_replace_present_files_is_refused(fake_mnist_root):
    (raw_folder(fake_mnist_root) / "t10k-labels-idx1-ubyte").unlink()
    before = {p.name: p.read_bytes() for p in raw_folder(fake_mnist_root).iterdir()}
    with pytest.raises(GdTorchError, match="lacks t10k-labels-idx1-ubyte, and torchvision's"):
        load_mnist(str(fake_mnist_root), download=True)
    assert {p.name: p.read_bytes() for p in raw_folder(fake_mnist_root).iterdir()} == before
