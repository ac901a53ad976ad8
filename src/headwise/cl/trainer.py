"""The continual-learning loop: train task by task, cache teacher signals, evaluate the full matrix.

Everything lands in the run directory: state.json (phase per task, importance, selections,
matrix rows), checkpoint/ (trainable weights, optimizer, position in the schedule; written at task
boundaries and every `checkpoint_every` micro-steps), teacher/ (one shard per task), work/ (the
"before" maps of the task being learned) and results.json, rewritten atomically after every task.
A killed run rerun with the same settings continues from the last checkpoint.

What differs between methods is a strategy object (`headwise.cl.methods`); distribution is always an
Accelerator (one process included), with gradient accumulation through it (`headwise.distributed`).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from headwise import distributed
from headwise.cl import buffer as replay_buffer
from headwise.cl import shared_base
from headwise.cl.config import CLConfig, check_sequence
from headwise.cl.data import Task, collate, encode, pad_id
from headwise.cl.evaluate import score_task
from headwise.cl.losslog import LossLog
from headwise.cl.methods import METHODS
from headwise.cl.metrics import op_standard_error, summarize
from headwise.cl.schedule import epoch_steps, init_seed, lr_factor, step_seed
from headwise.cl.teacher import TeacherShard
from headwise.errors import HeadwiseError
from headwise.heads import layout
from headwise.runs import Run, atomic_write


class Continual:
    """One continual-learning run: `Continual(model, tokenizer, tasks, config, run).fit()`.

    `accelerator`: the Accelerator to train through (default: `headwise.distributed.accelerator`, which follows
    `accelerate launch`, or runs one process).
    """

    def __init__(self, model, tokenizer, tasks: list[Task], config: CLConfig, run: Run,
                 accelerator=None, log: Callable[[str], None] = print, progress: bool = True,
                 base_cache: str | Path | None = None):
        if not tasks:
            raise HeadwiseError("the benchmark has no tasks.")
        self.cfg, self.run, self.tasks, self.tok, self.log = config, run, tasks, tokenizer, log
        self.progress = progress
        self.base_cache = Path(base_cache) if base_cache is not None else None
        self.method = METHODS[config.method]()
        self.acc = accelerator or distributed.accelerator(config.grad_accum)
        self.rank, self.world = self.acc.process_index, self.acc.num_processes
        if config.batch_size % self.world:
            raise HeadwiseError(f"batch size {config.batch_size} does not split over {self.world} processes.")
        self.model = model
        if config.lora:
            from peft import LoraConfig

            from headwise.models import get_peft_model

            # LoRA's A matrices are drawn at random: from the run's seed, so a run is reproducible (0.1.0 drew them
            # from torch's default generator, which is seeded differently in every process).
            with torch.random.fork_rng():
                torch.manual_seed(init_seed(config.seed, "lora"))
                self.model = get_peft_model(model, LoraConfig(r=config.lora_rank, lora_alpha=2 * config.lora_rank,
                                                              target_modules="all-linear", lora_dropout=0.0))
        # headwise.heads works on the transformers model; LoRA adapters sit inside its projections.
        self.core = self.model.get_base_model() if config.lora else self.model
        self.layout = layout(self.core)
        self.pad = pad_id(tokenizer)
        check_sequence(config, tasks)
        self.method.check(self)
        if self.main and not config.lora and any(p.dtype in (torch.float16, torch.bfloat16)
                                                 for p in model.parameters() if p.requires_grad):
            log(f"warning: full fine-tuning of half-precision weights: AdamW steps at lr {config.lr:g} mostly round "
                "away in them; load with --dtype float32 and launch with --mixed_precision bf16 (the reference "
                "trained float32 master weights under DeepSpeed's bf16).")
        self.sharded, self.train_model, self.opt = distributed.prepare(
            self.acc, self.model, self.layout.layers, lambda params: torch.optim.AdamW(
                params, lr=config.lr, betas=tuple(config.betas), weight_decay=config.weight_decay), root=self.core)
        # The accumulation the Accelerator settled on (under DeepSpeed its config's, if it names one).
        self.accum = self.acc.gradient_accumulation_steps
        # The reference states its batch per device (2) x devices (8) x accumulation (8) = 128; so is it logged here.
        self.batch_plan = {"per_process": config.batch_size // self.world, "processes": self.world,
                           "grad_accum": self.accum, "effective": config.batch_size * self.accum}
        if self.main:
            log("batch: {per_process} per process x {processes} processes x {grad_accum} accumulated = {effective} "
                "sequences per optimizer step".format(**self.batch_plan))
        # FSDP 2 swaps parameters for sharded ones; clip and checkpoint the ones that train.
        self.params = [p for p in self.train_model.parameters() if p.requires_grad]
        self.state = run.read_json("state.json") or {"tasks": [t.name for t in tasks], "done": {}, "matrix": [],
                                                      "base": None, "importance": None, "heads": {}, "buffers": {},
                                                      "store_bytes": {}, "timing": {}}
        self._shards: dict[str, TeacherShard] = {}
        self._encoded: dict[tuple[str, int], tuple[list[int], list[int]]] = {}

    # ---- bookkeeping ------------------------------------------------------------------------------

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def computes(self) -> bool:
        """Whether this process runs the file-producing passes: the main one, or all when weights are sharded."""
        return self.main or self.sharded

    def _barrier(self):
        self.acc.wait_for_everyone()

    def _save_state(self):
        if self.main:
            self.run.write_json("state.json", self.state)
            self.run.write_json("results.json", self.results())
        self._barrier()

    def encoded(self, task: Task, i: int) -> tuple[list[int], list[int]]:
        """(token ids, labels) of training item i of a task, cut to max_len from the left; cached."""
        key = (task.name, i)
        if key not in self._encoded:
            self._encoded[key] = encode(self.tok, task.train[i], self.cfg.max_len)
        return self._encoded[key]

    def batch(self, rows) -> dict[str, torch.Tensor]:
        b = collate(rows, self.pad)
        device = next(self.model.parameters()).device
        return {k: v.to(device) for k, v in b.items()}

    def shard(self, j: int) -> TeacherShard:
        """Task j's cached teacher signals."""
        name = self.tasks[j].name
        if name not in self._shards:
            self._shards[name] = TeacherShard(self.run.path("teacher") / f"{name}.safetensors")
        return self._shards[name]

    def _ckpt_dir(self) -> Path:
        return self.run.path("checkpoint")

    def _save_checkpoint(self, progress: dict):
        if self.sharded:
            return self._save_sharded(progress)
        if self.main:
            names = {id(p): n for n, p in self.model.named_parameters()}
            weights = {names[id(p)]: p.detach().cpu().clone() for p in self.params}
            ckpt = {"weights": weights, "optimizer": self.opt.state_dict(), "progress": progress}
            atomic_write(self._ckpt_dir() / "ckpt.pt", lambda tmp: torch.save(ckpt, tmp))
        self._barrier()

    def _save_sharded(self, progress: dict):
        """Every process saves its shard into a new folder; progress.json then names it (written atomically),
        and only after that is the previous folder removed, so a kill at any moment leaves a whole checkpoint."""
        from accelerate.utils import broadcast_object_list

        d = self._ckpt_dir()
        name = broadcast_object_list([f"state-{time.time_ns()}" if self.main else None])[0]
        if self.main:
            d.mkdir(exist_ok=True)
        self._barrier()
        distributed.save_sharded(self.acc, self.train_model, self.opt, d / name)
        self._barrier()
        if self.main:
            self.run.write_json("checkpoint/progress.json", {"progress": progress, "state": name})
            for old in d.glob("state-*"):
                if old.name != name:
                    shutil.rmtree(old, ignore_errors=True)
        self._barrier()

    def _load_checkpoint(self) -> dict | None:
        if self.sharded:
            saved = self.run.read_json("checkpoint/progress.json")
            if saved is None:
                return None
            distributed.load_sharded(self.acc, self.train_model, self.opt, self._ckpt_dir() / saved["state"])
            return saved["progress"]
        path = self._ckpt_dir() / "ckpt.pt"
        if not path.is_file():
            return None
        ck = torch.load(path, map_location="cpu", weights_only=True)
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for n, w in ck["weights"].items():
                params[n].copy_(w.to(params[n].device))
        self.opt.load_state_dict(ck["optimizer"])
        return ck["progress"]

    # ---- the run ----------------------------------------------------------------------------------

    def fit(self, on_step: Callable[[int, str], None] | None = None) -> dict:
        """Run (or resume) the whole sequence; returns the results dict written to results.json."""
        progress = self._load_checkpoint() or {"task": 0, "epoch": 0, "step": 0}
        if self.state["base"] is None:
            self.state["base"] = self._base_row()
            self._save_state()
        elif self.main and "base" in self.state.get("item_scores", {}):
            path = self._base_path()  # a resumed cell offers its row to the cells that still need it
            if path is not None:
                shared_base.store(path, self._base_record())
        for t in range(progress["task"], len(self.tasks)):
            task = self.tasks[t]
            done = self.state["done"].setdefault(task.name, [])
            if "train" not in done:
                start = progress if progress["task"] == t else {"task": t, "epoch": 0, "step": 0}
                self._prepare_buffer(t)
                if self.method.before_maps and "before" not in done:
                    self.method.capture_before(self, t)
                    self._barrier()
                    done.append("before")
                    self._save_state()
                self._train_task(t, start, on_step)
                # The trained weights are what the teacher and evaluation phases read on a resume.
                self._save_checkpoint({"task": t, "epoch": self.cfg.epochs_for(t, len(self.tasks)), "step": 0})
                done.append("train")
                self._save_state()
            if "teacher" not in done and self.method.distils:
                self.method.teacher(self, t)
                self._barrier()
                done.append("teacher")
                self._save_state()
            if "eval" not in done:
                self.state["matrix"].append(self._evaluate_row(f"after {task.name}"))
                done.append("eval")
                self._save_state()
            if self.main:
                shutil.rmtree(self.run.path("work") / task.name, ignore_errors=True)
        if self.main:
            self._plots()
            self.run.finish(self.results())
        self._barrier()
        return self.results()

    def _prepare_buffer(self, t: int):
        task, cfg = self.tasks[t], self.cfg
        if task.name not in self.state["buffers"]:
            self.state["buffers"][task.name] = replay_buffer.select(task.train, cfg.replay, cfg.replay_sampling,
                                                                    cfg.seed, f"task {task.name}",
                                                                    cfg.buffer_sizes == "truncate")

    def replay_pool(self, t: int) -> list[tuple[int, int, int]]:
        """(task index, item index, position in that task's buffer) for every buffered sample of tasks < t."""
        return [(j, item, k) for j in range(t) for k, item in enumerate(self.state["buffers"][self.tasks[j].name])]

    # ---- training -----------------------------------------------------------------------------------

    def _train_task(self, t: int, start: dict, on_step):
        cfg, task = self.cfg, self.tasks[t]
        items, pool = self.method.plan(t, [(t, i) for i in range(len(task.train))], self.replay_pool(t))
        epochs = cfg.epochs_for(t, len(self.tasks))
        timing = self.state["timing"].setdefault(task.name, {"seconds": 0.0, "task_steps": 0, "replay_steps": 0,
                                                            "replay_seconds": 0.0})
        losses = self._loss_log()
        if losses is not None:
            losses.resume_at(t, start["epoch"], start["step"])
        # Every micro-step of this task, across its epochs: the optimizer steps every grad_accum of them and at the
        # task's last one (the Accelerator's accumulation; see distributed.micro_steps). A resume starts after a
        # checkpoint, which is always at an optimizer step, so the steps keep their places and learning rates.
        plan = []
        for epoch in range(epochs):
            steps = epoch_steps(len(items), len(pool), cfg.batch_size, cfg.seed, t, epoch, cfg.auto_cycle == "truncate",
                                cfg.replay_cycle)
            plan += [(epoch, k, len(steps), *steps[k]) for k in range(len(steps))]
        first = next(n for n, p in enumerate(plan + [(epochs, 0)]) if (p[0], p[1]) >= (start["epoch"], start["step"]))
        updates = -(-len(plan) // self.accum)
        self.train_model.train()
        bar, bar_epoch = None, None
        todo = [(n, *p) for n, p in enumerate(plan)][first:]
        for n, epoch, k, n_steps, kind, idx in distributed.micro_steps(todo, self.accum):
            if epoch != bar_epoch:  # one progress bar per epoch
                if bar is not None:
                    bar.close()
                bar, bar_epoch = tqdm(total=n_steps, initial=k, leave=False, unit="step",
                                      desc=f"{task.name} epoch {epoch + 1}/{epochs}",
                                      disable=not (self.main and self.progress)), epoch
            torch.manual_seed(step_seed(cfg.seed, t, epoch, k))
            t0 = time.perf_counter()
            mine = idx[self.rank::self.world]
            # Processes average their gradients, so each one's loss is weighted by its share of the batch
            # (1 on an even split). A last batch smaller than the number of processes leaves some without
            # items: they still run the step (DDP and sharded weights need every process in every
            # backward), on a stand-in item weighted 0.
            weight = len(mine) * self.world / len(idx)
            mine = mine or idx[:1]
            with self.acc.accumulate(self.train_model):
                distributed.gradient_sync(self.acc, self.core)
                if kind == "replay":
                    parts = self.method.replay_loss(self, [pool[i] for i in mine])
                else:
                    parts = {"loss": self._task_loss([items[i] for i in mine])}
                self.acc.backward(parts["loss"] * weight)  # divided by grad_accum by the Accelerator
                grad_norm = self.acc.clip_grad_norm_(self.params, cfg.clip) if self.acc.sync_gradients else None
                self._set_lr(lr_factor(cfg.lr_schedule, n // self.accum, updates, cfg.warmup_steps))
                self.opt.step()  # only where gradients sync, as zero_grad
                self.opt.zero_grad(set_to_none=True)
            record = self._step_record(task.name, epoch, k, kind, parts, weight, grad_norm)
            if losses is not None:
                losses.append(record)
            dt = time.perf_counter() - t0
            timing["seconds"] += dt
            timing[f"{kind}_steps"] += 1
            if kind == "replay":
                timing["replay_seconds"] += dt
            bar.update(1)
            if on_step is not None:
                on_step(k, kind)
            last = k == n_steps - 1 and epoch == epochs - 1
            if self.acc.sync_gradients and (k + 1) % cfg.checkpoint_every == 0 and not last:
                self._save_state()
                self._save_checkpoint({"task": t, "epoch": epoch, "step": k + 1})
        if bar is not None:
            bar.close()
        self.train_model.eval()

    def _set_lr(self, factor: float):
        for group in self.opt.param_groups:
            group["lr"] = self.cfg.lr * factor

    def _loss_log(self) -> LossLog | None:
        return LossLog(self.run.path("losses.jsonl"), [t.name for t in self.tasks]) if self.main else None

    def _step_record(self, task: str, epoch: int, step: int, kind: str, parts: dict, weight: float,
                     grad_norm) -> dict:
        """One losses.jsonl line; under several processes each part is the mean over the processes with items."""
        names = [n for n in ("loss", "ce", "kd", "attn") if parts.get(n) is not None]
        values = torch.stack([weight * parts[n].detach().float().reshape(()).cpu() for n in names] +
                             [torch.tensor(weight)])
        values = self.acc.reduce(values.to(self.acc.device), reduction="sum").cpu()
        values = (values[:-1] / values[-1]).tolist()
        rec = {"task": task, "epoch": epoch, "step": step, "kind": kind, **dict(zip(names, values))}
        if hasattr(grad_norm, "full_tensor"):  # a DTensor under FSDP 2
            grad_norm = grad_norm.full_tensor()
        norm = None if grad_norm is None else float(grad_norm)
        rec |= {"grad_norm": norm, "clipped": norm is not None and norm > self.cfg.clip}
        if norm is not None:  # an optimizer step: the learning rate it took (--lr-schedule)
            rec["lr"] = self.opt.param_groups[0]["lr"]
        if kind == "replay":
            rec.setdefault("attn", None)
            rec["attn_weighted"] = None if rec["attn"] is None else self.cfg.lam * rec["attn"]
        return rec

    def _task_loss(self, refs: list[tuple[int, int]]) -> torch.Tensor:
        b = self.batch([self.encoded(self.tasks[j], i) for j, i in refs])
        return self.train_model(**b, use_cache=False).loss

    # ---- evaluation ---------------------------------------------------------------------------------

    def _base_path(self) -> Path | None:
        # One process only: a sharded evaluation is a collective, which a lock held by one process would split.
        if self.base_cache is None or self.world > 1:
            return None
        return self.base_cache / f"{shared_base.base_key(self.core, self.tok, self.tasks, self.cfg)}.json"

    def _base_record(self) -> dict:
        return {"row": self.state["base"], "items": self.state["item_scores"]["base"],
                "examples": self.state.get("examples", {}).get("base", {})}

    def _base_row(self) -> list[float]:
        """The untrained model's row: evaluated, or read from the table's shared rows (`headwise.cl.shared_base`)."""
        path = self._base_path()
        if path is None:
            return self._evaluate_row("base")
        computed = []

        def compute() -> dict:
            computed.append(True)
            self.state["base"] = self._evaluate_row("base")
            return self._base_record()

        record = shared_base.shared_row(path, compute)
        self.state.setdefault("item_scores", {})["base"] = record["items"]
        self.state.setdefault("examples", {})["base"] = record["examples"]
        if not computed:
            self.log("base: " + "  ".join(f"{t.name} {s:.3f}" for t, s in zip(self.tasks, record["row"]))
                     + f" (the table's shared row, {path.name})")
        return record["row"]

    def _evaluate_row(self, label: str) -> list[float] | None:
        row, items = None, None
        if self.computes:
            self.core.eval()
            row, examples, items = [], {}, []
            for task in self.tasks:
                score, records = score_task(self.core, self.tok, task, self.cfg.max_new_tokens, self.cfg.max_len,
                                            self.cfg.eval_batch_size, self.cfg.eval_max)
                row.append(score)
                examples[task.name] = records[:3]
                items.append([r["score"] for r in records])
            if self.main:
                self.log(f"{label}: " + "  ".join(f"{t.name} {s:.3f}" for t, s in zip(self.tasks, row)))
                self.state.setdefault("examples", {})[label] = examples

        from accelerate.utils import broadcast_object_list

        row, items = broadcast_object_list([row, items])
        # Per-item scores, on every process (results() reads them): OP's standard error, item-paired differences.
        self.state.setdefault("item_scores", {})[label] = items
        return row

    def results(self) -> dict:
        names = [t.name for t in self.tasks]
        out = {"tasks": names, "method": self.cfg.method, "matrix": self.state["matrix"], "base": self.state["base"],
               "heads": self.state["heads"], "buffer_sizes": {k: len(v) for k, v in self.state["buffers"].items()},
               "teacher_store_bytes": self.state["store_bytes"], "timing": self.state["timing"],
               "batch": self.batch_plan,
               "complete": len(self.state["matrix"]) == len(names)}
        if out["complete"]:
            out |= summarize(self.state["matrix"], self.state["base"])
            last = self.state.get("item_scores", {}).get(f"after {names[-1]}")
            out["op_se"] = op_standard_error(last) if last else None  # None for runs made before 0.2
        else:
            out |= {"op": None, "bwt": None, "bwt_paper": None, "fwt": None}
        return out

    def _plots(self):
        from headwise.cl import losslog
        from headwise.plots import heatmap, score_matrix

        names = [t.name for t in self.tasks]
        if self.state["matrix"]:
            score_matrix(self.state["matrix"], names, self.run.path("matrix.png"), base=self.state["base"],
                         title=f"{self.cfg.method}: score on each task after learning each task")
        records = losslog.read(self.run.path("losses.jsonl"))
        if records:
            losslog.plot(records, names, self.run.path("losses.png"))
        if self.state.get("importance"):
            last = self.state["heads"][self.tasks[-1].name] if self.tasks[-1].name in self.state["heads"] else {}
            heatmap(self.state["importance"], self.run.path("importance.png"), "SEEKR cumulative head importance",
                    "importance", marks=[(int(l), h) for l, hs in last.items() for h in hs],
                    marks_label="heads selected after the last task")
