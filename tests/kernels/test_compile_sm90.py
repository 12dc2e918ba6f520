"""Every Triton kernel compiles to an H100 (sm_90) binary with Triton's real compiler, on any machine.

The interpreter (TRITON_INTERPRET=1, the CPU tests) runs kernels as numpy code: it accepts some programs the
compiler refuses (types, tuple forms, loop-carried values). This compiles each kernel ahead of time for
sm_90 with the signatures the ops launch, in a child process without TRITON_INTERPRET (the kernels must be
decorated by the real jit). No GPU is needed: only Triton's bundled ptxas.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

SCRIPT = r'''
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from trainhub.engine.kernels import cross_entropy as ce, muon as mu, rms_norm as rn, rope as rp, swiglu as sw

target = GPUTarget("cuda", 90, 32)
def build(fn, sig, consts):
    sig = {**sig, **{k: "constexpr" for k in consts}}
    kernel = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=consts), target=target)
    assert "cubin" in kernel.asm, fn
ints = lambda names: {k: "i32" for k in names.split()}
for dt in ("bf16", "fp32"):
    p = "*" + dt
    build(ce._ce_rows, {"logits_ptr": p, "stride": "i32", "targets_ptr": "*i64", "loss_ptr": "*fp32",
                        "n_ptr": "*fp32", **ints("V ignore_index")}, {"BLOCK": 4096, "GRAD": True})
    build(ce._ce_rows, {"logits_ptr": p, "stride": "i32", "targets_ptr": "*i64", "loss_ptr": "*fp32",
                        "n_ptr": "*fp32", **ints("V ignore_index")}, {"BLOCK": 1024, "GRAD": False})
    build(rn._forward, {"x_ptr": p, "w_ptr": "*fp32", "y_ptr": "*fp32", "rstd_ptr": "*fp32", **ints("rows H"),
                        "eps": "fp32"}, {"ROWS": 2, "BLOCK": 2048})
    build(rn._backward, {"dy_ptr": "*fp32", "x_ptr": p, "w_ptr": "*fp32", "rstd_ptr": "*fp32", "dx_ptr": p,
                         "dw_ptr": "*fp32", **ints("rows H rows_per_program")}, {"ROWS": 16, "BLOCK": 128})
    build(sw._forward, {"g_ptr": p, "u_ptr": p, "y_ptr": p, "n": "i32"}, {"BLOCK": 2048})
    build(sw._backward, {"dy_ptr": p, "g_ptr": p, "u_ptr": p, "dg_ptr": p, "du_ptr": p, "n": "i32"}, {"BLOCK": 2048})
    for backward in (False, True):
        build(rp._rope, {**{k: p for k in "q_ptr k_ptr qo_ptr ko_ptr cos_ptr sin_ptr".split()},
                         **ints("T hq hk half sqb sqt sqh skb skt skh sob sot soh spb spt sph scb sct")},
                  {"HQ": 32, "HK": 8, "HALF": 32, "BACKWARD": backward})
for g in ("*fp32", "*bf16"):
    for nesterov in (False, True):
        build(mu._momentum, {"g_ptr": g, "g_off": "*i64", "buf_ptr": "*fp32", "buf_off": "*i64", "look_ptr": "*bf16",
                             "sumsq_ptr": "*fp32", "n": "i32", "blocks": "i32", "mu": "fp32"},
              {"NESTEROV": nesterov, "BLOCK": 4096})
    build(mu._apply, {"p_ptr": g, "p_off": "*i64", "o_ptr": "*bf16", "n": "i32", "decay": "fp32", "step": "fp32"},
          {"BLOCK": 4096})
print("compiled")
'''


@pytest.mark.slow
def test_every_kernel_compiles_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT / "backend")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and "compiled" in proc.stdout, proc.stderr[-3000:]
