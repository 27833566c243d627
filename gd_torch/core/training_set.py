"""The training set a run's settings ask for: a seeded subset (--train-size) and noisy labels
(--label-noise), for experiments on what the network learns from its data.

    subset       N of the training images, drawn without replacement
    label noise  a fraction F of those N images, drawn without replacement, get a new label
                 drawn uniformly from the 10 digits (so about F/10 of them keep their true label
                 by chance: at F = 1 the labels say nothing about the images, and the best test
                 accuracy one can expect is chance, 10%)

Both come from one torch.Generator seeded with ``--data-seed``, not ``--seed``: every seed of a
sweep or a comparison trains on the same images and the same labels, so seeds vary the initial
weights and the batch order only, and the copies of a sweep can share one training set. With
the same data seed a smaller subset lies inside a larger one, and the labels made random at F lie
inside those made random at F' > F, with the same random digits. The validation and test sets
are never changed: they measure what the network learned about the true labels.
"""

import torch

from gd_torch.core.cost import NUM_CLASSES
from gd_torch.core.data import Split
from gd_torch.core.errors import GdTorchError
from gd_torch.core.settings import TrainingSettings


def training_set(train: Split, settings: TrainingSettings) -> Split:
    """``train`` as the settings ask: the --train-size subset, then the --label-noise labels."""
    if not settings.train_size and not settings.label_noise:
        return train
    generator = torch.Generator().manual_seed(settings.data_seed)
    if settings.train_size:
        if settings.train_size > len(train):
            raise GdTorchError(
                f"--train-size {settings.train_size} is more than the {len(train):,} training "
                "images there are (after --validation-size)"
            )
        chosen = torch.randperm(len(train), generator=generator)[: settings.train_size]
        train = train[chosen.sort().values.to(train.labels.device)]  # in their original order
    if settings.label_noise:
        train = with_random_labels(train, settings.label_noise, generator)
    return train


def with_random_labels(train: Split, fraction: float, generator: torch.Generator) -> Split:
    """The same images, with round(fraction · N) of the labels replaced by uniform random digits."""
    count = round(fraction * len(train))
    replaced = torch.randperm(len(train), generator=generator)[:count]  # which images, (count,)
    digits = torch.randint(0, NUM_CLASSES, (len(train),), generator=generator)[:count]
    labels = train.labels.clone()
    labels[replaced.to(labels.device)] = digits.to(labels.device)
    return Split(train.images, labels, train.pixels)
