"""`headwise testbed`: make OpenMoji scene benchmarks and train the small emoji-llava model."""

from __future__ import annotations

import typer

from headwise.cli.common import JSON, emit, out_option

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

    if min(vision_steps, caption_steps, answer_steps) < 0:
        raise HeadwiseError("--vision-steps, --caption-steps and --answer-steps must be 0 or more.")
    if full_lr is not None and not full_ft:
        raise HeadwiseError("--full-lr applies only to a full fine-tune; add --full-ft or drop --full-lr.")
    if full_lr is not None and not full_lr > 0:
        raise HeadwiseError(f"--full-lr must be above 0, not {full_lr}.")
    lr = {} if full_lr is None else {"full_lr": full_lr}
    result = do_train(out, TrainConfig(vision_steps=vision_steps, caption_steps=caption_steps,
                                       answer_steps=answer_steps, seed=seed, full_ft=full_ft, init=init, **lr),
                      progress=not as_json)
    emit(result, as_json, f"weights: {result['weights']} ({result['bytes'] / 1e6:.1f} MB); pass the file as --model "
                          "to any command, or copy it to src/headwise/testbed/shipped/ to make it the default emoji-llava.")


@app.command()
def evaluate(out: str = out_option(..., "Run directory (one sub-run per seed, method and task; resumable)."),
             model: str = typer.Option("emoji-llava", "--model", "-m",
                                       help="Vision-language model to evaluate: emoji-llava, an emoji_llava.safetensors "
                                            "from `headwise testbed train`, or any model --model takes elsewhere."),
             n: int = typer.Option(200, help="Scenes per seed."),
             seeds: str = typer.Option("0,1,2", help="Scene streams, e.g. 0,1,2 (below 1000: test streams)."),
             methods: str = typer.Option("greedy,vhr,vcd,pai", help="Decoding methods to compare."),
             splits: str = typer.Option("random,popular,adversarial", help="POPE splits, or none for CHAIR alone."),
             alpha: float = typer.Option(2.0, help="VHR scale (> 0)."),
             layers: str = typer.Option(None, help="VHR layers, e.g. 1,17-29; default 1 plus the last 14/32."),
             heads: str = typer.Option("vhd", help="VHR heads: vhd (the paper's choice), random (as many per layer "
                                                   "and image, drawn with the scene seed) or complement (as many, "
                                                   "drawn from those VHD did not choose)."),
             positions: str = typer.Option("all", help="Where VHR scales: all (the paper) or generated (only the "
                                                       "positions that predict output tokens)."),
             max_new_tokens: int = typer.Option(64, help="Caption length cap."),
             batch_size: int = typer.Option(6, help="Images per generate() call, for captions and answers alike."),
             as_json: bool = JSON) -> None:
    """CHAIR and POPE for each method on the same scenes, mean +- std over seeds; writes table.md."""
    from headwise.cli.common import int_list
    from headwise.errors import HeadwiseError
    from headwise.testbed.dataset import POPE_SPLITS
    from headwise.testbed.evaluate import TableConfig, evaluate as do_evaluate
    from headwise.vhr import METHODS
    from headwise.vhr.core import HEAD_CHOICES, POSITIONS, check_alpha, check_choice

    method_list = [m.strip() for m in methods.split(",") if m.strip()]
    split_list = [s.strip() for s in splits.split(",") if s.strip() and s.strip() != "none"]
    for m in method_list:
        if m not in METHODS:
            raise HeadwiseError(f"unknown method {m!r}; choose from {', '.join(METHODS)}.")
    for s in split_list:
        if s not in POPE_SPLITS:
            raise HeadwiseError(f"unknown POPE split {s!r}; choose from {', '.join(POPE_SPLITS)}.")
    check_alpha(alpha)
    check_choice(heads, HEAD_CHOICES, "--heads")
    check_choice(positions, POSITIONS, "--positions")
    if batch_size < 1 or n < 1 or max_new_tokens < 1:
        raise HeadwiseError("--n, --batch-size and --max-new-tokens must be at least 1.")
    cfg = TableConfig(model=model, n=n, seeds=int_list(seeds, "--seeds") or [0], methods=method_list,
                      splits=split_list, max_new_tokens=max_new_tokens, alpha=alpha, layers=int_list(layers, "--layers"),
                      batch_size=batch_size, heads=heads, positions=positions)
    result = do_evaluate(out, cfg)
    emit(result["table"], as_json, result["markdown"])
