"""Settings of a continual-learning run; defaults follow the SEEKR paper's scripts (docs/seekr.md).

Presets: `paper` is every setting of the reference's training script (docs/seekr.md#the-papers-regime),
`faithful` the original code's choices where the defaults fix them (docs/seekr.md#faithful-mode), and
`paper-faithful` both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from headwise.config import Settings
from headwise.errors import HeadwiseError


# The original code's choice for each setting that defaults to a fix of it (docs/seekr.md#faithful-mode).
FAITHFUL = {"replay_sampling": "first", "query_budget": 0, "logit_topk": 0, "kd_positions": "own-label",
            "sensitivity_entries": "all", "short_queries": "resample", "buffer_sizes": "truncate",
            "auto_cycle": "truncate", "importance_padding": "buffer"}
# jinghan1he/SEEKR @ 22fe447, scripts/exp_seq_seekr.sh and training/seekr.py: the line of each value is listed
# in docs/seekr.md#the-papers-regime (tests/cl/test_paper_preset.py pins them).
PAPER = {"lora": False, "lr": 1e-5, "lr_schedule": "constant", "warmup_steps": 0, "epochs": 5,
         "batch_size": 16, "effective_batch": 128, "betas": (0.9, 0.95), "weight_decay": 0.0, "clip": 1.0,
         "seed": 1234, "max_len": 1536, "replay": 0.01, "kd_weight": 0.5, "lam": 1000.0, "layer_budget": 0.75,
         "head_budget": 0.125, "query_budget": 0, "logit_topk": 0, "replay_cycle": None, "max_new_tokens": 512,
         "eval_batch_size": 16}
LR_SCHEDULES = ("constant", "cosine")
RULES = {"replay_sampling": ("random", "first"), "kd_positions": ("shifted", "own-label"),
         "sensitivity_entries": ("valid", "all"), "short_queries": ("all-rows", "resample"),
         "buffer_sizes": ("at-least-one", "truncate"), "auto_cycle": ("at-least-one", "truncate"),
         "importance_padding": ("none", "buffer")}


def check_method(name: str) -> str:
    """A method registered in headwise.cl.methods.METHODS (imported on use: it brings torch)."""
    from headwise.cl.methods import METHODS

    if name not in METHODS:
        raise HeadwiseError(f"unknown method {name!r}; use one of {', '.join(METHODS)}.")
    return name


@dataclass
class CLConfig(Settings):
    """Settings of one continual-learning run (`headwise cl run`); the comments give each field's meaning.

    The last block of fields are the original code's choices where the defaults fix them; the `faithful`
    preset sets them all to the original's (docs/seekr.md#faithful-mode).
    """

    method: str = "seekr"
    replay: float = 0.01  # < 1: fraction of each task's training set; >= 1: a count per task
    epochs: list[int] | int = 1  # one value for every task, or one per task
    batch_size: int = 2
    grad_accum: int = 1
    lr: float = 1e-5
    # "constant": what the reference runs (its training/seekr.py builds get_constant_schedule_with_warmup whatever
    # --lr_scheduler_type says); "cosine": decays to 0 over each task's optimizer steps (transformers' formula)
    lr_schedule: str = "constant"
    warmup_steps: int = 0  # optimizer steps of linear warm-up at the start of each task
    # Sequences per optimizer step (0: batch_size x grad_accum); else grad_accum = effective_batch / batch_size
    effective_batch: int = 0
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.0
    clip: float = 1.0
    seed: int = 1234
    max_len: int = 256  # training sequences are truncated from the left, as in TRACE
    kd_weight: float = 0.5  # logit-distillation weight: (1 - kd_weight) CE + kd_weight KD on replay steps
    lam: float = 1000.0  # attention-distillation weight
    layer_budget: float = 0.75  # < 1: fraction of layers; >= 1: a count (the paper: 24 of 32)
    head_budget: float = 0.125  # < 1: fraction of all heads; >= 1: a count (the paper: 128 of 1024)
    query_budget: int = 32  # query rows per sample for F, the teacher maps and the KL; 0: all rows
    logit_topk: int = 64  # teacher logits kept per position; 0: the full vocabulary
    replay_cycle: int | None = None  # replay before every cycle-th task step; None: task batches // replay batches
    checkpoint_every: int = 50  # optimizer-independent micro-steps between mid-task checkpoints
    lora: bool = False
    lora_rank: int = 8
    eval_max: int = 0  # test items per task (0: all)
    max_new_tokens: int = 24
    eval_batch_size: int = 8
    replay_sampling: str = "random"  # "first": the first N items in file order, as the original code
    kd_positions: str = "shifted"  # "own-label": the original's off-by-one positions (losses.kd_positions)
    sensitivity_entries: str = "valid"  # "all": average over masked entries too, as the original
    short_queries: str = "all-rows"  # "resample": draw query_budget rows with replacement, as the original
    buffer_sizes: str = "at-least-one"  # "truncate": int(r N), as the original (buffer.buffer_size)
    auto_cycle: str = "at-least-one"  # "truncate": a cycle of 0 turns replay off, as the original
    # "buffer": S and F of each sample on the buffer padded to its longest sample, as the original (importance.py)
    importance_padding: str = "none"

    PRESETS = {"faithful": FAITHFUL, "paper": PAPER, "paper-faithful": {**PAPER, **FAITHFUL}}

    def validate(self) -> None:
        check_method(self.method)
        self._derive_accumulation()
        if not (self.replay > 0) or (self.replay > 1 and self.replay != int(self.replay)):
            raise HeadwiseError(f"replay must be a ratio in (0, 1] or a whole count of samples, got {self.replay}.")
        for name, allowed in RULES.items():
            if getattr(self, name) not in allowed:
                raise HeadwiseError(f"{name.replace('_', ' ')} must be one of {', '.join(allowed)}, got "
                                    f"{getattr(self, name)!r}.")
        epochs = self.epochs if isinstance(self.epochs, list) else [self.epochs]
        if not epochs or any(int(e) < 1 for e in epochs):
            raise HeadwiseError(f"epochs must be at least 1, got {self.epochs}.")
        for name in ("batch_size", "grad_accum", "max_len", "checkpoint_every", "max_new_tokens", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise HeadwiseError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}.")
        if self.lr <= 0:
            raise HeadwiseError(f"the learning rate must be positive, got {self.lr}.")
        if self.lr_schedule not in LR_SCHEDULES:
            raise HeadwiseError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}.")
        if self.warmup_steps < 0:
            raise HeadwiseError(f"--warmup-steps must not be negative, got {self.warmup_steps}.")
        if not 0 <= self.kd_weight <= 1:
            raise HeadwiseError(f"--kd-weight must be in [0, 1], got {self.kd_weight}.")
        for name in ("layer_budget", "head_budget"):
            if getattr(self, name) <= 0:
                raise HeadwiseError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}.")
        if self.replay_cycle is not None and self.replay_cycle < 1:
            raise HeadwiseError(f"--replay-cycle must be a positive number of task steps, got {self.replay_cycle} "
                                "(leave it out for the automatic cycle).")
        if self.query_budget < 0 or self.logit_topk < 0 or self.eval_max < 0:
            raise HeadwiseError("query budget, logit top-k and eval-max must not be negative.")

    def _derive_accumulation(self) -> None:
        """An effective batch sets the accumulation: grad_accum = effective_batch / batch_size (recorded so)."""
        if self.effective_batch < 0:
            raise HeadwiseError(f"--effective-batch must not be negative, got {self.effective_batch}.")
        if not self.effective_batch or self.batch_size < 1:
            return
        steps, rest = divmod(self.effective_batch, self.batch_size)
        if rest or not steps:
            raise HeadwiseError(f"--effective-batch {self.effective_batch} is not a whole number of micro-batches of "
                                f"{self.batch_size} (--batch-size); make it a multiple of the batch size.")
        if self.grad_accum not in (1, steps):
            raise HeadwiseError(f"--grad-accum {self.grad_accum} with --batch-size {self.batch_size} is not "
                                f"--effective-batch {self.effective_batch}; give the effective batch or the "
                                "accumulation, not both (--effective-batch 0 turns it off).")
        self.grad_accum = steps

    @classmethod
    def upgrade(cls, record: dict[str, Any]) -> dict[str, Any]:
        """Releases up to 0.1.0 named the logit-distillation weight `alpha` (now `kd_weight`, so that --alpha means
        VHR's scale alone) and recorded `faithful: true` for what the `faithful` preset's fields say now. Fields the
        preset gained later (importance_padding) read as the preset's too, so that the release's `--faithful`
        command finds its run (tests/test_resume.py); a run resumed mid-sequence continues with them."""
        record = dict(record)
        if "alpha" in record and "kd_weight" not in record:
            record["kd_weight"] = record.pop("alpha")
        if record.pop("faithful", False):
            record = {**FAITHFUL, **record}
        return record

    def epochs_for(self, task_index: int, num_tasks: int) -> int:
        if isinstance(self.epochs, list):
            if len(self.epochs) != num_tasks:
                raise HeadwiseError(f"{len(self.epochs)} epoch values were given for {num_tasks} tasks.")
            return int(self.epochs[task_index])
        return int(self.epochs)


@dataclass
class BenchmarkConfig(Settings):
    """The task sequence: `wiki` (built offline from the Wikipedia summaries, `wiki_train` and `wiki_test` items
    per task), `trace:DIR` or `superni:DIR`, in the benchmark's `order`, cut to the first `tasks` (0: all)."""

    benchmark: str = "wiki"
    order: str = "1"
    tasks: int = 0
    wiki_train: int = 200
    wiki_test: int = 50

    def validate(self) -> None:
        kind, _, path = self.benchmark.partition(":")
        if not (self.benchmark == "wiki" or (kind in ("trace", "superni") and path)):
            raise HeadwiseError(f"unknown benchmark {self.benchmark!r}; use wiki, trace:DIR or superni:DIR.")
        if self.tasks < 0 or self.wiki_train < 1 or self.wiki_test < 1:
            raise HeadwiseError("--tasks must not be negative, and --wiki-train and --wiki-test must be at least 1.")


def check_sequence(config: CLConfig, tasks: list) -> None:
    """Refuse settings that do not fit these tasks, before anything is loaded or written."""
    from headwise.cl.buffer import buffer_size
    from headwise.cl.methods import METHODS as STRATEGIES
    from headwise.cl.schedule import task_batch_count

    for i, t in enumerate(tasks):
        config.epochs_for(i, len(tasks))
        buffer_size(config.replay, len(t.train), f"task {t.name}", config.buffer_sizes == "truncate")
        # Plain replay mixes its buffer into the task data, so only the distilling methods have a cycle.
        if i and config.replay_cycle and STRATEGIES[config.method].distils:
            n = task_batch_count(len(t.train), config.batch_size)
            if config.replay_cycle > n:
                raise HeadwiseError(f"--replay-cycle {config.replay_cycle} is more than the {n} task batches of "
                                    f"task {t.name}, so it would never replay; use at most {n}, or leave it out "
                                    "for the automatic cycle.")
