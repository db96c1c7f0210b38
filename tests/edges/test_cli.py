"""The `autofix` command line as a person meets it: --version, help texts that name every default, and
`autofix runs show` on a record still in the outbox (the installed `autofix` script, in a subprocess)."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from app.adapters.store import JobStore
from app.cli import _parser
from app.models.runs import PendingRun, RunRecord

AUTOFIX = Path(sys.executable).parent / "autofix"
RECORD = "2c20966383a3455cb401bdda12b76091"


def autofix(*argv: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOFIX_", "MLFLOW_"))}
    return subprocess.run([str(AUTOFIX), *argv], env={**env, "AUTOFIX_DATA_DIR": str(data_dir)},
                          capture_output=True, text=True, timeout=60, check=False)


def _parsers(parser: argparse.ArgumentParser, path: str = "autofix") -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _parsers(child, f"{path} {name}")
    return found


PARSERS = _parsers(_parser())


@pytest.mark.parametrize(("path", "parser"), PARSERS, ids=[p for p, _ in PARSERS])
def test_every_argument_and_subcommand_has_help_naming_its_default(path: str,
                                                                     parser: argparse.ArgumentParser) -> None:
    formatter = parser._get_formatter()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                assert choice.help, f"{path} {choice.dest}: a sub-command without help"
            continue
        assert action.help, f"{path} {action.option_strings or action.dest}: an argument without help"
        if action.option_strings and action.default is not argparse.SUPPRESS:
            shown = formatter._get_help_string(action) or ""
            assert "(default" in shown, f"{path} {action.option_strings}: the help does not name its default"
            assert "(default: None)" not in shown % {"default": action.default, "prog": path}, \
                f"{path} {action.option_strings}: say what None means"


def test_the_help_on_screen_shows_the_defaults() -> None:
    def screen(*argv: str) -> str:  # argparse wraps at the terminal's width: compare words
        done = subprocess.run([str(AUTOFIX), *argv], capture_output=True, text=True, timeout=60, check=True)
        return " ".join(done.stdout.split())

    assert "--port PORT TCP port to listen on (default: 8080)" in screen("serve", "--help")
    assert "(default: 127.0.0.1)" in screen("serve", "--help")
    assert "(default: 30)" in screen("report", "--help")
    assert "--json print JSON, values uncut (default: False)" in screen("runs", "show", "--help")


def test_version_names_the_package_and_python(tmp_path: Path) -> None:
    done = autofix("--version", data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"autofix {version('gitops-autofix')} (gitops-autofix, Python " \
                                  f"{platform.python_version()})"


@pytest.mark.timeout(60)
def test_runs_show_reads_a_record_still_in_the_outbox_without_creating_an_mlflow_store(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    store.add_run(PendingRun(
        key=RECORD, name="KubePodCrashLooping d09fc39d073c7e73", status="FINISHED", created_at=1796138787.0,
        record=RunRecord(params={"detector": "oom"}, metrics={"risk": 0.2874}, tags={"cause": "oom_killed"},
                         artifacts={"pr_body.md": "## Root cause\n", "patch.diff": "-512Mi\n+768Mi\n"})))
    store.close()
    done = autofix("runs", "show", RECORD, data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"run (not exported yet)  record {RECORD}"
    assert "  read from: the outbox" in "\n".join(lines) and "not in MLflow yet after 0 attempt(s)" in done.stdout
    for line in ("  detector = oom", "  risk = 0.2874", "  cause = oom_killed", "  patch.diff", "  pr_body.md"):
        assert line in lines
    assert not (tmp_path / "mlflow.db").exists()


def test_runs_show_an_unknown_id_says_where_it_looked_and_creates_nothing(tmp_path: Path) -> None:
    done = autofix("runs", "show", "0123456789abcdef0123456789abcdef", data_dir=tmp_path / "typo")
    assert done.returncode == 1
    assert "no run or record 0123456789abcdef0123456789abcdef" in done.stderr
    assert "mlflow.db: no such file" in done.stderr
    assert not (tmp_path / "typo").exists()


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path: Path) -> None:
    """`autofix ... | head`: the pipe closes before the output is written; the command says nothing more on stderr
    (before: "Exception ignored ... BrokenPipeError" and status 120) and ends 141, as a shell reports SIGPIPE."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOFIX_", "MLFLOW_"))}
    proc = subprocess.Popen([str(AUTOFIX), "policy", "check", str(Path(__file__).resolve().parents[2] / "policies")],
                            env={**env, "AUTOFIX_DATA_DIR": str(tmp_path)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the command prints
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and stderr == ""
