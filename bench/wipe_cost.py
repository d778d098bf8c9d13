"""What wiping libcurl's freed memory costs per STK push, counted in instructions by callgrind.

	.venv/bin/python bench/wipe_cost.py [--pushes 20,80]

The core gives libcurl an allocator (csrc/crypto.c: wipe_free, wipe_realloc, wipe_strdup) whose
free wipes the whole block and whose realloc never leaves an old block unwiped. There is no switch
to turn that off, and none is added for a benchmark: instead one build runs under callgrind and the
cost is read per function from its call graph.

A child process (under callgrind) makes a Client and N STK pushes against the embedded sandbox
(which runs here, outside valgrind, so its instructions are not counted). It runs twice, with two
values of N; every figure below is the difference between the two runs divided by the difference in
N, so start-up, import, the TLS handshake and the token request cancel out and what remains is the
cost of one more STK push on a warm client.

Printed per push:

- total: every instruction the client process executed;
- wiping: instructions inside cr_wipe and malloc_usable_size called from the wipe
  functions: the work that exists only because blocks are wiped;
- wrapper overhead: wiping, plus the wipe functions' own instructions and everything else they
  call but malloc and free (the memcpy of wipe_realloc, which moves a growing block where glibc
  might have grown it in place; strdup's strlen): all the allocator adds, short of the malloc and
  free calls that libcurl makes anyway. An upper bound on the price of wiping;
- calls into the wipe functions: the inclusive cost of every call libcurl makes to them, malloc
  and free included (libcurl's malloc and calloc go straight to glibc and are not counted).

Needs valgrind (`make valgrind` installs it) and the extension built in place (`make build`).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from frappe_mpesa.sandbox import (
	CA_FILE,
	DEFAULT_CONSUMER_KEY,
	DEFAULT_CONSUMER_SECRET,
	DEFAULT_PASSKEY,
	DEFAULT_SHORTCODE,
	CallbackReceiver,
	Sandbox,
)

WRAPPERS = ("wipe_free", "wipe_realloc", "wipe_strdup")
WIPING = ("cr_wipe", "malloc_usable_size")

CHILD = textwrap.dedent(
	"""
	import json, sys
	from frappe_mpesa import daraja

	job = json.loads(sys.argv[1])
	assert daraja.libcurl_wipes_freed_memory
	client = daraja.Client(job["key"], job["secret"], base_url=job["base_url"], ca_file=job["ca_file"],
	                       timeout=120)
	for _ in range(job["pushes"]):
		answer = client.stk_push(**job["stk"])
		assert answer["ResponseCode"] == "0", answer
	"""
)


def base_name(name):
	"""A callgrind function name without the object suffix or clone marks ('wipe_free.part.0')."""
	return re.split(r"[ '.]", name, maxsplit=1)[0]


def parse(path):
	"""Self costs per function and inclusive costs per (caller, callee) edge, in Ir."""
	self_cost = defaultdict(int)
	edge = defaultdict(int)
	total = 0
	fn = cfn = None
	after_calls = False
	for line in Path(path).read_text(errors="replace").splitlines():
		if line.startswith("fn="):
			fn, after_calls = base_name(line[3:]), False
		elif line.startswith("cfn="):
			cfn = base_name(line[4:])
		elif line.startswith("calls="):
			after_calls = True
		elif line[:1].isdigit() or line[:1] in "+-*":
			parts = line.split()
			cost = int(parts[1]) if len(parts) > 1 else 0
			if after_calls:
				edge[fn, cfn] += cost
				after_calls = False
			else:
				self_cost[fn] += cost
		elif line.startswith(("summary:", "totals:")):
			total = max(total, int(line.split()[1]))
	return self_cost, edge, total


def extra(callee):
	"""Whether a wrapper's call to callee is work a plain allocator would not do (libcurl and
	glibc's malloc may have no symbols: anything unnamed is taken to be malloc or free)."""
	return callee in WIPING or any(part in callee for part in ("memcpy", "memmove", "strlen"))


def figures(path):
	self_cost, edge, total = parse(path)
	wiping = sum(edge[w, c] for w in WRAPPERS for c in WIPING)
	overhead = sum(self_cost[w] for w in WRAPPERS) + sum(
		cost for (caller, callee), cost in edge.items() if caller in WRAPPERS and extra(callee)
	)
	calls_in = sum(
		cost for (caller, callee), cost in edge.items() if callee in WRAPPERS and caller not in WRAPPERS
	)
	return {"total": total, "wiping": wiping, "overhead": overhead, "allocator": calls_in}


def run(pushes, sandbox, receiver, out):
	job = {
		"key": DEFAULT_CONSUMER_KEY,
		"secret": DEFAULT_CONSUMER_SECRET,
		"base_url": sandbox.url,
		"ca_file": CA_FILE,
		"pushes": pushes,
		"stk": {
			"shortcode": DEFAULT_SHORTCODE,
			"passkey": DEFAULT_PASSKEY,
			"amount": 1,
			"phone": "0708374149",
			"callback_url": receiver.url + "/hooks/stk",
			"account_reference": "WIPE",
			"description": "Bench",
		},
	}
	target = out / f"callgrind.{pushes}.out"
	command = [
		"valgrind",
		"--tool=callgrind",
		"--compress-strings=no",
		"--compress-pos=no",
		f"--callgrind-out-file={target}",
		sys.executable,
		"-c",
		CHILD,
		json.dumps(job),
	]
	subprocess.run(
		command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
	)
	return figures(target)


def main(argv=None):
	parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
	parser.add_argument("--pushes", default="20,80", help="the two numbers of pushes (default 20,80)")
	parser.add_argument("--keep", type=Path, help="keep callgrind's output files in this folder")
	args = parser.parse_args(argv)
	low, high = sorted(int(n) for n in args.pushes.split(","))
	if shutil.which("valgrind") is None:
		sys.exit("wipe_cost: valgrind is not installed (make valgrind installs it)")
	out = args.keep or Path(tempfile.mkdtemp(prefix="wipe_cost."))
	out.mkdir(parents=True, exist_ok=True)
	with CallbackReceiver() as receiver, Sandbox(callback_delay=0.0) as sandbox:
		print(f"wipe_cost: callgrind, {low} and {high} STK pushes on one warm Client against the sandbox")
		a = run(low, sandbox, receiver, out)
		b = run(high, sandbox, receiver, out)
	per = {name: (b[name] - a[name]) / (high - low) for name in a}
	total = per["total"]

	def row(label, value):
		share = f"{100 * value / total:6.2f} %" if total else "-"
		print(f"  {label:38}{value:>12,.0f} Ir  {share}")

	print(f"per STK push ({os.path.basename(sys.executable)}, difference of the two runs / {high - low}):")
	row("total, client process", total)
	row("wiping (cr_wipe + usable size)", per["wiping"])
	row("wrapper overhead (no malloc/free)", per["overhead"])
	row("calls into the wipe functions", per["allocator"])
	if args.keep is None:
		shutil.rmtree(out)
	return 0


if __name__ == "__main__":
	sys.exit(main())
