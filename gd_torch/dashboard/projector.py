"""The PROJECTOR tab: where the last hidden layer puts 2,000 test digits.

Each digit x becomes the point a^{L-1}(x), the activations of the last hidden layer (16 numbers
for 784-16-16-10). The output layer sees the digit only through this point, so it can name the
digit well exactly when the ten digits' points lie in separate regions. The projector draws
the points in 2-D or 3-D (PCA by default, t-SNE or UMAP on request), each as its own digit
thumbnail; colour them by ``label`` to see the regions, or by ``right`` to find the mistakes.

What is written, beside the run's event files (TensorBoard's projector reads these files):

    projector_config.pbtxt            one entry per embedding; entries of other writers are kept
    projector/<name>/tensors.tsv      one row of activations per digit
    projector/<name>/metadata.tsv     label, predicted, right (yes/no) per digit
    projector/<name>/sprite.png       the digits' 28x28 thumbnails, row by row (dark on white)
"""

import io
import math
import os
from pathlib import Path

import numpy as np
import torch
from google.protobuf import text_format
from PIL import Image
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

from gd_torch.core import manual
from gd_torch.core.data import Split
from gd_torch.core.model import Network

EMBEDDED_DIGITS = 2_000  # the first 2,000 test digits
CONFIG_FILE = "projector_config.pbtxt"
THUMBNAIL = 28


def sprite(images: np.ndarray) -> np.ndarray:
    """(n, 784) activations in [0, 1] -> one square (s·28, s·28) uint8 sheet, s = ⌈√n⌉, row-major,
    ink dark on white (as on paper) so that the thumbnails read on the projector's light
    background."""
    side = math.ceil(math.sqrt(len(images)))
    sheet = np.full((side * THUMBNAIL, side * THUMBNAIL), 255, dtype=np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, side)
        sheet[r * THUMBNAIL : (r + 1) * THUMBNAIL, c * THUMBNAIL : (c + 1) * THUMBNAIL] = np.round(
            255 * (1 - image.reshape(THUMBNAIL, THUMBNAIL))
        )
    return sheet


_encoded: list[tuple[torch.Tensor, bytes]] = []  # the last sprite's digits and its PNG


def sprite_png(images: torch.Tensor) -> bytes:
    """``sprite`` of ``images`` (n, 784) as PNG, encoded once for the same digits: a sweep's
    copies embed the same test digits, and an encoding takes ~75 ms. The digits are compared
    whole with the last ones encoded, a copy of which is kept (~1 ms; hashing them took 12)."""
    pixels = images.detach().cpu()
    if _encoded:
        digits, png = _encoded[0]
        if (digits.shape, digits.dtype) == (pixels.shape, pixels.dtype) and torch.equal(
            digits, pixels
        ):
            return png
    encoded = io.BytesIO()
    Image.fromarray(sprite(pixels.double().numpy())).save(encoded, format="PNG")
    _encoded[:] = [(pixels.clone(), encoded.getvalue())]  # one kept: nearly always one set
    return _encoded[0][1]


def embed(
    run_dir: Path, name: str, when: str, network: Network, test: Split, count=EMBEDDED_DIGITS
) -> str:
    """Write the last hidden layer's activations for the first ``count`` test digits (files
    under ``projector/<name>``) as an embedding titled by the layer and ``when``; returns the
    title (the projector's tensor name), replacing an earlier embedding of the same title."""
    title = layer_title(network, when)
    images, labels = test.images[:count], test.labels[:count]
    with torch.inference_mode():
        _, activations = manual.forward(network, images)  # [a^0, a^1, ..., a^L]
    points = activations[-2].double().cpu().numpy()  # the last hidden layer (the input if none)
    predicted = activations[-1].argmax(dim=1).cpu()
    folder = Path(run_dir) / "projector" / name
    folder.mkdir(parents=True, exist_ok=True)
    np.savetxt(folder / "tensors.tsv", points, fmt="%.6g", delimiter="\t")
    rows = [
        f"{label}\t{guess}\t{'yes' if label == guess else 'no'}"
        for label, guess in zip(labels.tolist(), predicted.tolist())
    ]
    (folder / "metadata.tsv").write_text("label\tpredicted\tright\n" + "\n".join(rows) + "\n")
    (folder / "sprite.png").write_bytes(sprite_png(images))

    config_path = Path(run_dir) / CONFIG_FILE
    config = ProjectorConfig()
    if config_path.is_file():
        text_format.Parse(config_path.read_text(), config)
    kept = [embedding for embedding in config.embeddings if embedding.tensor_name != title]
    del config.embeddings[:]
    config.embeddings.extend(kept)
    embedding = config.embeddings.add(
        tensor_name=title,
        tensor_path=f"projector/{name}/tensors.tsv",
        metadata_path=f"projector/{name}/metadata.tsv",
    )
    embedding.sprite.image_path = f"projector/{name}/sprite.png"
    embedding.sprite.single_image_dim.extend([THUMBNAIL, THUMBNAIL])
    temporary = config_path.with_suffix(".tmp")
    temporary.write_text(text_format.MessageToString(config))
    os.replace(temporary, config_path)  # a reader never sees half a config
    return title


def layer_title(network: Network, when: str) -> str:
    """``a2: the last hidden layer (16 neurons), end of training``."""
    layer = len(network.sizes) - 2
    what = "the last hidden layer" if layer else "the input pixels (no hidden layer)"
    return f"a{layer}: {what} ({network.sizes[-2]} values), {when}"
