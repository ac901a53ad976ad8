"""lm-evaluation-harness for what headwise writes (issue 28): a SEEKR model saved by `cl run --save-model` and a
pruned model saved by `compress serve --save` load with lm-eval's `hf` model on headwise's local tasks, and
`compress serve --lm-eval` scores each served model in memory exactly as lm-eval scores its saved folder."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from headwise.errors import HeadwiseError

pytest.importorskip("lm_eval", reason="lm-eval is not installed (make install installs it)")

from headwise.integrations import lm_eval as hw_lm_eval  # noqa: E402

# A random 2-layer Llama with testing_vlm's word-level tokenizer (tests/fixtures/release_bda5441/README.md).
TINY_LLM = Path(__file__).parents[1] / "fixtures" / "release_bda5441" / "models" / "tiny-llm"
CL_TINY = ["--layer-budget", "1", "--head-budget", "2", "--query-budget", "4", "--logit-topk", "8", "--max-len", "32",
           "--max-new-tokens", "2", "--batch-size", "2", "--lr", "1e-3", "--wiki-train", "4", "--wiki-test", "2"]


def headwise(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "headwise.cli", *args], capture_output=True, text=True, timeout=900)


def lm_eval_cli(pretrained: Path, include: Path, tasks: str, limit: int, out: Path) -> dict:
    """`lm_eval --model hf --model_args pretrained=DIR` as a user runs it; returns its results per task."""
    proc = subprocess.run([sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={pretrained}",
                           "--include_path", str(include), "--tasks", tasks, "--limit", str(limit), "--batch_size",
                           "4", "--device", "cpu", "--output_path", str(out)], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(sorted(out.rglob("results_*.json"))[-1].read_text())["results"]


def test_the_local_tasks_are_written_with_their_data(tmp_path):
    made = hw_lm_eval.write_tasks(tmp_path, n_ppl=5, n_topic=7)
    assert made["tasks"] == ["headwise_wiki_ppl", "headwise_wiki_topic"]
    assert made["documents"] == {"headwise_wiki_ppl": 5, "headwise_wiki_topic": 7}
    topic = [json.loads(line) for line in (tmp_path / "headwise_wiki_topic.jsonl").read_text().splitlines()]
    assert all(0 <= d["label"] < 11 and d["text"] for d in topic)
    assert "output_type: loglikelihood_rolling" in (tmp_path / "headwise_wiki_ppl.yaml").read_text()


def test_an_unknown_task_is_refused_before_anything_loads(tmp_path):
    assert hw_lm_eval.check_tasks(["headwise_wiki_ppl"]) == ["headwise_wiki_ppl"]  # without indexing lm-eval's
    with pytest.raises(HeadwiseError, match="no lm-eval task given"):
        hw_lm_eval.check_tasks([])
    requests = tmp_path / "r.jsonl"
    requests.write_text('{"sparsity": 0.5}\n')
    proc = headwise("compress", "serve", "--stratnet", "smollm2", "--requests", str(requests), "--lm-eval", "nope",
                    "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "lm-eval knows no task nope" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def saved_by_cl_run(tmp_path: Path, *options: str) -> Path:
    """A SEEKR run of 2 wiki tasks on the tiny Llama with --save-model: the folder, checked to hold the trained
    weights as a plain transformers model."""
    from safetensors.torch import load_file

    saved = tmp_path / "model"
    proc = headwise("cl", "run", "--model", str(TINY_LLM), "--method", "seekr", "--tasks", "2", *CL_TINY, *options,
                    "--out", str(tmp_path / "run"), "--save-model", str(saved))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (saved / "model.safetensors").is_file() and (saved / "tokenizer.json").is_file()
    assert not (saved / "adapter_config.json").exists()
    trained, base = load_file(saved / "model.safetensors"), load_file(TINY_LLM / "model.safetensors")
    assert set(trained) == set(base)
    assert any(not (trained[k] == base[k]).all() for k in base)  # what training changed is what was saved
    return saved


def test_cl_run_merges_lora_into_the_saved_model(tmp_path):
    import torch
    import transformers as tf

    saved = saved_by_cl_run(tmp_path, "--lora", "--lora-rank", "2")
    model = tf.AutoModelForCausalLM.from_pretrained(saved)
    assert not any("lora" in name for name, _ in model.named_parameters())
    ids = torch.tensor([[1, 5, 6, 7]])
    with torch.no_grad():
        assert torch.isfinite(model(ids).logits).all()


def test_a_seekr_model_saved_by_cl_run_loads_in_lm_eval(tmp_path):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    saved = saved_by_cl_run(tmp_path)
    tasks = hw_lm_eval.write_tasks(tmp_path / "tasks", n_ppl=2, n_topic=2)
    result = simple_evaluate(model="hf", model_args=f"pretrained={saved}", tasks=list(hw_lm_eval.TASKS),
                             task_manager=TaskManager(include_path=tasks["include_path"]), device="cpu",
                             batch_size=2, bootstrap_iters=0)["results"]
    assert math.isfinite(result["headwise_wiki_ppl"]["word_perplexity,none"])
    assert 0 <= result["headwise_wiki_topic"]["acc,none"] <= 1


@pytest.mark.real
def test_compress_serve_scores_each_model_as_lm_eval_scores_its_saved_folder(smollm2, tmp_path):
    requests = tmp_path / "r.jsonl"
    requests.write_text('{"id": "half", "sparsity": 0.5}\n')
    out = tmp_path / "serve"
    proc = headwise("compress", "serve", "--stratnet", "smollm2", "--requests", str(requests), "--save", "--no-ppl",
                    "--lm-eval", "headwise_wiki_ppl,headwise_wiki_topic", "--lm-eval-limit", "2", "--out", str(out),
                    "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = json.loads(proc.stdout)["rows"][0]
    assert row["sparsity"] == pytest.approx(0.5, abs=0.02) and set(row["lm_eval"]) == set(hw_lm_eval.TASKS)
    assert row == json.loads((out / "results.jsonl").read_text().splitlines()[0])  # kept beside KL
    cli = lm_eval_cli(out / "half", out / "lm-eval-tasks", "headwise_wiki_ppl,headwise_wiki_topic", 2, tmp_path / "le")
    for task, values in row["lm_eval"].items():
        for metric, value in values.items():
            assert cli[task][metric] == pytest.approx(value, rel=1e-4), (task, metric)
    assert row["lm_eval"]["headwise_wiki_ppl"]["word_perplexity,none"] > 1
