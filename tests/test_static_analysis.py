"""Static analysis of the contracts: slither and solhint, run as the project configures them.

slither (``slither.config.json``) compiles ``contracts/PaymentChannels.sol`` through the project's offline
solc wrapper (``bin/solc-v0.8.30``); every finding must be triaged in ``SECURITY.md`` (its slither table,
between the ``slither-triage`` markers), and no high or medium finding may be triaged with a wildcard.
solhint (``.solhint.json``) must report nothing on ``contracts/``, and every rule the config turns off must
have its reason in ``SECURITY.md`` (the solhint table). A missing tool fails the test; nothing is skipped.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECURITY = ROOT / "SECURITY.md"
MAIN_CONTRACT = "contracts/PaymentChannels.sol"


def table(name: str) -> list[list[str]]:
    """The rows of the markdown table between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``."""
    text = SECURITY.read_text()
    match = re.search(rf"<!-- {name}:start -->(.*?)<!-- {name}:end -->", text, re.S)
    assert match, f"SECURITY.md has no {name} block"
    rows = []
    for line in match.group(1).splitlines():
        cells = [c.strip().strip("`").strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or set(cells[0]) <= set("-: ") or cells[0].lower() in ("detector", "rule"):
            continue
        rows.append(cells)
    assert rows, f"the {name} table in SECURITY.md is empty"
    return rows


def run_slither(tmp_path: Path) -> tuple[dict, str]:
    slither = Path(sys.executable).parent / "slither"
    assert slither.exists(), (
        f"slither is not installed in {slither.parent} (pip install -c constraints.txt -e '.[test]')"
    )
    out = tmp_path / "slither.json"
    env = {k: v for k, v in os.environ.items() if k != "SOLC_VERSION"}  # the config names the solc binary
    proc = subprocess.run(
        [str(slither), MAIN_CONTRACT, "--config-file", "slither.config.json", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    assert out.exists(), f"slither wrote no report:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    report = json.loads(out.read_text())
    assert report["success"], f"slither failed: {report.get('error')}\n{proc.stderr[-3000:]}"
    return report, proc.stdout + proc.stderr


def finding_key(result: dict) -> tuple[str, str, str]:
    """(detector, impact, where): ``where`` is the function (or variable) the finding is about."""
    element = result["elements"][0] if result["elements"] else {}
    return result["check"], result["impact"], element.get("name", "")


def test_slither_reports_no_finding_that_security_md_does_not_triage(tmp_path):
    report, log = run_slither(tmp_path)
    analyzed = re.search(r"analyzed \((\d+) contracts", log)
    assert analyzed and int(analyzed.group(1)) >= 1, f"slither analyzed nothing:\n{log[-2000:]}"
    triage = {(row[0], row[2]): row for row in table("slither-triage")}
    for (detector, where), row in triage.items():
        severity, reason = row[1], row[3] if len(row) > 3 else ""
        assert len(reason) > 10, f"triage of {detector} at {where} needs a reason"
        if severity.lower() in ("high", "medium"):
            assert where != "*", f"a {severity} finding ({detector}) must be triaged one by one, not with *"
    findings = [finding_key(r) for r in report["results"].get("detectors", [])]
    untriaged = [f for f in findings if (f[0], f[2]) not in triage and (f[0], "*") not in triage]
    assert not untriaged, "untriaged slither findings (fix them or triage them in SECURITY.md):\n" + "\n".join(
        f"  {d} ({impact}) at {where}" for d, impact, where in untriaged
    )
    for detector, impact, where in findings:  # the triage states the severity slither reports
        row = triage.get((detector, where)) or triage[(detector, "*")]
        assert row[1].lower() == impact.lower(), f"{detector} at {where} is {impact}, SECURITY.md says {row[1]}"
    seen = {(d, w) for d, _, w in findings} | {(d, "*") for d, _, _ in findings}
    stale = sorted(set(triage) - seen)
    if stale:
        warnings.warn(f"SECURITY.md triages slither findings that no longer occur: {stale}", stacklevel=1)


def test_solhint_reports_nothing_on_the_contracts():
    solhint = ROOT / "node_modules" / ".bin" / "solhint"
    assert solhint.exists(), "solhint is not installed (npm ci)"
    proc = subprocess.run(
        [str(solhint), "-c", ".solhint.json", "-f", "json", "contracts/**/*.sol"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    start = proc.stdout.find("[")
    assert start >= 0, f"solhint printed no report:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    report, _ = json.JSONDecoder().raw_decode(proc.stdout[start:])
    problems = [m for m in report if m.get("ruleId")]
    assert not problems, "solhint findings:\n" + "\n".join(
        f"  {m['filePath']}:{m['line']} {m['ruleId']}: {m['message']}" for m in problems
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_every_solhint_rule_turned_off_has_a_reason_in_security_md():
    config = json.loads((ROOT / ".solhint.json").read_text())
    assert config["extends"] == "solhint:recommended"
    off = {rule for rule, setting in config["rules"].items() if setting == "off"}
    documented = {row[0]: row[-1] for row in table("solhint-triage")}
    assert off == set(documented), f"turned off in .solhint.json: {sorted(off)}; explained: {sorted(documented)}"
    assert all(len(reason) > 10 for reason in documented.values())
