"""Instructions per call, counted by valgrind's callgrind: stable where wall-clock time is not.

Each client runs twice under callgrind in its own process, with the same warm-up and then either 0
or N calls; the difference of the two totals divided by N is its cost per call, with the
interpreter's start-up and the warm-up (token, TLS handshake, imports) taken out. The server is the
nginx stub of bench/run.py, in another process, so none of its work is counted.

Clients: our Client.stk_push, requests.Session, httpx.Client, and the C floor (one libcurl handle
posting a fixed body); parse_callback of tests/data/callbacks/stk_success.json against
json.loads(body, parse_float=Decimal) on the same body (which only decodes; parse_callback also
checks and types every field).

    .venv/bin/python bench/instructions.py [--n 200]

Prints each figure and the issue's targets with OK or MISS; never fails on a missed target.
"""

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import run  # noqa: E402  (bench/run.py: the nginx stub, the STK arguments, the floor's build)

from frappe_mpesa import sandbox  # noqa: E402

TARGETS = (
	("stk_push / floor", "<=", 1.2),
	("requests.Session / stk_push", ">=", 22.0),
	("httpx.Client / stk_push", ">=", 16.0),
	("parse_callback / json.loads", "<=", 1.0),
)

# One process's work: warm up, then `calls` calls. argv: kind warm calls base ca
WORKER = r"""
import json, sys
from decimal import Decimal
kind, warm, calls, base, ca = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
sys.path.insert(0, {bench!r}); sys.path.insert(0, {root!r})
import run
if kind == "ours":
    from frappe_mpesa import daraja
    client = daraja.Client(run.KEY, run.SECRET, base_url=base, ca_file=ca)
    call = lambda: client.stk_push(**run.STK)
elif kind == "session":
    import requests
    s = requests.Session()
    token = s.get(base + run.TOKEN_PATH, auth=(run.KEY, run.SECRET), verify=ca).json()["access_token"]
    headers = {{"Authorization": "Bearer " + token}}
    call = lambda: s.post(base + run.STK_PATH, json=run.stk_payload(), headers=headers, verify=ca).json()
elif kind == "httpx":
    import httpx
    h = httpx.Client(verify=ca)
    token = h.get(base + run.TOKEN_PATH, auth=(run.KEY, run.SECRET)).json()["access_token"]
    headers = {{"Authorization": "Bearer " + token}}
    call = lambda: h.post(base + run.STK_PATH, json=run.stk_payload(), headers=headers).json()
elif kind in ("parse", "loads"):
    from frappe_mpesa import daraja
    body = open(ca, "rb").read()
    if kind == "parse":
        call = lambda: daraja.parse_callback(body, "stk")
    else:
        call = lambda: json.loads(body, parse_float=Decimal)
for _ in range(warm):
    call()
for _ in range(calls):
    call()
"""

# The STK callback parse_callback is measured on (the same body json.loads gets).
STK_CALLBACK = HERE.parent / "tests" / "data" / "callbacks" / "stk_success.json"


def total_instructions(out_file):
	"""The Ir total of a callgrind output file."""
	text = Path(out_file).read_text()
	match = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
	if not match:
		sys.exit(f"no totals in {out_file}")
	return int(match.group(1))


def callgrind(argv, tmp, tag, stdin=None):
	out = Path(tmp) / f"callgrind.{tag}"
	cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv]
	env = dict(os.environ, PYTHONHASHSEED="0")
	proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env)
	if proc.returncode != 0:
		sys.exit(f"{tag} failed under callgrind:\n{proc.stderr[-2000:]}")
	return total_instructions(out)


def per_call(argv_for, tmp, tag, n, stdin_for=None):
	"""(Ir with n calls - Ir with none) / n, both after the same warm-up."""
	runs = []
	for calls in (0, n):
		stdin = stdin_for(calls) if stdin_for else None
		runs.append(callgrind(argv_for(calls), tmp, f"{tag}.{calls}", stdin))
	return (runs[1] - runs[0]) / n


def measure(n, warm):
	results = {}
	with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
		port = run.free_port()
		prefix = Path(tmp) / "nginx"
		prefix.mkdir()
		run.start_nginx(stack, prefix, port)
		base, ca = f"https://127.0.0.1:{port}", str(sandbox.CA_FILE)
		worker = Path(tmp) / "worker.py"
		worker.write_text(WORKER.format(bench=str(HERE), root=str(HERE.parent)))

		def python(kind, target=ca):
			return lambda calls: [sys.executable, str(worker), kind, str(warm), str(calls), base, target]

		kinds = [("ours", "stk_push"), ("session", "requests.Session")]
		try:
			import httpx  # noqa: F401

			kinds.append(("httpx", "httpx.Client"))
		except ImportError:
			print("httpx is not installed: pip install -e '.[bench]' (its figure is left out)")
		for kind, label in kinds:
			results[label] = per_call(python(kind), tmp, kind, n)
		for kind, label in (("parse", "parse_callback"), ("loads", "json.loads")):
			results[label] = per_call(python(kind, str(STK_CALLBACK)), tmp, kind, n * 10)

		floor = run.OUT / "floor"
		run.OUT.mkdir(exist_ok=True)
		libcurl = subprocess.run(
			["pkg-config", "--cflags", "--libs", "libcurl"], check=True, capture_output=True, text=True
		).stdout.split()
		subprocess.run(["cc", "-O2", str(HERE / "floor.c"), "-o", str(floor), *libcurl], check=True)
		body = json.dumps(run.stk_payload(), separators=(",", ":"))
		argv = [str(floor), base + run.STK_PATH, ca, run.TOKEN, body]
		results["floor"] = per_call(
			lambda calls: argv, tmp, "floor", n, stdin_for=lambda calls: f"{warm}\n" + (f"{calls}\n" if calls else "")
		)
	return results


def report(results):
	print("instructions per call (callgrind, Ir):")
	for label, value in results.items():
		print(f"  {label:<20} {value / 1000:9.1f}k")
	ratios = {
		"stk_push / floor": results["stk_push"] / results["floor"],
		"requests.Session / stk_push": results["requests.Session"] / results["stk_push"],
		"parse_callback / json.loads": results["parse_callback"] / results["json.loads"],
	}
	if "httpx.Client" in results:
		ratios["httpx.Client / stk_push"] = results["httpx.Client"] / results["stk_push"]
	for name, op, target in TARGETS:
		if name not in ratios:
			continue
		value = ratios[name]
		ok = value <= target if op == "<=" else value >= target
		print(f"  {name:<28} {value:6.2f}  target {op} {target:<5} {'OK' if ok else 'MISS'}")
	print("instruction ratios: " + " ".join(f"{k.replace(' ', '')}={v:.2f}" for k, v in ratios.items()))


def main():
	parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
	parser.add_argument("--n", type=int, default=200, help="calls counted per client (default 200)")
	parser.add_argument("--warm", type=int, default=20, help="calls before counting (default 20)")
	args = parser.parse_args()
	if shutil.which("valgrind") is None:
		sys.exit("valgrind is not installed: apt-get install valgrind")
	report(measure(args.n, args.warm))


if __name__ == "__main__":
	main()
