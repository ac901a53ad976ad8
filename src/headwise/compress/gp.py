"""The GP surrogate of log KL over strategies: a gpytorch exact GP with an ARD kernel, in float64.

Its posterior mean and standard deviation are differentiable functions of the input strategy, which is what
lets StratNet be trained by gradient descent although pruning itself is not differentiable.
"""

from __future__ import annotations

import gpytorch
import torch

from headwise.errors import HeadwiseError


class _ExactGP(gpytorch.models.ExactGP):
    def __init__(self, x, y, likelihood, kernel: str):
        super().__init__(x, y, likelihood)
        d = x.shape[-1]
        self.mean_module = gpytorch.means.ConstantMean()
        base = (gpytorch.kernels.MaternKernel(nu=2.5, ard_num_dims=d) if kernel == "matern"
                else gpytorch.kernels.RBFKernel(ard_num_dims=d))
        self.covar_module = gpytorch.kernels.ScaleKernel(base)

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


class GPSurrogate:
    """Exact GP on (strategy, y) pairs; targets are standardised inside, predictions come back in y's units."""

    def __init__(self, kernel: str = "matern", iters: int = 150, lr: float = 0.1):
        if kernel not in ("matern", "rbf"):
            raise HeadwiseError(f"unknown kernel {kernel!r}; use matern or rbf.")
        self.kernel, self.iters, self.lr = kernel, iters, lr
        self.model = None

    def fit(self, x, y) -> GPSurrogate:
        x = torch.as_tensor(x, dtype=torch.float64)
        y = torch.as_tensor(y, dtype=torch.float64)
        if x.ndim != 2 or len(x) != len(y) or len(x) < 2:
            raise HeadwiseError("the GP needs at least two (strategy, value) pairs.")
        self.y_mean = y.mean()
        self.y_std = y.std().clamp_min(1e-9)
        yn = (y - self.y_mean) / self.y_std
        likelihood = gpytorch.likelihoods.GaussianLikelihood(
            noise_constraint=gpytorch.constraints.GreaterThan(1e-6)).double()
        model = _ExactGP(x, yn, likelihood, self.kernel).double()
        # Strategies live in [0, 1]^d: start length-scales at the scale of the whole box.
        model.covar_module.base_kernel.lengthscale = torch.full((1, x.shape[1]), 1.0, dtype=torch.float64)
        likelihood.noise = 1e-3
        model.train()
        likelihood.train()
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
        for _ in range(self.iters):
            opt.zero_grad()
            loss = -mll(model(x), yn)
            loss.backward()
            opt.step()
        model.eval()
        likelihood.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.model, self.likelihood = model, likelihood
        return self

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of the latent function at x ([n, d]), differentiable with respect to x."""
        if self.model is None:
            raise HeadwiseError("the GP has not been fitted.")
        with gpytorch.settings.fast_pred_var(False):
            post = self.model(x.to(torch.float64))
            mean = post.mean * self.y_std + self.y_mean
            std = post.variance.clamp_min(1e-12).sqrt() * self.y_std
        return mean, std

    def lengthscales(self) -> list[float]:
        return self.model.covar_module.base_kernel.lengthscale.detach().view(-1).tolist()
