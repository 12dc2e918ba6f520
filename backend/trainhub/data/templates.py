"""Built-in chat templates, chosen by name, for tokenizers that ship without one.

A chat template is a Jinja program that turns a list of messages into one string. trainhub's loss
masking (data/chat.py) finds each assistant answer by rendering the conversation up to it twice,
with and without the answer, and taking the difference; that works only for a template whose
rendering of a conversation is the concatenation of its turns, where a turn never changes once a
later turn is added, and where the text just before an answer ends at a token boundary (a special
token or a single newline: a trailing space would merge with the answer's first word in a
byte-level BPE). Every template here is written to keep those properties, and every assistant turn
ends with an EOS so a model trained on it learns to stop.

One exchange (user "Hi", assistant "Hello.") in each; [BOS] and [EOS] are the tokenizer's own:

    chatml   <|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\nHello.<|im_end|>\\n
    qwen2    chatml, opened by "<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n" when
             the conversation has no system message (as Qwen2-Instruct does)
    llama3   [BOS]<|start_header_id|>user<|end_header_id|>\\n\\nHi<|eot_id|>
             <|start_header_id|>assistant<|end_header_id|>\\n\\nHello.<|eot_id|>
    mistral  [BOS][INST]Hi[/INST]Hello.[EOS]
    gemma    [BOS]<start_of_turn>user\\nHi<end_of_turn>\\n<start_of_turn>model\\nHello.<end_of_turn>\\n
    plain    User:\\nHi\\nAssistant:\\nHello.[EOS]\\n

End of turn, decided per template. Where the format has a dedicated end-of-turn token (chatml,
qwen2, llama3, gemma) the template writes it literally and `apply_template` requires it to BE the
tokenizer's eos_token: generation stops at the EOS, so an end-of-turn that is not the EOS would let
the model run on into a made-up next turn. (Gemma's released tokenizers name <eos> their EOS and
stop on <end_of_turn> through generation_config; set eos_token to <end_of_turn> to use this one.)
Where the format simply ends an answer with the model's end-of-sequence (mistral's </s>, plain) the
template writes {{ eos_token }} and works with any EOS.

BOS: llama3, mistral and gemma begin with the tokenizer's bos_token when it has one (Llama 3's
<|begin_of_text|>, Mistral's <s>, Gemma's <bos>); trainhub's own byte-level BPE has none.

System messages: only as the first message. Gemma and Mistral have no system role, so its text is
folded into the first user turn as "<system>\\n\\n<user text>" (what their own templates do; Mistral's
v0.3 template folds it into the LAST user turn instead, which moves it as the conversation grows and
so is not a concatenation of turns). A system message must then be followed by a user message.

Generation prompt: `add_generation_prompt=True` appends the opening of an assistant turn
("<|im_start|>assistant\\n", ...). Mistral has none: [/INST] already ends the prompt.

Not copied from upstream template files; written from each format's documented turn layout. The
Llama 3 layout's "\\n\\n" before an answer is one token for Llama 3's own tokenizer, but a byte-level
BPE with the GPT-2 split (trainhub's) tokenizes "\\n\\n" at the end of a prompt differently from
"\\n\\n" followed by text when it has learned the merge "\\n\\n"; encode_conversation then refuses the
template loudly (not a concatenation of turns) rather than mislabel.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TemplateSpec:
    jinja: str
    """The chat template (Jinja), as tokenizer.chat_template takes it."""
    special_tokens: tuple[str, ...]
    """Tokens the template writes literally; each must be ONE token of the vocabulary, also when it
    appears in text (an added/special token), or the layout would be spelled out in pieces."""
    end_of_turn: str | None
    """The token that closes an assistant turn, which must be the tokenizer's eos_token; None: the
    template writes {{ eos_token }}, whatever the tokenizer's EOS is."""


# Refuses roles a template cannot render and a system message anywhere but first: a silently dropped
# or misplaced message would train the model on a conversation nobody wrote.
def _check(roles: str) -> str:
    return (
        "{%- for message in messages -%}"
        "{%- if message['role'] not in (" + roles + ") -%}"
        "{{ raise_exception('role ' ~ message['role'] ~ ' is not one of " + roles.replace("'", "") + "') }}"
        "{%- elif message['role'] == 'system' and not loop.first -%}"
        "{{ raise_exception('a system message may only come first') }}"
        "{%- endif -%}"
        "{%- endfor -%}"
    )


_ROLES = "'system', 'user', 'assistant'"

# Takes a leading system message out of `messages` into `system`, for formats without a system role.
_FOLD_SYSTEM = (
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system = messages[0]['content'] -%}{%- set turns = messages[1:] -%}"
    "{%- if not turns or turns[0]['role'] != 'user' -%}"
    "{{ raise_exception('a system message must be followed by a user message') }}{%- endif -%}"
    "{%- else -%}{%- set turns = messages -%}{%- endif -%}"
)

_BOS = "{%- if bos_token -%}{{- bos_token -}}{%- endif -%}"

_CHATML_TURNS = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

CHATML = _check(_ROLES) + _CHATML_TURNS

QWEN2 = _check(_ROLES) + (
    "{%- if not messages or messages[0]['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}"
    "{%- endif -%}"
) + _CHATML_TURNS

LLAMA3 = _check(_ROLES) + _BOS + (
    "{%- for message in messages -%}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}"
)

MISTRAL = _check(_ROLES) + _BOS + _FOLD_SYSTEM + (
    "{%- for message in turns -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{- '[INST]' + (system + '\\n\\n' if loop.first and system is defined else '') + message['content'] + '[/INST]' -}}"
    "{%- else -%}{{- message['content'] + eos_token -}}{%- endif -%}"
    "{%- endfor -%}"
)

GEMMA = _check(_ROLES) + _BOS + _FOLD_SYSTEM + (
    "{%- for message in turns -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{- '<start_of_turn>user\\n' + (system + '\\n\\n' if loop.first and system is defined else '') -}}"
    "{%- else -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}"
    "{{- message['content'] + '<end_of_turn>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}"
)

PLAIN = _check(_ROLES) + (
    "{%- for message in messages -%}"
    "{{- {'system': 'System', 'user': 'User', 'assistant': 'Assistant'}[message['role']] + ':\\n' -}}"
    "{{- message['content'] + (eos_token if message['role'] == 'assistant' else '') + '\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'Assistant:\\n' -}}{%- endif -%}"
)

TEMPLATES: dict[str, TemplateSpec] = {
    "chatml": TemplateSpec(CHATML, ("<|im_end|>", "<|im_start|>"), "<|im_end|>"),
    "qwen2": TemplateSpec(QWEN2, ("<|im_end|>", "<|im_start|>"), "<|im_end|>"),
    "llama3": TemplateSpec(LLAMA3, ("<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"), "<|eot_id|>"),
    "mistral": TemplateSpec(MISTRAL, ("[INST]", "[/INST]"), None),
    "gemma": TemplateSpec(GEMMA, ("<end_of_turn>", "<start_of_turn>"), "<end_of_turn>"),
    "plain": TemplateSpec(PLAIN, (), None),
}


def spec(name: str) -> TemplateSpec:
    if name not in TEMPLATES:
        raise ValueError(f"unknown chat template {name!r}; built-in templates: {', '.join(TEMPLATES)}")
    return TEMPLATES[name]


def special_tokens(name: str) -> list[str]:
    """The special tokens a tokenizer needs for template `name`, end-of-turn first (when the template
    has one; it must also become the tokenizer's eos_token). For the tokenizer trainer to add."""
    return list(spec(name).special_tokens)


def apply_template(tokenizer, name: str) -> None:
    """Set tokenizer.chat_template to the built-in template `name` (replacing any it had), after
    checking that the tokenizer can render it: each special token is one token, and the EOS is the
    template's end-of-turn token (or exists, for templates that write {{ eos_token }})."""
    template = spec(name)
    vocab = tokenizer.get_vocab()
    for token in template.special_tokens:
        if token not in vocab:
            raise ValueError(f"chat template {name!r} needs the special token {token!r}, which this tokenizer "
                             f"does not have; add it (trainhub.data.templates.special_tokens({name!r}) lists "
                             f"them all) or pick another template")
        if tokenizer(token, add_special_tokens=False)["input_ids"] != [vocab[token]]:
            raise ValueError(f"chat template {name!r} needs {token!r} as a special token, but this tokenizer "
                             f"splits it when it appears in text; register it as a special token")
    if tokenizer.eos_token is None:
        raise ValueError(f"chat template {name!r} needs an EOS token to end assistant turns; the tokenizer has none")
    if template.end_of_turn is not None and tokenizer.eos_token != template.end_of_turn:
        raise ValueError(f"chat template {name!r} ends assistant turns with {template.end_of_turn!r}, but the "
                         f"tokenizer's EOS is {tokenizer.eos_token!r}: generation would not stop at the end of a "
                         f"turn. Set the tokenizer's eos_token to {template.end_of_turn!r} or pick a template "
                         f"that ends turns with the EOS (mistral, plain)")
    tokenizer.chat_template = template.jinja
