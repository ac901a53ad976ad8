"""`headwise testbed`: make OpenMoji scene benchmarks, train the small emoji-llava model, compare decoders on it."""

from __future__ import annotations

import typer

from headwise.cli.common import (ALPHA, DEVICE, DTYPE, HEADS, JSON, LAYERS, POSITIONS, PRESET, TRUST,
                                 emit, int_list, load, names, out_option, vhr_settings)

app = typer.Typer(help="A hallucination testbed that runs on a laptop CPU: OpenMoji scenes and emoji-llava.",
                  no_args_is_help=True)


@app.command()
def make(out: str = out_option(..., "Folder to write images/, annotations/ and pope_<split>.jsonl into."),
         n: int = typer.Option(200, help="Number of scenes."),
         seed: int = typer.Option(0, help="Scene stream; the same seed always gives the same scenes."),
         size: int = typer.Option(96, help="Image side in pixels (emoji-llava sees 96)."),
         as_json: bool = JSON) -> None:
    """Render scenes of COCO objects with COCO-format instances and captions, and POPE question files."""
    from headwise.testbed.dataset import make as do_make

    if seed >= 1000:
        typer.echo("note: seeds from 1000 up are emoji-llava's training streams; use them only on purpose.", err=True)
    result = do_make(out, n=n, seed=seed, size=size, progress=not as_json)
    emit(result, as_json, f"{result['images']} scenes, {result['objects']} objects, {result['captions']} captions "
                          f"in {result['out']}\nPOPE: " + ", ".join(result["pope"].values()))


@app.command()
def train(out: str = out_option(..., "Run directory; rerun with the same one to resume from its checkpoints."),
          vision_steps: int = typer.Option(400, help="Stage 1 steps (vision tower)."),
          caption_steps: int = typer.Option(800, help="Stage 2 steps (projector + LoRA, or all of SmolLM2 with "
                                                          "--full-ft)."),
          answer_steps: int = typer.Option(300, help="Stage 3 steps (the same weights on mostly yes/no questions)."),
          full_ft: bool = typer.Option(False, "--full-ft", help="Stages 2 and 3 update every SmolLM2 weight "
                                       "(embeddings included) instead of a rank-8 LoRA on q/v, as LLaVA-1.5's "
                                       "stage 2 does; writes about 270 MB instead of 6 MB."),
          full_lr: float = typer.Option(None, help="With --full-ft: stage 2's learning rate for SmolLM2's weights "
                                                   "(default 2e-5, LLaVA-1.5's; the projector keeps 1e-3, stage 3 "
                                                   "scales both by 0.3)."),
          init: str = typer.Option(None, help="Start stage 3 from these weights (an emoji_llava.safetensors, e.g. "
                                              "the shipped one), skipping stages 1 and 2. With --full-ft, LoRA "
                                              "weights are merged first."),
          seed: int = typer.Option(0, help="Initialisation and sampling seed."),
          as_json: bool = JSON) -> None:
    """Train emoji-llava from scratch in three stages (about 55 minutes on 2 CPU cores with LoRA); writes
    OUT/emoji_llava.safetensors."""
    from headwise.errors import HeadwiseError
    from headwise.testbed.train import TrainConfig, train as do_train

    if full_lr is not None and not full_ft:
        raise HeadwiseError("--full-lr applies only to a full fine-tune; add --full-ft or drop --full-lr.")
    lr = {} if full_lr is None else {"full_lr": full_lr}
    result = do_train(out, TrainConfig(vision_steps=vision_steps, caption_steps=caption_steps,
                                       answer_steps=answer_steps, seed=seed, full_ft=full_ft, init=init, **lr),
                      progress=not as_json)
    emit(result, as_json, f"weights: {result['weights']} ({result['bytes'] / 1e6:.1f} MB); pass the file as --model "
                          "to any command, or copy it to src/headwise/testbed/shipped/ to make it the default emoji-llava.")


@app.command()
def evaluate(ctx: typer.Context,
             out: str = out_option(..., "Run directory (one sub-run per seed, method and task; resumable)."),
             model: str = typer.Option("emoji-llava", "--model", "-m",
                                       help="Vision-language model to evaluate: emoji-llava, an emoji_llava.safetensors "
                                            "from `headwise testbed train`, or any model --model takes elsewhere."),
             n: int = typer.Option(200, help="Scenes per seed."),
             seeds: str = typer.Option("0,1,2", help="Scene streams, e.g. 0,1,2 (below 1000: test streams)."),
             methods: str = typer.Option("greedy,vhr,vcd,pai", help="Decoding methods to compare."),
             splits: str = typer.Option("random,popular,adversarial", help="POPE splits, or none for CHAIR alone."),
             alpha: float = ALPHA, layers: str = LAYERS, heads: str = HEADS, positions: str = POSITIONS,
             preset: str = PRESET,
             max_new_tokens: int = typer.Option(64, help="Caption length cap."),
             batch_size: int = typer.Option(6, help="Images per generate() call, for captions and answers alike."),
             dtype: str = DTYPE, device: str = DEVICE, trust_remote_code: bool = TRUST, as_json: bool = JSON) -> None:
    """CHAIR and POPE for each method on the same scenes, mean +- std over seeds; writes table.md."""
    from headwise.testbed.evaluate import TableConfig, evaluate as do_evaluate, open_run
    from headwise.vhr.config import check_vhr_preset

    check_vhr_preset(preset, names(methods))
    cfg = TableConfig(model=model, n=n, seeds=int_list(seeds, "--seeds") or [0], methods=names(methods),
                      splits=[s for s in names(splits) if s != "none"], max_new_tokens=max_new_tokens,
                      batch_size=batch_size, dtype=dtype, vhr=vhr_settings(ctx, preset, alpha, layers, heads, positions))
    m, proc = load(model, dtype, device, trust_remote_code)  # first: a --model that does not load leaves no run dir
    result = do_evaluate(m, proc, cfg, open_run(out, cfg, preset))
    emit(result["table"], as_json, result["markdown"])
