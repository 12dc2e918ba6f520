"""Built-in chat templates: exact text, exact token ids and loss masks, and the refusals.

Expected renderings are written out by hand; «…» marks the tokens that carry a label (each
assistant answer and its end-of-turn token), and is not part of the text. The id test uses a
byte-level tokenizer with no merges, where every ASCII character is one token, so the expected ids
follow from the text alone.
"""

from __future__ import annotations

import json

import jinja2
import pytest
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from tests.conftest import DATA
from trainhub.data.chat import IGNORE, TemplateError, encode_conversation
from trainhub.data.templates import TEMPLATES, apply_template, special_tokens

# The EOS and BOS each test tokenizer gets: the format's own where it has them; plain and mistral take
# any EOS, so they get different ones.
EOS_BOS = {"chatml": ("<|im_end|>", None), "qwen2": ("<|im_end|>", None),
           "llama3": ("<|eot_id|>", "<|begin_of_text|>"), "mistral": ("</s>", "<s>"),
           "gemma": ("<end_of_turn>", "<bos>"), "plain": ("<|endoftext|>", None)}

SINGLE = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
MULTI = SINGLE + [{"role": "user", "content": "Bye"}, {"role": "assistant", "content": "See you."}]
SYSTEM = [{"role": "system", "content": "Be brief."}] + MULTI
GEN = MULTI[:3]  # rendered with add_generation_prompt=True
CONVERSATIONS = {"single": SINGLE, "multi": MULTI, "system": SYSTEM, "gen": GEN}

QWEN_SYSTEM = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
L3U, L3A = "<|start_header_id|>user<|end_header_id|>\n\n", "<|start_header_id|>assistant<|end_header_id|>\n\n"
EXPECTED = {
    "chatml": {
        "single": "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n«Hello.<|im_end|>»\n",
        "multi": "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n«Hello.<|im_end|>»\n"
                 "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n«See you.<|im_end|>»\n",
        "system": "<|im_start|>system\nBe brief.<|im_end|>\n"
                  "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n«Hello.<|im_end|>»\n"
                  "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n«See you.<|im_end|>»\n",
        "gen": "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n"
               "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n",
    },
    "qwen2": {
        "single": QWEN_SYSTEM + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n«Hello.<|im_end|>»\n",
        "multi": QWEN_SYSTEM + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n«Hello.<|im_end|>»\n"
                               "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n«See you.<|im_end|>»\n",
        "system": "<|im_start|>system\nBe brief.<|im_end|>\n"
                  "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n«Hello.<|im_end|>»\n"
                  "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n«See you.<|im_end|>»\n",
        "gen": QWEN_SYSTEM + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n"
                             "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n",
    },
    "llama3": {
        "single": f"<|begin_of_text|>{L3U}Hi<|eot_id|>{L3A}«Hello.<|eot_id|>»",
        "multi": f"<|begin_of_text|>{L3U}Hi<|eot_id|>{L3A}«Hello.<|eot_id|>»{L3U}Bye<|eot_id|>{L3A}«See you.<|eot_id|>»",
        "system": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                  f"{L3U}Hi<|eot_id|>{L3A}«Hello.<|eot_id|>»{L3U}Bye<|eot_id|>{L3A}«See you.<|eot_id|>»",
        "gen": f"<|begin_of_text|>{L3U}Hi<|eot_id|>{L3A}Hello.<|eot_id|>{L3U}Bye<|eot_id|>{L3A}",
    },
    "mistral": {
        "single": "<s>[INST]Hi[/INST]«Hello.</s>»",
        "multi": "<s>[INST]Hi[/INST]«Hello.</s>»[INST]Bye[/INST]«See you.</s>»",
        "system": "<s>[INST]Be brief.\n\nHi[/INST]«Hello.</s>»[INST]Bye[/INST]«See you.</s>»",
        "gen": "<s>[INST]Hi[/INST]Hello.</s>[INST]Bye[/INST]",
    },
    "gemma": {
        "single": "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n«Hello.<end_of_turn>»\n",
        "multi": "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n«Hello.<end_of_turn>»\n"
                 "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n«See you.<end_of_turn>»\n",
        "system": "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n«Hello.<end_of_turn>»\n"
                  "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n«See you.<end_of_turn>»\n",
        "gen": "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n"
               "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n",
    },
    "plain": {
        "single": "User:\nHi\nAssistant:\n«Hello.<|endoftext|>»\n",
        "multi": "User:\nHi\nAssistant:\n«Hello.<|endoftext|>»\nUser:\nBye\nAssistant:\n«See you.<|endoftext|>»\n",
        "system": "System:\nBe brief.\nUser:\nHi\nAssistant:\n«Hello.<|endoftext|>»\n"
                  "User:\nBye\nAssistant:\n«See you.<|endoftext|>»\n",
        "gen": "User:\nHi\nAssistant:\nHello.<|endoftext|>\nUser:\nBye\nAssistant:\n",
    },
}

GPT2_SPLIT = None  # ByteLevel's own regex (what trainhub.data.tokenizer.train_bpe uses)
# Llama 3's split: a run of newlines (with the spaces before it) is always one piece.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def tokenizer_for(name: str, texts=("x",), merges: bool = False, split: str | None = GPT2_SPLIT):
    """A byte-level BPE with the template's special tokens (as special_tokens() hands them to a trainer)."""
    eos, bos = EOS_BOS[name]
    specials = list(dict.fromkeys(["<pad>", eos, *special_tokens(name), *([bos] if bos else [])]))
    core = Tokenizer(models.BPE())
    if split is None:
        core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        core.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, min_frequency=2 if merges else 10**9, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(texts, trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token=eos, bos_token=bos, pad_token="<pad>")
    apply_template(tok, name)
    return tok


def unmark(marked: str) -> str:
    return marked.replace("«", "").replace("»", "")


def ids_by_hand(tok, marked: str) -> tuple[list[int], list[int]]:
    """Ids and labels of a marked rendering for a no-merge byte tokenizer: a special token is its id,
    any other ASCII character is one byte token (byte-level BPE writes space as Ġ, newline as Ċ)."""
    vocab = tok.get_vocab()
    specials = sorted((t.content for t in tok.added_tokens_decoder.values()), key=len, reverse=True)
    ids, labels, labelled, i = [], [], False, 0
    while i < len(marked):
        if marked[i] in "«»":
            labelled, i = marked[i] == "«", i + 1
            continue
        piece = next((s for s in specials if marked.startswith(s, i)), marked[i])
        ids.append(vocab[{" ": "Ġ", "\n": "Ċ"}.get(piece, piece)])
        labels.append(ids[-1] if labelled else IGNORE)
        i += len(piece)
    return ids, labels


def labelled_spans(tok, ids, labels) -> list[str]:
    spans, run = [], []
    for i, label in zip(ids, labels, strict=True):
        if label == IGNORE:
            spans, run = (spans + [run] if run else spans), []
        else:
            assert label == i
            run.append(i)
    return [tok.decode(s) for s in spans + ([run] if run else [])]


@pytest.mark.parametrize("case", list(CONVERSATIONS))
@pytest.mark.parametrize("name", list(TEMPLATES))
def test_rendered_text(name, case):
    tok = tokenizer_for(name)
    text = tok.apply_chat_template(CONVERSATIONS[case], tokenize=False, add_generation_prompt=case == "gen")
    assert text == unmark(EXPECTED[name][case])


@pytest.mark.parametrize("case", ["single", "multi", "system"])
@pytest.mark.parametrize("name", list(TEMPLATES))
def test_token_ids_and_loss_mask_by_hand(name, case):
    tok = tokenizer_for(name)
    ids, labels = encode_conversation(tok, CONVERSATIONS[case])
    assert (ids, labels) == ids_by_hand(tok, EXPECTED[name][case])


SPACES = [{"role": "system", "content": "Answer in one line."},
          {"role": "user", "content": "  spaced  "}, {"role": "assistant", "content": " two\nlines \n"},
          {"role": "user", "content": "Where does Leo live?"}, {"role": "assistant", "content": "In Millbrook."}]


@pytest.fixture(scope="module")
def chat_texts() -> list[str]:
    lines = (DATA / "chat.jsonl").read_text().splitlines()[:200]
    return [m["content"] for line in lines for m in json.loads(line)["messages"]]


@pytest.mark.parametrize("messages", [SINGLE, MULTI, SYSTEM, SPACES], ids=["single", "multi", "system", "spaces"])
@pytest.mark.parametrize("name", list(TEMPLATES))
def test_labels_on_a_trained_bpe(name, messages, chat_texts):
    """With merges, the labelled tokens still decode to exactly each answer and its end-of-turn token."""
    tok = tokenizer_for(name, chat_texts, merges=True)
    ids, labels = encode_conversation(tok, messages)
    assert ids == tok.apply_chat_template(messages, tokenize=True, return_dict=False)
    assert labelled_spans(tok, ids, labels) == [m["content"] + tok.eos_token for m in messages
                                                if m["role"] == "assistant"]


def test_llama3_blank_line_needs_a_newline_aware_split(chat_texts):
    """llama3 puts "\\n\\n" before an answer. A GPT-2 split keeps "\\n\\n" whole at the end of a text (so
    it learns the merge from texts ending in a blank line) but splits it before a word: the prompt's
    last token differs from the same place in prompt + answer, the answer cannot be located, and the
    template is refused, never mislabelled. Llama 3's own split keeps newline runs whole: it works."""
    texts = [t + "\n\n" for t in chat_texts]
    with pytest.raises(TemplateError, match="concatenation of its turns"):
        encode_conversation(tokenizer_for("llama3", texts, merges=True), MULTI)
    tok = tokenizer_for("llama3", texts, merges=True, split=LLAMA3_SPLIT)
    ids, labels = encode_conversation(tok, MULTI)
    assert labelled_spans(tok, ids, labels) == ["Hello.<|eot_id|>", "See you.<|eot_id|>"]


# A template as a model's tokenizer ships it (Zephyr's layout): encode_conversation reads it the same way.
ZEPHYR = ("{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}")


def test_a_tokenizer_provided_template_takes_the_same_path(chat_texts):
    tok = tokenizer_for("plain", chat_texts, merges=True)
    tok.chat_template = ZEPHYR
    ids, labels = encode_conversation(tok, SYSTEM)
    assert tok.decode(ids) == ("<|system|>\nBe brief.<|endoftext|>\n<|user|>\nHi<|endoftext|>\n"
                               "<|assistant|>\nHello.<|endoftext|>\n<|user|>\nBye<|endoftext|>\n"
                               "<|assistant|>\nSee you.<|endoftext|>\n")
    assert labelled_spans(tok, ids, labels) == ["Hello.<|endoftext|>", "See you.<|endoftext|>"]


def test_special_tokens_put_the_end_of_turn_first():
    assert special_tokens("chatml") == ["<|im_end|>", "<|im_start|>"]
    assert special_tokens("llama3") == ["<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"]
    assert special_tokens("gemma") == ["<end_of_turn>", "<start_of_turn>"]
    assert special_tokens("mistral") == ["[INST]", "[/INST]"]
    assert special_tokens("plain") == []
    for name, spec in TEMPLATES.items():
        assert spec.end_of_turn is None or special_tokens(name)[0] == spec.end_of_turn


def test_unknown_template_names_the_choices():
    with pytest.raises(ValueError, match="unknown chat template 'vicuna'; built-in templates: chatml, qwen2"):
        special_tokens("vicuna")


def test_missing_special_token_is_named():
    tok = tokenizer_for("chatml")
    with pytest.raises(ValueError, match=r"chat template 'gemma' needs the special token '<end_of_turn>'"):
        apply_template(tok, "gemma")


def test_special_token_split_in_text_is_refused():
    # "[INST]" is in this vocabulary, but the whitespace/punctuation split cuts it into "[", "INST", "]".
    core = Tokenizer(models.WordLevel({"[INST]": 0, "[/INST]": 1, "</s>": 2, "[UNK]": 3}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="</s>")
    with pytest.raises(ValueError, match=r"'mistral' needs '\[INST\]' as a special token, but this tokenizer splits"):
        apply_template(tok, "mistral")


def test_eos_must_be_the_end_of_turn_token():
    tok = tokenizer_for("gemma")
    tok.eos_token = "<bos>"
    with pytest.raises(ValueError, match=r"ends assistant turns with '<end_of_turn>', but the tokenizer's EOS is "
                                         r"'<bos>'.*Set the tokenizer's eos_token to '<end_of_turn>'"):
        apply_template(tok, "gemma")


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_refused_conversations(name):
    tok = tokenizer_for(name)
    late_system = MULTI[:2] + [{"role": "system", "content": "x"}]
    with pytest.raises(jinja2.TemplateError, match="a system message may only come first"):
        tok.apply_chat_template(late_system, tokenize=False)
    with pytest.raises(jinja2.TemplateError, match="role tool is not one of system, user, assistant"):
        tok.apply_chat_template(SINGLE + [{"role": "tool", "content": "{}"}], tokenize=False)


@pytest.mark.parametrize("name", ["mistral", "gemma"])
def test_folded_system_needs_a_user_turn_after_it(name):
    tok = tokenizer_for(name)
    with pytest.raises(jinja2.TemplateError, match="must be followed by a user message"):
        tok.apply_chat_template([SYSTEM[0], SINGLE[1]], tokenize=False)
