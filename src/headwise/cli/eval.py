"""`headwise eval`: score object hallucination with CHAIR and POPE."""

from __future__ import annotations

import typer

from headwise.cli.common import DEVICE, DTYPE, JSON, TRUST, emit, int_list, load, out_option
from headwise.errors import HeadwiseError

app = typer.Typer(help="Score object hallucination of vision-language models: CHAIR and POPE.",
                  no_args_is_help=True)

OUT = out_option(None, "Run directory to write config.yaml and results.json (with per-item details) into; "
                       "with --model, rerun with the same one to resume.", kind="optional")
MODEL = typer.Option(None, "--model", "-m", help="Run this vision-language model (alias, folder or hub id) over "
                                                  "the images instead of scoring a file of its outputs.")
IMAGES = typer.Option(None, help="With --model: folder of the images (COCO file names).")
METHOD = typer.Option("vhr", help="With --model: decoding method, vhr, greedy, vcd or pai.")
ALPHA = typer.Option(2.0, help="With --model and --method vhr: scale of the chosen heads (> 0).")
LAYERS = typer.Option(None, help="With --model and --method vhr: reinforced layers, e.g. 1,17-29.")
HEADS = typer.Option("vhd", help="With --model and --method vhr: which heads to reinforce: vhd (the paper's "
                                  "choice), random (as many per layer and image, drawn with --seed) or complement "
                                  "(as many, drawn from those VHD did not choose).")
POSITIONS = typer.Option("all", help="With --model and --method vhr: where to scale the heads: all (the paper) or "
                                     "generated (only the positions that predict output tokens).")
SEED = typer.Option(0, help="With --model: seed of the image sample, of sampling and of --heads random draws.")
BATCH = typer.Option(1, help="With --model: images per batch.")


def _decode_config(method, alpha, layers, heads, positions, prompt, max_new_tokens, batch_size, seed):
    from headwise.vhr.decode import decode_config

    return decode_config(method=method, alpha=alpha, layers=int_list(layers, "--layers"), heads=heads,
                         positions=positions, prompt=prompt, max_new_tokens=max_new_tokens, batch_size=batch_size,
                         seed=seed)


@app.command()
def chair(
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
    out: str = OUT,
    model: str = MODEL,
    images: str = IMAGES,
    n: int = typer.Option(500, help="With --model: number of images sampled (seeded) from the annotated ones."),
    image_ids: str = typer.Option(None, help="With --model: image_ids.json of an earlier run, to caption the same images."),
    seed: int = SEED,
    method: str = METHOD,
    alpha: float = ALPHA,
    layers: str = LAYERS,
    heads: str = HEADS,
    positions: str = POSITIONS,
    prompt: str = typer.Option("Please describe this image in detail.", help="With --model: the instruction."),
    max_new_tokens: int = typer.Option(64, help="With --model: caption length cap in tokens."),
    batch_size: int = BATCH,
    dtype: str = DTYPE,
    device: str = DEVICE,
    trust_remote_code: bool = TRUST,
    as_json: bool = JSON,
) -> None:
    """Score COCO captions with CHAIR_S, CHAIR_I, recall and length: from --captions, or made by --model."""
    from headwise.eval.chair import score_chair_files

    if model is not None:
        from headwise.eval.vlm import run_chair
        from headwise.vhr.decode import decoder

        if images is None:
            raise HeadwiseError("--images is required with --model: the folder holding the COCO images.")
        decode = _decode_config(method, alpha, layers, heads, positions, prompt, max_new_tokens, batch_size, seed)
        config = {"model": model, "images": images, "annotations": annotations, "n": n, "image_ids": image_ids,
                  "synonyms": synonyms, "drop_incomplete": drop_incomplete, "dtype": dtype, "decode": decode.__dict__}
        summary = _with_model("eval chair", out, config, (model, dtype, device, trust_remote_code), lambda m, proc, run:
                              run_chair(decoder(m, proc, decode), images, annotations, n, run, synonyms=synonyms,
                                        drop_incomplete=drop_incomplete, image_ids=image_ids))
        if summary is not None:
            emit(summary, as_json, chair_summary(summary))
        return
    if captions is None:
        raise HeadwiseError("give --captions (a JSONL of {\"image_id\", \"caption\"}) or --model and --images.")
    result = score_chair_files(captions, annotations, synonyms, drop_incomplete=drop_incomplete)
    config = {"captions": captions, "annotations": annotations, "synonyms": synonyms,
              "drop_incomplete": drop_incomplete}
    summary = {k: v for k, v in result.items() if k != "captions"}
    summary |= _save(out, "eval chair", config, result)
    emit(summary, as_json, chair_summary(summary))


@app.command()
def pope(
    answers: str = typer.Option(None, help="JSONL of model answers, {\"question_id\"?, \"answer\"} per line; "
                                           "matched by question_id when every line has one, else by line order."),
    questions: str = typer.Option(..., help="POPE questions, JSONL of {\"question_id\", \"image\", \"text\", "
                                            "\"label\"} (a JSON list is accepted too)."),
    allow_partial: bool = typer.Option(False, "--allow-partial",
                                       help="Score an --answers file that answers only some questions (a warning "
                                            "names how many are left out); without it such a file is refused."),
    out: str = OUT,
    model: str = MODEL,
    images: str = IMAGES,
    seed: int = SEED,
    method: str = METHOD,
    alpha: float = ALPHA,
    layers: str = LAYERS,
    heads: str = HEADS,
    positions: str = POSITIONS,
    max_new_tokens: int = typer.Option(8, help="With --model: answer length cap in tokens."),
    batch_size: int = BATCH,
    dtype: str = DTYPE,
    device: str = DEVICE,
    trust_remote_code: bool = TRUST,
    as_json: bool = JSON,
) -> None:
    """Score yes/no answers to POPE questions (accuracy, precision, recall, F1, yes-ratio): from --answers, or
    made by --model."""
    from headwise.eval.pope import score_pope_files

    if model is not None:
        from headwise.eval.vlm import run_pope
        from headwise.vhr.decode import decoder

        if images is None:
            raise HeadwiseError("--images is required with --model: the folder holding the questions' images.")
        decode = _decode_config(method, alpha, layers, heads, positions, "", max_new_tokens, batch_size, seed)
        config = {"model": model, "images": images, "questions": questions, "dtype": dtype, "decode": decode.__dict__}
        summary = _with_model("eval pope", out, config, (model, dtype, device, trust_remote_code),
                              lambda m, proc, run: run_pope(decoder(m, proc, decode), questions, images, run))
        if summary is not None:
            emit(summary, as_json, pope_summary(summary))
        return
    if answers is None:
        raise HeadwiseError("give --answers (a JSONL of {\"question_id\", \"answer\"}) or --model and --images.")
    result = score_pope_files(answers, questions)
    if result["unanswered"]:
        missing = f"{result['unanswered']} of {result['unanswered'] + result['n']} questions have no answer in {answers}"
        if not allow_partial:
            raise HeadwiseError(f"{missing}; answer them all, or pass --allow-partial to score only the answered ones.")
        typer.echo(f"warning: {missing}; scoring only the {result['n']} answered.", err=True)
    result |= _save(out, "eval pope", {"answers": answers, "questions": questions}, result)
    emit(result, as_json, pope_summary(result))


def _with_model(command: str, out: str | None, config: dict, loading: tuple, evaluate) -> dict | None:
    """Load the model, open the run directory, run `evaluate(model, processor, run)`; the summary on the main process.

    The model loads first, so a bad --model leaves no run directory behind.
    """
    from headwise.runs import Run

    m, proc = load(*loading)
    run = Run(out, command, config)
    result = evaluate(m, proc, run)
    if result is None:
        return None
    return result["metrics"] | {"run_dir": str(run.dir), "failures": len(result["failures"]),
                                "seconds_per_sample": result["seconds_per_sample"]}


def _save(out: str | None, command: str, config: dict, result: dict) -> dict:
    """Write results.json into the run directory when --out is given; returns {"run_dir": ...} or {}."""
    if out is None:
        return {}
    from headwise.runs import Run

    run = Run(out, command, config)
    run.finish(result)
    return {"run_dir": str(run.dir)}


def chair_summary(result: dict) -> str:
    """Human-readable CHAIR summary, in percent as papers report it."""
    lines = [(f"CHAIR_S {100 * result['chair_s']:.1f}   CHAIR_I {100 * result['chair_i']:.1f}   "
              f"recall {100 * result['recall']:.1f}   len {result['len']:.1f} words"),
             f"{result['n']} captions, {result['mentions']} object mentions, {result['hallucinated']} hallucinated"]
    if "run_dir" in result:
        lines.append(f"results: {result['run_dir']}/results.json")
    return "\n".join(lines)


def pope_summary(result: dict) -> str:
    """Human-readable POPE summary, in percent, one line overall and one per split."""
    def line(name: str, m: dict) -> str:
        return (f"{name:12s} accuracy {100 * m['accuracy']:5.1f}  precision {100 * m['precision']:5.1f}  "
                f"recall {100 * m['recall']:5.1f}  F1 {100 * m['f1']:5.1f}  yes {100 * m['yes_ratio']:5.1f}%  "
                f"unparsed {100 * m['unparsed']:4.1f}%  n={m['n']}")

    lines = [line("all", result)] + [line(name, m) for name, m in result.get("splits", {}).items()]
    if result["unanswered"]:
        lines.append(f"{result['unanswered']} questions have no answer and are not scored.")
    if result["unparsed"]:
        lines.append("unparsed: answers that say neither yes nor no; the pinned parser counts them as yes.")
    if "run_dir" in result:
        lines.append(f"results: {result['run_dir']}/results.json")
    return "\n".join(lines)
