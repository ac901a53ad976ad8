"""`headwise eval`: score object hallucination with CHAIR and POPE, from files or with a model in the loop."""

from __future__ import annotations

import typer

from headwise.cli.common import (ALPHA, DEVICE, DTYPE, HEADS, JSON, LAYERS, METHOD, POSITIONS, PRESET, TRUST,
                                 emit, load, out_option, vhr_settings)
from headwise.errors import HeadwiseError

app = typer.Typer(help="Score object hallucination of vision-language models: CHAIR and POPE.",
                  no_args_is_help=True)

OUT = out_option(None, "Run directory to write config.yaml and results.json (with per-item details) into; "
                       "with --model, rerun with the same one to resume.", kind="optional")
MODEL = typer.Option(None, "--model", "-m", help="Run this vision-language model (alias, folder or hub id) over "
                                                  "the images instead of scoring a file of its outputs.")
IMAGES = typer.Option(None, help="With --model: folder of the images (COCO file names).")
SEED = typer.Option(0, help="With --model: seed of the image sample, of sampling and of --heads random draws.")
BATCH = typer.Option(1, help="With --model: images per batch.")


def _decode(ctx, method, preset, alpha, layers, heads, positions, prompt, max_new_tokens, batch_size, seed):
    from headwise.vhr.config import DecodeConfig, check_vhr_preset

    check_vhr_preset(preset, [method])
    vhr = vhr_settings(ctx, preset, alpha, layers, heads, positions)
    return DecodeConfig(method=method, options=vhr if method == "vhr" else None, prompt=prompt,
                        max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed)


@app.command()
def chair(
    ctx: typer.Context,
    captions: str = typer.Option(None, help="JSONL of generated captions, one {\"image_id\", \"caption\"} per line; "
                                            "image_id is the COCO id or the image's file name."),
    annotations: str = typer.Option(..., help="Directory with COCO instances_*.json and captions_*.json "
                                              "(the ground truth)."),
    synonyms: str = typer.Option(None, help="Object vocabulary in the original CHAIR synonyms.txt format "
                                            "(category, form, form, ... per line); headwise's own table when "
                                            "omitted."),
    drop_incomplete: bool = typer.Option(False, "--drop-incomplete",
                                         help="Cut each caption after its last full sentence before scoring "
                                              "(OPERA convention for length-capped captions)."),
    compat: str = typer.Option("headwise", help="headwise (its own reading) or original: tokenize, tag and "
                                                "lemmatize with NLTK as the original evaluator does, with its "
                                                "synonyms.txt as --synonyms (docs/parity.md#chair)."),
    out: str = OUT, model: str = MODEL, images: str = IMAGES,
    n: int = typer.Option(500, help="With --model: number of images sampled (seeded) from the annotated ones."),
    image_ids: str = typer.Option(None, help="With --model: image_ids.json of an earlier run, to caption the same images."),
    seed: int = SEED, method: str = METHOD, alpha: float = ALPHA, layers: str = LAYERS, heads: str = HEADS,
    positions: str = POSITIONS, preset: str = PRESET,
    prompt: str = typer.Option("Please describe this image in detail.", help="With --model: the instruction."),
    max_new_tokens: int = typer.Option(64, help="With --model: caption length cap in tokens."),
    batch_size: int = BATCH, dtype: str = DTYPE, device: str = DEVICE, trust_remote_code: bool = TRUST,
    as_json: bool = JSON,
) -> None:
    """Score COCO captions with CHAIR_S, CHAIR_I, recall and length: from --captions, or made by --model."""
    from headwise.eval.run import chair_text, score_chair

    if model is not None:
        from headwise.eval.vlm import ChairConfig
        from headwise.vhr.run import caption_chair, open_chair_run

        if images is None:
            raise HeadwiseError("--images is required with --model: the folder holding the COCO images.")
        decode = _decode(ctx, method, preset, alpha, layers, heads, positions, prompt, max_new_tokens, batch_size,
                         seed)
        cfg = ChairConfig(images=images, annotations=annotations, n=n, image_ids=image_ids, synonyms=synonyms,
                          drop_incomplete=drop_incomplete, compat=compat)
        m, proc = load(model, dtype, device, trust_remote_code)  # first: a bad --model leaves no run directory
        summary = caption_chair(m, proc, cfg, decode, open_chair_run(out, model, dtype, cfg, decode, preset))
    elif captions is None:
        raise HeadwiseError("give --captions (a JSONL of {\"image_id\", \"caption\"}) or --model and --images.")
    else:
        summary = score_chair(captions, annotations, synonyms, drop_incomplete, out, compat=compat)
    if summary is not None:  # None on the processes other than the main one
        emit(summary, as_json, chair_text(summary))


@app.command()
def pope(
    ctx: typer.Context,
    answers: str = typer.Option(None, help="JSONL of model answers, {\"question_id\"?, \"answer\"} per line; "
                                           "matched by question_id when every line has one, else by line order."),
    questions: str = typer.Option(..., help="POPE questions, JSONL of {\"question_id\", \"image\", \"text\", "
                                            "\"label\"} (a JSON list is accepted too)."),
    allow_partial: bool = typer.Option(False, "--allow-partial",
                                       help="Score an --answers file that answers only some questions (a warning "
                                            "names how many are left out); without it such a file is refused."),
    out: str = OUT, model: str = MODEL, images: str = IMAGES, seed: int = SEED, method: str = METHOD,
    alpha: float = ALPHA, layers: str = LAYERS, heads: str = HEADS, positions: str = POSITIONS, preset: str = PRESET,
    max_new_tokens: int = typer.Option(8, help="With --model: answer length cap in tokens."),
    batch_size: int = BATCH, dtype: str = DTYPE, device: str = DEVICE, trust_remote_code: bool = TRUST,
    as_json: bool = JSON,
) -> None:
    """Score yes/no answers to POPE questions (accuracy, precision, recall, F1, yes-ratio): from --answers, or
    made by --model."""
    from headwise.eval.run import missing, pope_text, score_pope

    if model is not None:
        from headwise.eval.vlm import PopeConfig
        from headwise.vhr.run import answer_pope, open_pope_run

        if images is None:
            raise HeadwiseError("--images is required with --model: the folder holding the questions' images.")
        decode = _decode(ctx, method, preset, alpha, layers, heads, positions, "", max_new_tokens, batch_size, seed)
        cfg = PopeConfig(images=images, questions=questions)
        m, proc = load(model, dtype, device, trust_remote_code)
        summary = answer_pope(m, proc, cfg, decode, open_pope_run(out, model, dtype, cfg, decode, preset))
    elif answers is None:
        raise HeadwiseError("give --answers (a JSONL of {\"question_id\", \"answer\"}) or --model and --images.")
    else:
        summary = score_pope(answers, questions, out, allow_partial)
        if summary["unanswered"]:
            typer.echo(f"warning: {missing(summary, answers)}; scoring only the {summary['n']} answered.", err=True)
    if summary is not None:
        emit(summary, as_json, pope_text(summary))


@app.command("harness-tasks")
def harness_tasks(
    out: str = out_option(..., "Folder to write the tasks into: OUT/lmms (lmms-eval) and OUT/lm-eval (lm-eval)."),
    scenes: int = typer.Option(20, help="Testbed scenes rendered for the POPE (6 questions each) and CHAIR tasks."),
    seed: int = typer.Option(0, help="Scene stream of the testbed scenes."),
    as_json: bool = JSON,
) -> None:
    """Write local tasks for lmms-eval (POPE and CHAIR on testbed scenes, headwise's metrics) and lm-eval
    (Wikipedia perplexity and topic choice), for --include_path; no hub dataset is needed."""
    from headwise.integrations.tasks import tasks_text, write_harness_tasks

    result = write_harness_tasks(out, scenes, seed)
    emit(result, as_json, tasks_text(result))
