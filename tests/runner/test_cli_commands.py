"""The commands as a user meets them: one-line usage errors in every command, narrowing that never replaces the
full pages, and a run with nothing to do that loads no model library."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd

from benchmark.cli import main
from benchmark.config import REPO_ROOT

from runner_helpers import cli_env, smoke_dict, write_config

# (argv, what the one line must say); "{cfg}" is a valid smoke config
USAGE_ERRORS = [
    (["run", "--config", "{cfg}", "--models", "nosuch"], "'nosuch' is not in smoke"),
    (["run", "--config", "{missing}"], "run config not found"),
    (["run", "--config", "{cfg}", "--tasks", "viton_hdd"], "did you mean 'viton_hd'"),
    (["run", "--config", "{cfg}", "--device", "cuda:3"], "device 'cuda:3'"),
    (["run", "--config", "{cfg}", "--limit", "0"], "--limit must be >= 1"),
    (["report", "--config", "{missing}"], "run config not found"),
    (["report", "--config", "{cfg}"], "no stored results for smoke"),
    (["validate", "--config", "{cfg}", "--device", "cuda:3"], "device 'cuda:3'"),
    (["validate", "--config", "{bad_key}"], "unknown key 'modles'; did you mean 'models'?"),
    (["ls", "--config", "{missing}"], "run config not found"),
    (["verify", "--config", "{missing}"], "run config not found"),
    (["perf", "--model", "{missing}"], "not found"),
    (["train", "--task", "viton"], "unknown embedded task 'viton'"),
    (["run", "--config"], "expected one argument"),
]


def test_usage_errors_are_one_line_and_exit_2_in_every_command(tiny_model, tmp_path):
    cfg = write_config(smoke_dict(tmp_path, tiny_model), tmp_path / "config.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ntasks:\n  - task: object_inpainting\n    modles: []\n")
    places = {"cfg": cfg, "missing": tmp_path / "nosuch.yaml", "bad_key": bad}
    cases = [[a.format(**places) for a in argv] for argv, _ in USAGE_ERRORS] + [["--debug", "ls", "--config",
                                                                                 str(places["missing"])]]
    code = ("import contextlib, io, json, sys\n"
            "from benchmark.cli import main\n"
            "out = []\n"
            f"for argv in {cases!r}:\n"
            "    err = io.StringIO()\n"
            "    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):\n"
            "        try:\n"
            "            rc = main(argv)\n"
            "        except BaseException as e:\n"
            "            rc = 'raised ' + type(e).__name__\n"
            "    out.append([rc, err.getvalue()])\n"
            "print(json.dumps(out))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=cli_env(), capture_output=True, text=True,
                          timeout=600)
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for (argv, says), (rc, err) in zip(USAGE_ERRORS, results):
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], (argv, rc, err)
    assert results[-1][0] == "raised ConfigError"  # --debug: the exception itself, for its traceback


def test_narrowed_runs_keep_the_full_pages_and_a_noop_run_loads_no_model_library(tiny_model, tmp_path):
    models = [{"name": n, "adapter": "reference_unet", "path": str(tiny_model)} for n in ("a", "b")]
    config = str(write_config(smoke_dict(tmp_path, tiny_model, models=models), tmp_path / "config.yaml"))
    lb = tmp_path / "leaderboards"
    assert main(["run", "--config", config, "--scheduler", "inline"]) == 0
    full = (lb / "viton_hd.csv").read_text()
    assert set(pd.read_csv(lb / "viton_hd.csv").model) == {"a", "b"}

    assert main(["run", "--config", config, "--scheduler", "inline", "--models", "a"]) == 0
    assert (lb / "viton_hd.csv").read_text() == full  # b keeps its stored rows
    assert main(["run", "--config", config, "--scheduler", "inline", "--limit", "1"]) == 0
    assert (lb / "viton_hd.csv").read_text() == full
    limited = pd.read_csv(tmp_path / "run" / "limit-1" / "leaderboards" / "viton_hd.csv")
    assert list(limited.n) == [1, 1]
    assert main(["report", "--config", config, "--tasks", "viton_hd", "--models", "b"]) == 0
    assert (lb / "viton_hd.csv").read_text() == full

    code = ("import json, sys\n"
            "from benchmark.cli import main\n"
            f"rc = main(['run', '--config', {config!r}])\n"
            "print(json.dumps([rc, [m for m in ('torch', 'diffusers', 'transformers', 'distributed') "
            "if m in sys.modules]]))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=cli_env(), capture_output=True, text=True,
                          timeout=600)
    assert "jobs: 4 (4 already stored, 0 run, 0 failed)" in done.stdout, done.stderr[-2000:]
    assert "(current:" in done.stdout
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [0, []]
