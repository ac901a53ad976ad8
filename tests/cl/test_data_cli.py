import json
import subprocess
import sys

import pytest
import torch

from headwise.cl import scoring
from headwise.cl.data import collate, encode, load_superni, load_trace
from headwise.errors import HeadwiseError

from cl_helpers import write_trace


def test_trace_loader_and_order_file(tmp_path):
    root = write_trace(tmp_path / "b", tasks=("x", "y", "z"))
    assert [t.name for t in load_trace(root)] == ["x", "y", "z"]
    (root / "orders.json").write_text(json.dumps({"1": ["z", "x", "y"], "2": ["y", "z", "x"]}))
    (root / "metrics.json").write_text(json.dumps({"x": "rouge_l"}))
    tasks = load_trace(root, "2")
    assert [t.name for t in tasks] == ["y", "z", "x"] and tasks[2].metric == "rouge_l" and tasks[0].metric == "accuracy"
    with pytest.raises(HeadwiseError, match="order 3"):
        load_trace(root, "3")


def test_malformed_task_file_names_the_file_and_line(tmp_path):
    root = write_trace(tmp_path / "b")
    bad = root / "b" / "train.json"
    bad.write_text('[\n {"prompt": "p", "answer": "a"},\n {"prompt": "p" "answer": "a"}\n]')
    with pytest.raises(HeadwiseError, match=r"b/train.json line 3: malformed JSON"):
        load_trace(root)
    bad.write_text('[\n {"prompt": "p", "answer": "a"},\n\n {"prompt": "p"}\n]')
    with pytest.raises(HeadwiseError, match=r"b/train.json line 4: item 1 needs"):
        load_trace(root)
    bad.write_text("[]")
    with pytest.raises(HeadwiseError, match="task b .* has no train items"):
        load_trace(root)
    bad.unlink()
    with pytest.raises(HeadwiseError, match=r"task file .*b/train.json is missing"):
        load_trace(root)


def test_superni_layout(tmp_path):
    inst = [{"id": f"t363-{i}", "input": f"text {i}", "output": ["positive" if i % 2 else "negative"]} for i in range(60)]
    (tmp_path / "task363_sst2.json").write_text(json.dumps({"Definition": ["Say the sentiment."], "Instances": inst}))
    (tmp_path / "task073_csqa.json").write_text(json.dumps({"Definition": ["Answer."], "Instances": inst}))
    tasks = load_superni(tmp_path)
    assert [t.name for t in tasks] == ["task073", "task363"]
    assert tasks[1].metric == "accuracy" and tasks[0].metric == "rouge_l"
    assert sum(len(t.train) + len(t.eval) + len(t.test) for t in tasks[:1]) == 60
    assert tasks[0].train[0]["prompt"].startswith("Answer.\n\nInput: text")


def test_encode_masks_the_prompt_and_collate_left_pads(tok):
    ids, labels = encode(tok, {"prompt": "ab", "answer": "c"}, 16)
    assert labels == [-100, -100, ids[2], 2] and ids[-1] == 2
    ids2, labels2 = encode(tok, {"prompt": "abcdefgh", "answer": "c"}, 4)  # cut from the left
    assert len(ids2) == 4 and labels2[-2:] == [ids[2], 2]
    b = collate([(ids, labels), (ids2[:3], labels2[:3])], pad=0)
    assert b["attention_mask"].tolist() == [[1, 1, 1, 1], [0, 1, 1, 1]]
    assert b["position_ids"][1].tolist() == [0, 0, 1, 2]
    assert torch.equal(b["labels"][1, :1], torch.tensor([-100]))


def test_task_metrics():
    assert scoring.accuracy(" History.\nmore", "history") == 1.0
    assert scoring.first_char("B. hawkish", "B") == 1.0
    assert scoring.rouge_l("the cat sat", "the cat sat") == 1.0
    assert scoring.rouge_l("the cat", "the cat sat down") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert scoring.edit_similarity("abcd", "abce") == pytest.approx(0.75)
    perfect = scoring.sari("the cat sat", "the cat sat", "the big cat sat down")
    assert perfect == 1.0 and perfect > scoring.sari("the big cat sat down", "the cat sat", "the big cat sat down")


SOURCE = "About 95 species are currently accepted ."  # Xu et al. (2016)'s example, also in HF evaluate's sari card
OUTPUT = "About 95 you now get in ."
REFERENCES = ["About 95 species are currently known .", "About 95 species are now accepted .",
              "95 species are now accepted ."]


def test_sari_by_hand_with_one_reference():
    # Reference "about 95 species are now accepted ." (lower-cased). Per n-gram order (keep F1, delete P, add F1):
    # n=1: kept {about, 95, .} all in the reference: P 1, R 3/6 -> 2/3; deleted {species, are, currently, accepted},
    #      only "currently" is in no reference -> 1/4; added {you, now, get, in}, "now" good: P 1/4, R 1/1 -> 2/5.
    # n=2: kept {about 95}: P 1, R 1/4 -> 2/5; deleted 5, good {are currently, currently accepted} -> 2/5; add 0.
    # n=3: nothing kept (P 1 by 0/0 = 1), R 0/2 -> 0; deleted 5, good 3 -> 3/5; add 0.
    # n=4: keep 0; deleted 4, good 3 -> 3/4; add 0.
    # SARI = (mean keep 4/15 + mean delete 1/2 + mean add 1/10) / 3 = 13/45.
    assert scoring.sari(OUTPUT, REFERENCES[1], SOURCE) == pytest.approx(13 / 45, abs=1e-12)


def test_sari_by_hand_with_repeated_words():
    # Source "go go go now", output "go go now", reference "go now stop": where repeated n-grams make HF's per-n-gram
    # averages differ from pooled counts. (keep F1, delete P, add F1) per order:
    # n=1: kept {go: 2, now: 1}, good {go: 1, now: 1}: P (1/2 + 1/1) / 2 = 3/4 (pooled would be 2/3), R 2/2 -> 6/7;
    #      deleted {go: 1}, but "go" is in the reference -> 0; nothing added, "stop" missed: P 1 (0/0), R 0 -> 0.
    # n=2: kept {go go, go now}, good {go now}: P 1/2, R 1/1 -> 2/3; deleted {go go} not in the reference -> 1; add 0.
    # n=3: kept {go go now} not in the reference: P 0 -> 0; deleted {go go go} -> 1; add 0.
    # n=4: nothing kept, deleted {go go go now} -> 1, nothing to add: keep 1, delete 1, add 1 (0/0 = 1 throughout).
    # SARI = (53/84 + 3/4 + 1/4) / 3 = 137/252.
    assert scoring.sari("go go now", "go now stop", "go go go now") == pytest.approx(137 / 252, abs=1e-12)


def test_sari_equals_the_reference_implementation_on_its_documented_example():
    # HF evaluate's metrics/sari card (the metric TRACE reports for 20Minuten): {'sari': 26.953601953601954} for
    # these three references. It exercises what one reference cannot: counts scaled by the number of references,
    # per-n-gram averaged precisions over repeated n-grams, and additions counted once.
    assert scoring.sari(OUTPUT, REFERENCES, SOURCE) * 100 == pytest.approx(26.953601953601954, abs=1e-9)


def cli(*args, cwd=None):
    code = "import sys; from headwise.cli.common import fail; from headwise.cli.cl import app\n" \
           "from headwise.errors import HeadwiseError\n" \
           "try:\n    app(sys.argv[1:], standalone_mode=False)\nexcept HeadwiseError as e:\n    fail(str(e))\n"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_cli_bad_input_exits_2_with_one_sentence(tmp_path, trace_dir):
    p = cli("run", "--model", "smollm2", "--benchmark", f"trace:{tmp_path / 'nope'}", "--out", str(tmp_path / "r"))
    assert p.returncode == 2 and "does not exist" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "r").exists()
    (trace_dir / "a" / "test.json").write_text('[{"prompt": "p"}]')
    p = cli("run", "--model", "smollm2", "--benchmark", f"trace:{trace_dir}", "--out", str(tmp_path / "r3"))
    assert p.returncode == 2 and "a/test.json line 1: item 0 needs" in p.stderr and not (tmp_path / "r3").exists()
    p = cli("run", "--model", "smollm2", "--benchmark", f"trace:{trace_dir}", "--replay", "1.5", "--out", str(tmp_path / "r2"))
    assert p.returncode == 2 and "replay must be a ratio" in p.stderr
    p = cli("report", str(tmp_path))
    assert p.returncode == 2 and "no results.json" in p.stderr
    for bad, words in (("0", "must be a positive"), ("-3", "must be a positive"), ("5", "more than the 4 task batches")):
        out = tmp_path / f"cycle{bad}"
        p = cli("run", "--model", "smollm2", "--benchmark", f"trace:{write_trace(tmp_path / f'b{bad}')}",
                "--replay-cycle", bad, "--out", str(out))
        assert p.returncode == 2 and words in p.stderr and "Traceback" not in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1 and not out.exists()
    # The model loads before the run directory is made, so a bad --model leaves nothing behind.
    p = cli("run", "--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "r4"))
    assert p.returncode == 2 and "Traceback" not in p.stderr and not (tmp_path / "r4").exists()


def test_cli_report_prints_the_matrix(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"tasks": ["a", "b"], "method": "seekr", "base": [0.1, 0.2],
                                                        "matrix": [[0.5, 0.3], [0.4, 0.6]], "op": 0.5, "bwt": -0.1,
                                                        "bwt_paper": -0.05, "fwt": 0.1}))
    p = cli("report", str(tmp_path))
    assert p.returncode == 0 and "OP 0.5000" in p.stdout and "BWT -0.1000 (1/(T-1))" in p.stdout


def test_cli_report_summarises_the_losses(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"tasks": ["a", "b"], "method": "seekr", "base": [0.1, 0.2],
                                                        "matrix": [[0.5, 0.3]], "op": None}))
    lines = [{"task": "a", "epoch": 0, "step": k, "kind": "task", "loss": 2.0, "grad_norm": 3.0, "clipped": True}
             for k in range(2)]
    lines += [{"task": "b", "epoch": 0, "step": 0, "kind": "task", "loss": 1.0, "grad_norm": 0.5, "clipped": False},
              {"task": "b", "epoch": 0, "step": 1, "kind": "replay", "loss": 4.0, "ce": 1.0, "kd": 3.0, "attn": 0.002,
               "attn_weighted": 2.0, "grad_norm": 2.0, "clipped": True},
              {"task": "b", "epoch": 0, "step": 2, "kind": "replay", "loss": 6.0, "ce": 3.0, "kd": 5.0, "attn": 0.004,
               "attn_weighted": 4.0, "grad_norm": 0.1, "clipped": False}]
    (tmp_path / "losses.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"task": "b", "ep')
    p = cli("report", str(tmp_path), "--json")
    assert p.returncode == 0, p.stderr
    b = json.loads(p.stdout)["losses"]["b"]
    assert (b["ce"], b["kd"], b["attn"], b["attn_weighted"]) == (2.0, 4.0, 0.003, 3.0)
    assert b["clipped"] == 1 and b["optimizer_steps"] == 3 and b["replay_positions"] == {"0": [1, 2]}
    assert json.loads(p.stdout)["losses"]["a"]["clipped"] == 2
    text = cli("report", str(tmp_path)).stdout
    assert "b: epoch 1: 2 replay steps at micro-steps 1, 2 of 3" in text and "incomplete" in text
