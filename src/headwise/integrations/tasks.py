"""The `headwise eval harness-tasks` recipe: headwise's local tasks for lmms-eval and lm-eval, in one folder."""

from __future__ import annotations

from pathlib import Path


def write_harness_tasks(out: str | Path, scenes: int = 20, seed: int = 0) -> dict:
    """OUT/lmms: POPE and CHAIR on `scenes` testbed scenes (stream `seed`); OUT/lm-eval: the Wikipedia tasks."""
    from headwise.errors import HeadwiseError
    from headwise.integrations import lm_eval, lmms_tasks
    from headwise.runs import check_out

    if scenes < 1:
        raise HeadwiseError(f"--scenes must be at least 1, got {scenes}.")
    out = check_out(out)
    return {"lmms": lmms_tasks.write_tasks(out / "lmms", scenes, seed), "lm_eval": lm_eval.write_tasks(out / "lm-eval")}


def tasks_text(result: dict) -> str:
    lmms, lm = result["lmms"], result["lm_eval"]
    return "\n".join([
        f"lmms-eval: --include_path {lmms['include_path']} --tasks {','.join(lmms['tasks'])} (or {lmms['group']})",
        f"  {lmms['scenes']} testbed scenes; headwise eval pope --questions {lmms['questions']['random']} "
        f"--images {lmms['images']} asks the same questions",
        f"lm-eval:   --include_path {lm['include_path']} --tasks {','.join(lm['tasks'])}"])
