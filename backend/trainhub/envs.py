"""Environments of their own for backends whose pins clash with the hub's (LLaMA-Factory, Unsloth).

LLaMA-Factory 0.9.5 caps transformers at 5.6, peft at 0.18.1, trl at 0.24 and datasets at 4.0;
Unsloth pins its own set again. Neither can share the hub's environment, so each gets one:

  <envs>/<backend>/venv/        a virtual environment trainhub created (or none: an adopted interpreter)
  <envs>/<backend>/env.json     what it is: the python, the spec's fingerprint, seconds taken, the
                                import check's versions, and every change made beyond pip
  <envs>/<backend>/freeze.txt   `pip freeze` of what was installed, exactly

<envs> is $TRAINHUB_ENVS, else $TRAINHUB_HOME/envs, else ~/.cache/trainhub/envs.

A spec (ENV_SPECS, one per backend) names a lock file of exact versions (trainhub/envlocks/),
installed with `--no-deps` so pip resolves nothing at setup and the set is the one tested (or, for a
spec with `resolve`, the lock's packages at its versions plus what pip resolves for them beyond it:
torch's CUDA libraries, which differ by platform and CUDA release); the
import check, a short program run by the environment's python that imports the real stack and
prints its versions; and install notes. `setup(..., python=PATH)` adopts an existing interpreter
instead of creating a venv (the GPU machine has no network: Unsloth is pre-installed there), after
the same import check passes in it; trainhub then reaches it through PYTHONPATH.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import trainhub
from trainhub.home import home

SOURCE_ROOT = Path(trainhub.__file__).resolve().parent.parent.parent
"""The trainhub checkout (holds pyproject.toml) when trainhub runs from source."""
PACKAGE_PARENT = Path(trainhub.__file__).resolve().parent.parent
"""The folder that holds the trainhub package: put on an adopted interpreter's PYTHONPATH."""
LOCKS = Path(__file__).resolve().parent / "envlocks"


def envs_dir() -> Path:
    return Path(os.environ["TRAINHUB_ENVS"]) if os.environ.get("TRAINHUB_ENVS") else home() / "envs"


@dataclass(frozen=True)
class EnvSpec:
    backend: str
    check: str
    """Python run by the environment's interpreter: imports the real stack, prints {name: version} as JSON."""
    lock: str | None
    """Lock file in trainhub/envlocks (exact pins, installed with --no-deps), or None: adopt only."""
    notes: str
    """Install notes, shown by `env status` and when setup cannot proceed."""
    gpu_only: bool = False
    """The set holds CUDA builds: created only where an NVIDIA GPU is present (adopting is always allowed)."""
    resolve: bool = False
    """Install the lock's packages with pip's resolver, the lock as constraints, instead of `--no-deps`: the
    lock pins the stack, pip adds what those pins need on this platform (torch's nvidia-* wheels)."""
    strip: tuple[str, ...] = field(default_factory=tuple)
    """Files (globs under site-packages) removed after install; each is recorded in env.json."""

    def lock_lines(self) -> list[str]:
        if self.lock is None:
            return []
        text = (LOCKS / self.lock).read_text()
        return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]

    def fingerprint(self) -> str:
        blob = json.dumps([self.lock_lines(), self.check, list(self.strip)]).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


_LF_CHECK = """
import json, torch, transformers, peft, trl, datasets, accelerate, torchaudio, llamafactory
from llamafactory.train.tuner import run_exp
from trainhub.metrics import MetricLog
import torchaudio._extension as ext
out = {m.__name__: m.__version__ for m in (torch, transformers, peft, trl, datasets, accelerate, torchaudio)}
out["llamafactory"] = llamafactory.__version__
out["torch_cuda"] = str(torch.version.cuda)
out["torchaudio_extension"] = str(ext._IS_TORCHAUDIO_EXT_AVAILABLE)
print(json.dumps(out))
"""

_UNSLOTH_CHECK = """
import json, torch, unsloth, unsloth_zoo, bitsandbytes, transformers, peft, trl, datasets
from trainhub.metrics import MetricLog
out = {m.__name__: m.__version__ for m in (torch, unsloth, unsloth_zoo, bitsandbytes, transformers, peft, trl,
                                           datasets)}
out["torch_cuda"] = str(torch.version.cuda)
print(json.dumps(out))
"""

ENV_SPECS: dict[str, EnvSpec] = {
    "llamafactory": EnvSpec(
        backend="llamafactory", check=_LF_CHECK, lock="llamafactory-cpu.txt",
        strip=("torchaudio/lib/*.so",),
        notes="LLaMA-Factory 0.9.5 on CPU torch 2.13.0. PyPI's torchvision and torchaudio are CUDA builds "
              "that fail beside CPU torch: torchvision is left out (trainhub trains text; nothing imported "
              "needs it), torchaudio 2.11.0 is installed without its CUDA-linked extension libraries, the "
              "pure-Python mode torchaudio supports when they are absent (docs/backends.md)."),
    "unsloth": EnvSpec(
        backend="unsloth", check=_UNSLOTH_CHECK, lock="unsloth-gpu.txt", gpu_only=True, resolve=True,
        notes="Unsloth needs an NVIDIA, AMD or Intel GPU. `trainhub env setup unsloth` installs the tested set "
              "(trainhub/envlocks/unsloth-gpu.txt: unsloth 2026.10.9, unsloth_zoo 2026.10.9, bitsandbytes 0.50.2, "
              "trl 1.15.0, datasets 4.3.0, transformers 5.17.0, peft 0.21.0, torch 2.11.0 from PyPI, a CUDA build) "
              "on a machine with an NVIDIA GPU and PyPI; elsewhere (AMD or Intel GPUs, no network) install Unsloth "
              "beside the right torch build and adopt that interpreter: "
              "`trainhub env setup unsloth --python /path/to/python`."),
}


class EnvError(Exception):
    pass


@dataclass
class EnvState:
    backend: str
    present: bool
    python: str | None = None
    adopted: bool = False
    fresh: bool = False
    """The recorded fingerprint matches the spec (False: set up again)."""
    versions: dict[str, str] = field(default_factory=dict)
    problem: str | None = None


def spec_for(backend: str) -> EnvSpec:
    if backend not in ENV_SPECS:
        raise EnvError(f"backend '{backend}' has no environment of its own; those that do: {', '.join(ENV_SPECS)}")
    return ENV_SPECS[backend]


def setup_command(backend: str) -> str:
    """The exact command that creates the environment (adopting an interpreter where no set installs)."""
    adopt = ENV_SPECS.get(backend) is not None and ENV_SPECS[backend].lock is None
    return f"trainhub env setup {backend}" + (" --python /path/to/python" if adopt else "")


def folder(backend: str) -> Path:
    return envs_dir() / backend


def manifest(backend: str) -> dict | None:
    path = folder(backend) / "env.json"
    return json.loads(path.read_text()) if path.is_file() else None


def child_env(backend: str) -> dict[str, str]:
    """Variables the backend's child process needs: an adopted interpreter finds trainhub through PYTHONPATH."""
    m = manifest(backend) or {}
    return child_env_adopted() if m.get("adopted") else {}


def child_env_adopted() -> dict[str, str]:
    """trainhub first on the path, then whatever the caller's PYTHONPATH holds (where an adopted
    interpreter's packages may live, e.g. wheels unpacked into a folder on the GPU machine)."""
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(PACKAGE_PARENT), os.environ.get("PYTHONPATH")) if p)}


def python_of(backend: str) -> Path | None:
    """The interpreter of the backend's environment, or None when it is not set up."""
    m = manifest(backend)
    return Path(m["python"]) if m and Path(m["python"]).exists() else None


def import_check(spec: EnvSpec, python: Path, extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """Run the spec's check with `python`; the versions it prints, or EnvError with the import's error."""
    env = {**os.environ, **(extra_env or {}), "PYTHONDONTWRITEBYTECODE": ""}
    import tempfile

    # in a folder of its own: importing unsloth writes ./unsloth_compiled_cache where it runs
    with tempfile.TemporaryDirectory(prefix="trainhub-envcheck-") as cwd:
        done = subprocess.run([str(python), "-c", spec.check], capture_output=True, text=True, env=env,
                              timeout=600, cwd=cwd)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-6:])
        raise EnvError(f"the import check failed in {python}:\n{tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def state(backend: str, check: bool = True) -> EnvState:
    """What is there; with `check`, run the real import check."""
    spec = spec_for(backend)
    m = manifest(backend)
    if m is None or not Path(m["python"]).exists():
        return EnvState(backend, present=False, problem=f"not set up: run `{setup_command(backend)}`")
    st = EnvState(backend, True, m["python"], m["adopted"], m["fingerprint"] == spec.fingerprint() or m["adopted"],
                  dict(m.get("versions", {})))
    if not st.fresh:
        st.problem = f"set up from an older spec: run `{setup_command(backend)} --force`"
    if check:
        try:
            st.versions = import_check(spec, Path(m["python"]), child_env(backend))
        except EnvError as err:
            st.problem = str(err)
    return st


def setup(backend: str, *, python: str | None = None, force: bool = False, say=print, host=None) -> dict:
    """Create (or adopt) the backend's environment and return its manifest. `host`: the machine (detected
    when None), for specs whose set holds CUDA builds."""
    spec = spec_for(backend)
    where = folder(backend)
    current = manifest(backend)
    if current and not force and python is None and current["fingerprint"] == spec.fingerprint():
        st = state(backend)
        if st.problem is None:
            say(f"{backend}: already set up at {where} ({current['python']})")
            return current
        say(f"{backend}: present but broken ({st.problem}); creating it again")
    t0 = time.time()
    if python is not None:
        return _adopt(spec, Path(python), where, t0, say)
    if spec.lock is None:
        raise EnvError(f"{backend}: {spec.notes}")
    if spec.gpu_only:
        from trainhub.host import detect

        host = host or detect()
        if not host.has_gpu:
            found = "none found" if not host.has_unsloth_gpu else f"found {host.describe()}"
            raise EnvError(f"{backend}: its tested set ({spec.lock}) is CUDA builds and needs an NVIDIA GPU; {found}. "
                           f"{spec.notes}")
    return _create(spec, where, t0, say)


def _adopt(spec: EnvSpec, python: Path, where: Path, t0: float, say) -> dict:
    if not python.exists():
        raise EnvError(f"--python {python}: no such file")
    say(f"{spec.backend}: checking {python} (a real import of the stack)")
    versions = import_check(spec, python, child_env_adopted())
    where.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(where / "venv", ignore_errors=True)
    freeze = subprocess.run([str(python), "-c", _FREEZE], capture_output=True, text=True, check=True).stdout
    return _record(spec, where, python, True, versions, freeze, [], t0, say)


# Every installed distribution as name==version, for interpreters without pip.
_FREEZE = ("import importlib.metadata as m\n"
           "print('\\n'.join(sorted({f\"{d.metadata['Name']}=={d.version}\" for d in m.distributions()})))")


def _create(spec: EnvSpec, where: Path, t0: float, say) -> dict:
    if not (SOURCE_ROOT / "pyproject.toml").is_file():
        raise EnvError(f"trainhub runs from {PACKAGE_PARENT}, not a source checkout; the environment installs "
                       "trainhub from its checkout (pip install -e), so run setup from one")
    venv = where / "venv"
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    say(f"{spec.backend}: creating {venv}")
    subprocess.run([_base_python(), "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    for argv, what in install_commands(spec, py):
        say(f"{spec.backend}: {what}")
        _run(argv)
    removed = _strip(spec, py)
    say(f"{spec.backend}: import check")
    versions = import_check(spec, py)
    freeze = subprocess.run([str(py), "-m", "pip", "freeze"], capture_output=True,
                            text=True, check=True).stdout
    return _record(spec, where, py, False, versions, freeze, removed, t0, say)


def install_commands(spec: EnvSpec, py: Path) -> list[tuple[list[str], str]]:
    """The pip commands that fill a new environment of `spec` with interpreter `py`, each with what it does."""
    pip = [str(py), "-m", "pip", "install", "--quiet", "--no-compile", "--disable-pip-version-check"]
    lock = str(LOCKS / spec.lock)
    n = len(spec.lock_lines())
    if spec.resolve:  # one resolve: the lock's packages, trainhub and its hub packages, every pin held by -c
        return [(pip + ["-c", lock, "-r", lock, "-e", str(SOURCE_ROOT)],
                 f"installing {n} pinned packages from {spec.lock}, trainhub from {SOURCE_ROOT}, and what they need "
                 "(pip resolves it, the lock's versions held)")]
    return [(pip + ["--no-deps", "-r", lock], f"installing {n} pinned packages from {spec.lock} (no resolving)"),
            (pip + ["--no-deps", "-e", str(SOURCE_ROOT)], f"installing trainhub from {SOURCE_ROOT}")]


def _base_python() -> str:
    """The interpreter behind the hub (a venv made from a venv's python would chain to it)."""
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    return str(base) if base.exists() else sys.executable


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise EnvError(f"{' '.join(argv[:6])} ... failed:\n" + "\n".join(done.stderr.strip().splitlines()[-15:]))


def _strip(spec: EnvSpec, python: Path) -> list[str]:
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    removed = []
    for pattern in spec.strip:
        for path in sorted(Path(site).glob(pattern)):
            path.unlink()
            removed.append(str(path.relative_to(site)))
    return removed


def _record(spec: EnvSpec, where: Path, python: Path, adopted: bool, versions: dict, freeze: str,
            removed: list[str], t0: float, say) -> dict:
    (where / "freeze.txt").write_text(freeze)
    m = {"backend": spec.backend, "python": str(python), "adopted": adopted, "fingerprint": spec.fingerprint(),
         "lock": spec.lock, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
         "setup_s": round(time.time() - t0, 1), "versions": versions, "removed_after_install": removed,
         "disk_mb": _disk_mb(where / "venv") if not adopted else None}
    (where / "env.json").write_text(json.dumps(m, indent=2) + "\n")
    say(f"{spec.backend}: ready in {m['setup_s']} s: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return m


def _disk_mb(path: Path) -> int:
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20)
