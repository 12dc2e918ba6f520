"""The environment manager: adopting an interpreter (checked by a real import), what is recorded,
and the states `env status` reports. Creating a real environment: tests/integration/test_llamafactory.py."""

from __future__ import annotations

import json
import sys

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
