"""Writers never replace anything but a regular file (issue 18): a device, a FIFO or a folder at
a path to write is refused (exit 2, one line, nothing replaced); a symbolic link is written
through (the file it names gets the content, the link stays)."""
import json
import os
import stat

import pytest

from compnet_ext.experiments import cli, outdir

pytest.importorskip("matplotlib")
TINY = ["--seeds", "2", "--epochs", "2,2", "--points", "8", "--targets", "x3",
        "--kinds", "default,enforced", "--no-progress"]


def _special(tmp_path, kind):
    path = tmp_path / f"special-{kind}"
    if kind == "fifo":
        os.mkfifo(path)
    else:  # a character device like /dev/null (1, 3): needs root (CAP_MKNOD)
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("mknod needs root")
    return path


def _is_special(path):
    mode = os.lstat(path).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


@pytest.mark.parametrize("kind", ["fifo", "chr"])
@pytest.mark.parametrize("what", ["neurons", "fit"])
def test_plot_refuses_a_special_file(tmp_path, capsys, kind, what):
    path = _special(tmp_path, kind)
    with pytest.raises(SystemExit) as e:
        cli.main(["plot", what, "--out", str(path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "not a regular file" in err and "Traceback" not in err
    assert _is_special(path)


@pytest.mark.parametrize("kind", ["fifo", "chr"])
def test_atomic_write_refuses_before_writing(tmp_path, kind):
    path = _special(tmp_path, kind)
    wrote = []
    with pytest.raises(outdir.NotAFileError, match="not a regular file"):
        outdir.atomic_write(str(path), wrote.append)
    assert not wrote and _is_special(path)
    assert sorted(os.listdir(tmp_path)) == [path.name]  # no temporary left
    link = tmp_path / "link"
    link.symlink_to(path.name)
    with pytest.raises(outdir.NotAFileError, match="a link to"):
        outdir.atomic_write(str(link), wrote.append)
    assert _is_special(path) and link.is_symlink()


def test_a_folder_is_refused(tmp_path):
    with pytest.raises(outdir.NotAFileError, match="is a folder"):
        outdir.atomic_write(str(tmp_path), lambda f: f.write("x"))


def test_a_link_is_written_through(tmp_path, capsys):
    target, link = tmp_path / "target.png", tmp_path / "link.png"
    target.write_bytes(b"old")
    link.symlink_to("target.png")
    assert cli.main(["plot", "neurons", "--out", str(link)]) == 0
    assert link.is_symlink() and os.readlink(link) == "target.png"
    assert target.read_bytes().startswith(b"\x89PNG")
    dangling = tmp_path / "dangling.png"
    dangling.symlink_to("made.png")
    assert cli.main(["plot", "fit", "--out", str(dangling)]) == 0
    assert dangling.is_symlink() and (tmp_path / "made.png").read_bytes().startswith(b"\x89PNG")
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


@pytest.mark.parametrize("command", ["reproduce", "sweep"])
def test_runs_refuse_special_files_in_their_folder(tmp_path, capsys, command):
    out = tmp_path / "o"
    argv = [command, *TINY, "--no-plots", "--keep-cells", "--out", str(out)]
    assert cli.main(argv) == 0
    # --resume reads cells/: a cell that is a FIFO is neither read (it would block) nor deleted
    cell = sorted((out / "cells").iterdir())[0]
    os.remove(cell)
    os.mkfifo(cell)
    assert cli.main([*argv, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "is a FIFO, not a regular file" in err and "Traceback" not in err
    assert _is_special(cell) and not (out / "results.json").exists()
    # an output file of the folder that is a FIFO: refused when the folder is claimed
    os.remove(cell)
    os.mkfifo(out / "results.csv")
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2 and "is a FIFO, not a regular file" in capsys.readouterr().err
    assert _is_special(out / "results.csv")
