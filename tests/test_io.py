import os
import socket
import stat
import subprocess
import sys

import pytest

from bayes_dgmm._io import atomic_write, atomic_write_text


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_new_files_respect_the_umask(tmp_path, umask_022):
    assert _mode(atomic_write_text(tmp_path / "a.json", "{}")) == 0o644
    os.umask(0o077)
    assert _mode(atomic_write_text(tmp_path / "b.json", "{}")) == 0o600


def test_a_replaced_file_keeps_its_mode(tmp_path, umask_022):
    path = tmp_path / "a.json"
    path.write_text("old")
    path.chmod(0o640)
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and _mode(path) == 0o640


def test_temporary_files_of_killed_writers_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pid = int(dead.stdout)
    host = socket.gethostname()
    stale = tmp_path / f".fit.png.{host}-{pid}.abc123.tmp"
    stale.write_text("half a figure")
    other = tmp_path / ".other.png.x.tmp"  # not ours: left alone
    other.write_text("")
    atomic_write_text(tmp_path / "fit.png", "png")
    assert not stale.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.png.x.tmp", "fit.png"]


def test_a_failed_write_leaves_no_temporary_file(tmp_path):
    def fail(tmp):
        tmp.write_text("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(tmp_path / "x.csv", fail)
    assert list(tmp_path.iterdir()) == []


def test_writing_to_a_folder_names_the_folder_not_a_temporary_file(tmp_path):
    from bayes_dgmm import DGMMParams

    with pytest.raises(IsADirectoryError, match=r"is a folder; give the path of a file") as info:
        DGMMParams.random(4, (2,), (1,), random_state=0).to_json(tmp_path)
    assert str(tmp_path) in str(info.value) and ".tmp" not in str(info.value)
    assert list(tmp_path.iterdir()) == []
