"""`headwise cl`: continual fine-tuning (SeqFT, Replay, DER++, SEEKR) over a task sequence."""

from __future__ import annotations

import functools
import tempfile
from dataclasses import replace
from pathlib import Path

import typer

from headwise.cl.table import DEFAULT_VARIANTS
from headwise.cli.common import DEVICE, DTYPE, JSON, MODEL, TRUST, emit, given, int_list, out_option, settings
from headwise.errors import HeadwiseError

app = typer.Typer(help="Continual fine-tuning with replay and SEEKR's selective attention distillation.",
                  no_args_is_help=True)

# Options shared by `run` and `table` (a table is many runs with the same settings).
BENCHMARK = typer.Option("wiki", help="wiki (offline Wikipedia tasks), trace:DIR or superni:DIR.")
ORDER = typer.Option("1", help="Task order, from the benchmark's orders.json (or TRACE/SuperNI's).")
TASKS = typer.Option(0, help="Use only the first N tasks of the order (0: all).")
EPOCHS = typer.Option("1", help="Epochs per task: one number, or one per task like 5,5,10.")
BATCH = typer.Option(2, help="Sequences per micro-step (split over processes).")
ACCUM = typer.Option(1, help="Micro-steps per optimizer step (gradient accumulation through the Accelerator).")
LR = typer.Option(1e-5, help="Learning rate (AdamW; its schedule is --lr-schedule).")
LR_SCHEDULE = typer.Option("constant", help="constant (what the reference code runs) or cosine (down to 0 over each "
                                            "task's optimizer steps).")
WARMUP = typer.Option(0, help="Optimizer steps of linear learning-rate warm-up at the start of each task.")
EFFECTIVE_BATCH = typer.Option(0, help="Sequences per optimizer step; sets --grad-accum to this / --batch-size "
                                       "(0: --batch-size x --grad-accum).")
LAYER_BUDGET = typer.Option(0.75, help="SEEKR: layers kept, a fraction < 1 or a count.")
HEAD_BUDGET = typer.Option(0.125, help="SEEKR: heads kept, a fraction < 1 of all heads or a count.")
QUERY_BUDGET = typer.Option(32, help="SEEKR: query rows per sample for distillation (0: all).")
LOGIT_TOPK = typer.Option(64, help="DER++/SEEKR: teacher logits kept per position (0: full vocabulary).")
LAM = typer.Option(1000.0, help="SEEKR: attention-distillation weight.")
KD_WEIGHT = typer.Option(0.5, help="DER++/SEEKR: logit-distillation weight on replay steps, (1 - w) CE + w KD.")
ALPHA = typer.Option(None, "--alpha", help="Deprecated: the old name of --kd-weight (--alpha is VHR's head scale "
                                           "everywhere else).")
PRESET = typer.Option(None, "--preset", help="Start from a named preset of the settings: paper (every setting of the "
                      "reference's training script: full fine-tuning, lr 1e-5, 5 epochs, effective batch 128, ...; "
                      "docs/seekr.md#the-papers-regime), faithful (the original SEEKR code's choices, "
                      "docs/seekr.md#faithful-mode) or paper-faithful (both); options given explicitly override it.")
FAITHFUL = typer.Option(False, "--faithful", help=(
    "Same as --preset faithful: reproduce the original SEEKR code's choices: first-N buffer, unshifted logit "
    "distillation, sensitivity over masked entries too, all query rows, full-vocabulary logits, the reference's "
    "buffer sizes, a replay cycle that can turn replay off (docs/seekr.md#faithful-mode)."))
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


def configs(ctx: typer.Context, options: dict):
    """(BenchmarkConfig, CLConfig, preset) from a command's options, named like the configs' fields."""
    from headwise.cl.config import BenchmarkConfig, CLConfig
    from headwise.config import check_preset

    preset = options["preset"]
    explicit = given(ctx)
    if options["faithful"]:
        if preset not in (None, "faithful"):
            raise HeadwiseError(f"--faithful is --preset faithful; it cannot go with --preset {preset}.")
        if preset is None:  # --faithful as in 0.1.0: the original code's values win over the options given
            overridden = sorted(explicit & set(CLConfig.preset("faithful")))
            if overridden:
                typer.echo(f"note: --faithful sets {', '.join('--' + o.replace('_', '-') for o in overridden)} to the "
                           "original code's; --preset faithful lets options given explicitly win.", err=True)
            explicit = explicit - set(overridden)
        preset = "faithful"
    check_preset(preset, CLConfig)
    if options["alpha"] is not None:
        if "kd_weight" in explicit and options["kd_weight"] != options["alpha"]:
            raise HeadwiseError("--alpha is the deprecated name of --kd-weight; give only --kd-weight.")
        typer.echo("warning: --alpha is deprecated in `headwise cl`; it is --kd-weight now (--alpha means VHR's head "
                   "scale everywhere else).", err=True)
        options, explicit = {**options, "kd_weight": options["alpha"]}, explicit | {"kd_weight"}
    if "grad_accum" in explicit and "effective_batch" not in explicit:  # an accumulation given wins over a preset's
        options, explicit = {**options, "effective_batch": 0}, explicit | {"effective_batch"}
    epochs = int_list(options["epochs"], "--epochs")
    options = {**options, "epochs": epochs[0] if len(epochs) == 1 else epochs}
    cfg = settings(CLConfig, ctx, preset, options, explicit)
    bench = BenchmarkConfig(**{k: options[k] for k in BenchmarkConfig.field_names()})
    return bench, cfg, preset


@app.command()
def run(
    ctx: typer.Context, model: str = MODEL, benchmark: str = BENCHMARK,
    method: str = typer.Option("seekr", help="seqft, replay, derpp or seekr."),
    replay: float = typer.Option(0.01, help="Replay ratio in (0, 1], or a whole count of samples per task."),
    order: str = ORDER, tasks: int = TASKS, epochs: str = EPOCHS, batch_size: int = BATCH, grad_accum: int = ACCUM,
    effective_batch: int = EFFECTIVE_BATCH, lr: float = LR, lr_schedule: str = LR_SCHEDULE, warmup_steps: int = WARMUP,
    seed: int = typer.Option(1234, help="Seed of data order, replay sampling and query rows."),
    layer_budget: float = LAYER_BUDGET, head_budget: float = HEAD_BUDGET, query_budget: int = QUERY_BUDGET,
    logit_topk: int = LOGIT_TOPK, lam: float = LAM, kd_weight: float = KD_WEIGHT, alpha: float = ALPHA,
    preset: str = PRESET, faithful: bool = FAITHFUL, replay_cycle: int | None = REPLAY_CYCLE, lora: bool = LORA,
    lora_rank: int = LORA_RANK, max_len: int = MAX_LEN, eval_max: int = EVAL_MAX, max_new_tokens: int = NEW_TOKENS,
    eval_batch_size: int = EVAL_BATCH, checkpoint_every: int = CKPT_EVERY, wiki_train: int = WIKI_TRAIN,
    wiki_test: int = WIKI_TEST, out: str = out_option(..., "Run directory; rerun with the same one to resume."),
    save_model: str = out_option(None, "Write the final model here as a transformers folder (safetensors, "
                                       "tokenizer; LoRA merged), e.g. for lm_eval --model hf.", kind="optional"),
    dtype: str = DTYPE, device: str = DEVICE, trust_remote_code: bool = TRUST, as_json: bool = JSON,
) -> None:
    """Learn the tasks in order, evaluate after each, and write RUN_DIR/results.json (matrix, OP, BWT, FWT)."""
    from headwise.cl.run import cl_run, summary_text
    from headwise.distributed import process_state

    bench, cfg, preset = configs(ctx, locals())
    result = cl_run(model, bench, cfg, out, dtype, device, trust_remote_code,
                    log=(lambda s: None) if as_json else typer.echo, preset=preset, save_model=save_model)
    if process_state().is_main_process:  # under accelerate launch, one summary, not one per process
        emit(result, as_json, summary_text(result, out))


@app.command()
def table(
    ctx: typer.Context, model: str = MODEL, benchmark: str = BENCHMARK,
    methods: str = typer.Option(DEFAULT_VARIANTS,
                                help="Methods with their replay ratios, comma-separated (seqft needs none); a SEEKR row "
                                     "can take its own lambda, like seekr@0.01:lam=1.5."),
    seeds: str = typer.Option("0,1,2", help="Seeds, e.g. 0,1,2: one run per method and seed."),
    order: str = ORDER, tasks: int = TASKS, epochs: str = EPOCHS, batch_size: int = BATCH, grad_accum: int = ACCUM,
    effective_batch: int = EFFECTIVE_BATCH, lr: float = LR, lr_schedule: str = LR_SCHEDULE, warmup_steps: int = WARMUP,
    layer_budget: float = LAYER_BUDGET, head_budget: float = HEAD_BUDGET,
    query_budget: int = QUERY_BUDGET, logit_topk: int = LOGIT_TOPK, lam: float = LAM, kd_weight: float = KD_WEIGHT,
    alpha: float = ALPHA, preset: str = PRESET, faithful: bool = FAITHFUL, replay_cycle: int | None = REPLAY_CYCLE,
    lora: bool = LORA, lora_rank: int = LORA_RANK, max_len: int = MAX_LEN, eval_max: int = EVAL_MAX,
    max_new_tokens: int = NEW_TOKENS, eval_batch_size: int = EVAL_BATCH, checkpoint_every: int = CKPT_EVERY,
    wiki_train: int = WIKI_TRAIN, wiki_test: int = WIKI_TEST,
    out: str = out_option(..., "Table directory (one `cl run` directory per method and seed; resumable)."),
    jobs: int = typer.Option(1, help="Runs at a time, each in its own process with an equal share of the CPU "
                                     "threads (2 on 2 cores: one thread each, faster than two threads for one run)."),
    dtype: str = DTYPE, device: str = DEVICE, trust_remote_code: bool = TRUST, as_json: bool = JSON,
) -> None:
    """OP, BWT and FWT of several methods over several seeds (mean +- std); writes OUT/table.md and table.png."""
    from headwise.cl.run import checked_tasks, table_cell
    from headwise.cl.table import parse_variants, table as run_table
    from headwise.models import check_model

    from headwise.distributed import check_launch

    bench, base, preset = configs(ctx, {**locals(), "method": "seqft", "replay": 0.01, "seed": 0})
    check_launch()
    check_model(model, trust_remote_code)  # before the table directory is made for a model that is not there
    variants = parse_variants(methods)
    with tempfile.TemporaryDirectory() as scratch:  # and settings that do not fit the tasks, like --replay-cycle
        checked_tasks(bench, [replace(base, method=v.method, replay=v.ratio) for v in variants], Path(scratch))
    run_one = functools.partial(table_cell, model, bench, dtype, device, trust_remote_code, not as_json and jobs == 1)
    result = run_table(out, variants, int_list(seeds, "--seeds") or [0], base, run_one,
                       {"model": model, "dtype": dtype}, (lambda s: None) if as_json else typer.echo, jobs, bench,
                       preset)
    emit(result["table"], as_json, result["markdown"] + f"\ntable: {Path(out) / 'table.md'}")


@app.command()
def report(run_dir: str = typer.Argument(..., help="A run directory written by `headwise cl run`."),
           as_json: bool = JSON) -> None:
    """Print the score matrix and OP/BWT/FWT of a (finished or partial) run, and per task the mean of each
    replay loss part, the clipped optimizer steps and where the replay steps fell (from RUN_DIR/losses.jsonl)."""
    from headwise.cl import losslog
    from headwise.cl.run import report as do_report, summary_text

    result = do_report(run_dir)
    text = summary_text(result, run_dir)
    if result["losses"]:
        text += "\n\n" + losslog.report(result["losses"])
    emit(result, as_json, text)
