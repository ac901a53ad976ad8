"""An offline multiple-choice task from the Wikipedia summaries: which topic is this summary about?

Each item shows the start of a summary and asks for its topic among the article's own topic and
`choices - 1` others drawn (seeded) from the rest; the model picks the option with the highest
length-normalised log-likelihood (lm-eval's acc_norm rule, per token here). Articles with the
"Uncategorized" topic are left out. Accuracy of chance = 1 / choices.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F

from headwise.assets.wiki import split
from headwise.errors import HeadwiseError

PROMPT = "{text}\nQuestion: What is the topic of this text?\nAnswer:"


def items(lang: str = "en", part: str = "test", n: int = 100, choices: int = 4, seed: int = 0,
          max_chars: int = 300) -> list[dict]:
    arts = [a for a in split(lang, part) if a["topic"] and a["topic"] != "Uncategorized"]
    topics = sorted({a["topic"] for a in arts})
    if len(topics) < choices:
        raise HeadwiseError(f"only {len(topics)} topics available, fewer than {choices} choices.")
    rng = random.Random(seed)
    picked = rng.sample(arts, min(n, len(arts)))
    out = []
    for a in picked:
        options = [a["topic"], *rng.sample([t for t in topics if t != a["topic"]], choices - 1)]
        rng.shuffle(options)
        out.append({"prompt": PROMPT.format(text=a["extract"][:max_chars]), "options": options,
                    "answer": options.index(a["topic"])})
    return out


@torch.no_grad()
def option_scores(model, tokenizer, prompt: str, options: list[str]) -> list[float]:
    """Mean log-likelihood per token of " option" after the prompt, for each option."""
    device = next(model.parameters()).device
    tok = getattr(tokenizer, "tokenizer", tokenizer)
    ctx = tok(prompt, add_special_tokens=False, return_tensors="pt").input_ids[0]
    scores = []
    for opt in options:
        cont = tok(" " + opt, add_special_tokens=False, return_tensors="pt").input_ids[0]
        ids = torch.cat([ctx, cont])[None].to(device)
        logp = F.log_softmax(model(input_ids=ids, use_cache=False).logits[0, :-1].float(), -1)
        target = ids[0, len(ctx):]
        scores.append(logp[len(ctx) - 1:].gather(1, target[:, None]).mean().item())
    return scores


def accuracy(model, tokenizer, task_items: list[dict]) -> float:
    right = 0
    for it in task_items:
        s = option_scores(model, tokenizer, it["prompt"], it["options"])
        right += int(max(range(len(s)), key=s.__getitem__) == it["answer"])
    return right / len(task_items)
