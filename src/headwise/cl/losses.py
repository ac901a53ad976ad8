"""Replay losses: logit distillation (DER++) and SEEKR's attention distillation (docs/seekr.md#what-it-computes)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_positions(labels: torch.Tensor, shifted: bool) -> torch.Tensor:
    """Bool [batch, n]: the positions whose logits are distilled.

    shifted (default): the positions that predict an answer token (label at p + 1 is not -100).
    faithful: the positions whose own label is not -100, as the original code (off by one: it skips
    the prediction of the first answer token and includes the one after EOS).
    """
    if not shifted:
        return labels != -100
    out = torch.zeros_like(labels, dtype=torch.bool)
    out[:, :-1] = labels[:, 1:] != -100
    return out


def logit_kd(student: torch.Tensor, positions: torch.Tensor, teachers: list[dict]) -> torch.Tensor:
    """Soft cross-entropy H(p_teacher, p_student), temperature 1, averaged over all distilled positions.

    student: [batch, n, vocab] logits; positions: bool [batch, n]; teachers[i]: {"logprobs": [P_i, V]}
    (full vocabulary) or {"logprobs": [P_i, k], "index": [P_i, k]} (top-k; the mass outside the top k
    is left out), with P_i the number of distilled positions of row i, in order.
    """
    total, count = student.new_zeros((), dtype=torch.float32), 0
    for i, t in enumerate(teachers):
        logp_s = F.log_softmax(student[i][positions[i]].float(), dim=-1)
        p_t = t["logprobs"].to(logp_s.device).float().exp()
        if "index" in t:
            logp_s = logp_s.gather(-1, t["index"].to(logp_s.device).long())
        total = total - (p_t * logp_s).sum()
        count += p_t.shape[0]
    return total / max(count, 1)


def attention_kl(student: dict[int, torch.Tensor], student_heads: dict[int, list[int]], teachers: list[dict],
                 lengths: list[int]) -> torch.Tensor:
    """SEEKR's attention KL, with the original code's normalisation.

    L = 1/|Ls| sum_l 1/B sum_i [H_il nonempty] 1/(|H_il| |Q_i|) sum_{h, q} KL(a^T || a^S)
    where Ls is the set of layers selected for at least one sample of the batch.

    student[l]: [B, len(student_heads[l]), n, n] probabilities of a left-padded batch; teachers[i]:
    {"heads": {l: [h...]}, "maps": {l: [|H_il|, |Q_i|, n_i]}, "queries": list of rows or None};
    lengths[i] = n_i, the non-pad tokens of row i (its keys are the last n_i columns).
    """
    batch = len(teachers)
    layers = sorted({l for t in teachers for l in t["heads"]})
    total = None
    for l in layers:
        col = {h: j for j, h in enumerate(student_heads[l])}
        layer_sum = 0.0
        for i, t in enumerate(teachers):
            heads = t["heads"].get(l)
            if not heads:
                continue
            n = lengths[i]
            s = student[l][i, [col[h] for h in heads], -n:, -n:]
            if t["queries"] is not None:
                s = s[:, t["queries"], :]
            a_t = t["maps"][l].to(s.device).float()
            # Zero teacher entries (masked keys) contribute 0, as in KLDivLoss.
            kl = torch.where(a_t > 0, a_t * (a_t.clamp_min(1e-30).log() - (s + 1e-8).log()), torch.zeros_like(a_t))
            layer_sum = layer_sum + kl.sum() / (a_t.shape[0] * a_t.shape[1])
        total = layer_sum / batch if total is None else total + layer_sum / batch
    if total is None:
        return torch.zeros(())
    return total / len(layers)
