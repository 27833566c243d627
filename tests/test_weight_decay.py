"""torch.optim.SGD's L2 weight decay reaches both engines through the same optimizer.

SGD adds λw to each .grad before the step, for every weight and bias; the manual engine writes
.grad like autograd, so both must take the same steps, w ← w − η(∇C + λw), in float64. (This is
not Nielsen's chapter-3 decay, which shrinks the weights only, by 1 − ηλ/n, and not the biases:
that is --weight-decay-on weights, tested below.)
"""

import copy
import io

import torch

from gd_torch import Callback
from gd_torch import train as gd_train
from gd_torch.core.data import Split, shuffled_batches
from gd_torch.core.engines import ENGINES
from gd_torch.core.loop import train_one_epoch
from gd_torch.core.model import Network
from gd_torch.core.settings import RunOptions, TrainingSettings
from gd_torch.core.sgd import sgd
from tests.fakes import synthetic_mnist


def trained_parameters(engine: str, weight_decay: float) -> list[torch.Tensor]:
    """Two epochs (120 SGD steps, batch 10) on 600 synthetic digits in float64."""
    digits = synthetic_mnist().train
    train = Split(digits.images.double(), digits.labels)
    network = Network(
        init="nielsen-improved", generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    optimizer = torch.optim.SGD(network.parameters(), lr=1.5, weight_decay=weight_decay)
    order = torch.Generator().manual_seed(4)
    for _ in range(2):
        train_one_epoch(
            network, optimizer, train, shuffled_batches(len(train), 10, order), ENGINES[engine]
        )
    return [p.detach() for p in network.parameters()]


def test_manual_and_autograd_agree_with_weight_decay():
    manual, autograd = trained_parameters("manual", 1e-3), trained_parameters("autograd", 1e-3)
    for m, a in zip(manual, autograd):
        torch.testing.assert_close(m, a, rtol=0, atol=1e-12)


def test_weight_decay_shrinks_the_weights():
    decayed, plain = trained_parameters("manual", 1e-2), trained_parameters("manual", 0.0)
    norm = lambda parameters: torch.stack([p.norm() for p in parameters]).norm()  # noqa: E731
    assert norm(decayed) < 0.9 * norm(plain)


def test_weight_decay_on_weights_is_nielsens_update():
    """--weight-decay-on weights, λ = λ_Nielsen / n, in Nielsen's ½ convention: every step is his
    network2.py update, w ← (1 − ηλ_N/n) w − η ∇C and b ← b − η ∇C (biases not decayed)."""
    data = synthetic_mnist()
    train = Split(data.train.images.double(), data.train.labels)
    eta, nielsen_lambda, n = 0.5, 5.0, len(train)
    settings = TrainingSettings(
        cost="nielsen",
        learning_rate=eta,
        weight_decay=nielsen_lambda / n,
        weight_decay_on="weights",
        lr_schedule="constant",
        dtype="float64",
    )
    network = Network(generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    by_hand = copy.deepcopy(network)
    optimizer = sgd(settings)(network)
    assert [group["weight_decay"] for group in optimizer.param_groups] == [nielsen_lambda / n, 0]
    batches = shuffled_batches(n, 10, torch.Generator().manual_seed(4))
    train_one_epoch(network, optimizer, train, batches, ENGINES["manual"], "nielsen")
    with torch.no_grad():
        for indices in batches:
            ENGINES["manual"](by_hand, train.images[indices], train.targets[indices], "nielsen")
            for layer in by_hand.layers:
                layer.weight.mul_(1 - eta * nielsen_lambda / n).sub_(eta * layer.weight.grad)
                layer.bias.sub_(eta * layer.bias.grad)
    for mine, nielsens in zip(network.parameters(), by_hand.parameters(), strict=True):
        torch.testing.assert_close(mine, nielsens, rtol=1e-12, atol=1e-12)


def test_weight_decay_on_all_is_one_group_and_the_default():
    settings = TrainingSettings()
    assert settings.weight_decay_on == "all"
    (group,) = sgd(settings)(Network()).param_groups
    assert group["weight_decay"] == settings.weight_decay and len(group["params"]) == 6


def test_only_the_weights_shrink_without_a_gradient():
    """With ∇C = 0 (no step's gradient, only the decay), weights shrink by 1 − ηλ, biases stay."""
    settings = TrainingSettings(learning_rate=0.5, weight_decay=0.1, weight_decay_on="weights")
    network = Network()
    before = [p.detach().clone() for p in network.parameters()]
    for parameter in network.parameters():
        parameter.grad = torch.zeros_like(parameter)
    sgd(settings)(network).step()
    for (name, parameter), old in zip(network.named_parameters(), before, strict=True):
        expected = old * (1 - 0.5 * 0.1) if name.endswith("weight") else old
        torch.testing.assert_close(parameter.detach(), expected)


def test_a_run_with_two_parameter_groups_resumes_bit_for_bit(tmp_path):
    data = synthetic_mnist()
    settings = TrainingSettings(epochs=2, weight_decay=1e-2, weight_decay_on="weights")

    class StopAfterFirstEpoch(Callback):
        def on_epoch_end(self, run):
            run.stop("test")

    whole = gd_train(settings, RunOptions(runs_dir=None), data=data, out=io.StringIO())
    options = RunOptions(runs_dir=str(tmp_path))
    stopped = gd_train(
        settings, options, data=data, callbacks=[StopAfterFirstEpoch()], out=io.StringIO()
    )
    resumed = gd_train(settings, options, data=data, resume=stopped.run_dir, out=io.StringIO())
    for a, b in zip(whole.network.parameters(), resumed.network.parameters(), strict=True):
        assert torch.equal(a, b)
