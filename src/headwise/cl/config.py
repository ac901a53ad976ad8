"""Settings of a continual-learning run; defaults follow the SEEKR paper's scripts (docs/seekr.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from headwise.errors import HeadwiseError

METHODS = ("seqft", "replay", "derpp", "seekr")


@dataclass
class CLConfig:
    """Settings of one continual-learning run (`headwise cl run`); the comments give each field's meaning.

    `faithful=True` sets replay_sampling="first", query_budget=0 and logit_topk=0, and switches the logit
    distillation, sensitivity and replay schedule to the original code's (docs/seekr.md#faithful-mode).
    """

    method: str = "seekr"
    replay: float = 0.01  # < 1: fraction of each task's training set; >= 1: a count per task
    replay_sampling: str = "random"  # "first": the first N items in file order, as the original code
    epochs: list[int] | int = 1  # one value for every task, or one per task
    batch_size: int = 2
    grad_accum: int = 1
    lr: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.0
    clip: float = 1.0
    seed: int = 1234
    max_len: int = 256  # training sequences are truncated from the left, as in TRACE
    alpha: float = 0.5  # logit-distillation weight: (1 - alpha) CE + alpha KD on replay steps
    lam: float = 1000.0  # attention-distillation weight
    layer_budget: float = 0.75  # < 1: fraction of layers; >= 1: a count (the paper: 24 of 32)
    head_budget: float = 0.125  # < 1: fraction of all heads; >= 1: a count (the paper: 128 of 1024)
    query_budget: int = 32  # query rows per sample for F, the teacher maps and the KL; 0: all rows
    logit_topk: int = 64  # teacher logits kept per position; 0: the full vocabulary
    faithful: bool = False  # reproduce the original code's choices (docs/seekr.md#faithful-mode)
    replay_cycle: int | None = None  # replay before every cycle-th task step; None: task batches // replay batches
    checkpoint_every: int = 50  # optimizer-independent micro-steps between mid-task checkpoints
    lora: bool = False
    lora_rank: int = 8
    eval_max: int = 0  # test items per task (0: all)
    max_new_tokens: int = 24
    eval_batch_size: int = 8

    def __post_init__(self):
        if self.faithful:
            # The original code: first-N buffers, unshifted logit KD, unmasked sensitivity, all query
            # rows, full-vocabulary logits, the cycle that can turn replay off.
            self.replay_sampling = "first"
            self.query_budget = 0
            self.logit_topk = 0
        self.validate()

    @property
    def shifted_kd(self) -> bool:
        return not self.faithful

    @property
    def masked_sensitivity(self) -> bool:
        return not self.faithful

    def validate(self) -> None:
        if self.method not in METHODS:
            raise HeadwiseError(f"unknown method {self.method!r}; use one of {', '.join(METHODS)}.")
        if not (self.replay > 0) or (self.replay > 1 and self.replay != int(self.replay)):
            raise HeadwiseError(f"replay must be a ratio in (0, 1] or a whole count of samples, got {self.replay}.")
        if self.replay_sampling not in ("random", "first"):
            raise HeadwiseError(f"replay sampling must be 'random' or 'first', got {self.replay_sampling!r}.")
        epochs = self.epochs if isinstance(self.epochs, list) else [self.epochs]
        if not epochs or any(int(e) < 1 for e in epochs):
            raise HeadwiseError(f"epochs must be at least 1, got {self.epochs}.")
        for name in ("batch_size", "grad_accum", "max_len", "checkpoint_every", "max_new_tokens", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise HeadwiseError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}.")
        if self.lr <= 0:
            raise HeadwiseError(f"the learning rate must be positive, got {self.lr}.")
        if not 0 <= self.alpha <= 1:
            raise HeadwiseError(f"alpha must be in [0, 1], got {self.alpha}.")
        for name in ("layer_budget", "head_budget"):
            if getattr(self, name) <= 0:
                raise HeadwiseError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}.")
        if self.replay_cycle is not None and self.replay_cycle < 1:
            raise HeadwiseError(f"--replay-cycle must be a positive number of task steps, got {self.replay_cycle} "
                                "(leave it out for the automatic cycle).")
        if self.query_budget < 0 or self.logit_topk < 0 or self.eval_max < 0:
            raise HeadwiseError("query budget, logit top-k and eval-max must not be negative.")

    def epochs_for(self, task_index: int, num_tasks: int) -> int:
        if isinstance(self.epochs, list):
            if len(self.epochs) != num_tasks:
                raise HeadwiseError(f"{len(self.epochs)} epoch values were given for {num_tasks} tasks.")
            return int(self.epochs[task_index])
        return int(self.epochs)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CLConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise HeadwiseError(f"unknown settings {sorted(unknown)}; known: {', '.join(sorted(known))}.")
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls(**d)


def check_sequence(config: CLConfig, tasks: list) -> None:
    """Refuse settings that do not fit these tasks, before anything is loaded or written."""
    from headwise.cl.buffer import buffer_size
    from headwise.cl.schedule import task_batch_count

    for i, t in enumerate(tasks):
        config.epochs_for(i, len(tasks))
        buffer_size(config.replay, len(t.train), f"task {t.name}", config.faithful)
        # Plain replay mixes its buffer into the task data, so only the distilling methods have a cycle.
        if i and config.replay_cycle and config.method in ("derpp", "seekr"):
            n = task_batch_count(len(t.train), config.batch_size)
            if config.replay_cycle > n:
                raise HeadwiseError(f"--replay-cycle {config.replay_cycle} is more than the {n} task batches of "
                                    f"task {t.name}, so it would never replay; use at most {n}, or leave it out "
                                    "for the automatic cycle.")


def budget_count(budget: float, total: int, what: str) -> int:
    """A budget given as a fraction (< 1) or a count (>= 1), as a count; refuse more than the model has."""
    count = max(1, round(budget * total)) if budget < 1 else int(budget)
    if budget >= 1 and budget != int(budget):
        raise HeadwiseError(f"the {what} budget must be a fraction below 1 or a whole count, got {budget}.")
    if count > total:
        raise HeadwiseError(f"the {what} budget {count} is larger than the model's {total} {what}s.")
    return count
