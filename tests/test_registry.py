"""Registry: versioned ids, lazy entry points, overrides, suites, plug-ins, helpful errors."""

import json
import subprocess
import sys
import textwrap

import pytest

import agentgym as ag
from agentgym import registry
from agentgym.errors import UnknownEnvironmentError, UnknownSuiteError


class Dial(ag.Environment):
    """A dial with a configurable size."""

    def __init__(self, size: int = 3):
        super().__init__()
        self.size = size

    async def reset(self, task: ag.Task) -> str:
        return f"size {self.size}"


def test_make_uses_defaults_and_overrides():
    ag.register("dial-v0", Dial, size=5)
    assert ag.make("dial-v0").size == 5
    assert ag.make("dial-v0", size=9).size == 9


def test_lazy_string_entry_point_is_imported_on_make():
    ag.register("dial-v1", f"{__name__}:Dial")
    assert isinstance(registry.spec("dial-v1").entry_point, str)
    assert type(ag.make("dial-v1")) is Dial


def test_unknown_id_names_close_matches():
    ag.register("dial-v0", Dial)
    with pytest.raises(UnknownEnvironmentError, match="Did you mean 'dial-v0'"):
        ag.make("dail-v0")


@pytest.mark.parametrize("bad", ["Dial", "dial", "dial-v", "Dial-v0"])
def test_ids_must_be_versioned_lowercase(bad):
    with pytest.raises(ValueError, match="name-v0"):
        ag.register(bad, Dial)


def test_suites_from_files_and_callables(tmp_path):
    tasks = [ag.Task(id=f"t{i}", env="dial-v2", data={"i": i}) for i in range(3)]
    (tmp_path / "train.jsonl").write_text("".join(t.model_dump_json() + "\n" for t in tasks))
    ag.register("dial-v2", Dial, suites=tmp_path)
    registry.register_suite("dial-v2", "tiny", lambda: tasks[:1])
    assert registry.suites("dial-v2") == ["tiny", "train"]
    assert ag.load_tasks("dial-v2", "train") == tasks
    assert ag.load_tasks("dial-v2", "tiny") == tasks[:1]
    assert registry.count_tasks("dial-v2", "train") == 3
    with pytest.raises(UnknownSuiteError, match="its suites: tiny, train"):
        ag.load_tasks("dial-v2", "test")


def test_third_party_plugin_registers_through_entry_points(tmp_path):
    (tmp_path / "myplugin.py").write_text(textwrap.dedent('''
        import agentgym as ag

        class Echo(ag.Environment):
            async def reset(self, task):
                return "echo"

        def register():
            ag.register("echo-v0", "myplugin:Echo")
    '''))
    dist = tmp_path / "myplugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugin\nVersion: 0.1\n")
    # a function that registers, or the class itself under the entry point's name (gym style)
    (dist / "entry_points.txt").write_text("[agentgym.environments]\necho = myplugin:register\n"
                                           "echo-class-v0 = myplugin:Echo\n")
    code = "import agentgym as ag, json; print(json.dumps([type(ag.make('echo-v0')).__name__, " \
           "type(ag.make('echo-class-v0')).__name__, [s.id for s in ag.registry.registered()]]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(tmp_path), "PATH": ""}, cwd=tmp_path)
    name, by_class, ids = json.loads(out.stdout)
    assert name == by_class == "Echo" and {"echo-v0", "echo-class-v0", "household-v0"} <= set(ids)
    assert out.stderr == ""


def test_a_broken_plugin_is_skipped_with_a_warning_and_named_when_its_environment_is_asked_for(tmp_path):
    (tmp_path / "brokenplugin.py").write_text("import no_such_module_here\n")
    dist = tmp_path / "brokenplugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[agentgym.environments]\nbroken = brokenplugin:register\n")
    code = textwrap.dedent('''
        import agentgym as ag
        print(len(ag.load_tasks("household-v0", "test-seen")))
        try:
            ag.make("broken-v0")
        except ag.errors.UnknownEnvironmentError as exc:
            print(exc)
    ''')
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(tmp_path), "PATH": ""}, cwd=tmp_path)
    count, message = out.stdout.splitlines()
    assert int(count) == 200  # the built-in environments still work
    assert "the environment plugin 'broken' failed to load and is skipped" in out.stderr
    assert "ModuleNotFoundError: No module named 'no_such_module_here'" in message


def test_a_bad_suite_line_is_named_by_file_and_line_and_a_missing_suites_folder_is_refused(tmp_path):
    from agentgym.errors import ConfigError

    folder = tmp_path / "suites"
    folder.mkdir()
    good = ag.Task(id="a", env="bad-suite-v0").model_dump_json()
    (folder / "train.jsonl").write_text(f"{good}\n\n" + good.replace('"id"', '"max_turn": 3, "id"') + "\n")
    ag.register("bad-suite-v0", "agentgym.env:Environment", suites=folder)
    with pytest.raises(ConfigError, match=r"train.jsonl, line 3: not a task: 'max_turn': Extra inputs are not permitted$"):
        ag.load_tasks("bad-suite-v0", "train")
    with pytest.raises(ConfigError, match="suites folder .* does not exist"):
        ag.register("bad-suite-v1", "agentgym.env:Environment", suites=tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=r"no such suite file: test \("):
        ag.register("bad-suite-v2", "agentgym.env:Environment", suites={"test": str(tmp_path / "test.jsonl")})


def test_an_entry_point_that_makes_no_environment_is_refused():
    ag.register("junk-v0", int)
    with pytest.raises(TypeError, match="'junk-v0' is registered with <class 'int'>, which made a int object, not an"):
        ag.make("junk-v0")


def test_registering_an_id_again_with_another_environment_warns(tmp_path):
    class First(ag.Environment):
        async def reset(self, task):
            return ""

    class Second(First):
        pass

    ag.register("twice-v0", First)
    ag.register("twice-v0", First)  # the same environment again: nothing to say
    with pytest.warns(RuntimeWarning, match=r"register\('twice-v0'\) replaces the environment registered as "
                                            r".*First with .*Second"):
        ag.register("twice-v0", Second)
    # a built-in id taken by a plugin before the built-ins load (a fresh process)
    code = ("import agentgym as ag\n"
            "class Mine(ag.Environment):\n    async def reset(self, task):\n        return ''\n"
            "ag.register('household-v0', Mine)\n")
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert ran.returncode == 0 and "register('household-v0') replaces the environment registered as " \
        "agentgym.environments.household:HouseholdEnv" in ran.stderr, ran.stderr
