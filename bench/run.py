"""STK push latency: today's Frappe M-Pesa pattern, requests.Session, our Client and a C floor.

Starts nginx on loopback as a Daraja-shaped stub, runs the four clients in interleaved rounds,
prints per-client latency, the Security Credential cost and the ratios. See bench/README.md.
"""

import argparse
import base64
import contextlib
import json
import os
import platform
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
sys.path.insert(0, str(ROOT))

from frappe_mpesa import sandbox

NGINX = "/usr/sbin/nginx"
KEY, SECRET = "benchkey", "benchsecret"
TOKEN = "benchtoken0123456789abcdefghij"
TOKEN_PATH = "/oauth/v1/generate?grant_type=client_credentials"
STK_PATH = "/mpesa/stkpush/v1/processrequest"
STK = {
	"shortcode": "174379",
	"passkey": "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919",
	"amount": 1,
	"phone": "254708374149",
	"callback_url": "https://example.com/hooks/stk",
	"account_reference": "INV001",
	"description": "Payment",
}
ROUNDS = 20
LABELS = {
	"a": "(a) requests, new token + connections per payment",
	"b": "(b) requests.Session, token fetched once",
	"c": "(c) frappe_mpesa.daraja.Client",
	"d": "(d) C floor, one libcurl handle",
}
TARGETS = (("c/d", "<=", 1.3), ("b/c", ">=", 12.0), ("a/c", ">=", 100.0))
CREDENTIAL_TARGET_US = 60.0
STOP = []  # signals received: a finalizer running when one lands swallows its KeyboardInterrupt


def stk_payload():
	"""The STK body as today's apps build it, fresh Timestamp and Password each time."""
	timestamp = datetime.now().strftime("%Y%m%d%H%M%S")
	password = base64.b64encode((STK["shortcode"] + STK["passkey"] + timestamp).encode()).decode()
	return {
		"BusinessShortCode": STK["shortcode"],
		"Password": password,
		"Timestamp": timestamp,
		"TransactionType": "CustomerPayBillOnline",
		"Amount": STK["amount"],
		"PartyA": STK["phone"],
		"PartyB": STK["shortcode"],
		"PhoneNumber": STK["phone"],
		"CallBackURL": STK["callback_url"],
		"AccountReference": STK["account_reference"],
		"TransactionDesc": STK["description"],
	}


# -- the Daraja stub ---------------------------------------------------------------------------


def free_port():
	with socket.socket() as s:
		s.bind(("127.0.0.1", 0))
		return s.getsockname()[1]


def spawn(stack, args, **kwargs):
	"""Start a child that stack stops; in its own session, so a Ctrl-C reaches only this script."""
	proc = subprocess.Popen(args, start_new_session=True, **kwargs)
	stack.callback(stop, proc)
	return proc


def stop(proc):
	if proc.poll() is None:
		proc.terminate()
		try:
			proc.wait(timeout=5)
		except subprocess.TimeoutExpired:
			proc.kill()
			proc.wait()


def start_nginx(stack, prefix, port):
	"""Write the config into prefix and start nginx in the foreground; returns once it accepts."""
	conf = (HERE / "nginx.conf.in").read_text()
	fields = {"PORT": port, "CERT": sandbox.SERVER_CERT, "KEY": sandbox.SERVER_KEY, "TOKEN": TOKEN}
	for name, value in fields.items():
		conf = conf.replace(f"@{name}@", str(value))
	(prefix / "tmp").mkdir()
	(prefix / "nginx.conf").write_text(conf)
	proc = spawn(stack, [NGINX, "-c", str(prefix / "nginx.conf"), "-p", f"{prefix}/", "-e", "stderr"])
	deadline = time.monotonic() + 10
	while proc.poll() is None and time.monotonic() < deadline:
		try:
			socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
			return
		except OSError:
			time.sleep(0.05)
	log = prefix / "error.log"
	sys.exit("nginx did not start" + (":\n" + log.read_text() if log.exists() else ""))


# -- the clients: each is batch(n) -> list of n latencies in ns ---------------------------------


def timed(pay):
	"""Time each call of pay() alone; the reply is checked outside the timed part."""

	def batch(n):
		latencies = []
		for _ in range(n):
			t0 = time.perf_counter_ns()
			reply = pay()
			latencies.append(time.perf_counter_ns() - t0)
			if reply.get("ResponseCode") != "0":
				raise RuntimeError(f"unexpected STK reply: {reply}")
		return latencies

	return batch


def per_payment(base, ca):
	"""(a) Today's Frappe M-Pesa apps: a new token and new connections for every payment."""

	def pay():
		token = requests.get(base + TOKEN_PATH, auth=(KEY, SECRET), verify=ca).json()["access_token"]
		headers = {"Authorization": "Bearer " + token}
		return requests.post(base + STK_PATH, json=stk_payload(), headers=headers, verify=ca).json()

	return timed(pay)


def session(base, ca):
	"""(b) One requests.Session and a token fetched once."""
	s = requests.Session()
	# verify per call: REQUESTS_CA_BUNDLE in the environment would override Session.verify.
	token = s.get(base + TOKEN_PATH, auth=(KEY, SECRET), verify=ca).json()["access_token"]
	headers = {"Authorization": "Bearer " + token}
	return timed(lambda: s.post(base + STK_PATH, json=stk_payload(), headers=headers, verify=ca).json())


def ours(base, ca, daraja):
	"""(c) frappe_mpesa.daraja.Client, its token cached after one warm call."""
	client = daraja.Client(KEY, SECRET, base_url=base, ca_file=ca)
	client.access_token()
	return timed(lambda: client.stk_push(**STK))


class Floor:
	"""(d) bench/floor.c: one libcurl handle for the whole run, driven over stdin/stdout."""

	def __init__(self, stack, base, ca):
		binary = OUT / "floor"
		libcurl = subprocess.run(
			["pkg-config", "--cflags", "--libs", "libcurl"], check=True, capture_output=True, text=True
		).stdout.split()
		cc = ["cc", "-O2", "-Wall", "-Wextra", "-Werror", str(HERE / "floor.c"), "-o", str(binary), *libcurl]
		subprocess.run(cc, check=True)
		body = json.dumps(stk_payload(), separators=(",", ":"))
		argv = [str(binary), base + STK_PATH, ca, TOKEN, body]
		self.proc = spawn(stack, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
		self.version = self.proc.stdout.readline().strip()

	def __call__(self, n):
		self.proc.stdin.write(f"{n}\n")
		self.proc.stdin.flush()
		latencies = [int(line) for line in (self.proc.stdout.readline() for _ in range(n)) if line]
		if len(latencies) != n:
			raise RuntimeError(f"floor stopped with status {self.proc.wait()}")
		return latencies


def load_daraja():
	try:
		from frappe_mpesa import daraja
	except ImportError as e:
		sys.exit(f"extension not built: run pip install -e . ({e})")
	return daraja


# -- measuring and reporting ----------------------------------------------------------------------


def interleave(clients, n):
	"""Run every client for n pushes in ROUNDS rounds, rotating the order each round, after a warm-up."""
	per_round = max(1, n // ROUNDS)
	for batch in clients.values():
		batch(per_round)
	latencies = {name: [] for name in clients}
	names = list(clients)
	for r in range(ROUNDS):
		for name in names[r % len(names) :] + names[: r % len(names)]:
			latencies[name] += clients[name](per_round)
			if STOP:
				raise KeyboardInterrupt
	return latencies


def credential_us(daraja, batches=20, calls=1000):
	"""Median per-call cost of security_credential once the certificate's key is cached."""
	pem = Path(sandbox.MPESA_TEST_CERT_PEM).read_bytes()
	daraja.security_credential(pem, "Safaricom999!*!")
	per_call = []
	for _ in range(batches):
		t0 = time.perf_counter_ns()
		for _ in range(calls):
			daraja.security_credential(pem, "Safaricom999!*!")
		per_call.append((time.perf_counter_ns() - t0) / calls / 1000)
	return statistics.median(per_call)


def percentile(ordered, q):
	return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(latencies, credential):
	print(f"{'client':<52}{'median':>10}{'p90':>10}{'p99':>10}  (µs)")
	medians = {}
	for name, label in LABELS.items():
		ordered = sorted(latencies[name])
		medians[name] = statistics.median(ordered)
		row = [medians[name], percentile(ordered, 0.9), percentile(ordered, 0.99)]
		print(f"{label:<52}" + "".join(f"{v / 1000:>10.1f}" for v in row))
	print(f"\nsecurity_credential, cached key: {credential:.1f} µs per call")
	ratios = {f"{x}/{y}": medians[x] / medians[y] for x, y in (("c", "d"), ("b", "c"), ("a", "c"))}
	print("\ntargets")
	checks = [(ratio, op, goal, ratios[ratio], "") for ratio, op, goal in TARGETS]
	checks.append(("security_credential", "<=", CREDENTIAL_TARGET_US, credential, " µs"))
	for what, op, goal, got, unit in checks:
		verdict = "OK" if (got <= goal if op == "<=" else got >= goal) else "MISS"
		print(f"  {what:<20} {f'{op} {goal:g}{unit}':<10} measured {f'{got:.2f}{unit}':<10} {verdict}")
	print("ratios: " + " ".join(f"{k}={v:.2f}" for k, v in ratios.items()))


def bench(stack, n, daraja):
	tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="frappe-mpesa-bench-")))
	port = free_port()
	start_nginx(stack, tmp, port)
	base, ca = f"https://127.0.0.1:{port}", sandbox.CA_FILE
	floor = Floor(stack, base, ca)
	nginx = subprocess.run([NGINX, "-v"], check=True, capture_output=True, text=True).stderr.split()[-1]
	print(f"Python {platform.python_version()}, requests {requests.__version__}, {ssl.OPENSSL_VERSION}")
	print(f"frappe_mpesa._daraja: libcurl {daraja.libcurl_version}, {daraja.openssl_version}")
	print(f"floor: {floor.version}")
	print(f"{nginx} on {base}, {os.cpu_count()} CPUs")
	print(f"N={n} STK pushes per client in {ROUNDS} interleaved rounds\n")
	clients = {"a": per_payment(base, ca), "b": session(base, ca), "c": ours(base, ca, daraja), "d": floor}
	report(interleave(clients, n), credential_us(daraja))


def on_signal(signum, _frame):
	STOP.append(signum)
	raise KeyboardInterrupt


def main():
	parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
	parser.add_argument("--n", type=int, default=2000, help="STK pushes per client (default 2000)")
	parser.add_argument("--quick", action="store_const", const=200, dest="n", help="N=200, for a fast check")
	parser.add_argument(
		"--cpu",
		type=int,
		help="run everything (clients, floor, nginx) on this one CPU, so that no client pays for a wake-up"
		" on another CPU",
	)
	args = parser.parse_args()
	if args.cpu is not None:
		os.sched_setaffinity(0, {args.cpu})  # nginx and the floor inherit it
		print(f"pinned to CPU {args.cpu}")

	daraja = load_daraja()
	for signum in (signal.SIGINT, signal.SIGTERM):
		signal.signal(signum, on_signal)
	# Every client goes straight to the stub, whatever proxy the environment names.
	os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
	OUT.mkdir(exist_ok=True)
	with contextlib.ExitStack() as stack:
		try:
			bench(stack, args.n, daraja)
		except BaseException:
			if not STOP:
				raise
			# Whatever the interrupted code raised on its way out, this run was stopped by a signal.
			sys.exit(128 + STOP[0])


if __name__ == "__main__":
	main()
