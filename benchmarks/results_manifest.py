"""The committed results in benchmarks/results/: summaries loose, raw logs packed, a manifest.json per folder.

Raw logs (per-step SEEKR `losses.jsonl`, per-mention VHR `mentions.jsonl`: every `*.jsonl` but the small
summaries named in LOOSE) live in one archive per experiment folder, `raw.tar.gz`, at their paths relative
to that folder. Summaries (results.json, table.md, config.yaml, plots) stay loose. Run from the repository
root:

    python benchmarks/results_manifest.py pack [DIR ...]    # DIR's loose raw logs into DIR/raw.tar.gz
    python benchmarks/results_manifest.py unpack DIR [...]  # DIR/raw.tar.gz back into DIR, for inspection
    python benchmarks/results_manifest.py manifest          # write every folder's manifest.json
    python benchmarks/results_manifest.py check             # exit 1 on any problem, printed

`pack` (default: every folder) merges the loose logs into the archive's members and deletes the loose copies
(`--keep` keeps them); the archive is deterministic (sorted members, mtime 0, uid/gid 0, gzip mtime 0), so
packing the same files again gives the same bytes. Unpacked logs are ignored by benchmarks/results/.gitignore,
so they are not committed loose by accident. Example: rebuild the SEEKR loss parts of one cell with

    python benchmarks/results_manifest.py unpack benchmarks/results/seekr_claim
    headwise cl report "benchmarks/results/seekr_claim/seekr@0.01-seed0"

A manifest.json holds, per experiment: the command that produced it (from docs/results.md or the folder's
README), the commit (`env.git` of its results file where recorded, else the last commit of its files, and
`commit_from` says which), the sha256 of the canonical JSON of its recorded config, how to rebuild it, and
its files with their kind (summary, plot, config, readme, archive, weights); an archive lists its members
with sha256, bytes and lines. The top-level manifest covers the loose files directly in benchmarks/results/.
`check` fails when a raw log is tracked loose, when tracked benchmarks/*.jsonl hold 2,000 lines or more, when a
file is in no manifest (or a listed one is gone), or when an archive's members differ from its manifest.
"""

from __future__ import annotations

import argparse
import fnmatch
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ARCHIVE = "raw.tar.gz"
LOOSE = {"gemma_depth/serve_dense.jsonl", "gemma_depth/serve_results.jsonl"}  # served results, 4 lines: summaries
MAX_LINES = 2000
NOT_LISTED = {"manifest.json", ".gitignore"}
UNPACK = "python benchmarks/results_manifest.py unpack benchmarks/results/{}"
REPORT = "{} && headwise cl report benchmarks/results/{}"
SCENES = "--images runs/abl/base/scenes-seed0/images --annotations runs/abl/base/scenes-seed0/annotations"


def exp(name, files, command, main=None, config=None, rebuild=None, what=None, source="docs/results.md"):
    """One experiment: the files it owns (globs relative to its folder), its command(s), the results file
    whose `env.git` and `config` are recorded (`main`) or the YAML file holding its config, how to rebuild
    what is not a summary, descriptions of particular files (glob -> text), and where the command is given."""
    return {"name": name, "files": files, "command": command, "main": main, "config": config,
            "rebuild": rebuild or "the summaries are the whole result; rerun the command to measure again",
            "what": what or {}, "source": source}


CL_CLAIM = ("headwise cl table --model smollm2 --lora --lr 1e-3 --batch-size 4 --max-len 112 --max-new-tokens 12 "
            "--eval-batch-size 16 --wiki-train 500 --wiki-test 50 --tasks 3 --seeds 0,1,2 --jobs 2 "
            "--methods seqft,replay@0.01,replay@0.1,derpp@0.01,seekr@0.01,seekr@0.01:lam=7 --out runs/seekr-claim")
CL_PAPER_CLAIM = ("headwise cl table --model smollm2 --preset paper --batch-size 8 --effective-batch 16 --max-len 112 "
                  "--max-new-tokens 12 --eval-batch-size 32 --wiki-train 100 --wiki-test 500 --tasks 3 --seeds 0,1,2 "
                  "--jobs 2 --methods seqft,replay@0.01,replay@0.1,seekr@0.01 --out runs/seekr-paper-claim")
EXPERIMENTS = {
    "": [
        exp("hook_overhead", ["hook_overhead.json"], ["python benchmarks/hook_overhead.py"], "hook_overhead.json",
            what={"*": "median seconds and ratios: no hooks, identity hooks, scale_heads"}),
        exp("seekr_cost", ["seekr_cost.json"], ["python benchmarks/seekr_cost.py --repeats 3 --train-items 16"],
            "seekr_cost.json", what={"*": "seconds per step SEEKR vs replay, teacher store bytes"}),
        exp("seekr_table_64_items", ["seekr_table.*"],
            ["headwise cl table --model smollm2 --lora --lr 1e-3 --batch-size 4 --max-len 112 --max-new-tokens 12 "
             "--eval-batch-size 16 --wiki-train 64 --wiki-test 16 --seeds 0,1,2 --jobs 2 --out runs/cl-table-jobs2"],
            "seekr_table.json", rebuild="the table only: its cells were not committed"),
        exp("testbed", ["testbed_table.md", "testbed_subruns.tar.gz"],
            ["headwise testbed evaluate --out runs/tb-full --n 200 --seeds 0,1,2 --batch-size 24"],
            rebuild="mkdir -p runs/tb-full && tar xzf benchmarks/results/testbed_subruns.tar.gz -C runs/tb-full, "
                    "then the command: every sub-run is found finished and the table is collected",
            what={"*.tar.gz": "all 48 sub-runs (captions, answers, scores and their configs)"}),
        exp("unicuco_requests_smollm2", ["unicuco_requests_smollm2.*", "unicuco_requests_smollm2_*"],
            ["OMP_NUM_THREADS=1 python benchmarks/unicuco_requests.py --model smollm2 --windows 4 --requests 64 "
             "--search-requests 8"], "unicuco_requests_smollm2.json",
            what={"*fit_evals.json": "the fit's true evaluations", "*.json": "the report (every KL held out)"}),
        exp("unicuco_requests_gemma3-270m", ["unicuco_requests_gemma3-270m.*"],
            ["OMP_NUM_THREADS=1 python benchmarks/unicuco_requests.py --model gemma3-270m --windows 4 --requests 64 "
             "--search-requests 8"], "unicuco_requests_gemma3-270m.json",
            rebuild="its parts are in unicuco_bench_gemma3-270m_parts/ (see that folder's manifest)"),
        exp("unicuco_gp_structure", ["unicuco_gp_structure_*"], ["python benchmarks/unicuco_gp_structure.py"],
            what={"*_data.json": "the 120 strategies and their measured KLs (the script's input)",
                  "*": "correlations of predicted and measured shape effects per GP"}),
        exp("unicuco_inputs", ["unicuco_inputs_*"], ["python benchmarks/unicuco_inputs.py"],
            "unicuco_inputs_smollm2.json",
            what={"*": "KL, perplexity and apply time of five strategies, one-shot against sequential statistics"},
            source="docs/parity.md"),
        exp("vhr_head_norms", ["vhr_head_norms_*"],
            ["python benchmarks/vhr_head_norms.py --images runs/abl/base/scenes-seed0/images --n 40"],
            "vhr_head_norms_emoji-llava.json", what={"*": "head contribution norms and overlaps of VHD's choices"}),
        exp("vhr_overhead", ["vhr_overhead*.json"], ["python benchmarks/vhr_overhead.py --model emoji-llava"],
            "vhr_overhead.json", what={"*loaded*": "an earlier run on a loaded machine (kept, says little)",
                                       "*": "seconds per sample and ratios to greedy: VHR, VCD, PAI"}),
    ],
    "gemma_depth": [exp(
        "gemma_depth", ["*"],
        ["headwise compress fit --model gemma3-270m --space depth --evals 32 --out runs/compress-fit/gemma-depth",
         "headwise compress serve --stratnet runs/compress-fit/gemma-depth ... (sparsity 0.17 and 0.33, preference "
         "(0.5, 0.5); the exact serve lines were not recorded)"], config="fit_config.yaml",
        rebuild="the served results are in serve_*.jsonl; the fit's StratNet was not committed: rerun the fit",
        what={"fit_evals.json": "the fit's evaluations", "serve_*.jsonl": "served results, one line per request"})],
    "gemma_seekr": [exp(
        "gemma_seekr", ["*"],
        ["headwise cl run --model gemma3-270m --lora --lr 1e-3 --batch-size 4 --max-len 112 --max-new-tokens 12 "
         "--eval-batch-size 16 --wiki-train 64 --wiki-test 16 --tasks 2 --seed 0 --out runs/gemma-seekr"],
        "results.json", rebuild="loss parts: " + REPORT.format(UNPACK.format("gemma_seekr"), "gemma_seekr"))],
    "seekr_claim": [exp(
        "seekr_claim", ["*"], [CL_CLAIM], "results.json",
        rebuild="table: cp -r benchmarks/results/seekr_claim runs/seekr-claim, then the command (every cell is "
                "found finished from its results.json, nothing is trained); loss parts of a cell: "
                + REPORT.format(UNPACK.format("seekr_claim"), "seekr_claim/CELL"),
        what={"results.json": "the table's results (per-cell numbers, paired differences)",
              "*/results.json": "the cell's results (score matrix, OP/BWT/FWT, timing)"})],
    "seekr_pilot": [exp(
        "seekr_pilot", ["*"],
        ["headwise cl run --model smollm2 --benchmark wiki --method seekr --replay 0.01 --tasks 2 --lora --lr 1e-3 "
         "--batch-size 4 --max-len 112 --max-new-tokens 12 --eval-batch-size 16 --wiki-train 500 --wiki-test 50 "
         "--seed 0 --out runs/pilot-seekr", "headwise cl report runs/pilot-seekr"],
        "results.json", rebuild="loss parts: " + REPORT.format(UNPACK.format("seekr_pilot"), "seekr_pilot"))],
    "seekr_paper_pilot": [exp(
        "seekr_paper_pilot", ["*"],
        ["headwise cl run --model smollm2 --method seqft --lr 1e-5 --epochs 5 --batch-size 8 --grad-accum 2 "
         "--max-len 112 --max-new-tokens 12 --eval-batch-size 16 --wiki-train 64 --wiki-test 100 --tasks 3 --seed 0 "
         "--out runs/seekr-paper-pilot"],
        "results.json", rebuild="loss parts: " + REPORT.format(UNPACK.format("seekr_paper_pilot"),
                                                               "seekr_paper_pilot"))],
    "seekr_paper_claim": [exp(
        "seekr_paper_claim", ["*"], [CL_PAPER_CLAIM], config="config.yaml",
        rebuild="all 12 cells are here: cp -r benchmarks/results/seekr_paper_claim runs/seekr-paper-claim, then the "
                "command finds them finished and rewrites table.md, results.json and table.png; loss parts of a cell: "
                + REPORT.format(UNPACK.format("seekr_paper_claim"), "seekr_paper_claim/CELL"),
        what={"*/results.json": "the cell's results (score matrix, OP/BWT/FWT, op_se, timing)",
              "base-rows/*.json": "the untrained model's row, shared by the cells (headwise.cl.shared_base)"})],
    "unicuco_bench_gemma3-270m_parts": [exp(
        "unicuco_bench_gemma3-270m_parts", ["*"],
        ["OMP_NUM_THREADS=1 python benchmarks/unicuco_requests.py --model gemma3-270m --windows 4 --requests 64 "
         "--search-requests 8"], config="fit/config.yaml",
        rebuild="cp -r this folder to runs/unicuco-bench/gemma3-270m and rerun the command: nothing is computed again",
        source="docs/results.md, README.md",
        what={"measure/*": "one held-out KL and perplexity of one strategy", "search/*": "one per-request search",
              "fit/evals.json": "the fit's evaluations", "fit/stratnet.*": "the fitted StratNet (shipped)",
              "model.json": "which model the parts belong to"})],
    "unicuco_trials": [exp(
        "unicuco_trials", ["*"],
        ["python benchmarks/unicuco_requests.py --model smollm2 --requests 12 --search-requests 0 --windows 2",
         "python benchmarks/unicuco_requests.py --model smollm2 --requests 12 --search-requests 0 --windows 4",
         "OMP_NUM_THREADS=1 python benchmarks/unicuco_requests.py --model smollm2 --windows 4 --requests 64 "
         "--search-requests 8 --spread 0.1"],
        rebuild="reports only; each was written with --out to its name here; each file's env.git is listed",
        source="README.md (the 12-request trials), docs/results.md (--spread 0.1)",
        what={"*.json": "a trial report of benchmarks/unicuco_requests.py"})],
    "vhr_ablation": [
        exp("vhr_ablation", ["README.md", "table.md", "subruns.tar.gz"],
            ["headwise testbed evaluate --out runs/abl/base --n 200 --seeds 0 --splits none --batch-size 24 "
             "--methods greedy,vhr",
             "headwise testbed evaluate --out runs/abl/random --n 200 --seeds 0 --splits none --batch-size 24 "
             "--methods vhr --heads random",
             "and the same with --heads complement, --positions generated, --layers 1, --layers 17-29, "
             "--heads random --layers 17-29 and --alpha 0.5, each into its own folder"],
            rebuild="tar xzf benchmarks/results/vhr_ablation/subruns.tar.gz -C runs/abl and rerun a setting's "
                    "command: everything is found computed (README.md)",
            what={"subruns.tar.gz": "every setting's run folder (config, captions, CHAIR details, results)"}),
        exp("vhr_ablation/analyze", ["analyze/*", ARCHIVE],
            [f"headwise vhr analyze --model emoji-llava {SCENES} --n 200 --seed 0 --k 8 --out runs/abl/analyze"],
            "analyze/results.json",
            rebuild="AUROCs and counts are in analyze/results.json; the per-mention scores: "
                    + UNPACK.format("vhr_ablation") + " (analyze/mentions.jsonl)"),
    ],
    "vhr_analyze_emoji30": [exp(
        "vhr_analyze_emoji30", ["*"],
        [f"headwise vhr analyze --model emoji-llava {SCENES} --n 30 --seed 0 --k 8 --out runs/analyze-emoji30 "
         "(docs: the 200-scene command with --n 30; the recorded run read the scenes from /tmp/wt14/scenes30)"],
        "results.json", rebuild="AUROCs and counts are in results.json; the per-mention scores: "
                                + UNPACK.format("vhr_analyze_emoji30") + " (mentions.jsonl)")],
    "vhr_ft": [
        exp("vhr_ft/train", ["train/*"], ["headwise testbed train --full-ft --out runs/tb-ft"], "train/results.json",
            rebuild="the weights (274 MB) are not committed: rerun the command"),
        exp("vhr_ft/evaluate", ["subruns.tar.gz"],
            ["headwise testbed evaluate --model runs/tb-ft/emoji_llava.safetensors --out runs/ft/base --n 200 "
             "--seeds 0 --splits random --batch-size 24 --methods greedy,vhr",
             "headwise testbed evaluate --model runs/tb-ft/emoji_llava.safetensors --out runs/ft/random --n 200 "
             "--seeds 0 --splits none --batch-size 24 --methods vhr --heads random"],
            rebuild="tar xzf benchmarks/results/vhr_ft/subruns.tar.gz -C runs/ft",
            what={"subruns.tar.gz": "the evaluation sub-runs (base, random)"}),
        exp("vhr_ft/analyze", ["analyze/*", ARCHIVE],
            ["headwise vhr analyze --model runs/tb-ft/emoji_llava.safetensors "
             "--images runs/ft/base/scenes-seed0/images --annotations runs/ft/base/scenes-seed0/annotations "
             "--n 200 --seed 0 --k 8 --out runs/ft/analyze"],
            "analyze/results.json",
            rebuild="AUROCs and counts are in analyze/results.json; the per-mention scores: "
                    + UNPACK.format("vhr_ft") + " (analyze/mentions.jsonl)"),
    ],
}

KINDS = [  # (glob on the file name, kind, what); the first match wins
    (ARCHIVE, "archive", "raw logs packed by benchmarks/results_manifest.py (unpack: {unpack})"),
    ("*.tar.gz", "archive", "archive"),
    ("losses.png", "plot", "loss parts per micro-step (from losses.jsonl)"),
    ("matrix.png", "plot", "score on each task after learning each task"),
    ("importance.png", "plot", "SEEKR's cumulative head importance"),
    ("table.png", "plot", "the table as a plot"),
    ("tvhd_hist.png", "plot", "T-VHD of correct and hallucinated mentions"),
    ("vhd_heatmap.png", "plot", "first-step VHD per layer and head"),
    ("*.png", "plot", "plot"),
    ("*config.yaml", "config", "the command and its settings as run"),
    ("README.md", "readme", "what the folder holds and how it was made"),
    ("results.json", "summary", "the run's results (command, config, env, numbers)"),
    ("*.md", "summary", "table"),
    ("captions.jsonl.gz", "summary", "the generated captions, gzipped JSON lines"),
    ("*.safetensors", "weights", "weights"),
    ("*", "summary", "results"),
]


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def config_sha256(config) -> str:
    return sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode())


def folders() -> list[str]:
    return [""] + sorted(p.name for p in RESULTS.iterdir() if p.is_dir())


def files_of(folder: str) -> list[str]:
    """The folder's files (below it; the top level: only those directly in it), tracked or not ignored."""
    base = RESULTS / folder
    out = git("ls-files", "--cached", "--others", "--exclude-standard", "--", str(base)).splitlines()
    rel = sorted({str((ROOT / p).relative_to(base)) for p in out if (ROOT / p).is_file()})
    return [p for p in rel if Path(p).name not in NOT_LISTED and (folder or "/" not in p)]


def is_raw(rel: str) -> bool:
    """A raw log, by its path relative to benchmarks/results."""
    return rel.endswith(".jsonl") and rel not in LOOSE


def read_archive(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def write_archive(path: Path, members: dict[str, bytes]) -> None:
    """Deterministic: sorted members, mtime 0, uid/gid 0 without owner names, gzip mtime 0 and no file name."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(members):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = (
                len(members[name]), 0, 0o644, 0, 0, "", "")
            tar.addfile(info, io.BytesIO(members[name]))
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=9) as gz:
        gz.write(buf.getvalue())
    os.replace(tmp, path)


def pack(folder: str, keep: bool) -> None:
    base = RESULTS / folder
    loose = {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*.jsonl"))
             if is_raw(str(p.relative_to(RESULTS)))}
    if not loose:
        return
    archive = base / ARCHIVE
    members = read_archive(archive) if archive.is_file() else {}
    changed = sorted(k for k, v in loose.items() if members.get(k) not in (None, v))
    members.update(loose)
    write_archive(archive, members)
    assert read_archive(archive) == members
    lines = sum(v.count(b"\n") for v in members.values())
    print(f"{archive.relative_to(ROOT)}: {len(members)} files, {lines} lines, {archive.stat().st_size} bytes"
          + (f"; replaced {', '.join(changed)}" if changed else ""))
    if not keep:
        for rel in loose:
            (base / rel).unlink()


def unpack(folder: str, force: bool) -> None:
    base = (RESULTS / folder).resolve()
    if not (base / ARCHIVE).is_file():
        sys.exit(f"{base / ARCHIVE} does not exist")
    for name, data in read_archive(base / ARCHIVE).items():
        target = (base / name).resolve()
        if base not in target.parents:
            sys.exit(f"unsafe member {name!r} in {base / ARCHIVE}")
        if target.is_file() and target.read_bytes() != data and not force:
            print(f"kept {target.relative_to(ROOT)}: it differs from the archive (--force overwrites)")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        print(f"{target.relative_to(ROOT)}")


def describe(folder: str, rel: str, what: dict) -> dict:
    path = RESULTS / folder / rel
    kind, text = next((k, t) for g, k, t in KINDS if fnmatch.fnmatch(Path(rel).name, g))
    text = next((t for g, t in what.items() if fnmatch.fnmatch(rel, g)), text).format(unpack=UNPACK.format(folder))
    entry = {"path": rel, "kind": kind, "what": text}
    if rel.endswith(".json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("env"), dict) and data["env"].get("git"):
            entry["git"] = data["env"]["git"]
        if isinstance(data, dict) and isinstance(data.get("config"), dict):
            entry["config_sha256"] = config_sha256(data["config"])
    if rel.endswith(".tar.gz"):
        entry["members"] = [{"path": n, "sha256": sha256(d), "bytes": len(d), "lines": d.count(b"\n")}
                            for n, d in sorted(read_archive(path).items())]
    return entry


def recorded_config(folder: str, e: dict) -> tuple[str | None, str]:
    if e["config"]:  # a YAML file written by headwise's Run (PyYAML is a headwise dependency)
        import yaml

        config = yaml.safe_load((RESULTS / folder / e["config"]).read_text())["config"]
        return config_sha256(config), f"{e['config']}: config"
    data = json.loads((RESULTS / folder / e["main"]).read_text()) if e["main"] else {}
    for key in ("config", "settings"):
        if isinstance(data.get(key), dict):
            return config_sha256(data[key]), f"{e['main']}: {key}"
    where = " (each sub-run's config.yaml is in subruns.tar.gz)" if any("subruns" in f for f in e["files"]) else ""
    return None, "none: no config dict recorded, the command's options are its settings" + where


def manifest(folder: str) -> dict:
    rels, experiments = files_of(folder), []
    owned = set()
    for e in EXPERIMENTS.get(folder, []) + [exp("other", ["*"], [])]:
        mine = [r for r in rels if r not in owned and any(fnmatch.fnmatch(r, g) for g in e["files"])]
        owned.update(mine)
        if not mine:
            continue
        git_of_main = describe(folder, e["main"], {}).get("git") if e["main"] else None
        if git_of_main:
            commit, commit_from = git_of_main, f"{e['main']}: env.git, the code the results were computed with"
        else:
            summaries = [str(RESULTS / folder / r) for r in mine if r != ARCHIVE]
            commit = git("log", "-1", "--format=%h", "--", *summaries).strip() or None
            commit_from = "git log -1 of these files (when they were last committed; no env.git recorded)"
        config, config_from = recorded_config(folder, e)
        experiments.append({
            "name": e["name"], "command": e["command"],
            "command_from": e["source"] if e["command"] else "not described in benchmarks/results_manifest.py",
            "commit": commit, "commit_from": commit_from, "config_sha256": config, "config_from": config_from,
            "rebuild": e["rebuild"], "files": [describe(folder, r, e["what"]) for r in mine]})
    return {"folder": f"benchmarks/results/{folder}".rstrip("/"),
            "generated_by": "python benchmarks/results_manifest.py manifest", "experiments": experiments}


def check() -> list[str]:
    errors = []
    tracked = git("ls-files", "-z", "benchmarks/*.jsonl").split("\0")
    lines = 0
    for p in filter(None, tracked):
        if is_raw(p.removeprefix("benchmarks/results/")):
            errors.append(f"{p}: raw log tracked loose (pack its folder, then git rm --cached it)")
        lines += (ROOT / p).read_bytes().count(b"\n") if (ROOT / p).is_file() else 0
    if lines >= MAX_LINES:
        errors.append(f"tracked benchmarks/*.jsonl hold {lines} lines (limit {MAX_LINES})")
    for folder in folders():
        path = RESULTS / folder / "manifest.json"
        if not path.is_file():
            errors.append(f"{path.relative_to(ROOT)}: missing (run `manifest`)")
            continue
        listed = {f["path"]: f for e in json.loads(path.read_text())["experiments"] for f in e["files"]}
        present = set(files_of(folder))
        errors += [f"{folder}/{r}: in no manifest (run `manifest`)" for r in sorted(present - set(listed))]
        errors += [f"{folder}/{r}: in the manifest but missing" for r in sorted(set(listed) - present)]
        for rel, entry in listed.items():
            if "members" not in entry or rel not in present:
                continue
            want = {m["path"]: m["sha256"] for m in entry["members"]}
            have = {n: sha256(d) for n, d in read_archive(RESULTS / folder / rel).items()}
            errors += [f"{folder}/{rel}: member {n} differs from the manifest"
                       for n in sorted(set(want) | set(have)) if want.get(n) != have.get(n)]
            for n, digest in have.items() if rel == ARCHIVE else ():  # unpacked copies: fine while they are equal
                loose = RESULTS / folder / n
                if loose.is_file() and sha256(loose.read_bytes()) != digest:
                    print(f"warning: {loose.relative_to(ROOT)} differs from {folder}/{ARCHIVE} (pack it again)")
    return errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="loose raw logs of each DIR into DIR/raw.tar.gz (default: every folder)")
    p.add_argument("dirs", nargs="*")
    p.add_argument("--keep", action="store_true", help="keep the loose copies")
    u = sub.add_parser("unpack", help="DIR/raw.tar.gz back into DIR")
    u.add_argument("dirs", nargs="+")
    u.add_argument("--force", action="store_true", help="overwrite loose copies that differ from the archive")
    sub.add_parser("manifest", help="write every folder's manifest.json")
    sub.add_parser("check", help="raw logs packed, manifests complete, archive members as listed")
    args = ap.parse_args()

    def folder_of(d: str) -> str:
        rel = os.path.relpath(Path(d).resolve(), RESULTS.resolve())
        if rel not in folders()[1:]:
            sys.exit(f"{d} is not a folder directly in {RESULTS.relative_to(ROOT)}")
        return rel

    if args.cmd == "pack":
        for folder in [folder_of(d) for d in args.dirs] or folders()[1:]:
            pack(folder, args.keep)
    elif args.cmd == "unpack":
        for d in args.dirs:
            unpack(folder_of(d), args.force)
    elif args.cmd == "manifest":
        for folder in folders():
            path = RESULTS / folder / "manifest.json"
            path.write_text(json.dumps(manifest(folder), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            print(path.relative_to(ROOT))
    else:
        errors = check()
        print("\n".join(errors) if errors else "ok: raw logs packed, manifests complete, archive members as listed")
        sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
