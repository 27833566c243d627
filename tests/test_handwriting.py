"""Your own handwriting: digits the test draws with PIL, prepared the way MNIST's were, and
predict."""

import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from gd_torch import train
from gd_torch.cli import main
from gd_torch.core.errors import GdTorchError
from gd_torch.tools.handwriting import LONG_SIDE, prepare, read_grayscale
from tests.configs import split


def draw(
    digit: str,
    canvas: tuple[int, int],
    box: tuple[int, int, int, int],
    stroke: int,
    dark_on_light: bool,
) -> Image.Image:
    """A thick "1" (a vertical bar) or "0" (an ellipse) inside ``box`` on a ``canvas``-sized
    image."""
    paper, ink = (255, 0) if dark_on_light else (0, 255)
    image = Image.new("L", canvas, paper)
    pen = ImageDraw.Draw(image)
    left, top, right, bottom = box
    if digit == "1":
        middle = (left + right) // 2
        pen.line([(middle, top), (middle, bottom)], fill=ink, width=stroke)
    else:
        pen.ellipse(box, outline=ink, width=stroke)
    return image


def as_gray(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.float32)) / 255


DRAWINGS = {  # (canvas, box, stroke): small and large, off centre, wide and tall canvases
    "small": ((60, 60), (20, 10, 40, 50), 6),
    "large_top_left": ((400, 300), (20, 15, 150, 220), 30),
    "large_bottom_right": ((300, 500), (180, 300, 280, 480), 18),
}


def centre_of_mass(field: torch.Tensor) -> tuple[float, float]:
    index = torch.arange(
        28.0
    )  # MNIST's digits have their centre of mass at row 14.0, column 14.0 on average
    return ((field.sum(1) * index).sum() / field.sum()).item(), (
        (field.sum(0) * index).sum() / field.sum()
    ).item()


def ink_box(field: torch.Tensor) -> tuple[int, int]:
    rows, columns = (
        (field > 0.1).any(1).nonzero().flatten(),
        (field > 0.1).any(0).nonzero().flatten(),
    )
    return int(rows[-1] - rows[0] + 1), int(columns[-1] - columns[0] + 1)


@pytest.mark.parametrize("dark_on_light", [True, False])
@pytest.mark.parametrize("drawing", DRAWINGS)
@pytest.mark.parametrize("digit", ["1", "0"])
def test_prepared_like_mnist(digit, drawing, dark_on_light):
    field = prepare(as_gray(draw(digit, *DRAWINGS[drawing], dark_on_light)))
    assert (
        field.shape == (28, 28) and field.min() >= 0 and field.max() == pytest.approx(1, abs=0.05)
    )
    assert (
        field[0].max() == field[-1].max() == field[:, 0].max() == field[:, -1].max() == 0
    )  # light digit on black
    height, width = ink_box(field)
    assert max(height, width) in (19, 20, 21)  # the longer side fills the 20x20 box
    if digit == "1":
        assert height >= 19 and width <= 8  # tall and thin, aspect ratio kept
    else:
        assert width >= 10  # an ellipse stays round-ish
    y, x = centre_of_mass(field)
    assert (
        abs(y - 14) <= 0.501 and abs(x - 14) <= 0.501
    )  # placed at whole pixels: within half a pixel


@pytest.mark.parametrize("digit", ["1", "0"])
def test_polarity_and_position_do_not_matter(digit):
    canvas, box, stroke = (200, 200), (50, 30, 120, 170), 16
    reference = prepare(as_gray(draw(digit, canvas, box, stroke, dark_on_light=True)))
    inverted = prepare(as_gray(draw(digit, canvas, box, stroke, dark_on_light=False)))
    shifted = prepare(as_gray(draw(digit, canvas, (70, 20, 140, 160), stroke, dark_on_light=True)))
    torch.testing.assert_close(inverted, reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(shifted, reference, atol=1e-5, rtol=0)


def test_real_mnist_digits_come_back(mnist):
    """MNIST's own test digits are already prepared; blown up 6x as dark ink on white paper, they
    come back close."""
    for original in mnist.test.images[:8].reshape(-1, 28, 28):
        assert (prepare(original) - original).abs().mean() < 1e-3
        large = torch.nn.functional.interpolate(
            original[None, None], scale_factor=6, mode="bilinear"
        )[0, 0]  # (168, 168)
        paper = torch.ones(300, 260)
        paper[40 : 40 + 168, 70 : 70 + 168] = 1 - large
        assert (prepare(paper) - original).abs().mean() < 0.05


def test_reads_png_and_jpeg_and_transparency(tmp_path):
    image = draw("1", (80, 80), (30, 10, 50, 70), 16, dark_on_light=True)
    image.save(tmp_path / "one.png")
    image.convert("RGB").save(tmp_path / "one.jpg", quality=95)
    transparent = Image.new("RGBA", (80, 80), (0, 0, 0, 0))
    transparent.putalpha(
        Image.eval(image, lambda v: 255 - v)
    )  # black ink where the drawing is dark, clear elsewhere
    transparent.save(tmp_path / "one_clear.png")
    reference = prepare(read_grayscale(tmp_path / "one.png"))
    for name in ("one.jpg", "one_clear.png"):
        prepared = prepare(read_grayscale(tmp_path / name))
        assert ink_box(prepared) == ink_box(reference)
        assert (prepared - reference).abs().mean() < 0.02


def test_bad_images_are_one_line_errors(tmp_path):
    with pytest.raises(GdTorchError, match="not found"):
        read_grayscale(tmp_path / "missing.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(GdTorchError, match="not an image"):
        read_grayscale(tmp_path / "notes.png")
    with pytest.raises(GdTorchError, match="blank"):
        prepare(torch.full((50, 50), 0.8))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from tests.fakes import write_mnist_files

    root = write_mnist_files(tmp_path_factory.mktemp("data"))
    config = split(
        data_root=str(root),
        download=False,
        epochs=1,
        image_every=0,
        runs_dir=str(tmp_path_factory.mktemp("runs")),
    )
    return train(*config, out=io.StringIO()).run_dir / "last.pt"


def test_predict_prints_the_digit_and_ten_activations_and_shows_the_input(
    checkpoint, tmp_path, capfd
):
    paths = []
    for digit in ("1", "0"):
        draw(digit, (120, 160), (30, 20, 90, 140), 14, dark_on_light=True).save(
            tmp_path / f"my{digit}.png"
        )
        paths.append(str(tmp_path / f"my{digit}.png"))
    main(["predict", str(checkpoint), *paths, "--show"])
    lines = [line for line in capfd.readouterr().out.splitlines() if "activations" in line]
    assert [line.split(":")[0] for line in lines] == paths
    for line, path in zip(lines, paths):
        digit = int(line.split(": ")[1].split()[0])
        activations = [float(part.split(":")[1]) for part in line.split("activations")[1].split()]
        assert len(activations) == 10 and all(0 <= a <= 1 for a in activations)
        assert activations.index(max(activations)) == digit
        with Image.open(path.replace(".png", ".prepared.png")) as shown:
            assert shown.size == (28, 28)
            saved = as_gray(shown)
        torch.testing.assert_close(saved, prepare(read_grayscale(path)), atol=0.5 / 255, rtol=0)


@pytest.mark.parametrize("args", [["nothere.png"], ["--bad-checkpoint"]])
def test_predict_bad_input_is_one_line(checkpoint, tmp_path, capsys, args):
    image = tmp_path / "digit.png"
    draw("1", (60, 60), (20, 10, 40, 50), 6, dark_on_light=True).save(image)
    argv = (
        ["predict", str(tmp_path / "missing.pt"), str(image)]
        if args == ["--bad-checkpoint"]
        else ["predict", str(checkpoint), str(tmp_path / args[0])]
    )
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2
    message = capsys.readouterr().err
    assert (
        message.startswith("gd-torch predict: error: ")
        and "not found" in message
        and message.count("\n") == 1
    )


def _in_mode(image: Image.Image, mode: str) -> Image.Image:
    """``image`` (an 8-bit gray drawing) in any Pillow mode, its levels kept."""
    levels = np.asarray(image)
    if mode == "I":  # 32-bit integers holding 16-bit levels, as Pillow opens some 16-bit files
        return Image.fromarray(levels.astype(np.int32) * 257)
    if mode in ("I;16", "I;16B"):  # 16-bit, as a 16-bit PNG or TIFF holds it
        words = (levels.astype(np.uint16) * 257).astype("<u2" if mode == "I;16" else ">u2")
        return Image.frombytes(mode, image.size, words.tobytes())
    if mode == "F":  # floating point in 0..1
        return Image.fromarray(levels.astype(np.float32) / 255)
    if mode in ("La", "RGBa"):  # premultiplied alpha
        return image.convert(mode[:-1] + "A").convert(mode)
    return image.convert(mode)


MODES = [
    "1",
    "L",
    "LA",
    "La",
    "P",
    "PA",
    "RGB",
    "RGBA",
    "RGBa",
    "RGBX",
    "CMYK",
    "YCbCr",
    "LAB",
    "HSV",
    "I",
    "I;16",
    "I;16B",
    "F",
]


@pytest.mark.parametrize("mode", MODES)
def test_every_pillow_mode_and_bit_depth_gives_the_same_digit(mode):
    from gd_torch.tools.handwriting import _brightness

    image = draw("1", (80, 100), (30, 10, 50, 90), 14, dark_on_light=True)
    reference = prepare(as_gray(image))
    prepared = prepare(torch.from_numpy(_brightness(_in_mode(image, mode))))
    assert ink_box(prepared) == ink_box(reference)
    assert (prepared - reference).abs().mean() < 0.02


@pytest.mark.parametrize(
    "mode, suffix",
    [("I;16", ".png"), ("F", ".tiff"), ("CMYK", ".jpg"), ("P", ".gif"), ("1", ".bmp")],
)
def test_files_of_other_depths_and_formats_are_read(tmp_path, mode, suffix):
    image = draw("1", (80, 100), (30, 10, 50, 90), 14, dark_on_light=True)
    _in_mode(image, mode).save(tmp_path / f"digit{suffix}")
    prepared = prepare(read_grayscale(tmp_path / f"digit{suffix}"))
    assert (prepared - prepare(as_gray(image))).abs().mean() < 0.04  # JPEG blurs a little


def test_a_huge_image_is_refused_before_it_is_decoded_and_a_large_jpeg_is_read_small(tmp_path):
    Image.new("1", (12_000, 12_000), 1).save(tmp_path / "huge.png")  # 144 MP, 2 MB on disk
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning either
        with pytest.raises(GdTorchError, match=r"is 12000x12000 pixels: gd_torch reads images of"):
            read_grayscale(tmp_path / "huge.png")
        big = Image.new("L", (9_000, 6_000), 255)
        ImageDraw.Draw(big).line([(4_500, 1_000), (4_500, 5_000)], fill=0, width=400)
        big.save(tmp_path / "big.jpg")
        gray = read_grayscale(tmp_path / "big.jpg")
    assert max(gray.shape) <= LONG_SIDE
    assert ink_box(prepare(gray))[0] >= 19  # the digit is still there


def test_show_never_replaces_a_file_that_is_there(checkpoint, tmp_path, capsys):
    draw("1", (60, 60), (20, 10, 40, 50), 6, dark_on_light=True).save(tmp_path / "digit.png")
    (tmp_path / "digit.prepared.png").write_bytes(b"the user's own")
    main(["predict", str(checkpoint), str(tmp_path / "digit.png"), "--show"])
    assert (tmp_path / "digit.prepared.png").read_bytes() == b"the user's own"
    assert (
        f"what the network saw (28x28): {tmp_path / 'digit.prepared-2.png'}"
        in capsys.readouterr().out
    )
    with Image.open(tmp_path / "digit.prepared-2.png") as shown:
        assert shown.size == (28, 28)


def test_a_folder_is_not_an_image(tmp_path):
    with pytest.raises(GdTorchError, match="is a folder, not an image"):
        read_grayscale(tmp_path)
