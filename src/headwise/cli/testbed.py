"""`headwise testbed`: make OpenMoji scene benchmarks and train the small emoji-llava model."""

from __future__ import annotations

import typer

from headwise.cli.common import JSON, emit

app = typer.Typer(help="A hallucination testbed that runs on a laptop CPU: OpenMoji scenes and emoji-llava.",
                  no_args_is_help=True)


@app.command()
def make(out: str = typer.Option(..., help="Folder to write images/, annotations/ and pope_<split>.jsonl into."),
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
def train(out: str = typer.Option(..., help="Run directory; rerun with the same one to resume from its checkpoints."),
          vision_steps: int = typer.Option(800, help="Stage 1 steps (vision tower)."),
          caption_steps: int = typer.Option(450, help="Stage 2 steps (projector + LoRA through SmolLM2)."),
          seed: int = typer.Option(0, help="Initialisation and sampling seed."),
          as_json: bool = JSON) -> None:
    """Train emoji-llava from scratch (about 90 minutes on 2 CPU cores); writes OUT/emoji_llava.safetensors."""
    from headwise.testbed.train import TrainConfig, train as do_train

    result = do_train(out, TrainConfig(vision_steps=vision_steps, caption_steps=caption_steps, seed=seed),
                      progress=not as_json)
    emit(result, as_json, f"weights: {result['weights']} ({result['bytes'] / 1e6:.1f} MB); copy them to "
                          "src/headwise/testbed/shipped/ to make them the default emoji-llava.")
