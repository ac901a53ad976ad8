"""SEEKR's cost on SmolLM2, from one run: training seconds per step against plain replay at the same
ratio, and teacher-store bytes per sample against all heads' maps in float32.

    python benchmarks/seekr_cost.py [--out-dir runs/seekr-cost] [--repeats 5] [--train-items 16] [--lora]

1. A 2-task SEEKR run on the offline Wikipedia tasks (reused if already in --out-dir) leaves task 1's
   teacher shard on disk.
2. With the trained model, a replay micro-step of SEEKR (CE + logit KD + attention KL on the selected
   heads, forward and backward) and a plain replay micro-step (CE on the same samples, as Replay
   trains them) are timed in interleaved rounds, and a new-task step alike; medians are compared.
   Per step of task 2's schedule (new-task steps plus replay steps): seekr / replay, goal <= 1.3.
3. Store: the shard's bytes per buffered sample vs layers x heads x n^2 x 4 bytes (all heads' maps
   in float32, what the original holds before selecting), goal >= 50x smaller.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from headwise.runs import atomic_write, environment


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default="runs/seekr-cost")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--train-items", type=int, default=16, help="Training items per task of the 2-task run.")
    ap.add_argument("--lora", action="store_true", help="Train LoRA adapters instead of all weights.")
    ap.add_argument("--out", default="benchmarks/results/seekr_cost.json")
    args = ap.parse_args()

    from headwise.cl.config import BenchmarkConfig, CLConfig
    from headwise.cl.run import checked_tasks, open_run, trainer
    from headwise.cl.schedule import epoch_steps
    from headwise.models import load_model

    cfg = CLConfig(method="seekr", replay=0.25, epochs=1, batch_size=4, lr=1e-3 if args.lora else 5e-5, lora=args.lora,
                   eval_max=8, max_len=112, max_new_tokens=6, eval_batch_size=16, checkpoint_every=1000)
    bench = BenchmarkConfig(benchmark="wiki", tasks=2, wiki_train=args.train_items, wiki_test=8)
    run = open_run(args.out_dir, "smollm2", "auto", bench, cfg)
    tasks = checked_tasks(bench, [cfg], run.path("data"))
    model, tok = load_model("smollm2")
    cl = trainer(model, tok, tasks, cfg, run)
    result = cl.fit()
    cl.train_model.train()
    pool = cl.replay_pool(1)
    replay_refs = pool[:cfg.batch_size]
    task_refs = [(1, i) for i in range(cfg.batch_size)]

    def step(fn):
        t0 = time.perf_counter()
        fn().backward()
        cl.opt.zero_grad(set_to_none=True)  # timing only: the weights never change
        return time.perf_counter() - t0

    kinds = {"seekr_replay": lambda: cl.method.replay_loss(cl, replay_refs)["loss"],
             "plain_replay": lambda: cl._task_loss([(j, i) for j, i, _ in replay_refs]),
             "task": lambda: cl._task_loss(task_refs)}
    times = {k: [] for k in kinds}
    for fn in kinds.values():
        step(fn)  # warm-up
    for _ in range(args.repeats):
        for k, fn in kinds.items():
            times[k].append(step(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    steps = epoch_steps(len(tasks[1].train), len(pool), cfg.batch_size, cfg.seed, 1, 0, cfg.auto_cycle == "truncate",
                        cfg.replay_cycle)
    n_replay = sum(1 for k, _ in steps if k == "replay")
    n_task = len(steps) - n_replay
    seekr_per_step = (n_task * med["task"] + n_replay * med["seekr_replay"]) / len(steps)
    replay_per_step = (n_task * med["task"] + n_replay * med["plain_replay"]) / len(steps)

    state = run.read_json("state.json")
    lay = cl.layout
    name = tasks[0].name
    items = state["buffers"][name]
    lengths = [len(cl.encoded(tasks[0], i)[0]) for i in items]
    all_heads = sum(lay.num_layers * lay.num_heads * n * n * 4 for n in lengths) / len(items)
    stored = state["store_bytes"][name] / len(items)
    out = {"model": "smollm2", "settings": cfg.to_dict(), "command": "python benchmarks/seekr_cost.py "
           f"--repeats {args.repeats} --train-items {args.train_items}" + (" --lora" if args.lora else ""), "median_step_seconds": med,
           "schedule_task2": {"task_steps": n_task, "replay_steps": n_replay},
           "seekr_vs_replay_per_step": seekr_per_step / replay_per_step,
           "seekr_replay_step_vs_plain_replay_step": med["seekr_replay"] / med["plain_replay"],
           "store_bytes_per_sample": stored, "all_heads_fp32_bytes_per_sample": all_heads,
           "store_reduction": all_heads / stored, "mean_tokens": sum(lengths) / len(lengths),
           "selected_heads": sum(len(h) for h in state["heads"][name].values()),
           "run_op": result["op"], "env": environment()}
    atomic_write(Path(args.out), json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k not in ("env", "settings")}, indent=2))


if __name__ == "__main__":
    main()
