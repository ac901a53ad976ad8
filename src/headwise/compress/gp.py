"""The GP surrogate of log KL over strategies: a gpytorch exact GP in float64, structured around the strategy's
mean sparsity.

A strategy x is seen as its level m = mean(x) and its shape x - m. Log KL moves by several nats with the level
and by about a tenth of one with the shape at a fixed level, so a GP with one constant mean and one ARD kernel
over x mistakes shape effects for noise. Here:

- prior mean: a quadratic in m, fitted to the data by least squares before the GP (the 1-D curve of log KL
  against sparsity);
- kernel: k_level(m, m') + k_scale(m, m') * k_shape(x - m, x' - m'), Matern-5/2 on the level and an ARD kernel
  on the shape whose effect may grow or shrink with the level;
- Gamma priors on length-scales and output scales, hyper-parameters fitted by L-BFGS.

`benchmarks/unicuco_gp_structure.py` compares it with the plain ARD GP on 120 SmolLM2 strategies (docs/unicuco.md);
the end-to-end benchmark (`benchmarks/unicuco_requests.py`) is what decided.
Its posterior mean and standard deviation are differentiable functions of the input strategy, which is what
lets StratNet be trained by gradient descent although pruning itself is not differentiable.
"""

from __future__ import annotations

import gpytorch
import torch
from gpytorch.kernels import MaternKernel, RBFKernel, ScaleKernel
from gpytorch.priors import GammaPrior

from headwise.errors import HeadwiseError

PRIOR_DEGREE = 2


def level_and_shape(x: torch.Tensor) -> torch.Tensor:
    """[..., d] strategies -> [..., 1 + d]: the mean sparsity, then each block's deviation from it."""
    m = x.mean(-1, keepdim=True)
    return torch.cat([m, x - m], -1)


def _powers(m: torch.Tensor) -> torch.Tensor:
    return torch.stack([m ** k for k in range(PRIOR_DEGREE + 1)], -1)


class _LevelMean(gpytorch.means.Mean):
    """A fixed polynomial in the mean sparsity."""

    def __init__(self, coef: torch.Tensor):
        super().__init__()
        self.register_buffer("coef", coef)

    def forward(self, x):
        return _powers(x.mean(-1)) @ self.coef


class _ExactGP(gpytorch.models.ExactGP):
    def __init__(self, x, y, likelihood, kernel: str, coef: torch.Tensor):
        super().__init__(x, y, likelihood)
        d = x.shape[-1]
        shape_dims = list(range(1, d + 1))
        self.mean_module = _LevelMean(coef)

        def level_kernel():
            return MaternKernel(nu=2.5, active_dims=[0], lengthscale_prior=GammaPrior(3.0, 6.0))

        # Shape deviations are a few hundredths of sparsity: a length-scale prior around 0.5 (in the box's units)
        # lets the kernel see them as smooth rather than as noise.
        shape = (MaternKernel(nu=2.5, ard_num_dims=d, active_dims=shape_dims, lengthscale_prior=GammaPrior(3.0, 6.0))
                 if kernel == "matern" else
                 RBFKernel(ard_num_dims=d, active_dims=shape_dims, lengthscale_prior=GammaPrior(3.0, 6.0)))
        self.covar_module = (ScaleKernel(level_kernel(), outputscale_prior=GammaPrior(2.0, 4.0))
                             + ScaleKernel(level_kernel(), outputscale_prior=GammaPrior(2.0, 4.0)) * shape)
        self.shape_kernel = shape

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(level_and_shape(x)))


class GPSurrogate:
    """Exact GP on (strategy, y) pairs; targets are standardised inside, predictions come back in y's units.

    Args:
        kernel: the kernel on the shape (deviations from the mean), "rbf" or "matern" (Matern-5/2), with one
            length-scale per block.
        iters: most L-BFGS iterations of the marginal-likelihood fit.
    """

    def __init__(self, kernel: str = "matern", iters: int = 200):
        if kernel not in ("matern", "rbf"):
            raise HeadwiseError(f"unknown kernel {kernel!r}; use matern or rbf.")
        self.kernel, self.iters = kernel, iters
        self.model = None

    def fit(self, x, y) -> GPSurrogate:
        x = torch.as_tensor(x, dtype=torch.float64)
        y = torch.as_tensor(y, dtype=torch.float64)
        if x.ndim != 2 or len(x) != len(y) or len(x) < 2:
            raise HeadwiseError("the GP needs at least two (strategy, value) pairs.")
        self.y_mean = y.mean()
        self.y_std = y.std().clamp_min(1e-9)
        yn = (y - self.y_mean) / self.y_std
        # The prior mean: least squares of log KL on a quadratic in the level (a tiny ridge keeps it defined
        # when all strategies share one level).
        a = _powers(x.mean(-1))
        coef = torch.linalg.solve(a.T @ a + 1e-6 * torch.eye(a.shape[1], dtype=torch.float64), a.T @ yn)
        likelihood = gpytorch.likelihoods.GaussianLikelihood(
            noise_constraint=gpytorch.constraints.GreaterThan(1e-6)).double()
        model = _ExactGP(x, yn, likelihood, self.kernel, coef).double()
        likelihood.noise = 1e-3
        model.train()
        likelihood.train()
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
        opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=self.iters, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = -mll(model(x), yn)
            loss.backward()
            return loss

        with gpytorch.settings.cholesky_jitter(1e-6):
            opt.step(closure)
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
        """The shape kernel's per-block length-scales."""
        return self.model.shape_kernel.lengthscale.detach().view(-1).tolist()
