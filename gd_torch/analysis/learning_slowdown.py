"""The learning slowdown of a saturated neuron, and why the cross-entropy has none (Nielsen,
chapter 3), on one sigmoid neuron trained by the project's own engine and costs.

One input x = 1, target y = 0, starting weight and bias w = b = 2: the output a = σ(4) = 0.98 is
badly wrong and saturated. BP1 gives the neuron's error δ = ∂C/∂z:

    quadratic (Nielsen's ½)   δ = (a − y) σ'(z)     σ'(4) = 0.018: the steps start 56x smaller
    cross-entropy             δ = a − y             no σ': the worse the output, the faster
                                                    it learns

and ∂C/∂w = δx, ∂C/∂b = δ. Under the quadratic cost the neuron barely moves for its first
hundred epochs, then learns quickly once σ' has grown; under the cross-entropy it learns fastest
at the start. Both use η = 0.15, Nielsen's rate for the quadratic case (his cross-entropy figure
uses 0.005, which he chose to show the shape; the point is the missing σ', not the rate).

    python -m gd_torch.analysis.learning_slowdown docs/learning-slowdown.png
"""

import sys

import torch
from matplotlib.figure import Figure

from gd_torch.core.engines import ENGINES
from gd_torch.core.model import Network

START = 2.0  # the weight and the bias the neuron starts from
LEARNING_RATE = 0.15
EPOCHS = 300
COSTS = {"nielsen": "quadratic, ½(a − y)²", "cross-entropy": "cross-entropy"}


def descend(convention: str, epochs: int = EPOCHS, learning_rate: float = LEARNING_RATE) -> dict:
    """Gradient descent on one neuron (x = 1, y = 0) by the manual engine and torch.optim.SGD:
    its output a, cost C and ∂C/∂w after each epoch (epoch 0: the start)."""
    neuron = Network((1, 1), dtype=torch.float64)  # one layer of one neuron: a = σ(w x + b)
    with torch.no_grad():
        neuron.layers[0].weight.fill_(START)
        neuron.layers[0].bias.fill_(START)
    optimizer = torch.optim.SGD(neuron.parameters(), lr=learning_rate)
    x, y = torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64)
    path = {"output": [], "cost": [], "slope": []}
    for _ in range(epochs + 1):
        cost = ENGINES["manual"](neuron, x, y, convention)  # ∂C/∂w, ∂C/∂b into .grad
        path["output"].append(neuron(x).item())
        path["cost"].append(cost.item())
        path["slope"].append(neuron.layers[0].weight.grad.item())
        optimizer.step()
    return path


def figure() -> Figure:
    fig = Figure(figsize=(11, 4), dpi=100, layout="constrained")
    output, slope = fig.subplots(1, 2)
    for convention, label in COSTS.items():
        path = descend(convention)
        output.plot(path["output"], label=label)
        slope.plot([abs(s) for s in path["slope"]], label=label)
    output.set(
        title=f"one neuron, x = 1, target 0, from w = b = {START:g} (η = {LEARNING_RATE:g})",
        xlabel="epoch",
        ylabel="output a = σ(wx + b)",
        ylim=(0, 1),
    )
    slope.set(
        title="how fast it learns: |∂C/∂w| = |δ| x",
        xlabel="epoch",
        ylabel="|∂C/∂w|",
        yscale="log",
    )
    for axis in (output, slope):
        axis.grid(alpha=0.3)
        axis.legend()
    return fig


if __name__ == "__main__":
    figure().savefig(sys.argv[1] if len(sys.argv) > 1 else "learning-slowdown.png")
