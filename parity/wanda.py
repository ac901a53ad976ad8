"""Parity of headwise's Wanda and SparseGPT with locuslab/wanda (`lib/prune.py`, `lib/sparsegpt.py`).

    .venv/bin/python parity/wanda.py [RUN ...]  # regenerate parity/goldens/wanda.json and print the comparison;
                                                # RUN: wanda-50, sparsegpt-50, wanda-2:4, sparsegpt-2:4 (default:
                                                # all; the golden keeps the other runs' figures)

The reference runs in its own virtual environment (parity/.venvs/wanda: torch 2.13.0 CPU, transformers 4.44.2)
on SmolLM2-135M-Instruct (headwise's offline asset) at 50% unstructured and at 2:4, every run on the same
calibration tokens: parity/inputs/wanda_tokens.safetensors, built once by headwise's calibration
(`CalibConfig` below: wiki-en train windows) with held-out windows of the wiki-en test split for perplexity.
headwise then prunes the same model on the same tokens, sequentially (the faithful preset: `inputs =
"sequential"`, `rounding = "floor"`) and one-shot from the dense model (the default `inputs`, floor rounding),
at 2:4 with `pattern = "2:4"`, and every pruned model is scored
by headwise's `perplexity` on the held-out windows. headwise's figures are cached per run under
parity/.venvs/headwise-outputs/, keyed by the tokens and the source of headwise.compress.

The golden keeps, per run, the reference's wall time, perplexity and per-linear mask summary (zeros, the sha256
of the packed mask) plus the packed masks of a fixed sample of rows (`SAMPLE_ROWS` per linear), which
tests/parity/test_wanda.py compares with headwise's masks in CI; `measured` keeps the full-mask figures of
headwise at generation time, which docs/parity.md quotes.

Where the repository is looked for: $PARITY_REPOS/locuslab+wanda, parity/.refs/locuslab+wanda, else it is
cloned from GitHub; without it the script stops with one sentence and exit status 2.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

REPO = "locuslab/wanda"
COMMIT = "8e8fc87b4a2f9955baa7e76e64d5fce7fa8724a6"
REQUIREMENTS = ["torch==2.13.0", "transformers==4.44.2", "datasets==2.21.0"]
TOKENS = harness.INPUTS / "wanda_tokens.safetensors"
NAME = "wanda"
SCRIPT = "wanda.py"
SAMPLE_ROWS = 8
# (method, sparsity, prune_n, prune_m), as main.py's --prune_method, --sparsity_ratio, --sparsity_type.
RUNS = {"wanda-50": ("wanda", 0.5, 0, 0), "sparsegpt-50": ("sparsegpt", 0.5, 0, 0),
        "wanda-2:4": ("wanda", 0.5, 2, 4), "sparsegpt-2:4": ("sparsegpt", 0.5, 2, 4)}
LINES = {"wanda": "lib/prune.py:127-210 (prune_wanda), lib/layerwrapper.py:27-35 (WrappedGPT.add_batch)",
         "sparsegpt": "lib/prune.py:213-301 (prune_sparsegpt), lib/sparsegpt.py:40-116 (SparseGPT.fasterprune)"}


def calib_config():
    """The calibration of every run: 8 windows of 256 wiki-en train tokens (2,048 tokens, more than the widest
    input, 1,536, so SparseGPT's Hessians are full rank), 8 held-out windows of the test split. Small, so that
    the CI test reruns headwise's side within a minute."""
    from headwise.compress.config import CalibConfig

    return CalibConfig(data="wiki-en", seq_len=256, windows=8, ppl_windows=8, batch_size=4)


def build_tokens(tokenizer) -> Path:
    """parity/inputs/wanda_tokens.safetensors from headwise's calibration windows, written once."""
    from safetensors.torch import save_file

    from headwise.compress.calibration import texts
    from headwise.eval.perplexity import token_windows

    cfg = calib_config()
    cal, test = texts(cfg.data)
    ids = token_windows(tokenizer, cal, cfg.seq_len, cfg.windows)
    ppl_ids = token_windows(tokenizer, test, cfg.seq_len, cfg.ppl_windows)
    TOKENS.parent.mkdir(parents=True, exist_ok=True)
    save_file({"ids": ids.contiguous(), "ppl_ids": ppl_ids.contiguous()}, str(TOKENS))
    return TOKENS


def load_tokens() -> tuple[torch.Tensor, torch.Tensor]:
    from safetensors.torch import load_file

    t = load_file(str(TOKENS))
    return t["ids"], t["ppl_ids"]


def block_weights(model) -> dict[str, torch.Tensor]:
    """'block.linear' -> the weight as [out, in], the reference's names (find_layers inside each layer)."""
    from headwise.compress.calibration import block_linears

    return {f"{b}.{name}": (m.weight.t() if type(m).__name__ == "Conv1D" else m.weight).detach().clone()
            for b, linears in enumerate(block_linears(model)) for name, m in linears}


def set_weights(model, weights: dict[str, torch.Tensor]) -> None:
    from headwise.compress.calibration import block_linears

    for b, linears in enumerate(block_linears(model)):
        for name, m in linears:
            m.weight.data.copy_(weights[f"{b}.{name}"])


def sample_rows(key: str, rows: int) -> list[int]:
    """The rows of one linear whose masks the golden keeps: SAMPLE_ROWS evenly strided, offset by the block."""
    stride = max(rows // SAMPLE_ROWS, 1)
    return list(range(int(key.split(".")[0]) % stride, rows, stride))[:SAMPLE_ROWS]


def pack(mask: torch.Tensor) -> bytes:
    return np.packbits(mask.numpy().astype(bool), axis=None).tobytes()


def mask_summary(weights: dict[str, torch.Tensor]) -> dict:
    """Per linear: zeros and the sha256 of the packed mask; all sampled rows' packed masks, gzipped, base64."""
    layers, sample = {}, []
    for key in sorted(weights):  # one order for packing and unpacking, whatever order the weights come in
        mask = weights[key] == 0
        layers[key] = {"zeros": int(mask.sum()), "sha256": hashlib.sha256(pack(mask)).hexdigest()}
        sample.append(pack(mask[sample_rows(key, mask.shape[0])]))
    return {"layers": layers, "sample": base64.b64encode(gzip.compress(b"".join(sample), mtime=0)).decode()}


def sampled_masks(summary_or_weights, shapes: dict[str, tuple[int, int]]) -> dict[str, torch.Tensor]:
    """The sampled rows' masks per linear, from a golden's summary or from weights."""
    if isinstance(summary_or_weights, dict) and "sample" in summary_or_weights:
        raw = np.frombuffer(gzip.decompress(base64.b64decode(summary_or_weights["sample"])), dtype=np.uint8)
        out, at = {}, 0
        for key in sorted(shapes):
            rows, cols = shapes[key]
            n = len(sample_rows(key, rows)) * cols
            nbytes = (n + 7) // 8
            bits = np.unpackbits(raw[at:at + nbytes])[:n]
            out[key] = torch.from_numpy(bits.reshape(-1, cols).astype(bool))
            at += nbytes
        return out
    return {k: (w == 0)[sample_rows(k, w.shape[0])] for k, w in summary_or_weights.items()}


def agreement(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[float, dict[str, float]]:
    """(overall, per linear) fraction of mask entries on which two sets of masks agree."""
    per = {k: float((a[k] == b[k]).float().mean()) for k in a}
    same = sum(int((a[k] == b[k]).sum()) for k in a)
    return same / sum(a[k].numel() for k in a), per


def rel_diff(a: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> tuple[float, dict[str, float]]:
    """(overall, per linear) ||a - ref||_F / ||ref||_F."""
    per = {k: float((a[k] - ref[k]).norm() / ref[k].norm()) for k in ref}
    num = sum(float((a[k] - ref[k]).pow(2).sum()) for k in ref)
    return (num / sum(float(ref[k].pow(2).sum()) for k in ref)) ** 0.5, per


def per_block(per_linear: dict[str, float], sizes: dict[str, int]) -> list[float]:
    """Per-linear figures averaged into one per decoder block, weighted by the linears' sizes."""
    blocks: dict[int, list[float]] = {}
    for k, v in per_linear.items():
        acc = blocks.setdefault(int(k.split(".")[0]), [0.0, 0.0])
        acc[0] += v * sizes[k]
        acc[1] += sizes[k]
    return [round(s / n, 6) for _, (s, n) in sorted(blocks.items())]


def pattern_of(key: str) -> str:
    """headwise's `CalibConfig.pattern` for run `key`."""
    _, _, n, m = RUNS[key]
    return f"{n}:{m}" if n else "unstructured"


# headwise's modes compared with the reference: "sequential" (the faithful preset) and "dense" (the default).
MODES = ("sequential", "dense")


def headwise_prune(model, ids: torch.Tensor, method: str, mode: str, ratio: float = 0.5,
                   blocks: int | None = None, pattern: str = "unstructured"):
    """headwise's pruner on the same tokens: (its pruner, with the model pruned; seconds). `mode` (MODES)
    "sequential" prunes block after block, as the reference (the faithful preset); "dense" collects the statistics
    once on the dense model. `blocks`: prune only the first ones (a test's shortcut: a block's sequential masks
    depend on the blocks before it)."""
    from headwise.compress import sequential
    from headwise.compress.calibration import Calibration, Recorder, block_linears, dense_logp
    from headwise.compress.objectives import PRUNERS

    n = len(block_linears(model))
    ratios = [ratio if blocks is None or b < blocks else 0.0 for b in range(n)]
    t0 = time.perf_counter()
    if mode == "sequential":
        # One window per call, as the reference: a batch of 4 rounds the block outputs differently.
        pruner = sequential.prune(model, ids, ratios, method, "floor", 1, pattern)
    else:
        if blocks is None:
            with Recorder(block_linears(model), method == "sparsegpt") as rec:
                dense_logp(model, ids, 4)
            calib = Calibration(ids, torch.empty(0), rec.norms(), torch.empty(0), rec.hessians())
        else:
            # The first blocks' one-shot statistics without the rest of the dense pass: the same batches of 4
            # through the same dense blocks as dense_logp, so the same numbers (tests/parity checks it).
            calib = first_blocks_statistics(model, ids, method == "sparsegpt", blocks)
        pruner = PRUNERS[method](model, calib, "floor", pattern)
        pruner.apply(ratios)
    return pruner, time.perf_counter() - t0


@torch.no_grad()
def first_blocks_statistics(model, ids: torch.Tensor, hessians: bool, blocks: int):
    """One-shot calibration statistics (dense model, batches of 4) of the first `blocks` blocks; the later
    blocks' are empty, so a pruner may only prune the first ones."""
    from headwise.compress import sequential
    from headwise.compress.calibration import Calibration, Recorder, block_linears
    from headwise.heads.layout import layout

    linears, layers = block_linears(model), layout(model).layers
    hidden, calls = sequential.block_calls(model, ids, 4, blocks - 1)
    with Recorder(linears[:blocks], hessians) as rec:
        for b in range(blocks):
            hidden = sequential.run_block(layers[b], hidden, calls[b])
    def rest():  # the later blocks' statistics: empty, and not shared between norms and Hessians
        return [{} for _ in linears[blocks:]]
    return Calibration(ids, torch.empty(0), rec.norms() + rest(), torch.empty(0),
                       rec.hessians() + rest() if hessians else None)


def ppl(model, ppl_ids: torch.Tensor) -> float:
    from headwise.eval.perplexity import perplexity

    return perplexity(model, ppl_ids, batch_size=4)


def compare(model, ids, ppl_ids, key: str, inputs: str, ref: dict[str, torch.Tensor], run: dict) -> dict:
    """headwise's pruner against one reference run: full-mask agreement (overall, per block), the same on the
    golden's sampled rows (what the CI test can recompute), perplexity, time, and for SparseGPT the relative
    weight difference."""
    method = RUNS[key][0]
    sizes = {k: w.numel() for k, w in ref.items()}
    pruner, seconds = headwise_prune(model, ids, method, inputs, pattern=pattern_of(key))
    ours = block_weights(model)
    row = {"seconds": round(seconds, 2), "ppl": ppl(model, ppl_ids)}
    pruner.restore()
    overall, per = agreement({k: w == 0 for k, w in ours.items()}, {k: w == 0 for k, w in ref.items()})
    shapes = {k: tuple(w.shape) for k, w in ours.items()}
    mine, theirs = sampled_masks(ours, shapes), sampled_masks(run, shapes)
    first = [k for k in ours if int(k.split(".")[0]) < 2]
    row.update(agreement=overall, agreement_per_block=per_block(per, sizes), ppl_rel=row["ppl"] / run["ppl"] - 1,
               sampled_agreement=agreement(mine, theirs)[0],
               sampled_agreement_first_blocks=agreement({k: mine[k] for k in first}, {k: theirs[k] for k in first})[0])
    if method == "sparsegpt":
        diff, per_diff = rel_diff(ours, ref)
        row.update(rel_weight_diff=diff, rel_weight_diff_per_block=per_block(per_diff, sizes))
    print(f"  headwise {inputs}: agreement {overall:.6f}, ppl {row['ppl']:.4f} ({100 * row['ppl_rel']:+.3f}%), "
          f"{seconds:.1f} s" + (f", rel. weight diff {row['rel_weight_diff']:.4f}" if method == "sparsegpt" else ""),
          flush=True)
    return row


def cached_run(py: Path, runner: str, key: str, pins: list[str], payload: dict) -> tuple[dict, Path]:
    """(the runner's answer, the pruned weights it wrote) for run `key`, reused from parity/.venvs/RUNNER-outputs/
    when it was made on the same tokens and pins (commit, requirements): the runs take minutes each on a CPU."""
    method, sparsity, n, m = RUNS[key]
    tag = hashlib.sha256(" ".join([harness.sha256(TOKENS), *pins, key]).encode()).hexdigest()[:16]
    out = harness.VENVS / f"{runner}-outputs" / f"{key.replace(':', '-')}-{tag}.safetensors"
    answer = out.with_suffix(".json")
    if out.is_file() and answer.is_file():
        return json.loads(answer.read_text()), out
    out.parent.mkdir(parents=True, exist_ok=True)
    got = harness.run_in(py, runner, {**payload, "tokens": str(TOKENS), "method": method, "sparsity": sparsity,
                                      "prune_n": n, "prune_m": m, "out": str(out)}, timeout=7200)
    answer.write_text(json.dumps(got))
    return got, out


def run_reference(py: Path, repo: Path, model_dir: Path, key: str) -> tuple[dict, Path]:
    """locuslab/wanda's run `key` (RUNS): (the runner's answer, the pruned weights)."""
    return cached_run(py, "wanda", key, [COMMIT, *REQUIREMENTS], {"repo": str(repo), "model_dir": str(model_dir)})


def cached_compare(model, ids, ppl_ids, key: str, inputs: str, ref: dict[str, torch.Tensor], run: dict) -> dict:
    """`compare`, reused from parity/.venvs/headwise-outputs/ when made on the same tokens, reference run and
    source of headwise.compress (a SparseGPT comparison takes tens of minutes on a CPU)."""
    src = sorted((harness.ROOT / "src" / "headwise" / "compress").glob("*.py"))
    tag = hashlib.sha256(" ".join([harness.sha256(TOKENS), *map(harness.sha256, src), key, inputs,
                                   json.dumps(run["layers"], sort_keys=True)]).encode()).hexdigest()[:16]
    path = harness.VENVS / "headwise-outputs" / f"{key.replace(':', '-')}-{inputs}-{tag}.json"
    if path.is_file():
        return json.loads(path.read_text())
    row = compare(model, ids, ppl_ids, key, inputs, ref, run)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row))
    return row


def previous_outputs(name: str = NAME, script: str = SCRIPT) -> dict:
    """The golden's outputs when it was made on today's tokens (a run not asked for keeps its figures)."""
    try:
        return harness.load_golden(name, script)["outputs"]
    except AssertionError:
        return {}


def main() -> None:
    from safetensors.torch import load_file

    from headwise.assets.registry import is_present, smollm2_dir
    from headwise.models import load_model

    keys = sys.argv[1:] or list(RUNS)
    if unknown := set(keys) - set(RUNS):
        raise SystemExit(f"parity: unknown run {sorted(unknown)[0]!r}; use some of {', '.join(RUNS)}.")
    if not is_present("smollm2"):
        raise harness.Unavailable("the SmolLM2 asset is missing: run `headwise assets fetch --only smollm2`.")
    repo = harness.repo_at(REPO, COMMIT, ["lib"])
    py = harness.venv(NAME, REQUIREMENTS)
    torch.set_num_threads(2)
    model, tok = load_model("smollm2", device="cpu")
    if not TOKENS.is_file():
        build_tokens(tok)
    ids, ppl_ids = load_tokens()
    dense = block_weights(model)
    outputs = previous_outputs() if keys != list(RUNS) else {}
    outputs.setdefault("runs", {})
    outputs["dense_ppl"] = ppl(model, ppl_ids)
    # A run asked for gets its rows afresh (a mode no longer compared leaves none behind).
    measured = {k: v for k, v in outputs.get("measured", {}).items() if k.split("/")[0] not in keys}
    outputs["measured"] = measured
    adaptations: list[str] = []
    for key in keys:
        got, out = run_reference(py, repo, smollm2_dir(), key)
        adaptations = got["adaptations"]
        ref = load_file(str(out))
        set_weights(model, ref)
        outputs["runs"][key] = {"seconds": round(got["seconds"], 2), "ppl": ppl(model, ppl_ids), **mask_summary(ref)}
        set_weights(model, dense)
        print(f"{key}: reference {got['seconds']:.1f} s, ppl {outputs['runs'][key]['ppl']:.4f}", flush=True)
        for inputs in MODES:
            measured[f"{key}/headwise-{inputs}"] = cached_compare(model, ids, ppl_ids, key, inputs, ref,
                                                                  outputs["runs"][key])
            # Written after every comparison, so a long regeneration that stops keeps what it finished.
            harness.write_golden(NAME, {"repo": REPO, "commit": COMMIT, "files": LINES, "script": SCRIPT,
                                        "venv": REQUIREMENTS,
                                        "model": "SmolLM2-135M-Instruct (headwise asset smollm2)",
                                        "calibration": calib_config().to_dict()},
                                 [TOKENS], adaptations, outputs)


if __name__ == "__main__":
    main()
