"""Every entry point of the C core, many times over: what `make valgrind` runs under memcheck.

	python fuzz/leakcheck.py [--rounds N]

The Daraja sandbox runs in a child process (`python -m frappe_mpesa sandbox`), so that memcheck
watches only this one. Each group below calls part of frappe_mpesa._daraja with good input and with
every kind of failure: validation, Daraja's error answers, refused credentials, TLS with the wrong
CA, refused connections, timeouts, resets, malformed and oversize answers, token store errors,
threads and fork. Expected errors are caught; any other exception is printed and counted, and
makes the exit status 1.

Python objects leaked by the C code are checked here too, because memcheck cannot see all of them:
a container whose reference count never drops stays on the garbage collector's list, so memcheck
calls it "still reachable". After one warm-up round, each group runs N more rounds and the number
of objects the collector tracks must not grow with N.
"""

import argparse
import gc
import http.client
import json
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

from inputs import KINDS, SECRET
from make_corpus import MALFORMED, VERIFY_CASES, pem_to_der

from frappe_mpesa import daraja
from frappe_mpesa.sandbox import (
	CA_FILE,
	DEFAULT_CONSUMER_KEY,
	DEFAULT_CONSUMER_SECRET,
	DEFAULT_INITIATOR_NAME,
	DEFAULT_INITIATOR_PASSWORD,
	DEFAULT_PASSKEY,
	DEFAULT_SHORTCODE,
	MPESA_TEST_CERT_DER,
	MPESA_TEST_CERT_PEM,
	MPESA_TEST_KEY,
	SERVER_CERT,
	UNTRUSTED_CA_FILE,
)

ROOT = Path(__file__).resolve().parent.parent
CALLBACKS = sorted((ROOT / "tests" / "data" / "callbacks").glob("*.json"))
# Nothing listens there: the sandbox's callbacks fail fast, which is all these calls need.
HOOKS = "https://127.0.0.1:9/hooks"
NAIROBI = timezone(timedelta(hours=3))
EXPECTED = (daraja.DarajaError, TypeError, ValueError, OverflowError)


class Tally:
	"""What every call gave: a result or an expected error, by type; unexpected ones are kept."""

	def __init__(self):
		self.outcomes = Counter()
		self.unexpected = []

	def call(self, function, *args, **kwargs):
		"""function(*args, **kwargs), or None when it raised."""
		return self.expect((), function, *args, **kwargs)

	def expect(self, errors, function, *args, **kwargs):
		"""As call, with the exception types in errors expected too."""
		try:
			result = function(*args, **kwargs)
		except (*EXPECTED, *errors) as error:
			self.outcomes[type(error).__name__] += 1
			return None
		except Exception as error:  # noqa: BLE001 - anything else is what this run is looking for
			self.outcomes[type(error).__name__] += 1
			name = getattr(function, "__qualname__", repr(function))
			self.unexpected.append(f"{name}: {type(error).__name__}: {error}\n{traceback.format_exc()}")
			return None
		self.outcomes["ok"] += 1
		return result


class SandboxProcess:
	"""The embedded sandbox in a child process, driven through its control endpoints."""

	def __init__(self, directory):
		self.log = open(directory / "sandbox.log", "w+")  # noqa: SIM115 - open as long as the sandbox runs
		command = [sys.executable, "-m", "frappe_mpesa", "sandbox", "--port", "0", "--callback-delay", "0.05"]
		env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PYTHONMALLOC")}
		self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env)
		self.url = self._wait_for_url()
		host, port = self.url.split("//")[1].rsplit(":", 1)
		self.address = (host, int(port))
		self.context = ssl.create_default_context(cafile=CA_FILE)

	def _wait_for_url(self):
		deadline = time.monotonic() + 30
		while time.monotonic() < deadline:
			self.log.seek(0)
			for line in self.log.read().splitlines():
				if line.startswith("base URL:"):
					return line.split(":", 1)[1].strip()
			if self.process.poll() is not None:
				break
			time.sleep(0.1)
		self.log.seek(0)
		sys.exit(f"leakcheck: the sandbox did not start:\n{self.log.read()}")

	def control(self, name, body=None):
		connection = http.client.HTTPSConnection(*self.address, context=self.context, timeout=10)
		try:
			connection.request("POST", "/__sandbox__/" + name, body=json.dumps(body or {}))
			answer = connection.getresponse()
			answer.read()
			if answer.status != 200:
				raise RuntimeError(f"sandbox control {name} {body}: HTTP {answer.status}")
		finally:
			connection.close()

	def fault(self, path, mode, times=None, **params):
		self.control("fault", {"path": path, "mode": mode, "times": times, **params})

	def reset(self):
		self.control("reset")

	def stop(self):
		self.process.terminate()
		self.process.wait(timeout=10)
		self.log.close()


def client(sandbox, **kwargs):
	kwargs.setdefault("base_url", sandbox.url)
	kwargs.setdefault("ca_file", CA_FILE)
	return daraja.Client(
		kwargs.pop("consumer_key", DEFAULT_CONSUMER_KEY),
		kwargs.pop("consumer_secret", DEFAULT_CONSUMER_SECRET),
		**kwargs,
	)


def read(path):
	return Path(path).read_bytes()


# ---- groups: each does one round of calls -------------------------------------------------------


def pure_functions(t, sandbox):
	"""Module functions that touch no network."""
	stamp = t.call(daraja.timestamp)
	t.call(daraja.stk_password, DEFAULT_SHORTCODE, DEFAULT_PASSKEY, stamp)
	t.call(daraja.stk_password, 174379, DEFAULT_PASSKEY, stamp)
	t.call(daraja.stk_password, "17437", DEFAULT_PASSKEY, "2024")
	t.call(daraja.stk_password, None, None, None)
	for phone in (
		"0712 345 678",
		"+254712345678",
		254712345678,
		"0110000000",
		"07123",
		"x" * 500,
		None,
		10**40,
		-1,
	):
		t.call(daraja.normalize_phone, phone)
	t.call(daraja.ack)
	t.call(daraja.c2b_accept)
	for reason in ("C2B00011", "C2B00016", "C2B00099", "", None):
		t.call(daraja.c2b_reject, reason)
	for _ in range(5):
		t.call(daraja.new_callback_secret)
	assert daraja.libcurl_version and daraja.openssl_version


def credentials(t, sandbox):
	"""security_credential and certificate_info on good, odd and bad certificates."""
	pem = read(MPESA_TEST_CERT_PEM)
	der = read(MPESA_TEST_CERT_DER)
	certificates = [
		pem,
		pem.decode(),
		bytearray(pem),
		memoryview(der),
		der,
		read(CA_FILE),
		read(UNTRUSTED_CA_FILE),
		read(SERVER_CERT),
		*pem_to_der(read(SERVER_CERT)),
		read(MPESA_TEST_KEY),  # a private key, not a certificate
		pem[: len(pem) // 2],
		der[:-1],
		der + b"\x00",
		b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
		b"",
		b"\x30\x82\xff\xff",
		b"A" * (70 * 1024),
		"\udcff",
		None,
		42,
	]
	for certificate in certificates:
		t.call(daraja.certificate_info, certificate)
		t.call(daraja.security_credential, certificate, DEFAULT_INITIATOR_PASSWORD)
	for password in ("", "p" * 245, "p" * 246, "a\x00b", "\udcff", None, b"bytes"):
		t.call(daraja.security_credential, pem, password)
	# More distinct certificates than the key cache has slots: entries are evicted and freed.
	for i in range(12):
		t.call(daraja.security_credential, pem + b"\n" * i, DEFAULT_INITIATOR_PASSWORD)
	t.call(daraja.security_credential, pem)


def callbacks(t, sandbox):
	"""parse_callback on every recorded callback as every kind, and on malformed bodies."""
	for path in CALLBACKS:
		body = path.read_bytes()
		for kind in KINDS:
			t.call(daraja.parse_callback, body, kind)
		t.call(daraja.parse_callback, body.decode(), "result")
		t.call(daraja.parse_callback, memoryview(body), kind="stk")
		for cut in (1, len(body) // 3, len(body) // 2, len(body) - 1):
			t.call(daraja.parse_callback, body[:cut], "result")
	for body in MALFORMED:
		for kind in KINDS:
			t.call(daraja.parse_callback, body, kind)
	for body, kind in (
		(b'{"a":"' + b"x" * 70000 + b'"}', "result"),
		(b"[" * 5000 + b"]" * 5000, "result"),
		('{"a":"\udcff"}', "stk"),
		(b"{}", "nope"),
		(b"{}", None),
		(42, "stk"),
		(memoryview(b"{}" * 4)[::2], "stk"),
	):
		t.call(daraja.parse_callback, body, kind)


def failing_allowlist():
	yield "196.201.214.200"
	raise RuntimeError("an allowlist that fails half-way")


def verification(t, sandbox):
	"""verify_callback with every form of secret and allowlist, good and bad."""
	for remote, given, allowlist in VERIFY_CASES:
		entries = allowlist.split(",")
		for form in (None, allowlist, entries, tuple(entries), set(entries), iter(entries)):
			t.call(daraja.verify_callback, SECRET, given, remote, form)
		t.call(daraja.verify_callback, SECRET, given.encode(), remote, entries)
	for given in (None, 42, ["x"], "\ud800", bytearray(SECRET.encode()), SECRET + "\x00"):
		t.call(daraja.verify_callback, SECRET, given, "196.201.214.200", ["196.201.214.0/24"])
	for allowlist in (["1.2.3.4/33"], [42], [None], ["x" * 1000], "1.2.3.4, ::/129", 42):
		t.call(daraja.verify_callback, SECRET, SECRET, "1.2.3.4", allowlist)
	for expected in ("", None, 42, b"bytes"):
		t.call(daraja.verify_callback, expected, "x", "1.2.3.4")
	for remote in (None, b"1.2.3.4", 3301316296, "x" * 1000, "1.2.3.4\x00", "\udcff"):
		t.call(daraja.verify_callback, SECRET, SECRET, remote, ["0.0.0.0/0"])
	t.expect((RuntimeError,), daraja.verify_callback, SECRET, SECRET, "196.201.214.200", failing_allowlist())


class Store:
	"""A token store that hands out what it is told to, and may fail."""

	def __init__(self, loaded=None, fail=None):
		self.loaded = loaded
		self.fail = fail
		self.client = None

	def load(self):
		if self.fail == "load":
			raise RuntimeError("load failed")
		return self.loaded

	def store(self, token, expires_at):
		if self.fail == "store":
			raise RuntimeError("store failed")


def clients(t, sandbox):
	"""Client construction, attributes, repr and deallocation, valid and refused."""
	for kwargs in (
		{},
		{"environment": "production", "base_url": None, "ca_file": None},
		{"timeout": 0.5},
		{"timeout": 10, "connect_timeout": 2},
		{"ca_file": Path(CA_FILE)},
		{"token_store": Store()},
	):
		c = t.call(client, sandbox, **kwargs)
		if c is not None:
			t.call(repr, c)
			t.call(lambda c: (c.environment, c.base_url, c.timeout), c)
	for kwargs in (
		{"environment": "staging"},
		{"base_url": "http://127.0.0.1:1"},
		{"base_url": "https://"},
		{"base_url": "not a url"},
		{"base_url": 42},
		{"timeout": 0},
		{"timeout": 601},
		{"connect_timeout": 40},
		{"ca_file": 42},
		{"token_store": object()},
		{"consumer_key": "a:b"},
		{"consumer_key": ""},
		{"consumer_secret": ""},
		{"consumer_secret": None},
		{"consumer_key": "k" * 300},
	):
		t.call(client, sandbox, **kwargs)
	# A reference cycle through the token store: only the collector can free it.
	store = Store()
	store.client = t.call(client, sandbox, token_store=store)
	del store
	gc.collect()


def initiator():
	return {
		"initiator_name": DEFAULT_INITIATOR_NAME,
		"security_credential": daraja.security_credential(
			read(MPESA_TEST_CERT_PEM), DEFAULT_INITIATOR_PASSWORD
		),
		"result_url": HOOKS + "/result",
		"queue_timeout_url": HOOKS + "/timeout",
	}


def api_calls(t, sandbox, c):
	"""Every Client method once, with valid arguments."""
	who = initiator()
	t.call(c.access_token)
	pushed = t.call(
		c.stk_push,
		shortcode=DEFAULT_SHORTCODE,
		passkey=DEFAULT_PASSKEY,
		amount=10,
		phone="0708374149",
		callback_url=HOOKS + "/stk",
		account_reference="INV-0001",
		description="Order 1",
	)
	t.call(
		c.stk_push,
		shortcode=DEFAULT_SHORTCODE,
		passkey=DEFAULT_PASSKEY,
		amount="5",
		phone=254700001032,
		callback_url=HOOKS + "/stk",
		account_reference="INV-0002",
		description="Order 2",
		transaction_type="CustomerBuyGoodsOnline",
		party_b="174379",
	)
	checkout = pushed["CheckoutRequestID"] if pushed else "ws_CO_000000000000000000"
	t.call(c.stk_query, shortcode=DEFAULT_SHORTCODE, passkey=DEFAULT_PASSKEY, checkout_request_id=checkout)
	urls = {"confirmation_url": HOOKS + "/confirm", "validation_url": HOOKS + "/validate"}
	t.call(c.c2b_register_urls, shortcode="600984", **urls)
	t.call(c.c2b_simulate, shortcode="600984", amount=40, phone="0708374149", bill_ref_number="LEAK-1")
	t.call(
		c.b2c_payment,
		**who,
		command_id="BusinessPayment",
		amount=250,
		party_a="600996",
		phone="0708 374 149",
		remarks="Refund",
		occasion="June",
	)
	t.call(
		c.b2b_payment,
		**who,
		command_id="BusinessPayBill",
		amount=1000,
		party_a="600996",
		party_b="600000",
		account_reference="SUPPLIER-42",
		remarks="Supplier invoice",
	)
	t.call(c.tax_remittance, **who, amount=500, party_a="600996", prn="PRN1234567", remarks="Tax")
	t.call(
		c.reversal, **who, transaction_id="OEI2AK4Q16", amount=100, receiver_party="600996", remarks="Undo"
	)
	t.call(c.transaction_status, **who, party_a=600996, transaction_id="OEI2AK4Q16")
	t.call(c.account_balance, **who, party_a="600996")
	t.call(c.dynamic_qr, merchant_name="Shop", ref_no="INV-1", amount=100, trx_code="BG", cpi="174379")
	t.call(c.pull_register, shortcode="600984", nominated_number="0708374149", callback_url=HOOKS + "/pull")
	now = datetime.now(NAIROBI)
	t.call(c.pull_query, shortcode="600984", start_date=now - timedelta(hours=1), end_date=now)


def api(t, sandbox):
	"""Every Client method against the sandbox."""
	api_calls(t, sandbox, client(sandbox))


def refused_arguments(t, sandbox):
	"""Every Client method with arguments refused before any network I/O."""
	c = client(sandbox)
	who = initiator()
	t.call(
		c.stk_push,
		shortcode="x",
		passkey="",
		amount=-1,
		phone="1",
		callback_url="ftp://x",
		account_reference="",
		description="",
	)
	t.call(c.stk_push)
	t.call(
		c.stk_query,
		shortcode=DEFAULT_SHORTCODE,
		passkey=DEFAULT_PASSKEY,
		checkout_request_id="",
		timestamp="2024",
	)
	t.call(
		c.c2b_register_urls, shortcode="600984", confirmation_url="x", validation_url="y", response_type="z"
	)
	t.call(c.c2b_simulate, shortcode="600984", amount=0, phone="0708374149")
	t.call(c.b2c_payment, **who, command_id="Nope", amount=1.5, party_a="x", phone="1", remarks="")
	t.call(
		c.b2b_payment,
		**who,
		command_id="BusinessPayBill",
		amount=10**30,
		party_a="600996",
		party_b="x",
		remarks="r",
	)
	t.call(
		c.tax_remittance,
		**{**who, "security_credential": ""},
		amount=1,
		party_a="600996",
		prn="",
		remarks="r",
	)
	t.call(c.reversal, **who, transaction_id="has space", amount=1, receiver_party="600996", remarks="r")
	t.call(c.transaction_status, **who, party_a="600996")
	t.call(c.account_balance, **who, party_a="600996", identifier_type="3")
	t.call(c.dynamic_qr, merchant_name="", ref_no="x", amount=1, trx_code="ZZ", cpi="1", size="-1")
	t.call(c.pull_register, shortcode="600984", nominated_number="1", callback_url="x")
	t.call(c.pull_query, shortcode="600984", start_date="2026-11-28 12:00:00", end_date="2026-11-28 11:00:00")
	t.call(c.pull_query, shortcode="600984", start_date=12345, end_date=None)
	t.call(c.c2b_simulate, shortcode="600984", amount=1, phone="0708374149", bill_ref_number="x" * 500)
	production = daraja.Client("k", "s", environment="production")
	t.call(production.c2b_simulate, shortcode="600984", amount=1, phone="0708374149", bill_ref_number="A")


OAUTH = "/oauth/v1/generate"
PUSH = "/mpesa/stkpush/v1/processrequest"
QUERY = "/mpesa/stkpushquery/v1/query"


QUERY_ARGS = {
	"shortcode": DEFAULT_SHORTCODE,
	"passkey": DEFAULT_PASSKEY,
	"checkout_request_id": "ws_CO_unknown",
}


def query(t, c):
	t.call(c.stk_query, **QUERY_ARGS)


def push(t, c):
	t.call(
		c.stk_push,
		shortcode=DEFAULT_SHORTCODE,
		passkey=DEFAULT_PASSKEY,
		amount=1,
		phone="0708374149",
		callback_url=HOOKS + "/stk",
		account_reference="A",
		description="B",
	)


def failures(t, sandbox):
	"""Every kind of failure the transport and the token cache map to an exception."""
	t.call(client(sandbox, consumer_secret="wrong").access_token)  # refused: AuthError
	query(t, client(sandbox, ca_file=UNTRUSTED_CA_FILE))  # TLSError, even with a token cached
	t.call(client(sandbox, base_url="https://127.0.0.1:1").access_token)  # connection refused
	t.call(client(sandbox, base_url="https://unknown-host.invalid", timeout=2).access_token)
	c = client(sandbox, timeout=0.5)
	t.call(c.access_token)
	for path, call in ((QUERY, query), (PUSH, push)):
		for mode, params in (
			("delay", {"seconds": 1.5}),  # TimeoutError
			("reset", {}),
			("malformed", {}),
			("oversize", {"bytes": 2 * 1024 * 1024}),
			("status", {"status": 503}),
			("status", {"status": 400, "code": "400.002.02", "message": "Bad Request - Invalid Timestamp"}),
			("invalid_token", {}),
		):
			sandbox.fault(path, mode, times=3, **params)
			call(t, c)
			sandbox.reset()
	# OAuth faults: a revoked token makes the next call renew it, and the renewal meets the fault.
	for mode, params in (
		("token_expires_in", {"value": "0"}),
		("token_expires_in", {"value": "abc"}),
		("token_expires_in", {"value": -5}),
		("token_expires_in", {"value": 1e30}),
		("token_expires_in", {"value": "3599.5"}),
		("token_expires_in", {"value": None}),
		("malformed", {}),
		("reset", {}),
		("oversize", {}),
		("status", {"status": 500}),
	):
		sandbox.reset()
		sandbox.fault(OAUTH, mode, times=3, **params)
		query(t, c)
	sandbox.reset()


def token_stores(t, sandbox):
	"""Tokens shared through a store: loaded, unknown to Daraja, expired, malformed, failing."""
	later = time.time() + 3600
	for store in (
		Store(),
		Store(loaded=("a-token-the-sandbox-never-issued", later)),
		Store(loaded=("expired", time.time() - 10)),
		Store(loaded=("x", "not a time")),
		Store(loaded=("only one",)),
		Store(loaded=42),
		Store(loaded=(None, later)),
		Store(fail="load"),
		Store(fail="store"),
	):
		c = client(sandbox, token_store=store)
		sandbox.reset()  # the cached token is revoked: the next call renews it, asking the store first
		t.expect((RuntimeError,), c.stk_query, **QUERY_ARGS)
		t.expect((RuntimeError,), c.access_token)
	sandbox.reset()


def threads(t, sandbox):
	"""Eight threads on one client after its token was revoked: one refresh, eight queries."""
	c = client(sandbox)
	t.call(c.access_token)
	sandbox.reset()
	workers = [threading.Thread(target=query, args=(t, c)) for _ in range(8)]
	for w in workers:
		w.start()
	for w in workers:
		w.join()


def fork(t, sandbox):
	"""A child forked while a client is in use keeps working with its own connection."""
	c = client(sandbox)
	t.call(c.access_token)
	read_end, write_end = os.pipe()
	pid = os.fork()
	if pid == 0:  # the child says how it went through the pipe: under valgrind its exit status is not its own
		status = b"fail"
		try:
			try:
				query(Tally(), c)
				c.stk_query(**QUERY_ARGS)
			except daraja.APIError:
				status = b"ok"
		finally:
			os.write(write_end, status)
			os._exit(0)
	os.close(write_end)
	query(t, c)
	os.waitpid(pid, 0)
	status = os.read(read_end, 16)
	os.close(read_end)
	if status != b"ok":
		t.unexpected.append(f"fork: the child could not query ({status!r})")


GROUPS = (
	pure_functions,
	credentials,
	callbacks,
	verification,
	clients,
	api,
	refused_arguments,
	failures,
	token_stores,
	threads,
	fork,
)


def tracked():
	gc.collect()
	return len(gc.get_objects())


def main(argv=None):
	parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
	parser.add_argument("--rounds", type=int, default=5, help="rounds after the warm-up (default 5)")
	args = parser.parse_args(argv)
	t = Tally()
	grown = []
	with tempfile.TemporaryDirectory(prefix="leakcheck-") as directory:
		sandbox = SandboxProcess(Path(directory))
		try:
			for group in GROUPS:
				started = time.monotonic()
				group(t, sandbox)
				before = tracked()
				for _ in range(args.rounds):
					group(t, sandbox)
				growth = tracked() - before
				if growth >= args.rounds:
					grown.append(f"{group.__name__}: {growth} more objects after {args.rounds} rounds")
				print(
					f"leakcheck: {group.__name__}: {time.monotonic() - started:.1f} s, objects {growth:+d}",
					flush=True,
				)
		finally:
			sandbox.stop()
	calls = sum(t.outcomes.values())
	summary = ", ".join(f"{name} {n}" for name, n in t.outcomes.most_common())
	print(f"leakcheck: {calls} calls in {len(GROUPS)} groups x {args.rounds + 1} rounds: {summary}")
	for text in t.unexpected:
		print(f"leakcheck: unexpected: {text}")
	for text in grown:
		print(f"leakcheck: Python objects grow: {text}")
	if t.unexpected or grown:
		print(
			f"leakcheck: FAILED: {len(t.unexpected)} unexpected errors, {len(grown)} groups leaking objects"
		)
		return 1
	print("leakcheck: PASSED: no unexpected error, no group leaking Python objects")
	return 0


if __name__ == "__main__":
	sys.exit(main())
