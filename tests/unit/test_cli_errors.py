"""The CLI's one place for errors: documented errors in one line, bugs in one line plus a private log."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from dynamr.cli.common import KeyValue, Size
from dynamr.cli.main import cli
from dynamr.errors import QuorumError


@pytest.fixture
def failing_commands() -> Iterator[None]:
    @click.command("boom")
    def boom() -> None:
        raise RuntimeError("kaboom")

    @click.command("quorum")
    def quorum() -> None:
        raise QuorumError("only 1 of 2 replicas answered")

    @click.command("missing")
    def missing() -> None:
        open("/nonexistent/dir/file")  # noqa: SIM115

    for command in (boom, quorum, missing):
        cli.add_command(command)
    yield
    for name in ("boom", "quorum", "missing"):
        cli.commands.pop(name)


def test_errors_are_one_line_and_bugs_leave_a_private_traceback(failing_commands: None, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("DYNAMR_DEBUG", raising=False)
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    runner = CliRunner()
    result = runner.invoke(cli, ["quorum"])
    assert result.exit_code == 1 and result.output.strip() == "error: only 1 of 2 replicas answered"
    result = runner.invoke(cli, ["missing"])
    assert result.exit_code == 1 and result.output.strip().splitlines() == [
        "error: No such file or directory (/nonexistent/dir/file)"]
    result = runner.invoke(cli, ["boom"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and "unexpected RuntimeError: kaboom" in lines[0]
    logs = list(tmp_path.glob("dynamr-error-*.log"))
    assert len(logs) == 1 and str(logs[0]) in lines[0] and "Traceback" in logs[0].read_text()
    assert os.stat(logs[0]).st_mode & 0o077 == 0, "the traceback file is private"
    debug = runner.invoke(cli, ["--debug", "boom"])
    assert debug.exit_code == 1 and "Traceback" in debug.output and "kaboom" in debug.output


@pytest.mark.parametrize(("text", "size"), [("64M", 64 << 20), ("4096", 4096), ("1.5k", 1536), ("2GiB", 2 << 30),
                                            ("10MB", 10 << 20)])
def test_sizes(text: str, size: int) -> None:
    assert Size().convert(text, None, None) == size


@pytest.mark.parametrize("text", ["abc", "", "0", "-5M", "1x", "nan", "inf"])
def test_bad_sizes_are_usage_errors(text: str) -> None:
    with pytest.raises(click.BadParameter):
        Size().convert(text, None, None)


def test_key_value() -> None:
    assert KeyValue().convert("a=b=c", None, None) == ("a", "b=c")
    with pytest.raises(click.BadParameter, match="KEY=VALUE"):
        KeyValue().convert("novalue", None, None)
