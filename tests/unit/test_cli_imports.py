"""Commands that do not generate import no model library (checked through ``sys.modules``, not timed)."""

import json
import subprocess
import sys

from benchmark.config import REPO_ROOT

HEAVY = ("torch", "diffusers", "transformers")


def _imported_after(argv: list[str]) -> dict:
    code = ("import contextlib, io, json, sys\n"
            "from benchmark.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
            "    try:\n"
            f"        rc = main({argv!r})\n"
            "    except SystemExit as e:\n"
            "        rc = e.code\n"
            f"print(json.dumps({{'rc': rc, 'loaded': [m for m in {HEAVY!r} if m in sys.modules]}}))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_validate_imports_no_model_library():
    got = _imported_after(["validate", "--config", "configs/embedded_default.yaml"])
    assert got == {"rc": 0, "loaded": []}


def test_ls_and_help_import_no_model_library():
    assert _imported_after(["ls", "--config", "configs/embedded_default.yaml"]) == {"rc": 0, "loaded": []}
    assert _imported_after(["--help"]) == {"rc": 0, "loaded": []}
