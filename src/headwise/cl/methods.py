"""The continual-learning methods as small strategy objects, one registration line each.

The trainer (`headwise.cl.trainer.Continual`) owns the loop, the data, the checkpoints and the processes;
a method says what differs: what a task trains on, what a replay step's loss is, and what it computes
around a task (SEEKR's maps before, the teacher signals after). Adding a method is a subclass and a line
in `METHODS`.
"""

from __future__ import annotations

import random
import time
from typing import ClassVar

import torch

from headwise.cl.importance import (buffer_length, capture_all_maps, forgettability, normalize_layers, query_rows,
                                    select_heads, sensitivity_and_maps)
from headwise.cl.losses import attention_kl, kd_positions, logit_kd
from headwise.cl.teacher import topk_logprobs, write_shard
from headwise.heads import attention_maps


class SeqFT:
    """Sequential fine-tuning: each task on its own data, nothing replayed (the lower bound)."""

    name: ClassVar[str] = "seqft"
    distils: ClassVar[bool] = False  # teacher signals are cached after each task, and replay steps distil them
    before_maps: ClassVar[bool] = False  # attention maps are captured before each task (SEEKR's forgettability)

    def check(self, trainer) -> None:
        """Refuse settings this method cannot run with on the trainer's model, before any work."""

    def plan(self, t: int, own: list[tuple[int, int]], pool: list[tuple[int, int, int]]):
        """(what task t trains on, the replay pool its replay steps draw from)."""
        return own, []

    def replay_loss(self, trainer, refs: list[tuple[int, int, int]]) -> dict[str, torch.Tensor]:
        raise NotImplementedError(f"{self.name} has no replay steps")

    def capture_before(self, trainer, t: int) -> None:
        """Before task t is learned (only when `before_maps`)."""

    def teacher(self, trainer, t: int) -> None:
        """After task t is learned (only when `distils`): cache what its replay steps will distil."""


class Replay(SeqFT):
    """Plain replay (the paper's baseline script): the old tasks' buffers concatenated with the new data."""

    name = "replay"

    def plan(self, t, own, pool):
        return own + [(j, i) for j, i, _ in pool], []


class DerPP(SeqFT):
    """DER++: replay steps of (1 - kd_weight) CE + kd_weight logit distillation from each task's own model."""

    name = "derpp"
    distils = True

    def plan(self, t, own, pool):
        return own, pool

    def replay_loss(self, trainer, refs):
        """(1 - kd_weight) CE + kd_weight KD (+ lambda attention KL for SEEKR), with each part kept for the log."""
        cfg = trainer.cfg
        rows = [trainer.encoded(trainer.tasks[j], i) for j, i, _ in refs]
        batch = trainer.batch(rows)
        teachers = [trainer.shard(j).sample(k) for j, _, k in refs]
        out, attn = self.forward(trainer, batch, rows, teachers)
        kd = logit_kd(out.logits, kd_positions(batch["labels"], cfg.kd_positions == "shifted"), teachers)
        loss = (1 - cfg.kd_weight) * out.loss + cfg.kd_weight * kd
        if attn is not None:
            loss = loss + cfg.lam * attn.to(loss.device)
        return {"loss": loss, "ce": out.loss, "kd": kd, "attn": attn}

    def forward(self, trainer, batch, rows, teachers):
        return trainer.train_model(**batch, use_cache=False), None

    def teacher(self, trainer, t):
        """With the model just trained on t: teacher logits on t's buffer, written as its teacher shard."""
        if not trainer.computes:
            return
        cfg, task = trainer.cfg, trainer.tasks[t]
        items = trainer.state["buffers"][task.name]
        queries = self.queries(trainer, t)  # recorded in the shard, as SEEKR's are
        trainer.core.eval()
        logits, t0 = [], time.perf_counter()
        for i in items:
            ids, labels = trainer.encoded(task, i)
            pos = kd_positions(torch.tensor([labels]), cfg.kd_positions == "shifted")[0]
            with torch.no_grad():
                lg = trainer.core(input_ids=torch.tensor([ids], device=next(trainer.core.parameters()).device),
                                  use_cache=False).logits[0].float().cpu()
            logits.append(topk_logprobs(lg[pos], cfg.logit_topk))
        if trainer.main:
            samples = [{"maps": {}, "queries": q, "logits": lg} for q, lg in zip(queries, logits)]
            self.write(trainer, t, {}, samples, time.perf_counter() - t0)

    def queries(self, trainer, t: int) -> list[list[int] | None]:
        """The query rows of each buffered sample of task t (seeded by the run's seed and the task's name)."""
        cfg, task = trainer.cfg, trainer.tasks[t]
        rng = random.Random(f"{cfg.seed}:queries:{task.name}")
        return [query_rows(len(trainer.encoded(task, i)[0]), cfg.query_budget, rng, cfg.short_queries == "resample")
                for i in trainer.state["buffers"][task.name]]

    def write(self, trainer, t: int, heads: dict[int, list[int]], samples: list[dict], seconds: float) -> None:
        task = trainer.tasks[t]
        trainer.state["heads"][task.name] = {str(l): h for l, h in heads.items()}
        trainer.state["store_bytes"][task.name] = write_shard(
            trainer.run.path("teacher") / f"{task.name}.safetensors", task.name, trainer.state["buffers"][task.name],
            heads, samples)
        trainer.state["timing"].setdefault(task.name, {})["teacher_seconds"] = seconds


class Seekr(DerPP):
    """SEEKR (He et al., EMNLP 2024): DER++ plus attention distillation on the heads that were most changed by
    learning a task (forgettability) and matter most to its loss (task sensitivity), chosen under budgets."""

    name = "seekr"
    before_maps = True

    def check(self, trainer):
        lay = trainer.layout  # impossible budgets are refused before any work
        select_heads(torch.zeros(lay.num_layers, lay.num_heads), trainer.cfg.layer_budget, trainer.cfg.head_budget)

    def forward(self, trainer, batch, rows, teachers):
        union: dict[int, set[int]] = {}
        for tt in teachers:
            for l, hs in tt["heads"].items():
                union.setdefault(l, set()).update(hs)
        heads = {l: sorted(hs) for l, hs in union.items()}
        with attention_maps(trainer.core, heads, differentiable=True) as maps:
            out = trainer.train_model(**batch, use_cache=False)
        return out, attention_kl(maps.maps, heads, teachers, [len(ids) for ids, _ in rows])

    def capture_before(self, trainer, t):
        """The maps of task t's buffer under the model before learning t, on disk (float32, all heads)."""
        task = trainer.tasks[t]
        d = trainer.run.path("work") / task.name
        if trainer.computes:
            d.mkdir(parents=True, exist_ok=True)
            trainer.core.eval()
            for k, (i, rows) in enumerate(zip(trainer.state["buffers"][task.name], self.queries(trainer, t))):
                maps = capture_all_maps(trainer.core, trainer.encoded(task, i)[0], rows)
                if trainer.main:
                    torch.save(maps, d / f"before{k}.pt")

    def teacher(self, trainer, t):
        """S and F on t's buffer, the cumulative importance, the selection, and the teacher shard holding only
        what replay will need (the selected heads' maps at the sampled rows, top-k logits)."""
        if not trainer.computes:
            return
        cfg, task = trainer.cfg, trainer.tasks[t]
        items = trainer.state["buffers"][task.name]
        queries = self.queries(trainer, t)
        trainer.core.eval()
        work = trainer.run.path("work") / task.name
        lay = trainer.layout
        sens = torch.zeros(lay.num_layers, lay.num_heads)
        forget = torch.zeros_like(sens)
        logits, t0 = [], time.perf_counter()
        # The original scores each sample as a row of the whole buffer padded to its longest (importance_padding).
        padded = (buffer_length(len(trainer.encoded(task, i)[0]) for i in items)
                  if cfg.importance_padding == "buffer" else None)
        for k, i in enumerate(items):
            ids, labels = trainer.encoded(task, i)
            pos = kd_positions(torch.tensor([labels]), cfg.kd_positions == "shifted")[0]
            s, after, lg = sensitivity_and_maps(trainer.core, ids, labels, queries[k],
                                                cfg.sensitivity_entries == "valid", padded=padded, pad_id=trainer.pad)
            if trainer.main:
                sens += s / len(items)
                before = torch.load(work / f"before{k}.pt", weights_only=True)
                forget += forgettability(before, after, padded=padded, every_row=cfg.query_budget == 0) / len(items)
                torch.save(after.half(), work / f"after{k}.pt")
            logits.append(topk_logprobs(lg[pos], cfg.logit_topk))
        if not trainer.main:
            return
        seconds = time.perf_counter() - t0
        state = trainer.state
        imp = torch.tensor(state["importance"]) if state["importance"] else torch.zeros_like(sens)
        imp = imp + normalize_layers(sens) * forget
        heads = select_heads(imp, cfg.layer_budget, cfg.head_budget)
        state["importance"] = imp.tolist()
        state.setdefault("sensitivity", {})[task.name] = normalize_layers(sens).tolist()
        state.setdefault("forgettability", {})[task.name] = forget.tolist()
        samples = []
        for k in range(len(items)):
            after = torch.load(work / f"after{k}.pt", weights_only=True)
            samples.append({"maps": {l: after[l, hs] for l, hs in heads.items()}, "queries": queries[k],
                            "logits": logits[k]})
        self.write(trainer, t, heads, samples, seconds)


METHODS: dict[str, type[SeqFT]] = {m.name: m for m in (SeqFT, Replay, DerPP, Seekr)}
