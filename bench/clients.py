"""What one more daraja.Client costs: memory and time, for the first Client of a process and the
ones after it, with the system CA bundle and with a CA file.

A bench process serving 100 sites holds 100 Clients; each should cost at most TARGET_KIB of memory
and TARGET_MS of time once the first is made (the CA store is loaded once and shared). Each case
runs in a fresh interpreter, so its "first" Client really is the process's first. Prints figures and
OK/MISS against the targets; asserts nothing.

    .venv/bin/python bench/clients.py [--n 100]
"""

import argparse
import ctypes
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_KIB = 50.0
TARGET_MS = 1.0
CASES = {"system bundle": None, "CA file": "sandbox"}


def rss_kib():
	with open("/proc/self/statm") as f:
		return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024


def heap_kib():
	"""Bytes glibc's malloc has handed out (mallinfo2: in-use arena plus mmapped blocks), or None."""
	try:
		libc = ctypes.CDLL("libc.so.6")
	except OSError:
		return None

	class Mallinfo2(ctypes.Structure):
		_fields_ = [
			(name, ctypes.c_size_t)
			for name in (
				"arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
				"keepcost",
			)
		]

	if not hasattr(libc, "mallinfo2"):
		return None
	libc.mallinfo2.restype = Mallinfo2
	info = libc.mallinfo2()
	return (info.uordblks + info.hblkhd) / 1024


def child(case, n):
	"""Measure in this (fresh) process; print one JSON line."""
	from frappe_mpesa import daraja, sandbox

	ca_file = sandbox.CA_FILE if CASES[case] == "sandbox" else None

	def make(i):
		return daraja.Client(f"key{i}", f"secret{i}", base_url="https://127.0.0.1:9", ca_file=ca_file)

	clients = []
	gc.collect()
	rss0, heap0 = rss_kib(), heap_kib()
	t0 = time.perf_counter()
	clients.append(make(0))
	first_ms = (time.perf_counter() - t0) * 1000
	rss1, heap1 = rss_kib(), heap_kib()
	times = []
	for i in range(1, n + 1):
		t = time.perf_counter()
		clients.append(make(i))
		times.append(time.perf_counter() - t)
	rss2, heap2 = rss_kib(), heap_kib()
	times.sort()
	print(
		json.dumps(
			{
				"first_ms": first_ms,
				"first_rss_kib": rss1 - rss0,
				"first_heap_kib": None if heap0 is None else heap1 - heap0,
				"next_ms": sum(times) / n * 1000,
				"next_median_ms": times[n // 2] * 1000,
				"next_rss_kib": (rss2 - rss1) / n,
				"next_heap_kib": None if heap0 is None else (heap2 - heap1) / n,
			}
		)
	)


def verdict(ok):
	return "OK" if ok else "MISS"


def main():
	parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
	parser.add_argument("--n", type=int, default=100, help="Clients made after the first (default 100)")
	parser.add_argument("--child", choices=list(CASES), help=argparse.SUPPRESS)
	args = parser.parse_args()
	if args.child:
		child(args.child, args.n)
		return
	print(f"{args.n} Clients after the first, each case in a fresh interpreter")
	print(f"target per Client after the first: <= {TARGET_KIB:g} KiB and <= {TARGET_MS:g} ms\n")
	for case in CASES:
		out = subprocess.run(
			[sys.executable, __file__, "--child", case, "--n", str(args.n)],
			check=True,
			capture_output=True,
			text=True,
		).stdout
		r = json.loads(out.strip().splitlines()[-1])
		heap = r["next_heap_kib"]
		memory = heap if heap is not None else r["next_rss_kib"]
		print(f"{case}:")
		print(f"  first Client: {r['first_ms']:.2f} ms, RSS +{r['first_rss_kib']:.0f} KiB", end="")
		print(f", malloc +{r['first_heap_kib']:.0f} KiB" if r["first_heap_kib"] is not None else "")
		print(
			f"  next Clients: {r['next_ms']:.3f} ms each (median {r['next_median_ms']:.3f} ms), "
			f"RSS +{r['next_rss_kib']:.1f} KiB each"
			+ (f", malloc +{heap:.1f} KiB each" if heap is not None else "")
		)
		print(
			f"  memory {verdict(memory <= TARGET_KIB)} ({memory:.1f} KiB), "
			f"time {verdict(r['next_ms'] <= TARGET_MS)} ({r['next_ms']:.3f} ms)"
		)


if __name__ == "__main__":
	main()
