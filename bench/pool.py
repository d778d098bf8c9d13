"""Throughput of one shared daraja.Client at 16 and at 64 threads, against the nginx stub of run.py.

The Client's pool of libcurl handles (each with its kept-alive connection) should follow the
number of threads using it: at 64 threads throughput should stay within TARGET of 16 threads'.
Rounds alternate 16 and 64 threads so that drift falls on both alike; the medians are compared.
Prints figures and OK/MISS; asserts nothing. Needs nginx, like run.py (see README.md).

    .venv/bin/python bench/pool.py [--seconds 3] [--rounds 3]
"""

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import KEY, SECRET, STK, free_port, load_daraja, sandbox, start_nginx

TARGET = 0.9
THREADS = (16, 64)


def throughput(client, threads, seconds):
	"""STK pushes per second from `threads` threads sharing client, over `seconds`."""
	stop = threading.Event()
	counts = [0] * threads
	errors = []
	barrier = threading.Barrier(threads + 1)

	def work(i):
		barrier.wait()
		while not stop.is_set():
			try:
				reply = client.stk_push(**STK)
			except Exception as e:  # noqa: BLE001 - reported below
				errors.append(e)
				return
			if reply.get("ResponseCode") != "0":
				errors.append(RuntimeError(f"unexpected STK reply: {reply}"))
				return
			counts[i] += 1

	pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
	for t in pool:
		t.start()
	barrier.wait()
	started = time.perf_counter()
	time.sleep(seconds)
	stop.set()
	for t in pool:
		t.join()
	elapsed = time.perf_counter() - started
	if errors:
		raise RuntimeError(f"{len(errors)} calls failed, the first: {errors[0]!r}")
	return sum(counts) / elapsed


def main():
	parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
	parser.add_argument("--seconds", type=float, default=3.0, help="length of one measurement (default 3)")
	parser.add_argument("--rounds", type=int, default=3, help="measurements per thread count (default 3)")
	args = parser.parse_args()
	daraja = load_daraja()
	with contextlib.ExitStack() as stack:
		tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="frappe-mpesa-pool-")))
		port = free_port()
		start_nginx(stack, tmp, port)
		client = daraja.Client(KEY, SECRET, base_url=f"https://127.0.0.1:{port}", ca_file=sandbox.CA_FILE)
		client.access_token()
		print(f"libcurl {daraja.libcurl_version}, {daraja.openssl_version}; one Client shared by all threads")
		for threads in THREADS:  # warm-up: the pool grows to what each count needs
			throughput(client, threads, min(1.0, args.seconds))
		results = {threads: [] for threads in THREADS}
		for _ in range(args.rounds):
			for threads in THREADS:
				results[threads].append(throughput(client, threads, args.seconds))
		for threads in THREADS:
			rates = ", ".join(f"{r:.0f}" for r in results[threads])
			print(f"{threads:>3} threads: median {statistics.median(results[threads]):.0f} calls/s ({rates})")
		ratio = statistics.median(results[64]) / statistics.median(results[16])
		print(f"64/16 threads: {ratio:.2f}x, target >= {TARGET:g}x: {'OK' if ratio >= TARGET else 'MISS'}")


if __name__ == "__main__":
	main()
