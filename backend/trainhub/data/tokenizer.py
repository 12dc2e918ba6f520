"""Tokenizers: train a byte-level BPE for a model built from nothing, or load an existing one.

A trained tokenizer gets, by default (the ChatML template), three special tokens, saved with it:
  <|im_end|>   EOS: closes every document (pretraining) and every chat turn, so a model
               trained on either learns to stop;
  <|im_start|> opens a chat turn;
  <|pad|>      padding, distinct from EOS so padding is never mistaken for an end.
and the ChatML chat template. Another built-in template (data/templates.py) brings its own
special tokens, and its end-of-turn token becomes the EOS. No BOS: byte-level BPE needs none.
"""

from __future__ import annotations

from collections.abc import Iterable

EOS, PAD, IM_START = "<|im_end|>", "<|pad|>", "<|im_start|>"

def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2, template: str = "chatml"):
    """A byte-level BPE tokenizer (transformers fast tokenizer) trained on `texts`, with the special
    tokens and chat template of the built-in `template` (trainhub.data.templates)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from trainhub.data.templates import apply_template, spec

    chat = spec(template)
    eos = chat.end_of_turn or EOS
    specials = [PAD, *dict.fromkeys([eos, *chat.special_tokens])]

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token=eos, pad_token=PAD,
                                  additional_special_tokens=[t for t in specials if t not in (PAD, eos)])
    apply_template(tok, template)
    tok.padding_side = "right"
    return tok


def load_tokenizer(path: str, trust_remote_code: bool = False):
    """An existing tokenizer. One without a pad token pads with EOS: harmless here, because labels
    come from token spans and padding is masked by position, never by token id (and adding a
    token would resize a model the job did not ask to change)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tok.eos_token is None:
        raise ValueError(f"tokenizer at {path} has no EOS token; trainhub needs one to end documents and turns")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    return tok
