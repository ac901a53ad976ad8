"""`eval chair --compat original`: the option reaches the original reading, and bad input is refused with exit 2.
Its parity with the original evaluator is checked in tests/parity/test_chair_parity.py."""

import json
import sys
from pathlib import Path

import pytest

from headwise.eval import chair_original

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
from cli_helpers import headwise  # noqa: E402


@pytest.fixture
def files(tmp_path):
    ann = tmp_path / "ann"
    ann.mkdir()
    (ann / "instances_val2014.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 18, "name": "dog"}],
        "annotations": [{"image_id": 1, "category_id": 18}]}))
    captions = tmp_path / "captions.jsonl"
    captions.write_text(json.dumps({"image_id": 1, "caption": "A puppy and a cat."}) + "\n")
    synonyms = tmp_path / "synonyms.txt"
    synonyms.write_text("dog, puppy\ncat, kitten\n")
    return ann, captions, synonyms


def test_rules_on_given_lemmas(files):
    _, _, synonyms = files
    vocab = chair_original.load_vocabulary(synonyms)
    lemmas = ["a", "baby", "dog", "on", "a", "toilet", "seat", "near", "a", "kitten", "."]
    assert chair_original.caption_words(lemmas, vocab)[:2] == (["dog", "kitten"], ["dog", "cat"])


def test_cli_compat_original(files, monkeypatch, capsys):
    ann, captions, synonyms = files
    code, out, err = headwise(monkeypatch, capsys, "eval", "chair", "--captions", captions, "--annotations", ann,
                              "--synonyms", synonyms, "--compat", "original", "--json")
    try:
        chair_original.nltk_lemmas("a dog.")
    except Exception:  # noqa: BLE001 - without NLTK or its data the command must say so in one sentence
        assert code == 2 and "NLTK" in err and "Traceback" not in err
        return
    assert code == 0
    result = json.loads(out)
    assert (result["chair_s"], result["chair_i"], result["mentions"]) == (1.0, 0.5, 2)


@pytest.mark.parametrize("args, says", [(["--compat", "opera"], "compat"), (["--compat", "original"], "synonyms.txt")])
def test_cli_refuses(files, args, says, monkeypatch, capsys):
    ann, captions, _ = files
    code, _, err = headwise(monkeypatch, capsys, "eval", "chair", "--captions", captions, "--annotations", ann, *args)
    assert code == 2 and says in err and "Traceback" not in err
