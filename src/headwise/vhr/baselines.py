"""Baselines behind the same `method=` switch: VCD and PAI.

Both decode two streams in one `model.generate` batch (rows 0..n-1 the image prompt, rows n..2n-1
the contrast stream) and combine the paired rows' logits in a logits processor, which then forces
the chosen token into both rows so they stay in step. generate() thus handles caches, positions
(Qwen2-VL's rope deltas included) and stopping for every family. Greedy and sampling are
supported; beam search is not (as in the original code).

- VCD (Leng et al., CVPR 2024): the contrast stream sees the image after forward diffusion noise
  (step 500 of a 1000-step sigmoid beta schedule); logits (1 + a) l - a l_noised, restricted to
  tokens with p >= beta * p_max. Cost: 2 prefills and 2 forwards per token (one batch of 2n rows).
- PAI (Liu et al., ECCV 2024): in layers [start, end) the last query's pre-softmax scores on image
  keys get + a |score| (the image rows only, since the text rows hold no image keys); the contrast
  stream is the image-free prompt; logits g (log p - log p_text) + log p_text, restricted to tokens
  with p >= 0.1 p_max. Cost: 1 prefill + 1 short text prefill, 2 forwards per token, and the edited
  layers run eager attention.
"""

from __future__ import annotations

import math

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from headwise.errors import HeadwiseError
from headwise.heads import edit_attention_scores, layout
from headwise.vhr.config import PAIConfig, VCDConfig
from headwise.vhr.core import Generation, _decode
from headwise.vhr.inputs import encode, image_token_id, to_device


def sampling_probs(logits: torch.Tensor, temperature: float = 1.0, top_p: float = 1.0) -> torch.Tensor:
    """The distribution a sampled token is drawn from: softmax(logits / temperature), cut to the top-p nucleus
    (the smallest set of most likely tokens whose mass reaches top_p, as transformers' TopPLogitsWarper keeps)."""
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        drop = sorted_p.cumsum(-1) - sorted_p > top_p
        probs = probs.scatter(-1, order, sorted_p.masked_fill(drop, 0.0))
    return probs / probs.sum(-1, keepdim=True)


def vcd_logits(main: torch.Tensor, noised: torch.Tensor, cd_alpha: float, cd_beta: float) -> torch.Tensor:
    """(1 + a) l - a l_noised on the tokens with p >= beta p_max under the clean logits, -inf elsewhere."""
    cutoff = math.log(cd_beta) + main.max(-1, keepdim=True).values
    return ((1 + cd_alpha) * main - cd_alpha * noised).masked_fill(main < cutoff, -math.inf)


def pai_logits(main: torch.Tensor, text: torch.Tensor, pai_gamma: float) -> torch.Tensor:
    """g (log p - log p_text) + log p_text on the tokens with p >= 0.1 p_max, -inf elsewhere; at g = 1 log p
    with no cut-off, as LALBJ/PAI's CFGLogits returns it (no contrast asked for, nothing restricted)."""
    logp = main.log_softmax(-1)
    if pai_gamma == 1:
        return logp
    logq = text.log_softmax(-1)
    cutoff = math.log(0.1) + logp.max(-1, keepdim=True).values
    return (pai_gamma * (logp - logq) + logq).masked_fill(logp < cutoff, -math.inf)


def pai_boost(scores: torch.Tensor, image_keys: torch.Tensor, pai_alpha: float) -> torch.Tensor:
    """The last query's pre-softmax scores on image keys plus a |score|; image_keys is [batch, keys] (bool)."""
    keys = image_keys[: scores.shape[0], : scores.shape[-1]]
    pad = scores.shape[-1] - keys.shape[-1]  # decode steps add keys that are never image tokens
    keys = torch.nn.functional.pad(keys, (0, pad))[:, None, :]
    last = scores[:, :, -1, :]
    scores = scores.clone()
    scores[:, :, -1, :] = torch.where(keys, last + pai_alpha * last.abs(), last)
    return scores


class PairedRows(LogitsProcessor):
    """Combine row i with row n + i, pick one token, and force it into both rows."""

    def __init__(self, n: int, combine, do_sample: bool, temperature: float = 1.0, top_p: float = 1.0,
                 generator: torch.Generator | None = None):
        self.n, self.combine, self.do_sample = n, combine, do_sample
        self.temperature, self.top_p, self.generator = temperature, top_p, generator

    def __call__(self, input_ids, scores):
        main, contrast = scores[: self.n].float(), scores[self.n:].float()
        logits = self.combine(main, contrast)
        if self.do_sample:
            probs = sampling_probs(logits, self.temperature, self.top_p)
            token = torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)
        else:
            token = logits.argmax(-1)
        forced = torch.full_like(scores, -math.inf)
        rows = torch.arange(self.n, device=scores.device)
        forced[rows, token] = 0.0
        forced[rows + self.n, token] = 0.0
        return forced


def _paired_generate(model, processor, batch: dict, n: int, combine, seed: int, generate_kwargs: dict) -> Generation:
    if generate_kwargs.get("num_beams", 1) != 1 or generate_kwargs.get("num_return_sequences", 1) != 1:
        raise HeadwiseError("vcd and pai support greedy and sampling only (num_beams=1, num_return_sequences=1).")
    kwargs = dict(generate_kwargs)
    do_sample = bool(kwargs.pop("do_sample", False))
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    paired = PairedRows(n, combine, do_sample, kwargs.pop("temperature", 1.0), kwargs.pop("top_p", 1.0),
                        generator if do_sample else None)
    processors = LogitsProcessorList([*kwargs.pop("logits_processor", []), paired])
    texts, seqs = _decode(processor, model, batch, do_sample=False, logits_processor=processors, **kwargs)
    return Generation(texts[:n], seqs[:n])


def diffusion_noise(pixels: torch.Tensor, step: int = 500, seed: int = 0) -> torch.Tensor:
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, with VCD's 1000-step sigmoid beta schedule."""
    if not 0 <= step < 1000:
        raise HeadwiseError(f"noise step must be in [0, 1000), got {step}.")
    betas = torch.sigmoid(torch.linspace(-6, 6, 1000)) * (0.5e-2 - 1e-5) + 1e-5
    abar = torch.cumprod(1 - betas, dim=0)[step]
    eps = torch.randn(pixels.shape, generator=torch.Generator().manual_seed(seed)).to(pixels)
    return abar.sqrt().to(pixels) * pixels + (1 - abar).sqrt().to(pixels) * eps


def generate_vcd(model, processor, images, prompts, config: VCDConfig | None = None, seed: int = 0,
                 **generate_kwargs) -> Generation:
    """VCD with `config`'s weights; seed seeds the sampling (with do_sample=True)."""
    cfg = config or VCDConfig()
    cd_alpha, cd_beta = cfg.cd_alpha, cfg.cd_beta
    n = len(images)
    batch = to_device(encode(model, processor, list(images) * 2, list(prompts) * 2), model)
    pixels = batch["pixel_values"]
    half = pixels.shape[0] // 2  # the same images twice: the second half belongs to the contrast rows
    batch["pixel_values"] = torch.cat([pixels[:half], diffusion_noise(pixels[half:], cfg.noise_step)])

    def combine(main, noised):
        return vcd_logits(main, noised, cd_alpha, cd_beta)

    return _paired_generate(model, processor, batch, n, combine, seed, generate_kwargs)


def generate_pai(model, processor, images, prompts, config: PAIConfig | None = None, seed: int = 0,
                 **generate_kwargs) -> Generation:
    """PAI with `config`'s boost, contrast and layers; seed seeds the sampling (with do_sample=True)."""
    cfg = config or PAIConfig()
    pai_alpha, pai_gamma = cfg.pai_alpha, cfg.pai_gamma
    n = len(images)
    lay = layout(model)
    start, end = cfg.pai_layers or (2, lay.num_layers)
    batch = to_device(encode(model, processor, images, prompts, text_only=True), model)
    image_keys = batch["input_ids"] == image_token_id(model)  # [2n, prompt length]; text rows all False

    def boost(scores, layer):
        return pai_boost(scores, image_keys, pai_alpha)

    def combine(main, text):
        return pai_logits(main, text, pai_gamma)

    with edit_attention_scores(model, range(start, end), boost):
        return _paired_generate(model, processor, batch, n, combine, seed, generate_kwargs)
