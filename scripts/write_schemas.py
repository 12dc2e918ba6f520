#!/usr/bin/env python3
"""Write docs/job.md, docs/job.schema.json and docs/metrics.schema.json from the pydantic models.

`make schemas` runs this; tests/unit/test_metrics.py fails when the files are stale.
"""

from __future__ import annotations

import json
import re
import sys
import types
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from trainhub.job import Job
from trainhub.metrics.rows import ROW_ADAPTER

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _members(tp) -> list:
    if typing.get_origin(tp) is typing.Annotated:
        return _members(typing.get_args(tp)[0])
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(tp) for m in _members(a)]
    return [tp]


def _models(tp) -> list[type[BaseModel]]:
    return [m for m in _members(tp) if isinstance(m, type) and issubclass(m, BaseModel)]


def _type_name(tp) -> str:
    text = re.sub(r"trainhub\.job\.(?:\w+\.)?", "", str(tp).replace("typing.", ""))
    # a bounded member type (tuple[Beta, Beta]) shows as its plain type; the bounds are in the JSON schema
    text = re.sub(r"Annotated\[(\w+), FieldInfo\(annotation=\w+, required=\w+, metadata=\[[^\]]*\]\)\]", r"\1", text)
    if isinstance(tp, type):
        text = tp.__name__
    return text.replace("NoneType", "null")


def _default(field) -> str:
    if field.default is PydanticUndefined:
        return "required"
    value = field.default
    if isinstance(value, BaseModel):
        return f"{{type: {value.type}}}" if "type" in type(value).model_fields else "(defaults below)"
    return f"`{json.dumps(value)}`"


def _section(model: type[BaseModel], path: str, out: list[str], seen: set) -> None:
    key = (model, path)
    if key in seen:
        return
    seen.add(key)
    title = f"`{path}`" if path else "the job (top level)"
    if "type" in model.model_fields:
        title += f" with `type: {model.model_fields['type'].default}`"
    out += [f"### {title}", ""]
    out += ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    nested = []
    for name, field in model.model_fields.items():
        subs = _models(field.annotation)
        type_text = " | ".join(m.__name__ for m in subs) if subs else _type_name(field.annotation)
        desc = (field.description or "").replace("\n", " ")
        cells = [f"`{name}`", type_text, _default(field), desc]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        nested += [(m, f"{path}.{name}" if path else name) for m in subs]
    out.append("")
    for m, p in nested:
        _section(m, p, out, seen)


def job_markdown() -> str:
    out = ["# Job file reference", "",
           "Generated from `backend/trainhub/job/` by `scripts/write_schemas.py` (`make schemas`); "
           "a test fails when it is stale. Unknown keys are errors. A choice discriminated on `type` "
           "may be written as a bare string: `backend: native` means `backend: {type: native}`. "
           "A relative path (data, model, tokenizer, backend.repo, a reward file) is taken from the directory "
           "`train` runs in; where nothing is there but something is in the folder of the job file that wrote "
           "it, from that folder, and a note says which was used. `output_dir` is always taken from the "
           "directory `train` runs in.", "",
           "## Composing job files: `extends` and presets", "",
           "    extends: lora                        # a preset: config/presets/lora.yaml",
           "    extends: [cpu-tiny, ../base.yaml]    # several, merged in order", "",
           "`extends` (top level only) names a preset or a file, or a list of them. An entry ending in `.yaml` "
           "or `.yml` is a file, read from the folder of the file that names it (absolute and `~` paths too); any "
           "other entry is a preset shipped in `config/presets/` (`lora`: LoRA rank 16 on every linear layer; "
           "`cpu-tiny`: a 30k-parameter Llama with its own tokenizer, 12 steps of 32 tokens). The named files "
           "are merged in order, then the file's own keys, then `--set`: later wins. Mappings merge key by key; "
           "anything else, lists included, is replaced whole. A shorthand string grows into a mapping when a "
           "mapping lands on it (`adapter: lora` then `adapter: {rank: 64}` is LoRA of rank 64), and a mapping "
           "with another `type` replaces the one it lands on (`adapter: full` or `{type: qlora}` over the lora "
           "preset keeps none of its fields). A file may itself extend others; a cycle is an error naming the "
           "chain. An error names the file and line where the offending key was written, whichever file of the "
           "chain that is. job.json records the merged, resolved job.", ""]
    _section(Job, "", out, set())
    return "\n".join(out).rstrip() + "\n"


def job_schema() -> dict:
    """The Job model's JSON schema plus `extends`, which a job file may carry: compose.py merges the files it
    names before the model sees the job, so the model itself has no such field."""
    schema = Job.model_json_schema()
    name = {"type": "string", "description": "a preset of config/presets (lora, cpu-tiny, ...) or a .yaml path, "
                                             "relative to this file's folder"}
    schema["properties"] = {"extends": {
        "anyOf": [name, {"type": "array", "items": name}],
        "description": "Job files merged under this one, in order (later wins, this file last); see docs/job.md"},
        **schema["properties"]}
    return schema


def schemas() -> dict[str, str]:
    return {
        "job.md": job_markdown(),
        "job.schema.json": json.dumps(job_schema(), indent=2) + "\n",
        "metrics.schema.json": json.dumps(ROW_ADAPTER.json_schema(by_alias=True), indent=2) + "\n",
    }


def main() -> int:
    for name, text in schemas().items():
        (DOCS / name).write_text(text)
        print(f"wrote docs/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
