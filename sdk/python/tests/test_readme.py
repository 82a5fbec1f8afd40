"""The README's examples, run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from vigilserve import VigilServe

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, re.DOTALL)


def run_python(code: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    src = str(Path(__file__).resolve().parents[1] / "src")
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": src, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_offline_quickstart(tmp_path: Path) -> None:
    yaml_blocks = [b for lang, b in BLOCKS if lang == "yaml"]
    python_blocks = [b for lang, b in BLOCKS if lang == "python"]
    (tmp_path / "flags.yaml").write_text(yaml_blocks[0])
    assert run_python(python_blocks[0], tmp_path) == "True\noff split\n"


def test_controller_quickstart(tmp_path: Path, vigil_serve: VigilServe) -> None:
    vigil_serve.put_flag(
        {
            "key": "new-checkout",
            "variants": {"off": False, "on": True},
            "control": "off",
            "enabled": True,
            "rules": [{"variant": "on", "when": [{"attribute": "plan", "op": "in", "values": ["beta"]}]}],
        }
    )
    python_blocks = [b for lang, b in BLOCKS if lang == "python"]
    env = {"VIGIL_URL": vigil_serve.url, "VIGIL_TOKEN": vigil_serve.token("readme", "sdk")}
    code = python_blocks[1].replace("/tmp/vigil-flags.json", str(tmp_path / "cache.json"))
    assert run_python(code, tmp_path, env) == "True True\n"


def test_eval_commands(tmp_path: Path) -> None:
    yaml_blocks = [b for lang, b in BLOCKS if lang == "yaml"]
    (tmp_path / "flags.yaml").write_text(yaml_blocks[0])
    (tmp_path / "users.tsv").write_text("user-1\tx\nqa-1\ty\n")
    sh = [b for lang, b in BLOCKS if lang == "sh"][1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    lines = [ln.replace("python ", f"{sys.executable} ", 1) for ln in sh.strip().splitlines()]
    out = subprocess.run(
        " && ".join(lines), shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        '{"unit":"user-1","key":"new-checkout","value":false,"variant":"off","reason":"split","bucket":39756,"percent":5}',
        '{"unit":"user-1","key":"new-checkout","value":false,"variant":"off","reason":"split","bucket":39756,"percent":5}',
        '{"unit":"qa-1","key":"new-checkout","value":true,"variant":"on","reason":"targeting_match","bucket":51207,"percent":5}',
    ]
