"""Writers hand trainhub's data to other stacks: exact bytes and declarations, checked by reading them back."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from trainhub.data.tokenizer import train_bpe
from trainhub.data.writers import UINT16_LIMIT, write_llamafactory, write_nanogpt

TEXTS = ["The cat sat on the mat.", "A dog ran to the red barn.", "Mia has an orange cat named Pip."] * 20


@pytest.fixture(scope="module")
def tok():
    return train_bpe(TEXTS, vocab_size=320, min_frequency=1)


def test_nanogpt_bins_are_uint16_documents_joined_by_eos(tmp_path, tok):
    counts = write_nanogpt(tmp_path, tok, TEXTS[:3], TEXTS[3:4])
    train = np.fromfile(tmp_path / "train.bin", dtype=np.uint16)
    expected = []
    for text in TEXTS[:3]:
        expected += tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert train.tolist() == expected and counts["train"] == len(expected)
    assert (tmp_path / "train.bin").stat().st_size == 2 * len(expected)
    val = np.fromfile(tmp_path / "val.bin", dtype=np.uint16)
    assert tok.decode(val.tolist(), skip_special_tokens=True) == TEXTS[3]
    with open(tmp_path / "meta.pkl", "rb") as f:
        assert pickle.load(f) == {"vocab_size": len(tok)}


def test_nanogpt_meta_can_pad_the_vocabulary_but_not_shrink_it(tmp_path, tok):
    write_nanogpt(tmp_path, tok, TEXTS[:3], TEXTS[3:4], vocab_size=384)
    with open(tmp_path / "meta.pkl", "rb") as f:
        assert pickle.load(f) == {"vocab_size": 384}
    assert np.fromfile(tmp_path / "train.bin", dtype=np.uint16).max() < len(tok)
    with pytest.raises(ValueError, match=f"vocab_size 100 is smaller than the tokenizer \\({len(tok)} tokens\\)"):
        write_nanogpt(tmp_path, tok, TEXTS[:3], TEXTS[3:4], vocab_size=100)


def test_nanogpt_refuses_a_vocabulary_over_uint16(tmp_path):
    class Big:
        eos_token_id = 0

        def __len__(self):
            return UINT16_LIMIT + 1

    with pytest.raises(ValueError, match="65,537 tokens"):
        write_nanogpt(tmp_path, Big(), ["a"], ["b"])


def test_llamafactory_messages_and_text(tmp_path):
    convo = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
             {"role": "assistant", "content": "Hello."}]
    info_path = write_llamafactory(tmp_path, "chat", [convo, convo], "messages")
    write_llamafactory(tmp_path, "corpus", ["one doc", "two doc"], "text")
    info = json.loads(info_path.read_text())
    assert info["chat"]["formatting"] == "sharegpt" and info["chat"]["columns"] == {"messages": "messages"}
    assert info["chat"]["tags"]["role_tag"] == "role" and info["chat"]["tags"]["assistant_tag"] == "assistant"
    assert info["corpus"] == {"file_name": str((tmp_path / "corpus.jsonl").resolve()), "columns": {"prompt": "text"}}
    lines = (tmp_path / "chat.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"messages": convo}] * 2
    with pytest.raises(ValueError, match="no LLaMA-Factory layout"):
        write_llamafactory(tmp_path, "x", [], "ranking")


def test_llamafactory_preference_pairs_are_sharegpt_ranking(tmp_path):
    from trainhub.data.formats import PreferencePair

    system = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi?"}]
    pairs = [PreferencePair("a.jsonl:1", "Name a colour.", "Blue.", "No."),
             PreferencePair("a.jsonl:2", system, [{"role": "assistant", "content": "Hello!"}], "Go away.")]
    info = json.loads(write_llamafactory(tmp_path, "pref", pairs, "preference").read_text())
    assert info["pref"] == {"file_name": str((tmp_path / "pref.jsonl").resolve()), "formatting": "sharegpt",
                            "ranking": True,
                            "columns": {"messages": "messages", "chosen": "chosen", "rejected": "rejected"},
                            "tags": info["pref"]["tags"]}
    assert info["pref"]["tags"]["user_tag"] == "user"
    rows = [json.loads(line) for line in (tmp_path / "pref.jsonl").read_text().splitlines()]
    assert rows[0] == {"messages": [{"role": "user", "content": "Name a colour."}],
                       "chosen": {"role": "assistant", "content": "Blue."},
                       "rejected": {"role": "assistant", "content": "No."}}
    assert rows[1]["messages"] == system and rows[1]["chosen"]["content"] == "Hello!"
    two = [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]
    with pytest.raises(ValueError, match="a.jsonl:3: LLaMA-Factory takes a single assistant message"):
        write_llamafactory(tmp_path, "bad", [PreferencePair("a.jsonl:3", "q", two, "c")], "preference")


def test_llamafactory_kto_examples_carry_a_label(tmp_path):
    from types import SimpleNamespace

    examples = [SimpleNamespace(prompt="2+2?", completion="4", label=True),
                SimpleNamespace(prompt=[{"role": "user", "content": "2+2?"}], completion="5", label=False)]
    info = json.loads(write_llamafactory(tmp_path, "kto", examples, "kto").read_text())
    assert info["kto"]["columns"] == {"messages": "messages", "kto_tag": "label"}
    assert "ranking" not in info["kto"] and info["kto"]["formatting"] == "sharegpt"
    rows = [json.loads(line) for line in (tmp_path / "kto.jsonl").read_text().splitlines()]
    assert rows == [{"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
                     "label": True},
                    {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5"}],
                     "label": False}]
