"""Parity of llmcompressor's WandaPruningModifier and SparseGPTModifier (PyPI) with locuslab/wanda and headwise.

    .venv/bin/python parity/llmcompressor.py [RUN ...]   # parity/goldens/llmcompressor.json; RUN: wanda-50,
                                                         # sparsegpt-50, wanda-2:4, sparsegpt-2:4 (default: all;
                                                         # the golden keeps the other runs' figures)

Same model, same calibration tokens (parity/inputs/wanda_tokens.safetensors) and same held-out perplexity as
parity/wanda.py, at 50% unstructured and at 2:4. Each run is compared with locuslab/wanda's run of the same
setting (its pruned weights from parity/wanda.py, rerun when not cached) and with headwise's sequential mode.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
import wanda  # noqa: E402

PACKAGE, VERSION = "llmcompressor", "0.14.0.1"
REQUIREMENTS = ["torch==2.13.0", f"{PACKAGE}=={VERSION}"]
NAME = "llmcompressor"
FILES = {"wanda": "llmcompressor/modifiers/pruning/wanda/wanda_sparsify.py (accumulate_row_scalars, "
                  "sparsify_weight)",
         "sparsegpt": "llmcompressor/modifiers/pruning/sparsegpt/sgpt_sparsify.py (sparsify_weight)"}


def main() -> None:
    from safetensors.torch import load_file

    from headwise.assets.registry import is_present, smollm2_dir
    from headwise.models import load_model

    if not is_present("smollm2"):
        raise harness.Unavailable("the SmolLM2 asset is missing: run `headwise assets fetch --only smollm2`.")
    py = harness.venv(NAME, REQUIREMENTS)
    repo = harness.repo_at(wanda.REPO, wanda.COMMIT, ["lib"])
    ref_py = harness.venv(wanda.NAME, wanda.REQUIREMENTS)
    torch.set_num_threads(2)
    model, _ = load_model("smollm2", device="cpu")
    ids, ppl_ids = wanda.load_tokens()
    dense = wanda.block_weights(model)
    sizes = {k: w.numel() for k, w in dense.items()}
    keys = sys.argv[1:] or list(wanda.RUNS)
    outputs = wanda.previous_outputs(NAME, "llmcompressor.py") if keys != list(wanda.RUNS) else {}
    outputs.setdefault("runs", {})
    adaptations: list[str] = []
    if unknown := set(keys) - set(wanda.RUNS):
        raise SystemExit(f"parity: unknown run {sorted(unknown)[0]!r}; use some of {', '.join(wanda.RUNS)}.")
    for key in keys:
        method = wanda.RUNS[key][0]
        got, out = wanda.cached_run(py, "llmcompressor_oneshot", key, REQUIREMENTS, {"model_dir": str(smollm2_dir())})
        adaptations = got["adaptations"]
        ours = load_file(str(out))
        _, ref_path = wanda.run_reference(ref_py, repo, smollm2_dir(), key)
        ref = load_file(str(ref_path))
        wanda.set_weights(model, ours)
        row = {"seconds": round(got["seconds"], 2), "ppl": wanda.ppl(model, ppl_ids), **wanda.mask_summary(ours)}
        wanda.set_weights(model, ref)
        locuslab_ppl = wanda.ppl(model, ppl_ids)
        wanda.set_weights(model, dense)
        overall, per = wanda.agreement({k: w == 0 for k, w in ours.items()}, {k: w == 0 for k, w in ref.items()})
        row["vs_locuslab"] = {"agreement": overall, "agreement_per_block": wanda.per_block(per, sizes),
                              "locuslab_ppl": locuslab_ppl}
        if method == "sparsegpt":
            diff, per_diff = wanda.rel_diff(ours, ref)
            row["vs_locuslab"].update(rel_weight_diff=diff, rel_weight_diff_per_block=wanda.per_block(per_diff, sizes))
        outputs["runs"][key] = row
        print(f"{key}: llmcompressor {got['seconds']:.1f} s, ppl {row['ppl']:.4f}, agreement with locuslab "
              f"{overall:.6f}" + (f", rel. weight diff {row['vs_locuslab']['rel_weight_diff']:.4f}"
                                  if method == "sparsegpt" else ""), flush=True)
        harness.write_golden(NAME, {"package": PACKAGE, "version": VERSION, "files": FILES,
                                    "script": "llmcompressor.py", "venv": REQUIREMENTS,
                                    "model": "SmolLM2-135M-Instruct (headwise asset smollm2)"},
                             [wanda.TOKENS], adaptations, outputs)


if __name__ == "__main__":
    main()
