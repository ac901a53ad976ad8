"""Helpers the runners share (they run inside a reference's venv, with this folder on sys.path)."""

import ast
import json
import sys


def argparse_defaults(path) -> dict:
    """{option: default} of every parser.add_argument(...) call in a script, read with ast (nothing is run)."""
    out = {}
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument" and node.args:
            name = ast.literal_eval(node.args[0]).lstrip("-").replace("-", "_")
            for kw in node.keywords:
                if kw.arg == "default":
                    out[name] = ast.literal_eval(kw.value)
    return out


def warpers(temperature: float, top_p: float):
    """The logits warpers transformers' generate() adds for sampling with this temperature and top_p."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

    out = LogitsProcessorList()
    if temperature != 1.0:
        out.append(TemperatureLogitsWarper(temperature))
    if top_p < 1.0:
        out.append(TopPLogitsWarper(top_p))
    return out


def start():
    """The payload (JSON on stdin), with its reference folder put first on sys.path and its tensors loaded."""
    payload = json.loads(sys.stdin.read())
    if "repo" in payload:
        sys.path.insert(0, payload["repo"])
    tensors = None
    if "input" in payload:
        from safetensors.torch import load_file

        tensors = load_file(payload["input"])
    return payload, tensors
