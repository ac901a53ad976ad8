"""The eval recipes for files of outputs: what `headwise eval chair --captions` and `eval pope --answers` run.

With a model in the loop the recipes are the decoding method's (`headwise.vhr.run`), since eval knows no method.
"""

from __future__ import annotations

from pathlib import Path

from headwise.runs import Run


def score_chair(captions: str, annotations: str, synonyms: str | None = None, drop_incomplete: bool = False,
                out: str | Path | None = None, compat: str = "headwise") -> dict:
    """CHAIR of a JSONL of captions; with `out`, the per-caption details go to OUT/results.json. compat "original"
    reads the captions as the original NLTK evaluator does (headwise.eval.chair_original)."""
    from headwise.eval.chair import score_chair_files

    result = score_chair_files(captions, annotations, synonyms, drop_incomplete=drop_incomplete, compat=compat)
    summary = {k: v for k, v in result.items() if k != "captions"}
    config = {"captions": captions, "annotations": annotations, "synonyms": synonyms,
              "drop_incomplete": drop_incomplete, **({"compat": compat} if compat != "headwise" else {})}
    return summary | _save(out, "eval chair", config, result)


def score_pope(answers: str, questions: str, out: str | Path | None = None, allow_partial: bool = False) -> dict:
    """POPE accuracy, precision, recall, F1 and yes-ratio of a JSONL of answers; with `out`, a run directory.
    A file that leaves questions unanswered is refused unless `allow_partial` (then only the answered count)."""
    from headwise.errors import HeadwiseError
    from headwise.eval.pope import score_pope_files

    result = score_pope_files(answers, questions)
    if result["unanswered"] and not allow_partial:
        raise HeadwiseError(f"{missing(result, answers)}; answer them all, or pass --allow-partial to score only the "
                            "answered ones.")
    return result | _save(out, "eval pope", {"answers": answers, "questions": questions}, result)


def missing(result: dict, answers: str) -> str:
    return f"{result['unanswered']} of {result['unanswered'] + result['n']} questions have no answer in {answers}"


def _save(out: str | Path | None, command: str, config: dict, result: dict) -> dict:
    """Write results.json into the run directory when `out` is given; returns {"run_dir": ...} or {}."""
    if out is None:
        return {}
    run = Run(out, command, config)
    run.finish(result)
    return {"run_dir": str(run.dir)}


def chair_text(result: dict) -> str:
    """Human-readable CHAIR summary, in percent as papers report it."""
    lines = [(f"CHAIR_S {100 * result['chair_s']:.1f}   CHAIR_I {100 * result['chair_i']:.1f}   "
              f"recall {100 * result['recall']:.1f}   len {result['len']:.1f} words"),
             f"{result['n']} captions, {result['mentions']} object mentions, {result['hallucinated']} hallucinated"]
    if "run_dir" in result:
        lines.append(f"results: {result['run_dir']}/results.json")
    return "\n".join(lines)


def pope_text(result: dict) -> str:
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
