"""Named configurations of published experiments: ``gd-torch train --preset NAME``.

A preset replaces TrainingSettings' defaults; options given on the command line still win
(``--preset 3b1b --epochs 5``). Learning rates are written in the cost convention of their
source, so they can be checked against it: Nielsen's η = 3.0 in his ½ convention takes the
same steps as η = 1.5 in gd_torch's quadratic convention (see ``gd_torch.cost``).

3b1b           3Blue1Brown's lesson, which runs Nielsen's network.py on 784-16-16-10: N(0, 1)
               weights and biases, mini-batches of 10, η = 3.0 (½ convention), 30 epochs, the
               first 50,000 training images (the last 10,000 held out, as Nielsen does).
nielsen-30     Nielsen's chapter-1 network 784-30-10 with the same settings: 95.42% at best.
nielsen-100    784-100-10, the same settings: 96.59% at best (chapter 1).
sgd-100        784-16-16-10 by SGD on mini-batches of 100, on all 60,000 training images.
full-batch-gd  the same network by true gradient descent: one step per pass, on the gradient
               of all 60,000 training images, for the same number of passes as sgd-100.
random-labels  the random-labels experiment (Zhang et al. 2017, "Understanding deep learning
               requires rethinking generalization"; near the end of 3Blue1Brown's lesson): every
               label of a 1,000-image subset replaced by a random digit, 150 epochs without
               weight decay. The training accuracy climbs far above chance while the test accuracy
               stays at chance, 10%: the network memorises what it cannot generalise.
"""

import dataclasses
from typing import Any

from gd_torch.core.errors import GdTorchError
from gd_torch.core.settings import TrainingSettings

_NIELSEN_CHAPTER_1 = dict(
    init="nielsen",
    batch_size=10,
    learning_rate=3.0,
    cost="nielsen",
    lr_schedule="constant",
    weight_decay=0.0,
    epochs=30,
    validation_size=10_000,
)
_GD_VERSUS_SGD = dict(
    hidden_sizes=(16, 16),
    init="nielsen-improved",
    lr_schedule="constant",
    weight_decay=0.0,
    epochs=30,
)

PRESETS: dict[str, dict] = {
    "3b1b": dict(hidden_sizes=(16, 16), **_NIELSEN_CHAPTER_1),
    "nielsen-30": dict(hidden_sizes=(30,), **_NIELSEN_CHAPTER_1),
    "nielsen-100": dict(hidden_sizes=(100,), **_NIELSEN_CHAPTER_1),
    "sgd-100": dict(_GD_VERSUS_SGD, batch_size=100, learning_rate=3.0),
    "full-batch-gd": dict(_GD_VERSUS_SGD, batch_size=60_000, learning_rate=3.0),
    "random-labels": dict(
        train_size=1_000, label_noise=1.0, epochs=150, learning_rate=1.0, weight_decay=0.0
    ),
}

# What the sources report for the presets, shown beside our numbers by ``gd-torch reproduce``.
PUBLISHED = {
    "3b1b": 'about 96% (3Blue1Brown, "Gradient descent, how neural networks learn", 2017)',
    "nielsen-30": "95.42% best epoch (Nielsen, Neural Networks and Deep Learning, ch. 1)",
    "nielsen-100": "96.59% best epoch (Nielsen, Neural Networks and Deep Learning, ch. 1)",
}


def preset_settings(name: str, **overrides: Any) -> TrainingSettings:
    """The settings of preset ``name``: the defaults, then the preset, then ``overrides``."""
    if name not in PRESETS:
        raise GdTorchError(f"unknown preset {name!r}; the presets are: {', '.join(PRESETS)}")
    return dataclasses.replace(TrainingSettings(**PRESETS[name]), **overrides)
