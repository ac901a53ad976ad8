"""Zero-shot tasks through lm-evaluation-harness's Python API on an in-memory (e.g. pruned) model.

lm-eval is the optional extra `headwise[eval]`; it is imported only when used. Tasks need their data
(the hub, or a local `include_path` with task YAMLs pointing at local files).
"""

from __future__ import annotations

from headwise.errors import HeadwiseError


def lm_eval_tasks(model, tokenizer, tasks: list[str], batch_size: int = 1, limit: int | None = None,
                  include_path: str | None = None, num_fewshot: int = 0) -> dict:
    """Run lm-eval `tasks` on `model`; returns {task: {metric: value}}."""
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError as err:
        raise HeadwiseError("zero-shot tasks need lm-eval: pip install 'headwise[eval]'.") from err
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    manager = TaskManager(include_path=include_path) if include_path else TaskManager()
    out = lm_eval.simple_evaluate(model=lm, tasks=tasks, num_fewshot=num_fewshot, task_manager=manager,
                                  limit=limit, log_samples=False, bootstrap_iters=0)
    return {task: {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
            for task, metrics in out["results"].items()}
