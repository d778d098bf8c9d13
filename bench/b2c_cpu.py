"""The core client's CPU per B2C request: Client.b2c_payment against the sandbox, run in another
process so that none of its work is counted here.

    .venv/bin/python bench/b2c_cpu.py [--n 1000] [--threads 1]

Counts this process's CPU time (user + system, all threads: the GIL is released around the
transfer, and libcurl and OpenSSL run in the calling thread) over N calls after a warm-up (token,
TLS handshake, imports), and prints it per call with the payout issue's target (<= 50 us). The
loop and the keyword arguments are counted too: that is what a caller pays. With one thread the
calls are made in a plain loop; with more, through a thread pool, whose hand-off is counted too.
Never fails on a missed target.
"""

import argparse
import os
import resource
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from frappe_mpesa import daraja  # noqa: E402
from frappe_mpesa.sandbox import (  # noqa: E402
	CA_FILE,
	DEFAULT_CONSUMER_KEY,
	DEFAULT_CONSUMER_SECRET,
	DEFAULT_INITIATOR_NAME,
	DEFAULT_INITIATOR_PASSWORD,
	MPESA_TEST_CERT_PEM,
)

TARGET_US = 50.0


def free_port():
	with socket.socket() as s:
		s.bind(("127.0.0.1", 0))
		return s.getsockname()[1]


def cpu():
	usage = resource.getrusage(resource.RUSAGE_SELF)
	return usage.ru_utime + usage.ru_stime


def main():
	parser = argparse.ArgumentParser()
	parser.add_argument("--n", type=int, default=1000)
	parser.add_argument("--threads", type=int, default=1)
	args = parser.parse_args()
	port = free_port()
	server = subprocess.Popen(
		[sys.executable, "-m", "frappe_mpesa", "sandbox", "--port", str(port), "--callback-delay", "3600"],
		cwd=ROOT,
		stdout=subprocess.PIPE,
		stderr=subprocess.STDOUT,
		text=True,
		env={**os.environ, "PYTHONPATH": str(ROOT)},
	)
	try:
		for line in server.stdout:
			if "running" in line:
				break
		with open(MPESA_TEST_CERT_PEM, "rb") as f:
			credential = daraja.security_credential(f.read(), DEFAULT_INITIATOR_PASSWORD)
		client = daraja.Client(
			DEFAULT_CONSUMER_KEY, DEFAULT_CONSUMER_SECRET, base_url=f"https://127.0.0.1:{port}", ca_file=CA_FILE
		)
		kwargs = dict(
			initiator_name=DEFAULT_INITIATOR_NAME,
			security_credential=credential,
			result_url="https://127.0.0.1:9/hooks/result",
			queue_timeout_url="https://127.0.0.1:9/hooks/timeout",
			command_id="SalaryPayment",
			amount=100,
			party_a="600996",
			remarks="Salary",
		)

		def pay(i):
			return client.b2c_payment(phone=str(254713000000 + i), **kwargs)

		if args.threads == 1:
			# A plain loop: a one-thread pool would add its own hand-off (a Future, a queue and
			# two thread wake-ups per call) to the figure, which is not the core's cost.
			for i in range(20):  # warm-up: token, connection
				pay(i)
			start_cpu, start_wall = cpu(), time.perf_counter()
			answers = [pay(i) for i in range(100_000, 100_000 + args.n)]
			used, wall = cpu() - start_cpu, time.perf_counter() - start_wall
		else:
			with ThreadPoolExecutor(args.threads) as pool:
				list(pool.map(pay, range(20 * args.threads)))  # warm-up: token, connections
				start_cpu, start_wall = cpu(), time.perf_counter()
				answers = list(pool.map(pay, range(100_000, 100_000 + args.n)))
				used, wall = cpu() - start_cpu, time.perf_counter() - start_wall
		assert all(a.get("ResponseCode") == "0" for a in answers)
		per_call = used / args.n * 1e6
		print(f"b2c_payment x{args.n}, {args.threads} thread(s): {wall:.2f} s wall, {used * 1e3:.1f} ms CPU")
		print(f"client CPU per b2c_payment: {per_call:.1f} us  (target <= {TARGET_US:.0f} us: {'OK' if per_call <= TARGET_US else 'MISS'})")
	finally:
		server.terminate()
		server.wait(10)


if __name__ == "__main__":
	main()
