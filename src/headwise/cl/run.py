"""The continual-learning recipes: what `headwise cl run|table|report` run, as plain functions that the CLI,
the benchmarks, the tests and the plug-ins call alike.

    tasks = checked_tasks(bench, [cfg], scratch)          # before anything is loaded or written
    run = open_run(out, "smollm2", "auto", bench, cfg)
    result = run_cl(model, tok, tasks, cfg, run)           # resumable; results.json in the run directory
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from headwise.cl.config import BenchmarkConfig, CLConfig, check_sequence
from headwise.errors import HeadwiseError
from headwise.runs import Run


def load_benchmark(bench: BenchmarkConfig, data_dir: Path) -> list:
    """The task sequence in its order, before cutting: wiki (built offline into DATA_DIR), trace:DIR or superni:DIR."""
    from headwise.cl import data, wiki

    if bench.benchmark == "wiki":
        return data.load_trace(wiki.build(Path(data_dir), train=bench.wiki_train, test=bench.wiki_test), bench.order)
    kind, _, path = bench.benchmark.partition(":")
    return data.load_superni(path, bench.order) if kind == "superni" else data.load_trace(path, bench.order)


def checked_tasks(bench: BenchmarkConfig, configs: list[CLConfig], data_dir: Path) -> list:
    """The task sequence (wiki built under `data_dir`), cut to `bench.tasks`, with every config checked against it."""
    seq = load_benchmark(bench, data_dir)
    if bench.tasks:
        if bench.tasks > len(seq):
            raise HeadwiseError(f"--tasks {bench.tasks} is more than the benchmark's {len(seq)} tasks.")
        seq = seq[:bench.tasks]
    for config in configs:
        check_sequence(config, seq)
    return seq


def open_run(out: str | Path, model_name: str, dtype: str, bench: BenchmarkConfig, cfg: CLConfig,
             preset: str | None = None) -> Run:
    """The run directory of `cl run` (its settings recorded flat, as they always were)."""
    return Run(out, "cl run", {"model": model_name, "dtype": dtype}, bench, cfg, preset=preset)


def run_cl(model, tokenizer, tasks: list, cfg: CLConfig, run: Run, log: Callable[[str], None] = print,
           progress: bool = True, accelerator=None, save_model: str | Path | None = None,
           base_cache: str | Path | None = None) -> dict:
    """The `cl run` recipe: learn the tasks in order, evaluating after each; resumes a killed run. With
    `save_model`, the final model is written there as a transformers folder (`save_trained`); with `base_cache`,
    the untrained model's row is shared through that folder (`headwise.cl.shared_base`)."""
    fitting = trainer(model, tokenizer, tasks, cfg, run, log, progress, accelerator, base_cache)
    if save_model is not None and cfg.lora and fitting.sharded:
        raise HeadwiseError("--save-model merges LoRA adapters into the weights, which sharded weights (FSDP, "
                            "ZeRO-3) do not allow; train on one process or without --lora to save the model.")
    result = fitting.fit()
    if save_model is not None:
        save_trained(fitting, save_model)
    return result


def save_trained(fitting, directory: str | Path) -> Path:
    """The trained model as a transformers folder (safetensors, config, tokenizer; LoRA merged into the weights)
    that `from_pretrained` and `lm_eval --model hf --model_args pretrained=DIR` load. Every process takes part
    (sharded weights are gathered); the main process writes."""
    from headwise.runs import save_pretrained

    acc = fitting.acc
    state = full_state(acc, fitting.train_model) if fitting.sharded else None
    if fitting.main:
        model = acc.unwrap_model(fitting.train_model)
        if fitting.cfg.lora:
            model = model.merge_and_unload()  # the run is over: the adapters become plain weights
        model.save_pretrained(str(directory), state_dict=state)
        save_pretrained(directory, *([fitting.tok] if hasattr(fitting.tok, "save_pretrained") else []))
    acc.wait_for_everyone()
    return Path(directory)


def trainer(model, tokenizer, tasks: list, cfg: CLConfig, run: Run, log: Callable[[str], None] = print,
            progress: bool = True, accelerator=None, base_cache: str | Path | None = None):
    """The `Continual` trainer `run_cl` fits (for benchmarks that time its parts)."""
    from headwise.cl.trainer import Continual

    return Continual(model, tokenizer, tasks, cfg, run, accelerator=accelerator, log=log, progress=progress,
                     base_cache=base_cache)


def full_state(acc, model) -> dict:
    """The whole state dict of a model whose weights are sharded, gathered (on the main process): torch's for
    FSDP 2 (DTensor parameters, whether headwise or Accelerate sharded them), Accelerate's otherwise (ZeRO-3)."""
    if any(hasattr(p, "to_local") for p in model.parameters()):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return acc.get_state_dict(model)


def cl_run(model_name: str, bench: BenchmarkConfig, cfg: CLConfig, out: str | Path, dtype: str = "auto",
           device: str | None = None, trust_remote_code: bool = False, log: Callable[[str], None] = print,
           progress: bool = True, preset: str | None = None, save_model: str | Path | None = None,
           base_cache: str | Path | None = None) -> dict:
    """Check the tasks, load the model, open the run and run it: `cl run` end to end (a `cl table` cell, the demo).
    With `save_model`, the final model is written there as a transformers folder (`save_trained`).

    The tasks and the settings that depend on them and the model are checked before a run directory is made;
    wiki is built in a scratch folder first and copied into the run directory once that exists.
    """
    from headwise.distributed import check_launch
    from headwise.models import load_model

    check_launch()  # a launch that would not run as asked writes nothing
    with tempfile.TemporaryDirectory() as scratch:
        tasks = checked_tasks(bench, [cfg], Path(scratch) / "data")
        model, tok = load_model(model_name, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
        run = open_run(out, model_name, dtype, bench, cfg, preset)
        if bench.benchmark == "wiki" and not (run.dir / "data").exists():
            shutil.copytree(Path(scratch) / "data", run.dir / "data", dirs_exist_ok=True)  # processes may race
    return run_cl(model, tok, tasks, cfg, run, log, progress, save_model=save_model, base_cache=base_cache)


def report(run_dir: str | Path) -> dict:
    """The `cl report` recipe: a run's results.json with, per task, the means of its replay loss parts, the
    clipped optimizer steps and where the replay steps fell (from RUN/losses.jsonl)."""
    import json

    from headwise.cl import losslog

    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise HeadwiseError(f"{run_dir} holds no results.json; is it a `headwise cl run` directory?")
    try:
        result = json.loads(path.read_text())
        losses = losslog.summarize(losslog.read_run(run_dir), result["tasks"])
        summary_text(result, run_dir)
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise HeadwiseError(f"{path} is not a `headwise cl run` result ({err}).") from err
    return {**result, "losses": losses}


def summary_text(result: dict, out: str | Path) -> str:
    """The score matrix and OP/BWT/FWT of a (finished or partial) run."""
    names = result["tasks"]
    w = max(8, *(len(n) for n in names))
    lines = [f"{result['method']}: score on each task (columns) after learning each task (rows)",
             " " * (w + 2) + " ".join(f"{n[:w]:>{w}}" for n in names)]
    if result.get("base"):
        lines.append(f"{'base':>{w}}  " + " ".join(f"{x:>{w}.3f}" for x in result["base"]))
    for name, row in zip(names, result["matrix"]):
        lines.append(f"{name[:w]:>{w}}  " + " ".join(f"{x:>{w}.3f}" for x in row))
    if result.get("op") is not None:
        se = f" (SE {result['op_se']:.4f} over the test items)" if result.get("op_se") is not None else ""
        lines.append(f"OP {result['op']:.4f}{se}   BWT {result['bwt']:+.4f} (1/(T-1))   "
                     f"BWT {result['bwt_paper']:+.4f} (paper, 1/T)   FWT {result['fwt']:+.4f}")
    else:
        lines.append(f"incomplete: {len(result['matrix'])} of {len(names)} tasks learned")
    lines.append(f"results: {Path(out) / 'results.json'}")
    return "\n".join(lines)


def table_cell(model_name: str, bench: BenchmarkConfig, dtype: str, device: str | None, trust_remote_code: bool,
               verbose: bool, run_dir: Path, config: CLConfig) -> dict:
    """One cell of `cl table`: an ordinary `cl run`, quiet when several run at once. A plain function with its
    arguments bound by functools.partial, so that --jobs can hand it to worker processes. The cells of a table
    share the untrained model's row through OUT/base-rows (`headwise.cl.shared_base`)."""
    return cl_run(model_name, bench, config, run_dir, dtype, device, trust_remote_code,
                  log=print if verbose else _quiet, progress=verbose, base_cache=Path(run_dir).parent / "base-rows")


def _quiet(_: str) -> None:
    pass


# The demo's 2-task SEEKR run of SmolLM2 (LoRA): 64 training items per task (16 steps: enough to learn the topic
# task) and 16 test items keep it to a couple of CPU-minutes; a real run uses `cl run` or `cl table`.
DEMO = CLConfig(method="seekr", replay=0.0625, epochs=1, batch_size=4, lr=1e-3, lora=True, eval_max=16, max_len=112,
                max_new_tokens=8, eval_batch_size=16, checkpoint_every=1000)
DEMO_BENCHMARK = BenchmarkConfig(benchmark="wiki", order="1", tasks=2, wiki_train=64, wiki_test=16)


def demo(out: str | Path) -> str:
    """The SEEKR part of `headwise demo`; returns its summary."""
    result = cl_run("smollm2", DEMO_BENCHMARK, DEMO, out, log=_quiet)
    heads = result["heads"].get(result["tasks"][0], {})
    chosen = ", ".join(f"L{l}:{hs}" for l, hs in heads.items())
    return summary_text(result, out) + f"\nheads distilled for task {result['tasks'][0]}: {chosen}"
