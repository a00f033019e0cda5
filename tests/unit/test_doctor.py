"""``doctor``: one line per check, an exit code that agrees with them, a failing check a line, not a traceback."""

import benchmark.doctor as doctor
from benchmark.cli import main

CHECKS = ("devices", "dtypes", "fid/kid weights", "lpips weights", "capture", "half decode", "dask worker")
OPTIONAL = ("fid/kid weights", "lpips weights")


def _lines(out: str) -> dict[str, tuple[str, str]]:
    """{check name: (status, line)} of the check lines."""
    found = {}
    for line in out.splitlines():
        status = line[:8].strip()
        if status in (doctor.OK, doctor.MISSING, doctor.FAILED):
            found[line[8:26].strip()] = (status, line)
    return found


def test_doctor_on_cpu(capsys):
    rc = main(["doctor", "--device", "cpu"])
    out = capsys.readouterr().out
    lines = _lines(out)
    assert tuple(lines) == CHECKS
    for name, (status, line) in lines.items():
        if name in OPTIONAL and status == doctor.MISSING:
            assert "(optional)" in line
        else:
            assert status == doctor.OK, line
    assert rc == 0 and out.splitlines()[-1].endswith("; ready")


def test_failing_check_is_a_line_and_exit_1(capsys, monkeypatch):
    def broken():
        raise OSError("no worker could start")

    monkeypatch.setattr(doctor, "check_dask", broken)
    rc = main(["doctor", "--device", "cpu"])
    captured = capsys.readouterr()
    status, line = _lines(captured.out)["dask worker"]
    assert status == doctor.FAILED and "OSError: no worker could start; fix: " in line
    assert rc == 1 and "not ready: dask worker" in captured.out
    assert "Traceback" not in captured.out + captured.err
