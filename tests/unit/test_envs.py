"""The environment manager: adopting an interpreter (checked by a real import), what is recorded,
and the states `env status` reports. Creating a real environment: tests/integration/test_llamafactory.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from trainhub import envs

DEMO_CHECK = "import json, pydantic, trainhub.metrics\nprint(json.dumps({'pydantic': pydantic.__version__}))"


@pytest.fixture
def demo(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINHUB_ENVS", str(tmp_path / "envs"))
    spec = envs.EnvSpec(backend="demo", check=DEMO_CHECK, lock=None, notes="demo needs an adopted interpreter")
    monkeypatch.setitem(envs.ENV_SPECS, "demo", spec)
    return spec


def test_missing_environment_names_the_command(demo):
    st = envs.state("demo")
    assert not st.present and "trainhub env setup demo" in st.problem
    assert envs.python_of("demo") is None
    with pytest.raises(envs.EnvError, match="demo needs an adopted interpreter"):
        envs.setup("demo", say=lambda _: None)


def test_adopt_an_interpreter_records_what_it_has(demo, tmp_path):
    import pydantic

    m = envs.setup("demo", python=sys.executable, say=lambda _: None)
    assert m["adopted"] and m["python"] == sys.executable and m["versions"] == {"pydantic": pydantic.__version__}
    assert json.loads((tmp_path / "envs" / "demo" / "env.json").read_text()) == m
    freeze = (tmp_path / "envs" / "demo" / "freeze.txt").read_text().splitlines()
    assert f"pydantic=={pydantic.__version__}" in freeze
    st = envs.state("demo")
    assert st.present and st.adopted and st.problem is None and st.versions["pydantic"] == pydantic.__version__
    assert str(envs.PACKAGE_PARENT) in envs.child_env("demo")["PYTHONPATH"]


def test_an_interpreter_that_fails_the_import_is_refused(demo, monkeypatch):
    broken = envs.EnvSpec(backend="demo", check="import not_a_module_here", lock=None, notes="")
    monkeypatch.setitem(envs.ENV_SPECS, "demo", broken)
    with pytest.raises(envs.EnvError, match="No module named 'not_a_module_here'"):
        envs.setup("demo", python=sys.executable, say=lambda _: None)
    assert envs.manifest("demo") is None
    with pytest.raises(envs.EnvError, match="no such file"):
        envs.setup("demo", python="/no/python", say=lambda _: None)


def test_a_changed_spec_makes_a_created_environment_stale(demo, tmp_path):
    folder = tmp_path / "envs" / "demo"
    folder.mkdir(parents=True)
    (folder / "env.json").write_text(json.dumps({"python": sys.executable, "adopted": False, "fingerprint": "old"}))
    st = envs.state("demo", check=False)
    assert st.present and not st.fresh and "--force" in st.problem


def test_unknown_backend_and_the_llamafactory_lock():
    with pytest.raises(envs.EnvError, match="has no environment of its own"):
        envs.spec_for("native")
    lock = envs.ENV_SPECS["llamafactory"].lock_lines()
    assert "llamafactory==0.9.5" in lock and "torch==2.13.0+cpu" in lock
    assert all("==" in line for line in lock)  # exact pins only: installed with --no-deps
    assert not any(line.lower().startswith("torchvision") for line in lock)


def test_the_unsloth_set_is_created_only_beside_an_nvidia_gpu(tmp_path, monkeypatch):
    """Its lock is CUDA builds: without an NVIDIA GPU, setup says so (and how to adopt instead) before
    anything is created; an AMD GPU is named as found but is not enough."""
    from trainhub.host import Host

    monkeypatch.setenv("TRAINHUB_ENVS", str(tmp_path / "envs"))
    with pytest.raises(envs.EnvError, match=r"needs an NVIDIA GPU; none found.*--python"):
        envs.setup("unsloth", say=lambda _: None, host=Host())
    with pytest.raises(envs.EnvError, match=r"found 1 x AMD Instinct MI300X \(AMD\)"):
        envs.setup("unsloth", say=lambda _: None, host=Host(amd_gpus=("AMD Instinct MI300X",)))
    assert not (tmp_path / "envs" / "unsloth").exists()
    assert envs.setup_command("unsloth") == "trainhub env setup unsloth"


@pytest.mark.slow  # creates a real venv (10-30 s on 2 cores)
def test_the_unsloth_set_installs_in_one_resolve_with_its_pins_held(tmp_path, monkeypatch):
    """A real venv, the pip commands recorded instead of run: the lock's packages and trainhub in one resolve
    with the lock as constraints (pip adds torch's CUDA wheels for the platform), then the import check."""
    from trainhub.host import Host

    monkeypatch.setenv("TRAINHUB_ENVS", str(tmp_path / "envs"))
    ran = []
    monkeypatch.setattr(envs, "_run", ran.append)
    monkeypatch.setattr(envs, "import_check", lambda spec, python, extra_env=None: {"unsloth": "2026.10.9"})
    m = envs.setup("unsloth", say=lambda _: None, host=Host(gpus=("NVIDIA H100 80GB HBM3",)))
    lock = str(envs.LOCKS / "unsloth-gpu.txt")
    assert len(ran) == 1
    argv = ran[0]
    assert argv[0] == m["python"] and argv[1:4] == ["-m", "pip", "install"] and "--no-deps" not in argv
    assert argv[-6:] == ["-c", lock, "-r", lock, "-e", str(envs.SOURCE_ROOT)]
    assert not m["adopted"] and m["lock"] == "unsloth-gpu.txt" and m["versions"] == {"unsloth": "2026.10.9"}
    pins = envs.ENV_SPECS["unsloth"].lock_lines()
    assert {"unsloth==2026.10.9", "unsloth_zoo==2026.10.9", "bitsandbytes==0.50.2", "trl==1.15.0",
            "datasets==4.3.0", "transformers==5.17.0", "torch==2.11.0"} <= set(pins)
    assert all("==" in line for line in pins)


def test_the_llamafactory_set_installs_without_resolving():
    py = Path("/env/bin/python")
    commands = [argv for argv, _ in envs.install_commands(envs.ENV_SPECS["llamafactory"], py)]
    assert [argv[-2:] for argv in commands] == [["-r", str(envs.LOCKS / "llamafactory-cpu.txt")],
                                                ["-e", str(envs.SOURCE_ROOT)]]
    assert all("--no-deps" in argv for argv in commands)
