"""Compare the manual twin's gradients with autograd's, the oracle of every gradient test."""

import torch

from gd_torch.core import manual
from gd_torch.core.cost import cost, one_hot
from gd_torch.core.model import INPUT_SIZE, OUTPUT_SIZE, Network


def random_problem(hidden_sizes, batch_size, init="nielsen-improved", dtype=torch.float64, seed=0):
    """A seeded network with non-trivial weights and a batch of random inputs and one-hot
    targets."""
    generator = torch.Generator().manual_seed(seed)
    network = Network((INPUT_SIZE, *hidden_sizes, OUTPUT_SIZE), init, generator).to(dtype)
    images = torch.rand(batch_size, INPUT_SIZE, generator=generator, dtype=dtype)
    targets = one_hot(torch.randint(0, OUTPUT_SIZE, (batch_size,), generator=generator), dtype)
    return network, images, targets


def autograd_gradients(network, images, targets, convention):
    parameters = [p for layer in network.layers for p in (layer.weight, layer.bias)]
    batch_cost = cost(network(images, weighted_output=True), targets, convention)
    grads = torch.autograd.grad(batch_cost, parameters)
    return [(grads[i], grads[i + 1]) for i in range(0, len(grads), 2)]


def manual_gradients(network, images, targets, convention):
    with torch.no_grad():
        _, activations = manual.forward(network, images)
        return manual.backward(network, activations, targets, convention)


def max_relative_error(manual_grads, autograd_grads) -> float:
    """max over parameters of ||manual − autograd|| / max(||autograd||, tiny)."""
    errors = []
    for pair_manual, pair_autograd in zip(manual_grads, autograd_grads):
        for m, a in zip(pair_manual, pair_autograd):
            errors.append(((m - a).norm() / a.norm().clamp_min(1e-300)).item())
    return max(errors)
