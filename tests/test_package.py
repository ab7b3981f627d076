"""Packaging: a light import, the curated public surface, the namespace mapping and the wheel."""

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import agentgym

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ["torch", "transformers", "playwright", "ray", "docker", "vllm", "gymnasium", "numpy"]


def test_import_is_light():
    code = f"import agentgym, sys; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_surface():
    assert sorted(agentgym.__all__) == sorted(
        ["Environment", "tool", "Task", "make", "register", "load_tasks", "Trajectory", "RolloutRunner",
         "ToolCall", "ToolSpec", "Milestone", "StepResult", "Step", "InvalidActionError"])  # what environment
    # authors return, raise and read


def test_every_source_package_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for name, folder in config["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]) if rel.parts else name)
    assert found == listed


def test_wheel_installs_only_the_agentgym_namespace(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("agentgym-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("agentgym-")}
    assert tops == {"agentgym"}
    assert "agentgym/environments/__init__.py" in names and "agentgym/trainers/__init__.py" in names
    assert any(n.startswith("agentgym/tasks/household/") and n.endswith(".jsonl") for n in names)


def test_cli_version_and_envs():
    version = subprocess.run([sys.executable, "-m", "agentgym", "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"agentgym {agentgym.__version__}"
    envs = subprocess.run([sys.executable, "-m", "agentgym", "envs"], capture_output=True, text=True, check=True,
                          env={"COLUMNS": "200", "PATH": ""})
    assert "household-v0" in envs.stdout and "test-unseen" in envs.stdout
    assert "An ALFWorld-style household" in envs.stdout  # what each is: its description, or its docstring's first line


def test_bench_passes_options_to_the_one_benchmark_named(tmp_path):
    def bench(*args):
        return subprocess.run([sys.executable, "-m", "agentgym", "bench", *args], capture_output=True, text=True,
                              cwd=ROOT, env={**os.environ, "COLUMNS": "200"})

    ran = bench("credit", "--rows", "80000", "--repeat", "1")
    assert ran.returncode == 0, ran.stderr
    assert "80,000 rows" in ran.stdout and "best of 1 runs" in ran.stdout
    helped = bench("credit", "--", "--help")
    assert helped.returncode == 0 and "usage: bench_credit.py" in helped.stdout
    for args, message in [(("credit", "household", "--rows", "5"), "options (--rows 5) go to one benchmark"),
                          (("nope",), "unknown benchmark(s) ['nope']; available: credit,")]:
        refused = bench(*args)
        assert refused.returncode == 2 and message in " ".join(refused.stderr.split()), refused.stderr


def test_counter_example_runs():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "counter.py")], capture_output=True, text=True,
                         check=True)
    assert "The value is 5.  (reward=1.0, valid=True, terminated=True)" in out.stdout


def test_every_cited_docs_section_exists():
    """Code comments cite the docs by section ("docs/ALGORITHMS.md §6"): each cited file and section is in docs/."""
    import re

    cited = set()
    for folder in ("agentgym", "environments", "trainers", "tools", "sandboxes", "tasks", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            cited |= {(m[0], m[1].rstrip(".")) for m in re.findall(r"docs/(\w+\.md)(?: §([\d.]+))?", path.read_text())}
    assert cited, "no citations found: the pattern is stale"
    for doc, section in sorted(cited):
        text = (ROOT / "docs" / doc).read_text()
        if section:
            assert re.search(rf"^#+ {re.escape(section)}[. ]", text, re.M), f"docs/{doc} has no section {section}"
