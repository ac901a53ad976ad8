"""Helpers shared by the cl tests and by tiny_run.py. A module of its own name, not conftest: pytest loads
every conftest.py under the name `conftest`, so `from conftest import ...` found whichever came first
(tests/compress's when both folders ran)."""

import json

from headwise.testing import VOCAB


class TinyTokenizer:
    """Bytes folded into the tiny models' vocabulary, with EOS and a decode that inverts lowercase ASCII."""

    eos_token_id = 2
    pad_token_id = 0

    def __call__(self, text, add_special_tokens=False):
        ids = [3 + b % (VOCAB - 8) for b in text.encode("utf-8")]
        return type("Encoding", (), {"input_ids": ids})()

    def decode(self, ids, skip_special_tokens=True):
        return bytes((i - 3) % 256 for i in ids if i >= 3).decode("utf-8", errors="replace")


def write_trace(root, tasks=("a", "b"), n_train=8, n_test=3):
    for j, name in enumerate(tasks):
        d = root / name
        d.mkdir(parents=True)
        for part, n in (("train", n_train), ("eval", 2), ("test", n_test)):
            items = [{"prompt": f"q{j}{i}:", "answer": "xy"[(i + j) % 2]} for i in range(n)]
            (d / f"{part}.json").write_text(json.dumps(items, indent=1))
    return root
