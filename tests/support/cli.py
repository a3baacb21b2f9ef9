"""Running ``recoil`` in-process and reading how it refused a setting."""

from __future__ import annotations

import pytest

from recoil.cli import main


def config_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """``recoil ARGV``, which must stop on a setting: exit status 2, no traceback, and a
    last line ``recoil COMMAND: configuration error: ...``. Returns all of stderr (Kafka
    clients may have logged before the check that stopped it)."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith(f"recoil {argv[0]}: configuration error: "), err
    return err
