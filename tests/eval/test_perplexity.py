import math

import pytest
import torch

from headwise.errors import HeadwiseError
from headwise.eval.perplexity import perplexity, sequence_nll, token_windows
from headwise.testing import ByteTokenizer, tiny_model


def test_windows_are_non_overlapping_and_truncated():
    tok = ByteTokenizer()
    w = token_windows(tok, "abcdefghij", seq_len=3)
    assert w.shape == (3, 3)
    assert token_windows(tok, "abcdefghij", seq_len=3, max_windows=2).shape == (2, 3)
    with pytest.raises(HeadwiseError, match="fewer than one window"):
        token_windows(tok, "ab", seq_len=3)


class BosTokenizer(ByteTokenizer):
    """Like Gemma's tokenizer: puts <bos> (id 2) before the text when asked for special tokens."""

    def __call__(self, text, add_special_tokens=False, return_tensors=None):
        enc = super().__call__(text)
        if add_special_tokens:
            enc.input_ids = torch.cat([torch.tensor([[2]]), enc.input_ids], dim=1)
        return enc


def test_windows_start_with_the_tokenizers_own_bos():
    text = "abcdefghij"
    plain = ByteTokenizer()(text).input_ids[0]
    w = token_windows(BosTokenizer(), text, seq_len=4)
    assert w.shape == (3, 4) and (w[:, 0] == 2).all()
    assert torch.equal(w[:, 1:].flatten(), plain[:9])  # 3 text tokens per window, in order, no overlap
    assert token_windows(ByteTokenizer(), text, seq_len=4)[0].tolist() == plain[:4].tolist()  # no bos added


def test_perplexity_is_exp_of_hand_computed_nll():
    model = tiny_model("gpt2")
    ids = torch.randint(3, 100, (2, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits, -1)
    nll = -logp[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
    assert perplexity(model, ids, batch_size=1) == pytest.approx(math.exp(nll.mean().item()), rel=1e-5)
    assert sequence_nll(model, ids).detach() == pytest.approx(nll.mean(1), rel=1e-5)


def test_smollm2_wikipedia_perplexity_is_sensible(smollm2):
    from headwise.assets.wiki import load_text

    model, tok = smollm2
    ppl = perplexity(model, token_windows(tok, load_text("wiki-en"), 256, 2))
    assert 5 < ppl < 40  # 14.3 was measured on 16 x 512 tokens when the asset was chosen
