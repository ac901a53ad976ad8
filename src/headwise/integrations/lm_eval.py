"""lm-evaluation-harness for what headwise writes: local tasks and the scoring of a model in memory.

`write_tasks(out)` writes two lm-eval tasks over the offline Wikipedia summaries' test split
(`headwise.assets.wiki`), as task YAML beside JSON-lines data, for `lm_eval --include_path OUT`:

- `headwise_wiki_ppl`: loglikelihood_rolling over whole summaries (word_perplexity, byte_perplexity,
  bits_per_byte), lm-eval's wikitext task on headwise's offline text;
- `headwise_wiki_topic`: multiple choice, a summary's first sentence and "Topic:", the choices its 11 topic
  names (acc, acc_norm).

A pruned model from `compress serve --save` or a fine-tuned one from `cl run --save-model` is a transformers
folder, so `lm_eval --model hf --model_args pretrained=DIR --include_path OUT --tasks ...` scores it.
`score(model, tokenizer, tasks)` runs lm-eval on a model already in memory (what `compress serve --lm-eval`
does for each served strategy), with headwise's tasks included.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from headwise.errors import HeadwiseError
from headwise.runs import atomic_write, check_out

PPL_TASK, TOPIC_TASK = "headwise_wiki_ppl", "headwise_wiki_topic"
TASKS = (PPL_TASK, TOPIC_TASK)


def _first_sentence(text: str) -> str:
    m = re.match(r"(.+?[.!?])(\s|$)", text)
    return m.group(1) if m else text


def _docs(n_ppl: int, n_topic: int, seed: int) -> tuple[list[dict], list[dict], list[str]]:
    from headwise.assets import wiki

    rows = wiki.split("en", "test")
    ppl = [{"title": a["title"], "text": a["extract"]} for a in random.Random(seed).sample(rows, min(n_ppl, len(rows)))]
    topics = sorted({a["topic"] for a in rows if a["topic"] and a["topic"] != "Uncategorized"})
    labelled = [a for a in rows if a["topic"] in topics]
    picked = random.Random(seed + 1).sample(labelled, min(n_topic, len(labelled)))
    topic = [{"title": a["title"], "text": _first_sentence(a["extract"]), "label": topics.index(a["topic"])}
             for a in picked]
    return ppl, topic, topics


def write_tasks(out: str | Path, n_ppl: int = 50, n_topic: int = 100, seed: int = 0) -> dict:
    """Write the two tasks' YAML and data into OUT (see the module docstring); returns the include path and names."""
    if min(n_ppl, n_topic) < 1:
        raise HeadwiseError("the lm-eval tasks need at least 1 document each.")
    out = check_out(out).resolve()
    ppl, topic, topics = _docs(n_ppl, n_topic, seed)
    for name, docs in ((PPL_TASK, ppl), (TOPIC_TASK, topic)):
        atomic_write(out / f"{name}.jsonl", "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))
    head = ["dataset_path: json", "dataset_kwargs:", "  data_files:"]
    atomic_write(out / f"{PPL_TASK}.yaml", "\n".join([
        f"task: {PPL_TASK}", *head, f"    test: {json.dumps(str(out / f'{PPL_TASK}.jsonl'))}", "test_split: test",
        "output_type: loglikelihood_rolling", "doc_to_text: \"\"", "doc_to_target: \"{{text}}\"", "metric_list:",
        "  - metric: word_perplexity", "  - metric: byte_perplexity", "  - metric: bits_per_byte",
        "metadata:", "  version: 1.0", ""]))
    atomic_write(out / f"{TOPIC_TASK}.yaml", "\n".join([
        f"task: {TOPIC_TASK}", *head, f"    test: {json.dumps(str(out / f'{TOPIC_TASK}.jsonl'))}", "test_split: test",
        "output_type: multiple_choice", "doc_to_text: \"{{text}}\\nTopic:\"", f"doc_to_choice: {json.dumps(topics)}",
        "doc_to_target: label", "metric_list:", "  - metric: acc", "    aggregation: mean", "    higher_is_better: true",
        "  - metric: acc_norm", "    aggregation: mean", "    higher_is_better: true", "metadata:", "  version: 1.0",
        ""]))
    return {"include_path": str(out), "tasks": list(TASKS), "documents": {PPL_TASK: len(ppl), TOPIC_TASK: len(topic)}}


def check_tasks(tasks: list[str]) -> list[str]:
    """Refuse, before any model work, a task name that is neither headwise's nor lm-eval's own."""
    from headwise.integrations import require

    require("lm_eval")
    from lm_eval.tasks import TaskManager

    if not tasks:
        raise HeadwiseError(f"no lm-eval task given; headwise's local tasks are {', '.join(TASKS)}.")
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        known = set(TaskManager().all_tasks)
        unknown = [t for t in unknown if t not in known]
    if unknown:
        raise HeadwiseError(f"lm-eval knows no task {', '.join(unknown)}; headwise's local tasks are "
                            f"{', '.join(TASKS)} (lm-eval's own need their datasets from the hub).")
    return tasks


def score(model, tokenizer, tasks: list[str], include_path: str | Path, limit: int | None = None,
          batch_size: int = 4) -> dict:
    """lm-eval's scores of a model in memory: {task: {metric: value}} (lm-eval's "metric,filter" keys, no
    stderr), with `headwise.integrations.lm_eval.write_tasks`' tasks under `include_path` included."""
    from headwise.integrations import require

    require("lm_eval")
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    result = simple_evaluate(model=lm, tasks=list(tasks), task_manager=TaskManager(include_path=str(include_path)),
                             limit=limit, log_samples=False, bootstrap_iters=0)
    # lm-eval's "metric,filter" keys; its per-task "sample_len" and "alias" are not scores
    return {task: {k: v for k, v in values.items() if "," in k and "stderr" not in k and isinstance(v, (int, float))}
            for task, values in result["results"].items()}
