"""The paper's analysis (He et al., ACL 2025, Sec. 3.1, Figs. 2 and 3) for any model and image set.

For each sampled image: a greedy caption, T-VHD (Eq. 5) at every generated token, and the VHD map
at the first step, also for a plain gray image of the same size. CHAIR (headwise.eval.chair) finds
the object mentions and labels them correct or hallucinated.

Pooling rules (the paper leaves them open):
- a mention's score is the T-VHD of its first sub-token, the token that holds its first letter
  ("teddy bears": the first token of "teddy"; a qualified mention such as "baby elephant" starts at
  its qualifier, as CHAIR reads the two words as one);
- a sentence runs to the next ".", "!" or "?"; its score is the mean T-VHD of the tokens that start
  in it, and it is hallucinated when it holds a hallucinated mention. Every sentence counts.

Results: the AUROC of correct vs hallucinated (P(correct > hallucinated), ties half) for mentions
and for sentences, each with a bootstrap 95% interval over images; counts and means; the share of
the first step's total VHD held by the top 5% of heads; and the rank correlation of each image's
first-step VHD map with a gray image's map and with the next sampled image's map. As a control,
`position_auroc` scores each unit by its place in the caption alone (earlier = higher): captions
list the objects they are surest of first, so T-VHD's AUROC means little unless it beats that.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from headwise.config import Settings
from headwise.errors import HeadwiseError
from headwise.eval import chair as chair_mod
from headwise.distributed import process_state
from headwise.eval.runner import run_items
from headwise.eval.stats import auroc, spearman
from headwise.eval.vlm import sample_images
from headwise.heads import layout
from headwise.runs import Run, write_jsonl
from headwise.vhr.analysis import token_vhd
from headwise.vhr.core import generate_greedy, head_divergence
from headwise.vhr.inputs import load_image

_SENTENCE_END = re.compile(r"[.!?]")


@dataclass
class AnalyzeConfig(Settings):
    """Settings of `headwise vhr analyze` (see the module docstring)."""

    n: int = 50
    seed: int = 0
    k: int = 8
    prompt: str = "Please describe this image in detail."
    max_new_tokens: int = 64
    bootstrap: int = 1000
    top_share: float = 0.05

    def validate(self) -> None:
        check_k(self.k)
        if self.n < 1:
            raise HeadwiseError(f"--n must be at least 1, got {self.n}.")
        if self.max_new_tokens < 1:
            raise HeadwiseError(f"--max-new-tokens must be at least 1, got {self.max_new_tokens}.")


def check_k(k: int, num_heads: int | None = None) -> int:
    if k < 1 or (num_heads is not None and k > num_heads):
        top = f"the model's {num_heads} heads per layer" if num_heads is not None else "the heads per layer"
        raise HeadwiseError(f"--k must be between 1 and {top}, got {k}.")
    return k


def token_starts(tokenizer, ids: list[int]) -> list[int]:
    """Where each token's text starts in the decoded caption (prefix decodes: decoding is not per token)."""
    starts, previous = [], 0
    for i in range(len(ids)):
        starts.append(previous)
        previous = len(tokenizer.decode(ids[: i + 1], skip_special_tokens=True))
    return starts


def token_at(starts: list[int], char: int) -> int:
    """The token whose text holds character `char`: the last one starting at or before it."""
    return max(i for i, s in enumerate(starts) if s <= char)  # starts[0] is 0


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the sentences; the last one may be cut short by the token cap."""
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        spans.append((start, m.end()))
        start = m.end()
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans


def top_share(vhd: np.ndarray, share: float) -> float:
    """The share of the map's total VHD that its top `share` of heads hold (at least one head)."""
    flat = np.sort(vhd.ravel())[::-1]
    total = flat.sum()
    return float(flat[: max(1, math.ceil(share * flat.size))].sum() / total) if total > 0 else 0.0


def _gray(size: tuple[int, int]):
    from PIL import Image

    return Image.new("RGB", size, (128, 128, 128))


def describe_image(model, processor, path: Path, truth: set[str], synonyms, cfg: AnalyzeConfig, gray_maps: dict) -> dict:
    """Caption one image greedily and score every token, mention and sentence with T-VHD."""
    image = load_image(path)
    out = generate_greedy(model, processor, [image], [cfg.prompt], max_new_tokens=cfg.max_new_tokens)
    tok = getattr(processor, "tokenizer", processor)
    ids = out.sequences[0]
    ids = ids[ids != tok.pad_token_id] if tok.pad_token_id is not None else ids
    text = out.texts[0]
    tv = token_vhd(model, processor, image, cfg.prompt, ids, k=cfg.k)
    starts = token_starts(tok, ids.tolist())
    mentions = [{"word": word, "category": category, "hallucinated": category not in truth,
                 "token": token_at(starts, start), "start": start}
                for word, category, start in chair_mod.find_mentions(text, synonyms)]
    for m in mentions:
        m["t_vhd"] = tv["t_vhd"][m["token"]]
    spans = []
    for a, b in sentences(text):
        tokens = [i for i, s in enumerate(starts) if a <= s < b]
        if tokens:
            spans.append({"text": text[a:b].strip(), "token": tokens[0],
                          "t_vhd": float(np.mean([tv["t_vhd"][i] for i in tokens])),
                          "hallucinated": any(a <= m["start"] < b and m["hallucinated"] for m in mentions)})
    if image.size not in gray_maps:
        gray_maps[image.size] = head_divergence(model, processor, _gray(image.size), cfg.prompt)
    return {"caption": text, "tokens": len(starts), "ids": ids.tolist(), "t_vhd": tv["t_vhd"], "mentions": mentions, "sentences": spans,
            "first_vhd": tv["vhd"][0].tolist(), "gray_vhd": gray_maps[image.size].tolist()}


def _interval(values: list[float]) -> list[float] | None:
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))] if values else None


def level_auroc(units: list[list[dict]], reps: int, seed: int) -> dict:
    """AUROC of correct over hallucinated units (mentions or sentences), grouped by image, with a bootstrap
    95% interval from `reps` resamples of the images (resamples without both kinds are skipped); the same
    for the position control (score: minus the unit's first token index), and T-VHD's rank correlation with
    minus that index (positive: earlier units score higher)."""
    scores = np.array([u["t_vhd"] for group in units for u in group], dtype=float)
    place = np.array([-u.get("token", 0) for group in units for u in group], dtype=float)
    bad = np.array([u["hallucinated"] for group in units for u in group], dtype=bool)
    owner = np.array([i for i, group in enumerate(units) for _ in group], dtype=int)
    value, control = auroc(scores[~bad], scores[bad]), auroc(place[~bad], place[bad])
    rng = np.random.default_rng(seed)
    boot, boot_control = [], []
    for _ in range(reps if value is not None else 0):
        counts = np.bincount(rng.integers(0, len(units), len(units)), minlength=len(units))[owner]
        v = auroc(scores[~bad], scores[bad], counts[~bad], counts[bad])
        if v is not None:
            boot.append(v)
            boot_control.append(auroc(place[~bad], place[bad], counts[~bad], counts[bad]))
    return {"auroc": value, "ci95": _interval(boot), "bootstrap_resamples": len(boot),
            "position_auroc": control, "position_ci95": _interval(boot_control),
            "t_vhd_vs_position_spearman": spearman(scores, place) if len(scores) > 1 else None,
            "n_correct": int((~bad).sum()), "n_hallucinated": int(bad.sum()),
            "mean_t_vhd_correct": float(scores[~bad].mean()) if (~bad).any() else None,
            "mean_t_vhd_hallucinated": float(scores[bad].mean()) if bad.any() else None}


def summarize(rows: list[dict], cfg: AnalyzeConfig) -> dict:
    maps = [np.asarray(r["first_vhd"]) for r in rows]
    gray = [spearman(m, np.asarray(r["gray_vhd"])) for m, r in zip(maps, rows)]
    other = [spearman(maps[i], maps[(i + 1) % len(maps)]) for i in range(len(maps))] if len(maps) > 1 else []
    shares = [top_share(m, cfg.top_share) for m in maps]
    return {
        "words": level_auroc([r["mentions"] for r in rows], cfg.bootstrap, cfg.seed),
        "sentences": level_auroc([r["sentences"] for r in rows], cfg.bootstrap, cfg.seed),
        "images": len(rows),
        "mean_caption_tokens": float(np.mean([r["tokens"] for r in rows])),
        "mean_t_vhd_all_tokens": float(np.mean([v for r in rows for v in r["t_vhd"]])),
        "top_heads_share": {"share_of_heads": cfg.top_share, "mean": float(np.mean(shares)),
                            "std": float(np.std(shares))},
        "rank_correlation": {"with_gray_image": float(np.mean(gray)),
                             "with_another_image": float(np.mean(other)) if other else None},
    }


def plots(rows: list[dict], run: Run) -> dict:
    """tvhd_hist.png (Fig. 3: correct vs hallucinated, words and sentences) and vhd_heatmap.png (Fig. 2)."""
    import matplotlib.pyplot as plt

    from headwise.plots import heatmap, save

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, level, name in zip(axes, ("mentions", "sentences"), ("words (object mentions)", "sentences")):
        units = [u for r in rows for u in r[level]]
        for bad, color, label in ((False, "tab:blue", "correct"), (True, "tab:red", "hallucinated")):
            values = [u["t_vhd"] for u in units if u["hallucinated"] == bad]
            if values:
                ax.hist(values, bins=20, alpha=0.55, color=color, density=True, label=f"{label} ({len(values)})")
        ax.set(title=f"T-VHD of {name}", xlabel="T-VHD", ylabel="density")
        ax.legend()
    fig.tight_layout()
    hist = save(fig, run.path("tvhd_hist.png"))
    mean_map = np.mean([np.asarray(r["first_vhd"]) for r in rows], axis=0)
    heat = heatmap(mean_map, run.path("vhd_heatmap.png"), f"mean VHD at the first step ({len(rows)} images)", "VHD (L2)")
    return {"tvhd_hist": str(hist), "vhd_heatmap": str(heat)}


@dataclass
class ImageSet:
    """The sampled images, each with its ground-truth objects, and the vocabulary that found them."""

    folder: Path
    items: list[dict]  # {"image_id", "file"}
    truths: dict[int, set[str]]
    synonyms: chair_mod.Synonyms


def image_set(images: str | Path, annotations: str | Path, n: int, seed: int,
              synonyms: str | Path | None = None) -> ImageSet:
    """Sample n annotated images (as `eval chair` does) and check that some annotated object is among them."""
    if n < 1:
        raise HeadwiseError(f"--n must be at least 1, got {n}.")
    ann = chair_mod.load_annotations(annotations)
    vocab = chair_mod.load_synonyms(synonyms)
    items = sample_images(Path(images), ann, n, seed)
    truths = {it["image_id"]: ann.ground_truth(it["image_id"], vocab) for it in items}
    if not any(truths.values()):
        raise HeadwiseError(f"none of the {len(items)} sampled images has an annotated object in {annotations}, so "
                            "no mention can be told correct or hallucinated; give annotations with objects.")
    return ImageSet(Path(images), items, truths, vocab)


def open_run(out: str | Path | None, model_name: str, dtype: str, images: str | Path, annotations: str | Path,
             synonyms: str | Path | None, cfg: AnalyzeConfig, model=None) -> Run:
    """The run directory of `vhr analyze`; with the model, --k is checked against its heads first."""
    if model is not None:
        check_k(cfg.k, layout(model).num_heads)
    return Run(out, "vhr analyze", {"model": model_name, "images": str(images), "annotations": str(annotations),
                                    "synonyms": None if synonyms is None else str(synonyms), "dtype": dtype}, cfg)


def analyze(model, processor, images: ImageSet, cfg: AnalyzeConfig, run: Run) -> dict | None:
    """The `vhr analyze` recipe: the analysis into `run` (resumable per image). Returns the results on the main
    process."""
    check_k(cfg.k, layout(model).num_heads)
    if process_state().is_main_process:
        run.write_json("image_ids.json", images.items)
    gray_maps: dict = {}

    def work(batch: list[dict]) -> list[dict]:
        return [describe_image(model, processor, images.folder / it["file"], images.truths[it["image_id"]],
                               images.synonyms, cfg, gray_maps) for it in batch]

    rows = run_items(run, "captions", images.items, "image_id", work, desc="analysing")
    if rows is None:
        return None
    ok = [r for r in rows if "error" not in r]
    failures = [{"image_id": r["image_id"], "error": r["error"]} for r in rows if "error" in r]
    if not ok:
        raise HeadwiseError(f"every image failed; the first error: {failures[0]['error']}")
    lines = [{"image_id": r["image_id"], **{k: m[k] for k in ("word", "category", "hallucinated", "token", "t_vhd")}}
             for r in ok for m in r["mentions"]]
    write_jsonl(run.path("mentions.jsonl"), lines)
    result = {"analysis": asdict(cfg), **summarize(ok, cfg), "failures": failures, "plots": plots(ok, run)}
    run.finish(result)
    return result


def summary_text(result: dict) -> str:
    """The headline numbers in a few lines."""
    def level(name: str, r: dict) -> str:
        if r["auroc"] is None:
            return f"{name}: {r['n_correct']} correct, {r['n_hallucinated']} hallucinated; AUROC needs both"
        ci = "" if r["ci95"] is None else f" (95% CI {r['ci95'][0]:.3f}-{r['ci95'][1]:.3f})"
        return (f"{name}: AUROC {r['auroc']:.3f}{ci}, position alone {r['position_auroc']:.3f}; {r['n_correct']} "
                f"correct (mean T-VHD {r['mean_t_vhd_correct']:.3f}), {r['n_hallucinated']} hallucinated (mean "
                f"{r['mean_t_vhd_hallucinated']:.3f})")

    rc = result["rank_correlation"]
    other = "n/a" if rc["with_another_image"] is None else f"{rc['with_another_image']:.3f}"
    return "\n".join([
        f"{result['images']} images, {result['mean_caption_tokens']:.1f} tokens per caption",
        level("words", result["words"]), level("sentences", result["sentences"]),
        f"top {100 * result['top_heads_share']['share_of_heads']:.0f}% of heads hold "
        f"{100 * result['top_heads_share']['mean']:.1f}% of the first step's VHD (mean over images)",
        f"rank correlation of an image's VHD map with a gray image's: {rc['with_gray_image']:.3f}; "
        f"with another image's: {other}",
    ])
