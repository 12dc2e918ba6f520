"""The own models and the chunked loss on a CUDA GPU, bf16: what CPU tests cannot reach. Skipped without CUDA.

- varlen through a flash kernel (flash_attn's, else torch's varlen_attn) equals the same batch with the
  block-diagonal bool mask through SDPA, forward and gradients, and equals transformers (sdpa, bool mask);
- the chunked loss equals eager in bf16 on CUDA's kernels;
- masked grouped-query attention under gradients runs SDPA's memory-efficient kernel, not the math one.
"""

from __future__ import annotations

import pytest
import torch

from trainhub.data.batches import Examples
from trainhub.data.packing import collate_packed
from trainhub.engine.loss import cross_entropy
from trainhub.engine.models import head_weight, hidden_states
from trainhub.engine.models.attention import _varlen_kernel, documents
from trainhub.engine.models.hf_names import args_from_hf, from_hf
from trainhub.engine.models.transformer import CausalLM

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

BF16 = dict(atol=3e-2, rtol=3e-2)
"""bf16 logits of order 5 through two attention kernels (flash vs SDPA's memory-efficient one): each
rounds q.k and p.v differently; a few bf16 ulps (2^-8 relative) of the largest value."""

LOSS_BF16 = dict(atol=1e-3, rtol=1.6e-2)
"""Chunked vs eager loss in bf16: the head gradient sums chunk products rounded to bf16 (tests/unit/test_loss.py
measured one ulp on CPU); up to 4 ulps (4 x 2^-8) allowed for cuBLAS's split-K reductions."""


def models():
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(vocab_size=97, hidden_size=128, intermediate_size=200, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=0)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    hf = AutoModelForCausalLM.from_config(config).cuda().to(torch.bfloat16)
    with torch.no_grad():
        for n, p in hf.named_parameters():
            p.copy_(torch.randn_like(p) * 0.1 + (1.0 if "norm" in n else 0.0))
    args = args_from_hf(hf.config)
    ours = CausalLM(args)
    ours.load_state_dict(from_hf({k: v.float().cpu() for k, v in hf.state_dict().items()}, args))
    return hf, ours.cuda().to(torch.bfloat16)


def test_varlen_runs_a_flash_kernel_and_equals_the_bool_mask():
    assert _varlen_kernel() is not None
    hf, ours = models()
    gen = torch.Generator().manual_seed(0)
    lengths = [50, 13, 77, 31, 8, 64]
    examples = Examples([torch.randint(1, 97, (n,), generator=gen) for n in lengths],
                        [torch.randint(1, 97, (n,), generator=gen) for n in lengths])
    rows = [[2, 1], [5, 3], [0, 4]]  # 90, 95 and 58 tokens in rows of 96
    out = {}
    for kind in ("varlen", "bool"):
        batch = {k: v.cuda() if torch.is_tensor(v) else v for k, v in
                 collate_packed(examples, rows, pad_id=0, mask_kind=kind, length=96).items()}
        if kind == "varlen":
            plan = documents(batch["input_ids"].shape[1], batch["input_ids"].device, torch.bfloat16,
                             cu_seq_lens_q=batch["cu_seq_lens_q"], cu_seq_lens_k=batch["cu_seq_lens_k"],
                             max_length_q=batch["max_length_q"], max_length_k=batch["max_length_k"])
            assert plan.mask is None and plan.cu_seq_lens is not None  # the kernel path, no N x N mask
        ours.zero_grad()
        hidden = hidden_states(ours, batch)
        cross_entropy(hidden, head_weight(ours), batch["labels"], 200).backward()
        out[kind] = ((hidden @ head_weight(ours).T).reshape(3, 96, -1), ours.model.layers[0].self_attn.q_proj.weight.grad)
        if kind == "bool":
            ref = hf(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits
    torch.testing.assert_close(out["varlen"][0], out["bool"][0], **BF16)
    torch.testing.assert_close(out["varlen"][1], out["bool"][1], **BF16)
    torch.testing.assert_close(out["bool"][0], ref, **BF16)


def test_chunked_loss_equals_eager_on_cuda_bf16():
    gen = torch.Generator().manual_seed(1)
    hidden = torch.randn(4, 333, 256, generator=gen).cuda().to(torch.bfloat16).requires_grad_()
    head = (torch.randn(5003, 256, generator=gen) * 0.05).cuda().to(torch.bfloat16).requires_grad_()
    labels = torch.randint(0, 5003, (4, 333), generator=gen).cuda()
    labels[:, :40] = -100
    results = []
    for impl in ("eager", "chunked"):
        hidden.grad = head.grad = None
        loss = cross_entropy(hidden, head, labels, 1200, impl=impl, chunk=256)
        loss.backward()
        results.append((loss.detach(), hidden.grad, head.grad))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(b.float(), a.float(), **LOSS_BF16)


def test_masked_gqa_with_grad_runs_the_memory_efficient_kernel():
    """A left-padded GRPO micro-batch's shape in small: with only the memory-efficient backend allowed, attend
    must find a kernel (enable_gqa under a mask would have none but math), and match the math result."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from trainhub.engine.models.attention import Documents, attend

    gen = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(4, 64, 14, 64, device="cuda", dtype=torch.bfloat16, generator=gen, requires_grad=True)
    k, v = (torch.randn(4, 64, 2, 64, device="cuda", dtype=torch.bfloat16, generator=gen, requires_grad=True)
            for _ in range(2))
    keep = torch.ones(4, 1, 64, 64, dtype=torch.bool, device="cuda").tril()
    keep[2, :, :, :5] = False
    keep |= torch.eye(64, dtype=torch.bool, device="cuda")
    with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]):
        out = attend(q, k, v, Documents(mask=keep), 0.125)
        out.float().square().sum().backward()
    with sdpa_kernel([SDPBackend.MATH]):
        ref = attend(q.detach(), k.detach(), v.detach(), Documents(mask=keep), 0.125)
    torch.testing.assert_close(out, ref, **BF16)


def test_sdpa_cudnn_first_equals_flash_and_names_the_kernel_that_ran():
    """backend.sdpa cudnn: the causal attention with cuDNN's kernel first (where torch takes the call for it,
    GQA included or not) equals torch's own choice, forward and gradients, compiled too; the profiler names
    which kernel ran, so the benchmark's row says what it measured."""
    from trainhub.engine.kernels import SDPA_CHOICES
    from trainhub.engine.models.attention import Documents, attend

    gen = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(2, 256, 8, 64, device="cuda", dtype=torch.bfloat16, generator=gen, requires_grad=True)
    k, v = (torch.randn(2, 256, 2, 64, device="cuda", dtype=torch.bfloat16, generator=gen, requires_grad=True)
            for _ in range(2))
    results = {}
    for choice in ("auto", "cudnn"):
        for compiled in (False, True):
            fn = torch.compile(attend, fullgraph=True) if compiled else attend
            for t in (q, k, v):
                t.grad = None
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                out = fn(q, k, v, Documents(), 0.125, SDPA_CHOICES[choice])
                out.float().square().sum().backward()
            names = {e.name for e in prof.events() if "attention" in e.name.lower() or "flash" in e.name.lower()
                     or "cudnn" in e.name.lower()}
            results[choice, compiled] = (out.detach(), [t.grad.clone() for t in (q, k, v)], names)
            print(choice, compiled, sorted(names)[:4])
    ref = results["auto", False]
    for key, (out, grads, _) in results.items():
        torch.testing.assert_close(out, ref[0], **BF16, msg=str(key))
        for g, r in zip(grads, ref[1], strict=True):
            torch.testing.assert_close(g, r, atol=6e-2, rtol=6e-2, msg=str(key))
