import json

import pytest
import torch

from headwise.eval.ablation import ScanConfig, delta_matrix, scan
from headwise.runs import Run
from headwise.testing import ByteTokenizer, tiny_model


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("The quick brown fox jumps over the lazy dog. " * 20, encoding="utf-8")
    return str(path)


def test_scan_matches_one_ablation_at_a_time(text_file):
    from headwise.eval.perplexity import perplexity, token_windows
    from headwise.heads import scale_heads

    model, tok = tiny_model("llama"), ByteTokenizer()
    result = scan(model, tok, ScanConfig(data=text_file, seq_len=16, windows=3, batch_size=5), progress=False)
    windows = token_windows(tok, open(text_file).read(), 16, 3)
    assert result["baseline_ppl"] == pytest.approx(perplexity(model, windows), rel=1e-5)
    with scale_heads(model, {1: {2: 0.0}}):
        assert result["ablated_ppl"][1][2] == pytest.approx(perplexity(model, windows), rel=1e-5)
    top = result["top_heads"][0]
    assert top["ppl_increase"] == max(v for row in result["ablated_ppl"] for v in row) - result["baseline_ppl"]


def test_scan_resumes_from_its_checkpoint(tmp_path, text_file):
    model, tok = tiny_model("llama"), ByteTokenizer()
    config = ScanConfig(data=text_file, seq_len=16, windows=2, batch_size=3, layers=[1])
    full = scan(model, tok, config, progress=False)

    class Stop(Exception):
        pass

    run = Run(tmp_path / "run", "heads scan", {"c": 1})
    calls = {"n": 0}
    original = run.write_json

    def write_then_die(name, obj):
        original(name, obj)
        calls["n"] += 1
        if calls["n"] == 2:
            raise Stop
    run.write_json = write_then_die
    with pytest.raises(Stop):
        scan(model, tok, config, run=run, progress=False)
    partial = json.loads((tmp_path / "run" / "scan_partial.json").read_text())
    assert len(partial["row_nll"]) == 6  # two batches of 3 rows survived the kill

    resumed_run = Run(tmp_path / "run", "heads scan", {"c": 1})
    assert resumed_run.resumed
    resumed = scan(model, tok, config, run=resumed_run, progress=False)
    assert resumed["ablated_ppl"][1] == pytest.approx(full["ablated_ppl"][1], rel=1e-6)
    assert resumed["ablated_ppl"][0] == [None] * 4
    assert all(v != v for v in delta_matrix(resumed)[0])  # unscanned layer is NaN in the plot


def test_run_refuses_a_directory_with_other_settings(tmp_path):
    from headwise.errors import HeadwiseError

    Run(tmp_path / "r", "heads scan", {"seq_len": 1})
    with pytest.raises(HeadwiseError, match="different settings"):
        Run(tmp_path / "r", "heads scan", {"seq_len": 2})


def test_scan_on_real_smollm2_finds_damaging_heads(smollm2):
    model, tok = smollm2
    result = scan(model, tok, ScanConfig(seq_len=64, windows=1, batch_size=9, layers=[0]), progress=False)
    assert 3 < result["baseline_ppl"] < 100
    row = torch.tensor(result["ablated_ppl"][0])
    assert row.max() > result["baseline_ppl"] * 1.001  # some head of layer 0 matters
