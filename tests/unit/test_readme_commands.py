"""Every command README.md shows runs as written: checked without a cloud, in a few seconds.

The commands are read from the README's ```bash blocks and from its inline code that starts with
``make <target>``, ``.venv/bin/...`` or ``python`` (continuation lines joined, comments dropped, split
at ``;``, ``&&``, ``|`` and command substitutions ``$(...)``, redirections removed), and each one is
checked by what it runs:

- ``make TARGET... VAR=value``: ``make -n`` knows every target (a dry run: nothing is built; make still
  runs the recipe lines that call ``$(MAKE)``, themselves dry); each ``VAR`` is one the Makefile uses, and
  each ``Name=value`` in ``PARAMS`` is a parameter of template.yaml.
- ``python -m MODULE ARGS`` / ``python path.py ARGS`` / the console scripts (``topicserve``,
  ``topicserve-registry``, ...: pyproject.toml's ``[project.scripts]``): the program's own ``main`` runs
  with the arguments as written, up to the moment its ``ArgumentParser.parse_args`` accepts them; then it
  is stopped, before it reads ``build/stack.json`` or calls AWS. A module, script, verb, flag or
  choice that does not exist fails here, with argparse's message. Every program also answers ``--help``
  with exit status 0 and no stack. Most of these commands need a deployed stack (``make deploy``) or the
  built models to do their work, so argument parsing is what is checked of them: what they then do is
  the end-to-end tests' business (``tests/e2e/app/test_rollout.py`` runs the rollout workflow,
  ``tests/unit/test_candidate.py`` the candidate's registration).
- ``--param Name=value`` (``infra.deploy``) and ``sam deploy --parameter-overrides Name=value``: ``Name``
  is a parameter of template.yaml.
- ``sam build|deploy|delete``: the subcommand is one of those; where the local cloud's SAM CLI is
  installed (``.localcloud/sam-venv``, ``make localcloud``), every flag is in ``sam SUBCOMMAND --help``.
- ``jq FILTER build/stack.json``: the key is one ``infra/deploy.py`` writes into the stack file.
- ``curl ... "$API/v1/..."``: the route and method are in docs/openapi.yaml.
- ``printf``, ``echo``: shell builtins, nothing to check.
- ``$NAME`` must be set by an earlier README command (or be a standard variable: PATH, the AWS
  credentials).

A command of any other program fails the test: teach it how to check the new program rather than skip it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
PYTHONPATH_ROOTS = ["layers/serving", "tools", "containers/worker", "."]
STANDARD_VARIABLES = {"PATH", "HOME", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
BUILTINS = {"printf", "echo"}
SAM_SUBCOMMANDS = {"build", "deploy", "delete"}
SHELLS = {"bash", "sh", "shell", "console"}


# -- reading the README -------------------------------------------------------------------------------------
@dataclass
class Command:
    """One simple command as the README shows it."""

    text: str  # the line it came from, for the test id and messages
    env: dict[str, str]  # VAR=value prefixes (or a bare assignment when argv is empty)
    argv: list[str]
    variables: set[str] = field(default_factory=set)  # $NAME it reads


def _bash_blocks(markdown: str) -> list[str]:
    return [
        m.group(2)
        for m in re.finditer(r"^```(\w*)\n(.*?)^```", markdown, re.S | re.M)
        if m.group(1) in SHELLS
    ]


def _substitutions(line: str) -> tuple[str, list[str]]:
    """``line`` with each ``$(...)`` replaced by a placeholder word, and the inner commands."""
    inner, out, i = [], [], 0
    while i < len(line):
        if line.startswith("$(", i):
            depth, j = 1, i + 2
            while depth:
                depth += {"(": 1, ")": -1}.get(line[j], 0)
                j += 1
            inner.append(line[i + 2 : j - 1])
            out.append("SUBSTITUTED")
            i = j
        else:
            out.append(line[i])
            i += 1
    return "".join(out), inner


def _split(line: str) -> list[list[str]]:
    """The simple commands of one shell line: words, with operators and redirections taken out."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
    lex.whitespace_split = True
    lex.commenters = "#"
    commands: list[list[str]] = [[]]
    redirect = False
    for token in lex:
        if token in {";", "&&", "||", "|", "&"}:
            commands.append([])
        elif token in {">", ">>", "<", "2>", "&>"}:
            redirect = True
        elif redirect:
            redirect = False  # the redirection's target
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def _commands(line: str) -> list[Command]:
    line, inner = _substitutions(line)
    found = [c for text in inner for c in _commands(text)]
    for words in _split(line):
        env = {}
        while words and re.match(r"[A-Za-z_][A-Za-z0-9_]*=", words[0]):
            name, value = words.pop(0).split("=", 1)
            env[name] = value
        variables = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", " ".join([*env.values(), *words])))
        found.append(Command(line.strip(), env, words, variables))
    return found


def _inline_commands(markdown: str) -> list[str]:
    """Commands shown in running text: inline code that starts with ``make <target>``, a program in
    ``.venv/bin/`` or ``python``."""
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M)
    return [
        span
        for span in re.findall(r"`([^`\n]+)`", prose)
        if re.match(r"(make [a-z]|\.venv/bin/\S+|python3?(\.\d+)? )", span)
    ]


def readme_commands(markdown: str) -> list[Command]:
    commands = []
    for block in [*_bash_blocks(markdown), "\n".join(_inline_commands(markdown))]:
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                commands.extend(_commands(line))
    return commands


COMMANDS = readme_commands(README.read_text(encoding="utf-8"))
RUNNABLE: list[Command] = []  # the commands that run a program, each once
for _command in COMMANDS:
    if _command.argv and all((c.argv, c.env) != (_command.argv, _command.env) for c in RUNNABLE):
        RUNNABLE.append(_command)


# -- what the repository declares --------------------------------------------------------------------------
def console_scripts() -> dict[str, str]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


def template_parameters() -> set[str]:
    text = (REPO / "template.yaml").read_text()
    section = text.split("\nParameters:\n", 1)[1]
    section = re.split(r"\n[A-Za-z]", section, maxsplit=1)[0]  # up to the next top-level key
    return set(re.findall(r"^  ([A-Za-z0-9]+):", section, re.M))


def stack_keys() -> set[str]:
    """The keys ``infra/deploy.py`` writes into build/stack.json."""
    return set(re.findall(r'^\s+"([a-z_]+)":', (REPO / "infra" / "deploy.py").read_text(), re.M))


def openapi_routes() -> dict[str, set[str]]:
    spec = yaml.safe_load((REPO / "docs" / "openapi.yaml").read_text())
    return {
        path: {m.upper() for m in item if m in {"get", "post", "put", "patch", "delete"}}
        for path, item in spec["paths"].items()
    }


# -- the programs: python modules, scripts and console scripts, stopped once their arguments parse ----------
SHIM = r"""
import argparse, contextlib, importlib, io, json, os, runpy, sys, traceback

class Parsed(BaseException):
    pass

_parse_args = argparse.ArgumentParser.parse_args

def parse_args(self, args=None, namespace=None):
    raise Parsed(_parse_args(self, args, namespace))

argparse.ArgumentParser.parse_args = parse_args

def run(job):
    kind, target, argv = job["kind"], job["target"], job["argv"]
    out, err = io.StringIO(), io.StringIO()
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            if kind == "module":
                sys.argv = [target, *argv]
                runpy.run_module(target, run_name="__main__", alter_sys=True)
            elif kind == "path":
                sys.argv = [target, *argv]
                sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
                runpy.run_path(target, run_name="__main__")
            else:
                module, _, func = target.partition(":")
                sys.argv = [job["name"], *argv]
                getattr(importlib.import_module(module), func)()
        outcome, code = "finished", None
    except Parsed:
        outcome, code = "parsed", None
    except SystemExit as exc:
        outcome, code = "exit", exc.code
    except BaseException:
        outcome, code = "raised", None
        err.write(traceback.format_exc())
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    stdout, stderr = out.getvalue()[-2000:], err.getvalue()[-2000:]
    return {"outcome": outcome, "code": code, "stdout": stdout, "stderr": stderr}

print(json.dumps([run(job) for job in json.load(sys.stdin)]))
"""


def _program(command: Command) -> dict[str, str] | None:
    """The Python program a command runs: a job for the shim (without argv), or None."""
    argv, scripts = command.argv, console_scripts()
    name = Path(argv[0]).name
    if name in scripts:
        return {"kind": "script", "target": scripts[name], "name": name}
    if re.fullmatch(r"python(3(\.\d+)?)?", name):
        if argv[1] == "-m":
            return {"kind": "module", "target": argv[2]}
        return {"kind": "path", "target": argv[1]}
    return None


def _program_args(command: Command) -> list[str]:
    argv = command.argv
    if Path(argv[0]).name in console_scripts():
        return argv[1:]
    return argv[3:] if argv[1] == "-m" else argv[2:]


def _job_key(job: dict[str, str]) -> str:
    return f"{job['kind']}:{job['target']}"


Results = dict[tuple[str, tuple[str, ...]], dict[str, object]]


def _run(
    argv: list[str], *, env: dict[str, str], timeout: float, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``argv`` run in the repository, its output captured as text; the caller judges its exit status."""
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout, check=False
    )


def run_programs(commands: list[Command]) -> Results:
    """Every Python command in ``commands``, and ``--help`` of each program, in one interpreter, each
    stopped once argparse accepted its arguments."""
    jobs, keys = [], []
    for command in commands:
        program = _program(command)
        if program is None:
            continue
        for argv in (_program_args(command), ["--help"]):
            key = (_job_key(program), tuple(argv))
            if key not in keys:
                keys.append(key)
                jobs.append({**program, "argv": argv})
    if not jobs:
        return {}
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [*(str(REPO / root) for root in PYTHONPATH_ROOTS), os.environ.get("PYTHONPATH", "")]
        ),
        # nothing should get as far as a cloud call; if something did, it would find no cloud
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "readme-test",
        "AWS_SECRET_ACCESS_KEY": "readme-test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    done = _run([sys.executable, "-c", SHIM], env=env, timeout=120, stdin=json.dumps(jobs))
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(zip(keys, json.loads(done.stdout.strip().splitlines()[-1]), strict=True))


@pytest.fixture(scope="module")
def readme_results() -> Results:
    return run_programs(RUNNABLE)


# -- the checks ---------------------------------------------------------------------------------------------
def _check_make(command: Command) -> None:
    makefile = (REPO / "Makefile").read_text()
    assignments = dict(a.split("=", 1) for a in command.argv[1:] if "=" in a)
    for name, value in assignments.items():
        assert re.search(rf"\b{re.escape(name)}\b", makefile), (
            f"make variable {name} is not used by the Makefile"
        )
        if name == "PARAMS":
            _check_template_params(value.split())
    make = shutil.which("make")
    assert make, "make is not installed"
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    done = _run([make, "-n", *command.argv[1:]], env=env, timeout=60)
    assert done.returncode == 0, f"make -n {' '.join(command.argv[1:])}: {done.stderr[-1500:]}"


def _check_template_params(pairs: list[str]) -> None:
    known = template_parameters()
    for pair in pairs:
        name = pair.split("=", 1)[0]
        assert name in known, f"{name} is not a parameter of template.yaml"


def _check_python(command: Command, results: Results) -> None:
    program = _program(command)
    assert program is not None
    if program["kind"] == "script":
        bin_dir = REPO / ".venv" / "bin"
        if bin_dir.is_dir() and command.argv[0].startswith(".venv/"):
            assert (REPO / command.argv[0]).exists(), f"{command.argv[0]} is not installed: make venv"
    elif program["kind"] == "path":
        assert (REPO / program["target"]).is_file(), f"{program['target']} does not exist"
    key = _job_key(program)
    argv = _program_args(command)
    parsed = results[(key, tuple(argv))]
    assert parsed["outcome"] == "parsed", (
        f"{' '.join(command.argv)}: its arguments did not parse ({parsed['outcome']} {parsed['code']}):\n"
        f"{parsed['stderr']}"
    )
    helped = results[(key, ("--help",))]
    assert helped["outcome"] == "exit" and helped["code"] in (0, None) and "usage:" in helped["stdout"], (
        f"{command.argv[0]} --help did not print its usage with exit status 0: {helped}"
    )
    if program["target"] in {"infra.deploy", "infra/deploy.py"}:
        _check_template_params([argv[i + 1] for i, a in enumerate(argv) if a == "--param"])


def _check_sam(command: Command) -> None:
    args = command.argv[1:]
    assert args and args[0] in SAM_SUBCOMMANDS, f"sam {args[:1]}: not a subcommand this README should need"
    if "--parameter-overrides" in args:
        _check_template_params(args[args.index("--parameter-overrides") + 1].split())
    sam = REPO / ".localcloud" / "sam-venv" / "bin" / "sam"
    if not sam.exists():
        return  # the flags are checked where the local cloud is installed (make test installs it)
    usage = _run(
        [str(sam), args[0], "--help"], env={**os.environ, "SAM_CLI_TELEMETRY": "0"}, timeout=60
    ).stdout
    for flag in (a for a in args if a.startswith("-")):
        assert re.search(rf"(^|[\s,]){re.escape(flag)}\b", usage), f"sam {args[0]} has no {flag}"


def _check_jq(command: Command) -> None:
    if command.argv[-1] != "build/stack.json":
        return  # jq reading another command's output
    key = command.argv[-2].lstrip(".").split(".")[0]
    assert key in stack_keys(), f"infra/deploy.py writes no {key!r} into build/stack.json"


def _check_curl(command: Command) -> None:
    args = command.argv[1:]
    urls = [a for a in args if "/v1/" in a]
    assert urls, "a curl command without an API route"
    path = "/v1/" + urls[0].split("/v1/", 1)[1].split("?", 1)[0]
    method = args[args.index("-X") + 1] if "-X" in args else ("POST" if "-d" in args else "GET")
    routes = openapi_routes()
    matching = [
        route for route in routes if re.fullmatch(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(route)), path)
    ]
    assert matching, f"{path} is not a route of docs/openapi.yaml"
    assert any(method in routes[r] for r in matching), f"{method} {path} is not in docs/openapi.yaml"


def _check(command: Command, results: Results) -> None:
    name = Path(command.argv[0]).name
    if name == "make":
        _check_make(command)
    elif _program(command) is not None:
        _check_python(command, results)
    elif name == "sam":
        _check_sam(command)
    elif name == "jq":
        _check_jq(command)
    elif name == "curl":
        _check_curl(command)
    elif name not in BUILTINS:
        pytest.fail(f"the README shows {name!r}, which this test cannot check: teach it how")


@pytest.mark.parametrize("command", RUNNABLE, ids=[" ".join(c.argv)[:80] for c in RUNNABLE])
def test_readme_command_runs_as_written(command: Command, readme_results: Results) -> None:
    _check(command, readme_results)


def test_readme_variables_are_set_before_use() -> None:
    defined = set(STANDARD_VARIABLES)
    for command in COMMANDS:
        missing = command.variables - defined - set(command.env)
        assert not missing, (
            f"{command.text!r} reads ${', $'.join(sorted(missing))}, which no earlier command sets"
        )
        if not command.argv:
            defined |= set(command.env)


def test_the_extractor_finds_the_commands_that_matter() -> None:
    """A guard on the reader itself: the README's essential commands are found and recognised."""
    shown = {" ".join(c.argv) for c in RUNNABLE}
    assert {"make demo", "make test"} <= shown
    assert ".venv/bin/python -m training.candidate logreg --param C=3.0 --register" in shown
    kinds = {(_program(c) or {}).get("kind") for c in RUNNABLE}
    assert {"module", "path", "script"} <= kinds


WRONG = [
    "make no-such-target",
    "make demo NO_SUCH_VARIABLE=1",
    "make deploy PARAMS=NoSuchParameter=1",
    ".venv/bin/python -m training.candidate logreg --no-such-flag",
    ".venv/bin/python -m training.no_such_module --help",
    ".venv/bin/python infra/no_such_script.py",
    ".venv/bin/topicserve-registry no-such-verb logreg",
    ".venv/bin/topicserve-registry canary logreg two",
    ".venv/bin/topicserve predict",
    ".venv/bin/python -m infra.deploy --param NoSuchParameter=1",
    "sam deploy --parameter-overrides NoSuchParameter=1",
    "sam no-such-subcommand",
    'curl -s "$API/v1/no-such-route"',
    'curl -s -X DELETE "$API/v1/health"',
    "jq -r .no_such_key build/stack.json",
    "no-such-program --help",
]
WRONG_COMMANDS = {line: [c for c in _commands(line) if c.argv] for line in WRONG}


@pytest.fixture(scope="module")
def wrong_results() -> Results:
    return run_programs([c for commands in WRONG_COMMANDS.values() for c in commands])


@pytest.mark.parametrize("line", WRONG)
def test_a_wrong_command_fails(line: str, wrong_results: Results) -> None:
    """The checks catch what they claim to: a target, variable, parameter, module, script, verb, argument,
    flag, route or stack key that does not exist."""
    with pytest.raises((AssertionError, pytest.fail.Exception)):
        for command in WRONG_COMMANDS[line]:
            _check(command, wrong_results)


def test_readme_api_table_lists_the_openapi_routes() -> None:
    """The README's API table and docs/openapi.yaml (which tests/unit/test_openapi.py checks against the
    template) list the same routes: a new route gets its row."""
    markdown = README.read_text(encoding="utf-8")
    table = markdown.split("\n## API\n", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `(GET|POST|PUT|PATCH|DELETE) (/[^`\s]*)`", table, re.M))
    shown = {(method, re.sub(r"\{[^}]+\}", "{}", path)) for method, path in rows}
    documented = {
        (method, re.sub(r"\{[^}]+\}", "{}", path))
        for path, methods in openapi_routes().items()
        for method in methods
    }
    assert shown == documented, (
        f"only in the README: {shown - documented}; only in openapi: {documented - shown}"
    )
