"""Where a command writes: a file appears whole under its name or not at all, what is not a regular file stays so,
and every failure to write is one line."""

from __future__ import annotations

import gzip
import os
import resource
import signal
import stat
from pathlib import Path

import pytest

from cyberevents.output import OutputError, written


def interrupted(destination: Path) -> None:
    with written(destination) as sink:
        sink.write(b'{"half": "of an export"}\n')
        raise KeyboardInterrupt


def test_an_interrupted_export_leaves_the_earlier_file_as_it_was(tmp_path: Path) -> None:
    destination = tmp_path / "cycle.jsonl"
    destination.write_text("the earlier export\n")
    with pytest.raises(KeyboardInterrupt):
        interrupted(destination)
    assert destination.read_text() == "the earlier export\n"
    assert list(tmp_path.iterdir()) == [destination]  # no .partial left behind


def test_a_whole_export_replaces_the_file_and_gz_is_compressed(tmp_path: Path) -> None:
    destination = tmp_path / "cycle.jsonl.gz"
    destination.write_text("the earlier export\n")
    with written(destination) as sink:
        sink.write(b'{"a": 1}\n')
        assert destination.read_text() == "the earlier export\n"  # until the new one is whole
    assert gzip.decompress(destination.read_bytes()) == b'{"a": 1}\n'
    assert list(tmp_path.iterdir()) == [destination]


def test_what_is_not_a_regular_file_is_written_in_place_and_stays_what_it_was(tmp_path: Path) -> None:
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    reader = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)  # a reader first, or opening it to write would wait
    try:
        with written(pipe) as sink:
            sink.write(b"{}\n")
        assert os.read(reader, 100) == b"{}\n"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(pipe.stat().st_mode)
    assert list(tmp_path.iterdir()) == [pipe]


def test_a_write_that_fails_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    """A file size limit stands in for a full disk: the write fails with an OSError of its own (EFBIG)."""
    limits, handler = resource.getrlimit(resource.RLIMIT_FSIZE), signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000, limits[1]))
    try:
        with pytest.raises(OutputError, match=r"^cannot write .*cycle\.jsonl: File too large$"):
            write_too_much(tmp_path / "cycle.jsonl")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert list(tmp_path.iterdir()) == []


def write_too_much(destination: Path) -> None:
    with written(destination) as sink:
        sink.write(b"{}\n" * 100_000)


def test_a_symbolic_link_is_written_through(tmp_path: Path) -> None:
    real, link = tmp_path / "real.jsonl", tmp_path / "link.jsonl"
    real.write_text("the earlier export\n")
    link.symlink_to(real)
    with written(link) as sink:
        sink.write(b"{}\n")
    assert link.is_symlink()
    assert real.read_text() == "{}\n"


def test_a_name_the_file_system_refuses_is_one_line(tmp_path: Path) -> None:
    too_long = tmp_path / ("x" * 300)
    with pytest.raises(OutputError, match=r"^cannot write .*x{300}: File name too long$"):
        write_too_much(too_long)
