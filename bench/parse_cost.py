"""Instructions per parse_callback of an STK callback, against json.loads(parse_float=Decimal).

Runs each under valgrind's callgrind: once with N calls and once with 0 (the same
process start, imports and body load), and divides the difference by N. Instruction
counts do not depend on the machine's load, so the ratio is stable between runs.

    python bench/parse_cost.py [--calls N]

Prints the figures and whether the target (at most 1.0x json.loads) is met; it never fails
on the figures themselves.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BODY = ROOT / "tests" / "data" / "callbacks" / "stk_success.json"
TARGET = 1.0

# One program for every run, so the 0-call run has exactly the same fixed costs.
PROGRAM = """
import sys
from decimal import Decimal
import json
from frappe_mpesa import daraja
body = open(sys.argv[1], "rb").read()
n = int(sys.argv[3])
if sys.argv[2] == "ours":
	parse = daraja.parse_callback
	for _ in range(n):
		parse(body, "stk")
else:
	loads = json.loads
	for _ in range(n):
		loads(body, parse_float=Decimal)
"""


def instructions(which: str, calls: int, workdir: str) -> int:
	"""Total instructions callgrind counts for one run of PROGRAM."""
	out = os.path.join(workdir, f"callgrind.{which}.{calls}")
	subprocess.run(
		[
			"valgrind",
			"--tool=callgrind",
			f"--callgrind-out-file={out}",
			sys.executable,
			"-c",
			PROGRAM,
			str(BODY),
			which,
			str(calls),
		],
		check=True,
		cwd=ROOT,
		stdout=subprocess.DEVNULL,
		stderr=subprocess.DEVNULL,
	)
	with open(out) as f:
		for line in f:
			match = re.match(r"(?:summary|totals):\s+(\d+)", line)
			if match:
				return int(match.group(1))
	raise RuntimeError(f"no totals in {out}")


def per_call(which: str, calls: int, workdir: str) -> float:
	return (instructions(which, calls, workdir) - instructions(which, 0, workdir)) / calls


def main() -> int:
	parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
	parser.add_argument("--calls", type=int, default=2000, help="calls per measured run (default 2000)")
	args = parser.parse_args()
	if shutil.which("valgrind") is None:
		print("parse_cost: valgrind is not installed (apt-get install valgrind)")
		return 0
	with tempfile.TemporaryDirectory() as workdir:
		ours = per_call("ours", args.calls, workdir)
		baseline = per_call("json", args.calls, workdir)
	ratio = ours / baseline
	print(f"body: {BODY.relative_to(ROOT)} ({BODY.stat().st_size} bytes), {args.calls} calls per run")
	print(f"parse_callback(body, 'stk'):             {ours:10.0f} instructions per call")
	print(f"json.loads(body, parse_float=Decimal):   {baseline:10.0f} instructions per call")
	print(f"ratio: {ratio:.2f}x; target <= {TARGET:.1f}x: {'met' if ratio <= TARGET else 'NOT met'}")
	return 0


if __name__ == "__main__":
	sys.exit(main())
