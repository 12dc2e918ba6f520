"""Writing a GGUF file: our converter for the float types and q8_0, llama.cpp's quantizer for the rest.

QUANTS is the closed list of types `trainhub export --quant` offers. f32, f16, bf16 and q8_0 are
written by trainhub with the gguf package's writer and its quantize helpers (q8_0: blocks of 32
weights, one f16 scale each: a row must be a multiple of 32 long). The others (k-quants, q4_0) go
through llama.cpp's own quantizer (llama_model_quantize, as llama-cpp-python exposes it) from an f16
(or, for a bf16 model, bf16) file that is written first and removed after; k-quants pack 256 weights
per super-block, so a matrix whose rows are not a multiple of 256 long is quantized by llama.cpp to a
fallback type instead (counted in export.json, and said). One-dimensional tensors (norms, biases)
always stay f32, as llama.cpp itself keeps them.
"""

from __future__ import annotations

import ctypes
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainhub.export import gguf_arch, gguf_vocab
from trainhub.export.gguf_arch import ConvertError


@dataclass(frozen=True)
class Quant:
    name: str
    by: str
    """"trainhub" (our writer) or "llama.cpp" (its quantizer, needs llama-cpp-python)."""
    block: int
    """Weights per block: a matrix row must be a multiple of this to be stored in this type."""


QUANTS: dict[str, Quant] = {q.name: q for q in (
    Quant("f32", "trainhub", 1),
    Quant("f16", "trainhub", 1),
    Quant("bf16", "trainhub", 1),
    Quant("q8_0", "trainhub", 32),
    Quant("q6_k", "llama.cpp", 256),
    Quant("q5_k_m", "llama.cpp", 256),
    Quant("q5_k_s", "llama.cpp", 256),
    Quant("q4_k_m", "llama.cpp", 256),
    Quant("q4_k_s", "llama.cpp", 256),
    Quant("q3_k_m", "llama.cpp", 256),
    Quant("q2_k", "llama.cpp", 256),
    Quant("q4_0", "llama.cpp", 32),
)}
QUANT_NAMES = tuple(QUANTS)
LLAMA_CPP_DIST = "llama_cpp_python"
"""The distribution that brings llama.cpp (module llama_cpp); its version goes into export.json."""


def llama_cpp_missing() -> str | None:
    """Why llama.cpp cannot be used here, or None."""
    try:
        import llama_cpp  # noqa: F401
    except Exception as err:  # ImportError, or the shared library failing to load
        return f"llama-cpp-python is not importable ({type(err).__name__}: {err}); pip install 'trainhub[gguf]'"
    return None


def write(model, tokenizer, path: Path, quant: str, say=lambda line: None) -> dict:
    """Write `model` + `tokenizer` as a GGUF file of type `quant`; returns facts for export.json."""
    if quant not in QUANTS:
        raise ConvertError(f"--quant {quant}: not one of {', '.join(QUANTS)}")
    gguf_arch.check_supported(model.config)
    path.parent.mkdir(parents=True, exist_ok=True)
    if QUANTS[quant].by == "trainhub":
        return _write_own(model, tokenizer, path, quant)
    missing = llama_cpp_missing()
    if missing:
        raise ConvertError(f"--quant {quant} is made by llama.cpp's quantizer: {missing}")
    base = "bf16" if str(getattr(model.config, "dtype", None) or model.config.torch_dtype).endswith("bfloat16") \
        else "f16"
    tmp = path.with_name(f".{path.name}.{base}.tmp")
    try:
        info = _write_own(model, tokenizer, tmp, base)
        say(f"quantizing with llama.cpp: {base} -> {quant}")
        _llama_quantize(tmp, path, quant)
    finally:
        tmp.unlink(missing_ok=True)
    return {**info, "quant": quant, "written_by": f"llama.cpp's llama_model_quantize (llama_cpp_python "
                                                  f"{_version(LLAMA_CPP_DIST)}) from {base}",
            "tensor_types": tensor_types(path)}


def _write_own(model, tokenizer, path: Path, quant: str) -> dict:
    import gguf

    config = model.config
    ggml_type = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
                 "bf16": gguf.GGMLQuantizationType.BF16, "q8_0": gguf.GGMLQuantizationType.Q8_0}[quant]
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[quant]
    tensors = gguf_arch.tensors(model)
    n_vocab = next(t.data.shape[0] for t in tensors if t.name == "token_embd.weight")
    context = getattr(config, "max_position_embeddings", None) or config.n_positions
    tmp = path.with_name(f".{path.name}.partial")
    writer = gguf.GGUFWriter(tmp, gguf_arch.arch_name(config))
    try:
        writer.add_name(str(getattr(config, "_name_or_path", "") or "trainhub model").rstrip("/").split("/")[-1])
        gguf_arch.write_hparams(writer, config, context)
        writer.add_vocab_size(n_vocab)
        writer.add_file_type(file_type)
        if quant == "q8_0":
            writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        vocab = gguf_vocab.write_vocab(writer, tokenizer, n_vocab)
        kept = Counter()
        for t in tensors:
            data, qtype = _encode(t.data, ggml_type)
            kept[qtype.name] += 1
            writer.add_tensor(t.name, data, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    os.replace(tmp, path)
    return {"quant": quant, "written_by": "trainhub (gguf " + _version("gguf") + ")", "arch": gguf_arch.arch_name(config),
            "tokenizer": vocab, "tensor_types": dict(kept)}


def _encode(data: np.ndarray, ggml_type):
    """A tensor in `ggml_type`; 1-D tensors stay f32, a row that does not fill whole q8_0 blocks f16."""
    import gguf

    T = gguf.GGMLQuantizationType
    if data.ndim < 2 or ggml_type == T.F32:
        return data.astype(np.float32), T.F32
    if ggml_type == T.F16:
        return data.astype(np.float16), T.F16
    if ggml_type == T.Q8_0 and data.shape[-1] % 32:
        return data.astype(np.float16), T.F16
    return gguf.quants.quantize(data.astype(np.float32), ggml_type), ggml_type


def _llama_quantize(src: Path, dst: Path, quant: str) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant.upper()}")
    params.nthread = max(1, min(8, os.cpu_count() or 1))
    tmp = dst.with_name(f".{dst.name}.partial")
    code = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
    if code != 0:
        tmp.unlink(missing_ok=True)
        raise ConvertError(f"llama.cpp's quantizer failed ({code}) making {quant} from {src.name}")
    os.replace(tmp, dst)


def tensor_types(path: Path) -> dict[str, int]:
    """How many tensors of each ggml type the file holds (what a quantizer really did)."""
    import gguf

    return dict(Counter(t.tensor_type.name for t in gguf.GGUFReader(path).tensors))


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)
