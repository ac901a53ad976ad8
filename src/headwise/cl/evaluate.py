"""Scoring a model on a task's test items by greedy generation."""

from __future__ import annotations

import torch

from headwise.cl.data import Task, _ids, collate, encode_prompt, eos_id, pad_id
from headwise.cl.scoring import metric


def answer_budget(tokenizer, task: Task, cap: int) -> int:
    """New tokens to generate: the longest training answer plus EOS, at most `cap`."""
    longest = max(len(_ids(tokenizer, it["answer"], False)) for it in task.train[:500])
    return max(1, min(cap, longest + 1))


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], max_new_tokens: int, max_len: int, batch_size: int) -> list[str]:
    device = next(model.parameters()).device
    eos, pad = eos_id(tokenizer), pad_id(tokenizer)
    out = []
    for start in range(0, len(prompts), batch_size):
        rows = [(ids, ids) for ids in (encode_prompt(tokenizer, p, max_len) for p in prompts[start:start + batch_size])]
        batch = collate(rows, pad)
        gen = model.generate(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                             max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos, pad_token_id=pad)
        for row in gen[:, batch["input_ids"].shape[1]:].tolist():
            if eos in row:
                row = row[:row.index(eos)]
            out.append(tokenizer.decode(row, skip_special_tokens=True))
    return out


def score_task(model, tokenizer, task: Task, max_new_tokens: int, max_len: int, batch_size: int,
               limit: int = 0) -> tuple[float, list[dict]]:
    """Mean score in [0, 1] over the test items (the first `limit` when limit > 0) and per-item records."""
    items = task.test[:limit] if limit else task.test
    preds = generate(model, tokenizer, [it["prompt"] for it in items], answer_budget(tokenizer, task, max_new_tokens),
                     max_len, batch_size)
    fn = metric(task.metric)
    scores = [min(1.0, max(0.0, fn(p, it["answer"], it["prompt"]))) for p, it in zip(preds, items)]
    records = [{"prediction": p, "answer": it["answer"], "score": s} for p, it, s in zip(preds, items, scores)]
    return sum(scores) / len(scores), records
