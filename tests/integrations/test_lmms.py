"""The `headwise` model of lmms-eval (issue 28): registered through lmms-eval's entry points, its model args
checked in one sentence, and on local testbed tasks lmms-eval's POPE and CHAIR equal headwise's own scoring of
the same answers, which are the answers `headwise eval pope --model` gives."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from headwise.errors import HeadwiseError

pytest.importorskip("lmms_eval", reason="lmms-eval is not installed (make install installs it)")

from headwise.integrations import lmms  # noqa: E402
from headwise.integrations.lmms_tasks import write_tasks  # noqa: E402

OFFLINE = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}


def test_lmms_eval_finds_the_headwise_model_through_its_entry_point():
    from lmms_eval.models import get_model

    assert get_model("headwise") is lmms.Headwise


@pytest.mark.parametrize("args, message", [
    ("pretrained=x,method=beam", "unknown method=beam; choose one of greedy, vhr, vcd, pai."),
    ("pretrained=x,method=vcd,alpha=2", "unknown model arg alpha for method=vcd; valid: pretrained, method, preset"),
    ("pretrained=x,method=vhr,cd_alpha=1,heads=vhd", "unknown model arg cd_alpha for method=vhr; valid:"),
    ("pretrained=x,method=vhr,preset=nope", "unknown preset=nope for method=vhr; choose one of paper, "),
    ("pretrained=x,method=vcd,preset=paper", "unknown preset=paper for method=vcd; it has no presets."),
    ("pretrained=x,method=vhr,alpha=0", "alpha must be > 0"),
    ("pretrained=x,method=vhr,layers=[1,", "not a list like [1,2]"),
])
def test_bad_model_args_are_refused_in_one_sentence_before_the_model_loads(args, message, capsys):
    from lmms_eval.utils import simple_parse_args_string

    with pytest.raises(SystemExit) as exit_:
        lmms.Headwise.create_from_arg_string(args, {"batch_size": 1})
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1
    with pytest.raises(HeadwiseError, match=message.replace("[", r"\[").replace(".", r"\.")):
        lmms.Headwise(**simple_parse_args_string(args))  # from Python: the error itself
    if "valid:" in message:
        valid = err.split("valid: ")[1]
        method = args.split("method=")[1].split(",")[0]
        from headwise.vhr.methods import METHODS

        assert all(name in valid for name in METHODS[method].config.field_names())


def test_an_automatic_batch_size_is_refused():
    # lmms-eval hands --batch_size to the model beside the model args
    with pytest.raises(HeadwiseError, match="batch_size=auto must be a whole number >= 1"):
        lmms.Headwise(pretrained="x", batch_size="auto")


def test_lmms_eval_command_line_ends_with_one_sentence_and_status_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lmms_eval", "eval", "--model", "headwise", "--model_args",
                           "pretrained=x,method=beam", "--tasks", "mme"], capture_output=True, text=True, env=OFFLINE,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout
    assert "error: unknown method=beam; choose one of greedy, vhr, vcd, pai." in proc.stderr


def test_method_settings_come_from_model_args_by_field_name():
    from headwise.vhr.config import PAIConfig, VCDConfig, VHRConfig

    assert lmms.decoding("vhr", alpha=3, layers="[1,2]") == VHRConfig(alpha=3.0, layers=[1, 2])
    assert lmms.decoding("vhr", preset="image-only") == VHRConfig(reinforce_text=False)
    assert lmms.decoding("vcd", cd_alpha=0.5, noise_step=200) == VCDConfig(cd_alpha=0.5, noise_step=200)
    assert lmms.decoding("pai", pai_layers="[2,4]").pai_layers == (2, 4)
    assert lmms.decoding("pai", pai_layers="none") == PAIConfig()


def test_task_generation_kwargs_become_generate_keywords():
    kwargs, until = lmms.generate_kwargs({"max_new_tokens": 8, "temperature": 0, "top_p": 1.0, "do_sample": False,
                                          "until": ["\n\n"], "image_aspect_ratio": "pad"})
    assert kwargs == {"max_new_tokens": 8, "do_sample": False} and until == ["\n\n"]
    kwargs, until = lmms.generate_kwargs({"do_sample": True, "temperature": 0.7, "until": "."})
    assert kwargs == {"do_sample": True, "temperature": 0.7} and until == ["."]
    assert lmms.cut("yes.\n\nThere is", ["\n\n"]) == "yes."


def test_a_missing_harness_names_the_extra_that_installs_it(monkeypatch):
    from headwise.integrations import require

    monkeypatch.setitem(sys.modules, "lmms_eval", None)
    with pytest.raises(HeadwiseError, match=r'lmms_eval is not installed; install it with pip install "headwise\[lmms\]"'):
        require("lmms_eval")
    monkeypatch.setitem(sys.modules, "lm_eval", None)
    with pytest.raises(HeadwiseError, match=r'pip install "headwise\[lm-eval\]"'):
        require("lm_eval")


def lmms_eval(model_args: str, tasks: str, include: Path, out: Path) -> dict:
    """Run lmms-eval's own command line; returns its results.json and the logged samples per task."""
    proc = subprocess.run([sys.executable, "-m", "lmms_eval", "eval", "--model", "headwise", "--model_args", model_args,
                           "--tasks", tasks, "--include_path", str(include), "--output_path", str(out),
                           "--log_samples", "--batch_size", "1"], capture_output=True, text=True, env=OFFLINE,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = sorted(out.rglob("*_results.json"))
    assert results, proc.stdout[-2000:] + proc.stderr[-2000:]
    samples = {task: [json.loads(line) for line in next(out.rglob(f"*_samples_{task}.jsonl")).read_text().splitlines()]
               for task in tasks.split(",")}
    return {"results": json.loads(results[-1].read_text())["results"], "samples": samples}


def headwise_pope(model: str, tasks: dict, out: Path, method: list[str]) -> dict:
    """`headwise eval pope --model` on the same questions: its metrics and its answers by question id."""
    proc = subprocess.run([sys.executable, "-m", "headwise.cli", "eval", "pope", "--model", model, *method,
                           "--questions", tasks["questions"]["random"], "--images", tasks["images"], "--out", str(out),
                           "--json"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    answers = {json.loads(line)["key"]: json.loads(line)["text"]
               for line in (out / "answers.rank0.jsonl").read_text().splitlines()}
    return {"metrics": json.loads(proc.stdout), "answers": answers}


def check_same_scores(run: dict, tasks: dict, tmp_path: Path) -> dict:
    """lmms-eval's POPE and CHAIR numbers against headwise's scoring of the answers lmms-eval logged."""
    from headwise.eval.run import score_chair, score_pope

    pope = run["results"]["headwise_pope_random"]
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps({"question_id": qid, "answer": text}) + "\n"
                               for qid, text in logged_answers(run).items()))
    ours = score_pope(str(answers), tasks["questions"]["random"])
    assert ours["n"] == len(run["samples"]["headwise_pope_random"]) > 0 and ours["unanswered"] == 0
    for name in ("accuracy", "precision", "recall", "f1", "yes_ratio"):
        assert pope[f"pope_{name},none"] == pytest.approx(ours[name], abs=1e-12), name
    if "headwise_chair" not in run["samples"]:
        return ours
    captions = tmp_path / "captions.jsonl"
    captions.write_text("".join(json.dumps({"image_id": s["chair_s"]["image_id"], "caption": s["chair_s"]["caption"]})
                                + "\n" for s in run["samples"]["headwise_chair"]))
    chair = score_chair(str(captions), tasks["annotations"])
    for name in ("chair_s", "chair_i", "recall", "len"):
        assert run["results"]["headwise_chair"][f"{name},none"] == pytest.approx(chair[name], abs=1e-12), name
    return ours


def logged_answers(run: dict) -> dict:
    return {str(s["pope_accuracy"]["question_id"]): s["pope_accuracy"]["answer"]
            for s in run["samples"]["headwise_pope_random"]}


def same_answers(own: dict, run: dict) -> None:
    # lmms-eval strips each response's surrounding whitespace ("Yes.\n\nA.\n\n" -> "Yes.\n\nA."); the tokens
    # decoded are the same.
    assert {k: v.strip() for k, v in own["answers"].items()} == logged_answers(run)


def test_lmms_eval_pope_and_chair_equal_headwise_on_a_tiny_vlm(tmp_path):
    from headwise.testing_vlm import save_tiny_vlm

    model = save_tiny_vlm("llava", tmp_path / "tiny")
    tasks = write_tasks(tmp_path / "tasks", n=2)
    run = lmms_eval(f"pretrained={model},method=vhr,alpha=2", "headwise_pope_random,headwise_chair",
                    Path(tasks["include_path"]), tmp_path / "lmms")
    check_same_scores(run, tasks, tmp_path)
    own = headwise_pope(str(model), tasks, tmp_path / "own", ["--method", "vhr", "--alpha", "2"])
    same_answers(own, run)


@pytest.mark.real
def test_lmms_eval_runs_vhr_on_emoji_llava_as_headwise_does(emoji_llava, tmp_path):
    """The real testbed model: lmms-eval's POPE with method=vhr equals `headwise eval pope --model emoji-llava
    --method vhr` question by question, and its numbers equal headwise's scoring of its answers."""
    from headwise.eval.vlm import PopeConfig
    from headwise.models import load_model
    from headwise.vhr.config import DecodeConfig, VHRConfig
    from headwise.vhr.run import answer_pope, open_pope_run

    tasks = write_tasks(tmp_path / "tasks", n=1)  # 6 questions: the real model is slow on CPU
    run = lmms_eval("pretrained=emoji-llava,method=vhr,alpha=2", "headwise_pope_random", Path(tasks["include_path"]),
                    tmp_path / "lmms")
    ours = check_same_scores(run, tasks, tmp_path)
    # `headwise eval pope --model emoji-llava --method vhr --alpha 2`'s recipe, in this process
    pope = PopeConfig(images=tasks["images"], questions=tasks["questions"]["random"])
    decode = DecodeConfig(method="vhr", options=VHRConfig(alpha=2.0), max_new_tokens=8)
    model, processor = load_model(str(emoji_llava), device="cpu")
    summary = answer_pope(model, processor, pope, decode, open_pope_run(tmp_path / "own", "emoji-llava", "auto", pope,
                                                                          decode))
    answers = {json.loads(line)["key"]: json.loads(line)["text"]
               for line in (tmp_path / "own" / "answers.rank0.jsonl").read_text().splitlines()}
    same_answers({"answers": answers}, run)
    assert {k: summary[k] for k in ("accuracy", "f1", "yes_ratio")} == {k: ours[k] for k in ("accuracy", "f1",
                                                                                             "yes_ratio")}
    assert ours["unparsed"] < 0.5  # the testbed model answers the question (yes/no), not something else
