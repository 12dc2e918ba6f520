"""`trainhub export`: a run's model as a Hugging Face folder or as GGUF files, each GGUF verified in llama.cpp.

    trainhub export RUN [--checkpoint C] --format gguf --quant q8_0 [--quant q4_k_m ...] [-o PATH]

The model is loaded once (float32) and written once per type; after each GGUF is written, llama.cpp
loads it and it is compared with the HF model (trainhub.export.verify). Results go to `export.json`
in the output folder (one entry per file, kept across exports) and are printed. Defaults: the output
folder is RUN/export/ (a model folder's own export/), files are named <run>-<quant>.gguf.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from trainhub.export.gguf_arch import FAMILIES, ConvertError
from trainhub.export.gguf_write import QUANTS, llama_cpp_missing
from trainhub.export.source import Source, SourceError, load_tokenizer, resolve

FORMATS = ("hf", "gguf")
RECORD = "export.json"


class ExportError(ValueError):
    pass


def export(target: Path, fmt: str, quants: list[str], out: Path | None = None, checkpoint: str | None = None,
           verify: bool = True, say=print) -> list[dict]:
    """Export `target` (a run or model folder); returns one record per file written. Raises ExportError
    when a verification fails (after writing every file and its record)."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt}: one of {', '.join(FORMATS)}")
    try:
        with resolve(target, checkpoint) as source:
            if fmt == "hf":
                return [_export_hf(source, out or _default_dir(source) / "hf", say)]
            return _export_gguf(source, quants or ["f16"], out, verify, say)
    except (SourceError, ConvertError) as err:
        raise ExportError(str(err)) from None


def _default_dir(source: Source) -> Path:
    return (source.run_dir or source.folder) / "export"


def _stem(source: Source) -> str:
    """The job's name for a run (runs/x/final -> x's job name), else the folder's name."""
    job = source.run_dir / "job.json" if source.run_dir else None
    if job is not None and job.is_file():
        return json.loads(job.read_text()).get("name") or source.run_dir.resolve().name
    return (source.run_dir or source.folder).resolve().name


def _export_hf(source: Source, out: Path, say) -> dict:
    from trainhub.export.hf import make_ready

    if out.resolve() != source.folder.resolve():
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(source.folder, out, symlinks=False)
    make_ready(out)
    say(f"exported {source.label} -> {out} (Hugging Face folder: generation_config.json, chat template and "
        f"special tokens in tokenizer_config.json)")
    return {"format": "hf", "path": str(out), "source": source.label}


def _export_gguf(source: Source, quants: list[str], out: Path | None, verify: bool, say) -> list[dict]:
    from transformers import AutoConfig, AutoModelForCausalLM

    unknown = [q for q in quants if q not in QUANTS]
    if unknown:
        raise ExportError(f"--quant {', '.join(unknown)}: not offered; one of {', '.join(QUANTS)}")
    if out is not None and out.suffix == ".gguf" and len(quants) > 1:
        raise ExportError(f"-o {out} names one file, but {len(quants)} types were asked for: give a folder")
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise ExportError("GGUF export needs the gguf package: pip install 'trainhub[gguf]'") from None
    needs = [q for q in quants if QUANTS[q].by == "llama.cpp"]
    missing = llama_cpp_missing() if (needs or verify) else None
    if missing and needs:
        raise ExportError(f"--quant {', '.join(needs)} is made by llama.cpp's quantizer: {missing}")
    if missing:
        raise ExportError(f"verifying the GGUF needs llama.cpp: {missing} (or pass --no-verify)")
    config = AutoConfig.from_pretrained(source.folder)
    if config.model_type not in FAMILIES:
        raise ExportError(f"GGUF export supports the families {', '.join(FAMILIES)}; {source.label} is "
                          f"'{config.model_type}'")
    model = AutoModelForCausalLM.from_pretrained(source.folder, dtype="float32").eval()
    tokenizer = load_tokenizer(source.folder)
    folder = out.parent if out is not None and out.suffix == ".gguf" else (out or _default_dir(source))
    records, failed = [], []
    for quant in quants:
        from trainhub.export import gguf_write
        from trainhub.export.verify import summary
        from trainhub.export.verify import verify as check

        path = out if out is not None and out.suffix == ".gguf" else folder / f"{_stem(source)}-{quant}.gguf"
        t0 = time.time()
        info = gguf_write.write(model, tokenizer, path, quant, say=say)
        record = {"format": "gguf", "file": path.name, "path": str(path), "source": source.label,
                  "bytes": path.stat().st_size, "write_s": round(time.time() - t0, 2), **info}
        _note_fallback(record, model.config, say)
        say(f"wrote {path} ({quant}, {record['bytes'] / 2**20:.1f} MiB)")
        if verify:
            record["verification"] = check(path, model, tokenizer, quant)
            say(summary(record["verification"]))
            if not record["verification"]["passed"]:
                failed.append(path.name)
        _record(folder, record)
        records.append(record)
    say(f"recorded: {folder / RECORD}")
    if failed:
        raise ExportError(f"verification failed for {', '.join(failed)} (details in {folder / RECORD})")
    return records


def _note_fallback(record: dict, config, say) -> None:
    """k-quants store 256 weights per super-block: rows of another length were stored in a fallback type."""
    quant = QUANTS[record["quant"]]
    if quant.by != "llama.cpp" or quant.block != 256:
        return
    wanted = record["quant"].split("_")[0].upper() + "_K"
    types = record.get("tensor_types", {})
    if wanted not in types:
        widths = {getattr(config, k) for k in ("hidden_size", "intermediate_size", "n_embd") if hasattr(config, k)}
        note = (f"no tensor is {wanted}: {record['quant']} needs matrix rows that are multiples of 256 "
                f"(this model's widths: {sorted(widths)}); llama.cpp stored them as "
                f"{', '.join(t for t in types if t != 'F32')}")
        record["note"] = note
        say(f"note: {note}")


def _record(folder: Path, record: dict) -> None:
    path = folder / RECORD
    data = json.loads(path.read_text()) if path.is_file() else {"files": {}}
    data["files"][record.get("file") or Path(record["path"]).name] = record
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def job_problems(job, model_path: Path | None) -> list[tuple[str, str]]:
    """Why the job's export.gguf cannot be done, found before training: (key, message) pairs."""
    from trainhub.export.gguf_write import QUANTS

    out = []
    family = None
    if job.model.init is not None:
        family = job.model.init.family
    elif model_path is not None and (model_path / "config.json").is_file():
        family = json.loads((model_path / "config.json").read_text()).get("model_type")
    elif job.backend.type == "nanogpt":
        family = "gpt2"
    if family is not None and family not in FAMILIES:
        out.append(("export.gguf", f"GGUF export supports the families {', '.join(FAMILIES)}; this model is "
                                   f"'{family}'"))
    try:
        import gguf  # noqa: F401
    except ImportError:
        out.append(("export.gguf", "the gguf package is not installed: pip install 'trainhub[gguf]'"))
    needs = [q for q in job.export.gguf if QUANTS[q].by == "llama.cpp"]
    if needs or job.export.verify:
        missing = llama_cpp_missing()
        if missing:
            why = f"{', '.join(needs)} are made by llama.cpp's quantizer" if needs else "export.verify loads the file"
            out.append(("export.gguf", f"{why}: {missing}" + ("" if needs else " (or set export.verify: false)")))
    return out


def after_training(job, run_dir: Path, say) -> int:
    """The job's export section, run once training completed: `trainhub export` in a child process (the hub
    stays free of torch), its output shown as the run's. Returns its exit code."""
    import subprocess
    import sys

    if not job.export.gguf:
        return 0
    argv = [sys.executable, "-m", "trainhub", "export", str(run_dir), "--format", "gguf"]
    for quant in job.export.gguf:
        argv += ["--quant", quant]
    argv += [] if job.export.verify else ["--no-verify"]
    say(f"export: {', '.join(job.export.gguf)} -> {run_dir / 'export'}")
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                             stdin=subprocess.DEVNULL)
    with open(run_dir / "console.log", "a", encoding="utf-8") as log:
        for line in child.stdout:
            log.write(line)
            say(line.rstrip("\n"))
    code = child.wait()
    if code:
        say(f"export failed (exit {code}); the trained model is in {run_dir / 'final'}; retry with "
            f"`trainhub export {run_dir} " + " ".join(f"--quant {q}" for q in job.export.gguf) + "`")
    return code
