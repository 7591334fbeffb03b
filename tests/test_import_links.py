"""Imports resolve symbolic links before the import rules apply (issue 12, class 6): a link
inside the importing folder cannot lead an import to a file outside it."""
from __future__ import annotations

import os

import pytest

from archc import _cli

MAIN = 'import "{}"\nnetwork N() {{\n x = input(3, 8, 8)\n return b(x)\n}}\n'
BLOCK = "block b(x: tensor) {\n return relu(x)\n}\n"


def check(tmp_path, monkeypatch, capsys, name):
    monkeypatch.chdir(tmp_path / "proj")
    (tmp_path / "proj" / "m.arch").write_text(MAIN.format(name))
    rc = _cli.main(["check", "m.arch"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err, err
    return rc, out + err


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "proj" / "sub").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.arch").write_text("TOP SECRET first line\n" + BLOCK)
    (tmp_path / "proj" / "sub" / "inner.arch").write_text(BLOCK)
    return tmp_path


def test_link_to_a_file_outside_is_refused(tree, monkeypatch, capsys):
    os.symlink(tree / "outside" / "secret.arch", tree / "proj" / "evil.arch")
    os.symlink("../outside/secret.arch", tree / "proj" / "rel.arch")
    for name in ("evil.arch", "rel.arch"):
        rc, out = check(tree, monkeypatch, capsys, name)
        assert rc == 2
        assert out.startswith(f"m.arch:1:1: error: import '{name}' leads outside the "
                              "importing file's folder through a symbolic link"), out
        assert "TOP SECRET" not in out


def test_link_to_a_folder_outside_is_refused(tree, monkeypatch, capsys):
    os.symlink(tree / "outside", tree / "proj" / "lib")
    rc, out = check(tree, monkeypatch, capsys, "lib/secret.arch")
    assert rc == 2 and "leads outside" in out and "TOP SECRET" not in out


def test_link_to_etc_passwd_is_refused(tree, monkeypatch, capsys):
    if not os.path.exists("/etc/passwd"):
        pytest.skip("no /etc/passwd")
    os.symlink("/etc/passwd", tree / "proj" / "passwd.arch")
    rc, out = check(tree, monkeypatch, capsys, "passwd.arch")
    assert rc == 2 and "leads outside" in out and "root:" not in out


def test_links_inside_the_folder_are_followed(tree, monkeypatch, capsys):
    os.symlink("sub/inner.arch", tree / "proj" / "ok.arch")
    rc, out = check(tree, monkeypatch, capsys, "ok.arch")
    assert rc == 0, out


def test_a_fifo_is_not_imported(tree, monkeypatch, capsys):
    os.mkfifo(tree / "proj" / "fifo.arch")
    rc, out = check(tree, monkeypatch, capsys, "fifo.arch")  # not read: it would block
    assert rc == 2 and "cannot find 'fifo.arch'" in out
