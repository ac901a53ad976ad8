"""`headwise cl`: continual fine-tuning (SeqFT, Replay, DER++, SEEKR) over a task sequence."""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import typer

from headwise.cl.table import DEFAULT_VARIANTS
from headwise.cli.common import DEVICE, DTYPE, JSON, MODEL, TRUST, emit, load, out_option
from headwise.errors import HeadwiseError

app = typer.Typer(help="Continual fine-tuning with replay and SEEKR's selective attention distillation.",
                  no_args_is_help=True)


def load_benchmark(spec: str, order: str, run_dir: Path, wiki_train: int = 200, wiki_test: int = 50):
    """wiki (built offline into RUN_DIR/data), trace:DIR or superni:DIR."""
    from headwise.cl import data, wiki

    if spec == "wiki":
        return data.load_trace(wiki.build(run_dir / "data", train=wiki_train, test=wiki_test), order)
    kind, _, path = spec.partition(":")
    if kind == "trace" and path:
        return data.load_trace(path, order)
    if kind == "superni" and path:
        return data.load_superni(path, order)
    raise HeadwiseError(f"unknown benchmark {spec!r}; use wiki, trace:DIR or superni:DIR.")


def run_cl(model: str, benchmark: str, out: str, config, order: str = "1", tasks: int = 0, wiki_train: int = 200,
           wiki_test: int = 50, dtype: str = "auto", device: str | None = None, trust_remote_code: bool = False,
           log=typer.echo, progress: bool = True) -> dict:
    """Run (or resume) a continual-learning run into `out`; returns its results."""
    return prepare(model, benchmark, out, config, order, tasks, wiki_train, wiki_test, dtype, device,
                   trust_remote_code, log, progress).fit()


def checked_tasks(benchmark: str, order: str, tasks: int, wiki_train: int, wiki_test: int, scratch: Path,
                  configs: list) -> list:
    """The task sequence (wiki built under `scratch`), with every config checked against it."""
    from headwise.cl.config import check_sequence

    seq = load_benchmark(benchmark, order, scratch, wiki_train, wiki_test)
    if tasks:
        if tasks > len(seq):
            raise HeadwiseError(f"--tasks {tasks} is more than the benchmark's {len(seq)} tasks.")
        seq = seq[:tasks]
    for config in configs:
        check_sequence(config, seq)
    return seq


def prepare(model: str, benchmark: str, out: str, config, order: str = "1", tasks: int = 0, wiki_train: int = 200,
            wiki_test: int = 50, dtype: str = "auto", device: str | None = None, trust_remote_code: bool = False,
            log=typer.echo, progress: bool = True):
    """The run directory, tasks and model of a run, as a `Continual` ready to `fit()`."""
    from headwise.cl.trainer import Continual
    from headwise.eval.runner import process_state
    from headwise.runs import Run

    settings = {"model": model, "benchmark": benchmark, "order": order, "tasks": tasks, "wiki_train": wiki_train,
                "wiki_test": wiki_test, "dtype": dtype, **config.to_dict()}
    # The tasks, the settings that depend on them and the model are checked before a run directory is made;
    # wiki is built in a scratch folder first and copied into the run directory once that exists.
    with tempfile.TemporaryDirectory() as scratch:
        seq = checked_tasks(benchmark, order, tasks, wiki_train, wiki_test, Path(scratch), [config])
        m, tok = load(model, dtype, device, trust_remote_code)
        run = Run(out, "cl run", settings)
        if benchmark == "wiki" and not (run.dir / "data").exists():
            shutil.copytree(Path(scratch) / "data", run.dir / "data", dirs_exist_ok=True)  # processes may race
    state = process_state()
    accelerator = None
    if state.num_processes > 1:
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=not __import__("torch").cuda.is_available())
    return Continual(m, tok, seq, config, run, accelerator=accelerator, log=log, progress=progress)


# Options shared by `run` and `table` (a table is many runs with the same settings).
BENCHMARK = typer.Option("wiki", help="wiki (offline Wikipedia tasks), trace:DIR or superni:DIR.")
ORDER = typer.Option("1", help="Task order, from the benchmark's orders.json (or TRACE/SuperNI's).")
TASKS = typer.Option(0, help="Use only the first N tasks of the order (0: all).")
EPOCHS = typer.Option("1", help="Epochs per task: one number, or one per task like 5,5,10.")
BATCH = typer.Option(2, help="Sequences per micro-step (split over processes).")
ACCUM = typer.Option(1, help="Micro-steps per optimizer step.")
LR = typer.Option(1e-5, help="Learning rate (AdamW, constant).")
LAYER_BUDGET = typer.Option(0.75, help="SEEKR: layers kept, a fraction < 1 or a count.")
HEAD_BUDGET = typer.Option(0.125, help="SEEKR: heads kept, a fraction < 1 of all heads or a count.")
QUERY_BUDGET = typer.Option(32, help="SEEKR: query rows per sample for distillation (0: all).")
LOGIT_TOPK = typer.Option(64, help="DER++/SEEKR: teacher logits kept per position (0: full vocabulary).")
LAM = typer.Option(1000.0, help="SEEKR: attention-distillation weight.")
ALPHA = typer.Option(0.5, help="DER++/SEEKR: logit-distillation weight on replay steps.")
FAITHFUL = typer.Option(False, "--faithful", help=(
    "Reproduce the original SEEKR code's choices: first-N buffer, unshifted logit distillation, sensitivity over "
    "masked entries too, all query rows, full-vocabulary logits, the reference's buffer sizes, a replay cycle "
    "that can turn replay off (docs/seekr.md#faithful-mode)."))
REPLAY_CYCLE = typer.Option(None, help="DER++/SEEKR: one replay micro-step after every N-1 task micro-steps, "
                                       "just before the N-th, as the reference code's --replay_cycle; at most the "
                                       "task's batches (default: task batches // replay batches).")
LORA = typer.Option(False, "--lora", help="Train LoRA adapters (all linear layers) instead of all weights.")
LORA_RANK = typer.Option(8, help="LoRA rank (with --lora).")
MAX_LEN = typer.Option(256, help="Longest training sequence in tokens (cut from the left).")
EVAL_MAX = typer.Option(0, help="Test items per task (0: all).")
NEW_TOKENS = typer.Option(24, help="Most tokens generated per test answer (less when training answers are shorter).")
EVAL_BATCH = typer.Option(8, help="Test prompts per generate() call.")
CKPT_EVERY = typer.Option(50, help="Micro-steps between mid-task checkpoints.")
WIKI_TRAIN = typer.Option(200, help="wiki benchmark: training items per task.")
WIKI_TEST = typer.Option(50, help="wiki benchmark: test items per task.")


def config_from(options: dict):
    """A CLConfig from a command's parameters (named like its fields; epochs given as "1" or "5,5,10")."""
    from dataclasses import fields

    from headwise.cl.config import CLConfig
    from headwise.cli.common import int_list

    kw = {f.name: options[f.name] for f in fields(CLConfig) if f.name in options}
    epochs = int_list(kw["epochs"], "--epochs")
    kw["epochs"] = epochs[0] if len(epochs) == 1 else epochs
    return CLConfig(**kw)


@app.command()
def run(
    model: str = MODEL, benchmark: str = BENCHMARK,
    method: str = typer.Option("seekr", help="seqft, replay, derpp or seekr."),
    replay: float = typer.Option(0.01, help="Replay ratio in (0, 1], or a whole count of samples per task."),
    order: str = ORDER, tasks: int = TASKS, epochs: str = EPOCHS, batch_size: int = BATCH, grad_accum: int = ACCUM,
    lr: float = LR, seed: int = typer.Option(1234, help="Seed of data order, replay sampling and query rows."),
    layer_budget: float = LAYER_BUDGET, head_budget: float = HEAD_BUDGET, query_budget: int = QUERY_BUDGET,
    logit_topk: int = LOGIT_TOPK, lam: float = LAM, alpha: float = ALPHA, faithful: bool = FAITHFUL,
    replay_cycle: int | None = REPLAY_CYCLE, lora: bool = LORA, lora_rank: int = LORA_RANK, max_len: int = MAX_LEN,
    eval_max: int = EVAL_MAX,
    max_new_tokens: int = NEW_TOKENS, eval_batch_size: int = EVAL_BATCH, checkpoint_every: int = CKPT_EVERY,
    wiki_train: int = WIKI_TRAIN, wiki_test: int = WIKI_TEST,
    out: str = out_option(..., "Run directory; rerun with the same one to resume."),
    dtype: str = DTYPE, device: str = DEVICE, trust_remote_code: bool = TRUST, as_json: bool = JSON,
) -> None:
    """Learn the tasks in order, evaluate after each, and write RUN_DIR/results.json (matrix, OP, BWT, FWT)."""
    config = config_from(locals())
    result = run_cl(model, benchmark, out, config, order, tasks, wiki_train, wiki_test, dtype, device,
                    trust_remote_code, log=(lambda s: None) if as_json else typer.echo)
    emit(result, as_json, summary(result, out))


@app.command()
def table(
    model: str = MODEL, benchmark: str = BENCHMARK,
    methods: str = typer.Option(DEFAULT_VARIANTS,
                                help="Methods with their replay ratios, comma-separated (seqft needs none); a SEEKR row "
                                     "can take its own lambda, like seekr@0.01:lam=1.5."),
    seeds: str = typer.Option("0,1,2", help="Seeds, e.g. 0,1,2: one run per method and seed."),
    order: str = ORDER, tasks: int = TASKS, epochs: str = EPOCHS, batch_size: int = BATCH, grad_accum: int = ACCUM,
    lr: float = LR, layer_budget: float = LAYER_BUDGET, head_budget: float = HEAD_BUDGET,
    query_budget: int = QUERY_BUDGET, logit_topk: int = LOGIT_TOPK, lam: float = LAM, alpha: float = ALPHA,
    faithful: bool = FAITHFUL, replay_cycle: int | None = REPLAY_CYCLE, lora: bool = LORA, lora_rank: int = LORA_RANK,
    max_len: int = MAX_LEN, eval_max: int = EVAL_MAX, max_new_tokens: int = NEW_TOKENS, eval_batch_size: int = EVAL_BATCH,
    checkpoint_every: int = CKPT_EVERY, wiki_train: int = WIKI_TRAIN, wiki_test: int = WIKI_TEST,
    out: str = out_option(..., "Table directory (one `cl run` directory per method and seed; resumable)."),
    jobs: int = typer.Option(1, help="Runs at a time, each in its own process with an equal share of the CPU "
                                     "threads (2 on 2 cores: one thread each, faster than two threads for one run)."),
    dtype: str = DTYPE, device: str = DEVICE, trust_remote_code: bool = TRUST, as_json: bool = JSON,
) -> None:
    """OP, BWT and FWT of several methods over several seeds (mean +- std); writes OUT/table.md and table.png."""
    from headwise.cl.table import parse_variants
    from headwise.cl.table import table as run_table
    from headwise.cli.common import int_list

    from headwise.models import check_model

    base = config_from({**locals(), "method": "seqft", "replay": 0.01, "seed": 0})
    check_model(model, trust_remote_code)  # before the table directory is made for a model that is not there
    variants = parse_variants(methods)
    with tempfile.TemporaryDirectory() as scratch:  # and settings that do not fit the tasks, like --replay-cycle
        checked_tasks(benchmark, order, tasks, wiki_train, wiki_test, Path(scratch),
                      [replace(base, method=v.method, replay=v.ratio) for v in variants])
    settings = {"model": model, "benchmark": benchmark, "order": order, "tasks": tasks, "wiki_train": wiki_train,
                "wiki_test": wiki_test, "dtype": dtype}
    log = (lambda s: None) if as_json else typer.echo
    # A plain function with its arguments bound, so that --jobs can hand it to worker processes.
    run_one = functools.partial(_table_cell, model, benchmark, order, tasks, wiki_train, wiki_test, dtype, device,
                                trust_remote_code, not as_json and jobs == 1)
    result = run_table(out, variants, int_list(seeds, "--seeds") or [0], base, run_one, settings, log,
                       jobs)
    emit(result["table"], as_json, result["markdown"] + f"\ntable: {Path(out) / 'table.md'}")


def _table_cell(model, benchmark, order, tasks, wiki_train, wiki_test, dtype, device, trust_remote_code, verbose,
                run_dir: Path, config) -> dict:
    """One cell of `cl table`: an ordinary `cl run`; quiet when several run at once."""
    return run_cl(model, benchmark, str(run_dir), config, order, tasks, wiki_train, wiki_test, dtype, device,
                  trust_remote_code, log=typer.echo if verbose else _quiet, progress=verbose)


def _quiet(_: str) -> None:
    pass


def summary(result: dict, out: str | Path) -> str:
    names = result["tasks"]
    w = max(8, *(len(n) for n in names))
    lines = [f"{result['method']}: score on each task (columns) after learning each task (rows)",
             " " * (w + 2) + " ".join(f"{n[:w]:>{w}}" for n in names)]
    if result.get("base"):
        lines.append(f"{'base':>{w}}  " + " ".join(f"{x:>{w}.3f}" for x in result["base"]))
    for name, row in zip(names, result["matrix"]):
        lines.append(f"{name[:w]:>{w}}  " + " ".join(f"{x:>{w}.3f}" for x in row))
    if result.get("op") is not None:
        lines.append(f"OP {result['op']:.4f}   BWT {result['bwt']:+.4f} (1/(T-1))   BWT {result['bwt_paper']:+.4f} "
                     f"(paper, 1/T)   FWT {result['fwt']:+.4f}")
    else:
        lines.append(f"incomplete: {len(result['matrix'])} of {len(names)} tasks learned")
    lines.append(f"results: {Path(out) / 'results.json'}")
    return "\n".join(lines)


@app.command()
def report(run_dir: str = typer.Argument(..., help="A run directory written by `headwise cl run`."),
           as_json: bool = JSON) -> None:
    """Print the score matrix and OP/BWT/FWT of a (finished or partial) run, and per task the mean of each
    replay loss part, the clipped optimizer steps and where the replay steps fell (from RUN_DIR/losses.jsonl)."""
    from headwise.cl import losslog

    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise HeadwiseError(f"{run_dir} holds no results.json; is it a `headwise cl run` directory?")
    try:
        result = json.loads(path.read_text())
        summary_text = summary(result, run_dir)
        losses = losslog.summarize(losslog.read(Path(run_dir) / "losses.jsonl"), result["tasks"])
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise HeadwiseError(f"{path} is not a `headwise cl run` result ({err}).") from err
    if losses:
        summary_text += "\n\n" + losslog.report(losses)
    emit({**result, "losses": losses}, as_json, summary_text)


def demo(out: Path) -> str:
    """A 2-task SEEKR mini-run of SmolLM2 (LoRA) on the offline Wikipedia tasks, a few minutes on 2 cores."""
    from headwise.cl.config import CLConfig

    # LoRA, 64 training items per task (16 steps: enough to learn the topic task) and 16 test items
    # keep it to a couple of CPU-minutes; a real run uses `headwise cl run` or `headwise cl table`.
    config = CLConfig(method="seekr", replay=0.0625, epochs=1, batch_size=4, lr=1e-3, lora=True, eval_max=16,
                      max_len=112, max_new_tokens=8, eval_batch_size=16, checkpoint_every=1000)
    result = run_cl("smollm2", "wiki", str(Path(out)), config, order="1", tasks=2, wiki_train=64, wiki_test=16,
                    log=lambda s: None)
    heads = result["heads"].get(result["tasks"][0], {})
    chosen = ", ".join(f"L{l}:{hs}" for l, hs in heads.items())
    return summary(result, out) + f"\nheads distilled for task {result['tasks'][0]}: {chosen}"
