"""Word-level tokenizer and transformer text encoder."""

import json

import pytest
import torch

from minidiff.nn.text import TextEncoder, TextEncoderConfig, Tokenizer

CAPTIONS = [
    "a red circle on the left on a blue background",
    "a green square on the right on a white background",
    "a Blue triangle in the middle",
]


@pytest.fixture
def tok() -> Tokenizer:
    return Tokenizer.from_captions(CAPTIONS, max_len=12)


def test_vocabulary_is_sorted_lowercase_words_after_special_tokens(tok):
    assert tok.itos[:2] == ["<bos>", "<pad>"] and (tok.bos_id, tok.pad_id) == (0, 1)
    assert tok.words == sorted(tok.words) and "blue" in tok.words and "Blue" not in tok.words
    assert tok.vocab_size == 2 + 15


def test_round_trip(tok):
    prompts = ["a red circle on the left on a blue background", "a green triangle", ""]
    assert tok.decode(tok.encode(prompts)) == prompts


def test_encoding_layout(tok):
    ids = tok.encode(["A red  circle"])
    assert ids.shape == (1, 12) and ids.dtype == torch.long
    expected = [0, tok.stoi["a"], tok.stoi["red"], tok.stoi["circle"]] + [1] * 8
    assert ids[0].tolist() == expected


def test_empty_prompt_is_bos_then_padding(tok):
    assert tok.encode([""])[0].tolist() == [0] + [1] * 11


def test_word_positions_and_token_index(tok):
    prompt = "a red circle on a blue background"
    assert tok.word_positions(prompt) == [
        ("a", 1), ("red", 2), ("circle", 3), ("on", 4), ("a", 5), ("blue", 6), ("background", 7)
    ]
    assert tok.token_index(prompt, "blue") == [6]
    assert tok.token_index(prompt, "a") == [1, 5]
    ids = tok.encode([prompt])[0]
    assert ids[6].item() == tok.stoi["blue"]
    with pytest.raises(ValueError, match="'square' is not in the prompt"):
        tok.token_index(prompt, "square")


def test_unknown_word_error_lists_words_and_vocabulary(tok):
    with pytest.raises(ValueError) as err:
        tok.encode(["a red zebra on a purple background"])
    msg = str(err.value)
    assert "['purple', 'zebra']" in msg
    assert str(tok.words) in msg


def test_too_long_prompt_error_states_the_limit(tok):
    with pytest.raises(ValueError, match=r"at most 11 fit \(max_len=12"):
        tok.encode([" ".join(["red"] * 12)])
    assert tok.encode([" ".join(["red"] * 11)]).shape == (1, 12)


def test_single_string_is_rejected(tok):
    with pytest.raises(TypeError, match="list of prompts"):
        tok.encode("a red circle")


def test_to_dict_from_dict_round_trip(tok):
    restored = Tokenizer.from_dict(json.loads(json.dumps(tok.to_dict())))
    assert restored.itos == tok.itos and restored.max_len == tok.max_len
    prompts = ["a blue square on the right"]
    assert torch.equal(restored.encode(prompts), tok.encode(prompts))


def test_encoder_shape_and_bidirectional_attention(tok):
    torch.manual_seed(0)
    enc = TextEncoder(TextEncoderConfig(tok.vocab_size, max_len=12, dim=32, depth=2, heads=4))
    emb = enc(tok.encode(["a red circle on the left", "a red circle on the left",
                          "a red square on the left"]))
    assert emb.shape == (3, 12, 32)
    assert torch.equal(emb[0], emb[1])
    diff = (emb[0] - emb[2]).abs().amax(-1)  # (12,) change per token position
    # "circle" -> "square" is token 3; with bidirectional attention the earlier tokens
    # (<bos>, a, red) change as well as the later ones, including the padding.
    assert diff[3].item() > 0.1
    assert diff[:3].min().item() > 1e-3 and diff[4:].min().item() > 1e-3


def test_encoder_rejects_too_many_tokens():
    enc = TextEncoder(TextEncoderConfig(vocab_size=5, max_len=4, dim=8, depth=1, heads=2))
    with pytest.raises(ValueError, match="L <= 4"):
        enc(torch.zeros(1, 5, dtype=torch.long))
