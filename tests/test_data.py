import pytest
import torch

from gd_torch.core.data import Split, activations, load_mnist, shuffled_batches
from gd_torch.core.errors import GdTorchError
from gd_torch.core.mnist_files import MNIST_FILES, raw_folder
from tests.fakes import synthetic_digits


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


def test_idx_files_load_through_torchvision_as_flat_tensors_in_0_1(fake_mnist_root):
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
