"""`cl run --save-model` under FSDP 2 (2 CPU processes over gloo, each holding half the weights): the saved folder
holds the whole trained model, gathered, equal to the run's own sharded checkpoint, and loads with from_pretrained."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

TINY_LLM = Path(__file__).parents[1] / "fixtures" / "release_bda5441" / "models" / "tiny-llm"


def test_fsdp2_run_saves_the_gathered_model(tmp_path):
    import transformers as tf
    from safetensors.torch import load_file
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    with socket.socket() as sock:  # a free port: the default 29500 clashes with other launches on this machine
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--use_fsdp", "--fsdp_version", "2",
                "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "--main_process_port", str(port)]
    run, saved = tmp_path / "run", tmp_path / "model"
    proc = subprocess.run([*launcher, "-m", "headwise.cli", "cl", "run", "--model", str(TINY_LLM), "--method", "seqft",
                           "--tasks", "1", "--max-len", "32", "--max-new-tokens", "2", "--batch-size", "2", "--lr",
                           "1e-3", "--wiki-train", "4", "--wiki-test", "2", "--out", str(run), "--save-model",
                           str(saved)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 processes" in proc.stdout + proc.stderr
    ckpt = run / "checkpoint"
    dcp_to_torch_save(ckpt / json.loads((ckpt / "progress.json").read_text())["state"], tmp_path / "ckpt.pt")
    trained = torch.load(tmp_path / "ckpt.pt", weights_only=True)["model"]
    written = load_file(saved / "model.safetensors")
    base = load_file(TINY_LLM / "model.safetensors")
    assert set(base) <= set(written) and all(written[k].shape == base[k].shape for k in base)  # whole, not a shard
    assert all(torch.equal(written[k], trained[k]) for k in base)
    assert any(not torch.equal(written[k], base[k]) for k in base)
    assert type(tf.AutoModelForCausalLM.from_pretrained(saved)).__name__ == "LlamaForCausalLM"
