"""StratNet: a small MLP from a preference (lambda_size, lambda_quality) to a per-block strategy, trained by
gradient through the GP posterior under weighted Tchebycheff scalarisation (PSL-MOBO's Pareto-set model)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from headwise.compress.gp import GPSurrogate
from headwise.compress.objectives import size_kept, tchebycheff
from headwise.errors import HeadwiseError

WEIGHTS = "stratnet.safetensors"
META = "stratnet.json"


class StratNet(nn.Module):
    """lambda in the 2-simplex -> x in [0, max_ratio]^d through Linear-ReLU-Linear-ReLU-Linear.

    With `spread` = 0 the last layer gives one sigmoid per block (PSL-MOBO's Pareto-set model). With
    `spread` > 0 it gives a level s = max_ratio * sigmoid(.) plus per-block offsets spread * tanh(.) minus
    their mean: a trust region centred on the strategy's own mean sparsity, which is then s (before clamping
    to [0, max_ratio]). A block deviates from it by at most 2 * spread, and by spread when half the blocks go
    up and half down. With a few dozen evaluations in 30 dimensions the GP is only trustworthy near its data,
    and an unconstrained StratNet learns to exploit its extrapolation instead.
    """

    def __init__(self, num_blocks: int, hidden: int = 256, max_ratio: float = 0.9, spread: float = 0.0):
        super().__init__()
        self.num_blocks, self.hidden, self.max_ratio, self.spread = num_blocks, hidden, max_ratio, spread
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, num_blocks + (1 if spread > 0 else 0)))

    def forward(self, pref: torch.Tensor) -> torch.Tensor:
        out = self.net(pref.to(self.net[0].weight.dtype))
        if self.spread <= 0:
            return self.max_ratio * torch.sigmoid(out)
        level = self.max_ratio * torch.sigmoid(out[..., :1])
        offsets = torch.tanh(out[..., 1:])
        return (level + self.spread * (offsets - offsets.mean(-1, keepdim=True))).clamp(0.0, self.max_ratio)

    def shape_activations(self, pref: torch.Tensor) -> torch.Tensor:
        """The pre-tanh values of the per-block offsets (spread > 0): beyond |2| the tanh is saturated and the
        block's offset no longer responds to the preference."""
        return self.net(pref.to(self.net[0].weight.dtype))[..., 1:]


@dataclass
class Normaliser:
    """Maps (size kept, log KL) onto comparable [0, 1] scales before scalarising.

    Size kept lies in [1 - max_ratio, 1]; log KL is scaled by the range observed in the true evaluations.
    """

    max_ratio: float
    y_lo: float
    y_hi: float

    def __call__(self, size: torch.Tensor, log_kl: torch.Tensor) -> torch.Tensor:
        f1 = (size - (1.0 - self.max_ratio)) / self.max_ratio
        f2 = (log_kl - self.y_lo) / max(self.y_hi - self.y_lo, 1e-9)
        return torch.stack([f1, f2], -1)


SATURATION_PENALTY = 0.01
IDEAL = torch.tensor([-0.1, -0.1], dtype=torch.float64)  # PSL-MOBO: ideal point 0.1 below the normalised best


def train(net: StratNet, gp: GPSurrogate, norm: Normaliser, steps: int, prefs_per_step: int, beta: float,
          lr: float, generator: torch.Generator) -> list[float]:
    """Minimise E_lambda g_tch(h(lambda) | lambda) with f2 = mean - beta * std of the GP on log KL
    (beta > 0: optimistic lower confidence bound, for proposals; beta < 0: pessimistic, for serving)."""
    net.double().train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        # lambda_size ~ U(0, 1) is Dirichlet(1, 1) on the 2-simplex, drawn from a seeded generator.
        u = torch.rand(prefs_per_step, 1, generator=generator, dtype=torch.float64)
        pref = torch.cat([u, 1 - u], -1)
        x = net(pref)
        mean, std = gp.posterior(x)
        f = norm(size_kept(x), mean - beta * std)
        loss = tchebycheff(f, pref, IDEAL).mean()
        if net.spread > 0:
            # Keeps the offsets' tanh out of saturation (|a| <= 2 loses at most 4% of the range), where they would
            # stop responding to the preference; inside that band the penalty is zero.
            loss = loss + SATURATION_PENALTY * torch.relu(net.shape_activations(pref).abs() - 2.0).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    net.eval()
    return losses


def save(net: StratNet, directory: Path, meta: dict) -> None:
    from safetensors.torch import save_file

    from headwise.runs import atomic_write

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().contiguous() for k, v in net.state_dict().items()}
    atomic_write(directory / WEIGHTS, lambda tmp: save_file(tensors, str(tmp)))
    full = {**meta, "num_blocks": net.num_blocks, "hidden": net.hidden, "max_ratio": net.max_ratio,
            "spread": net.spread}
    atomic_write(directory / META, json.dumps(full, indent=2) + "\n")


def load(directory: Path) -> tuple[StratNet, dict]:
    from safetensors.torch import load_file

    directory = Path(directory)
    if not (directory / WEIGHTS).is_file() or not (directory / META).is_file():
        raise HeadwiseError(f"{directory} holds no StratNet ({WEIGHTS} and {META}); train one with `headwise compress fit`.")
    meta = json.loads((directory / META).read_text())
    net = StratNet(meta["num_blocks"], meta["hidden"], meta["max_ratio"], meta.get("spread", 0.0))
    net.load_state_dict(load_file(str(directory / WEIGHTS)))
    return net.double().eval(), meta
