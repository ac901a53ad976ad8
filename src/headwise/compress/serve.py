"""Serving: a request -> StratNet forward (plus bisection for target sparsities) -> feasible strategy -> prune,
measure, optionally save. No search and no true evaluation happen per request."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from headwise.compress import stratnet as sn
from headwise.compress.calibration import Calibration
from headwise.compress.config import CalibConfig
from headwise.compress.objectives import Evaluator
from headwise.compress.strategy import fingerprint, preference_for_sparsity, project
from headwise.errors import HeadwiseError
from headwise.runs import read_jsonl, write_jsonl


SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
# StratNets shipped in the package, by name (as --model takes aliases): name -> folder under shipped/.
SHIPPED = {"smollm2": "smollm2-unstructured", "gemma3-270m": "gemma3-270m-unstructured"}


def stratnet_dir(spec: str | Path) -> Path:
    """The folder of a StratNet given as a shipped name (`smollm2`, or its folder's name) or a directory."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    names = {**SHIPPED, **{folder: folder for folder in SHIPPED.values()}}
    if str(spec) in names:
        return SHIPPED_DIR / names[str(spec)]
    shipped = ", ".join(f"{name} ({folder})" for name, folder in SHIPPED.items())
    if path.exists():
        raise HeadwiseError(f"--stratnet {spec} is a file; give a shipped StratNet's name ({shipped}) or a "
                            "`headwise compress fit` run directory.")
    if len(path.parts) > 1 or str(spec).startswith((".", "~")):
        raise HeadwiseError(f"--stratnet {spec} does not exist; give a shipped StratNet's name ({shipped}) or a "
                            "`headwise compress fit` run directory.")
    raise HeadwiseError(f"no shipped StratNet is named {str(spec)!r}; the shipped ones are {shipped}, or give a "
                        "`headwise compress fit` run directory.")


class Server:
    """A trained StratNet with what it was trained for (model fingerprint, space, calibration settings, which
    name its pruning method; StratNets saved before the method existed are Wanda's)."""

    def __init__(self, stratnet: str | Path):
        """`stratnet`: a shipped StratNet's name (see SHIPPED) or a directory holding one."""
        self.net, self.meta = sn.load(stratnet_dir(stratnet))
        self.space = self.meta["space"]
        self.calib_config = CalibConfig.from_dict(self.meta["calibration"])

    def check_model(self, model) -> None:
        mine, theirs = self.meta["fingerprint"], fingerprint(model)
        if mine != theirs:
            raise HeadwiseError(f"this StratNet was trained for {self.meta['model']!r} "
                                f"({mine['model_type']}, {mine['num_layers']} layers), not for the model given.")

    @torch.no_grad()
    def strategy(self, request: dict) -> tuple[list[float], list[float]]:
        """(strategy, preference used) for a checked request (see strategy.read_requests)."""
        if "sparsity" in request:
            pref = preference_for_sparsity(self.net, request["sparsity"])
            target = request["sparsity"]
        else:
            pref, target = tuple(request["preference"]), None
        x = self.net(torch.tensor([pref], dtype=torch.float64))[0]
        return project(x, self.space, target, upper=self.net.max_ratio), [round(v, 6) for v in pref]


def save_pruned(model, tokenizer, directory: Path) -> None:
    """save_pretrained of the model as it is now (pruned), with its tokenizer, as safetensors."""
    from headwise.runs import save_pretrained

    save_pretrained(directory, model, *([tokenizer] if hasattr(tokenizer, "save_pretrained") else []))


def serve(model, tokenizer, server: Server, requests: list[dict], calib: Calibration, run, save: bool = False,
          ppl: bool = True, progress: bool = True, score: Callable[[Any], dict] | None = None) -> list[dict]:
    """Answer every request; results.jsonl in `run` gets one line per request (resumable: answered ids are kept).
    `score`: model -> more scores of each pruned model (lm-eval's), kept in its row as "lm_eval"."""
    from tqdm.auto import tqdm

    server.check_model(model)
    ev = Evaluator.for_config(model, calib, server.space, server.calib_config)
    path = run.path("results.jsonl")
    done = {row["id"]: row for row in read_jsonl(path)}  # a line cut short by a kill is redone
    rows = []
    for req in tqdm(requests, desc="requests", disable=not progress):
        if req["id"] in done and (not save or (run.dir / req["id"] / "config.json").is_file()):
            rows.append(done[req["id"]])
            continue
        t0 = time.perf_counter()
        strategy, pref = server.strategy(req)
        with ev.applied(strategy) as sparsity:
            t_apply = time.perf_counter() - t0
            m = ev.measure_applied(ppl) | ({"lm_eval": score(model)} if score is not None else {})
            if save:
                save_pruned(model, tokenizer, run.dir / req["id"])
        row = {"id": req["id"], "request": {k: v for k, v in req.items() if k != "id"}, "preference_used": pref, "strategy": strategy, "sparsity": sparsity, **m,
               "seconds_to_strategy_and_prune": t_apply}
        rows.append(row)
        done[req["id"]] = row
        write_jsonl(path, [done[r["id"]] for r in rows])
    return rows
