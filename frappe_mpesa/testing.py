"""What the app's Frappe tests share: the test base class, the embedded Daraja sandbox wired into
the site, the site served over HTTPS (so Daraja-style callbacks arrive through the site's own HTTP
server), and records to test with. Used only by the test_*.py files beside the DocTypes.

The served site is a ``frappe serve`` process for the current site behind a small TLS proxy
that, like bench's nginx, appends the address it saw to X-Forwarded-For. Everything a served
request must see is committed, and every test class removes what it committed.
"""

import contextlib
import csv
import http.client
import io
import os
import secrets
import socket
import subprocess
import sys
import time
import unittest
import urllib.request

import frappe
from frappe.utils.password import update_password

from frappe_mpesa import settings_store, statement_import
from frappe_mpesa.install import ERROR_LOG_MARKERS, OUR_DOCTYPES
from frappe_mpesa.sandbox import (
	CA_FILE,
	DEFAULT_CONSUMER_KEY,
	DEFAULT_CONSUMER_SECRET,
	DEFAULT_INITIATOR_NAME,
	DEFAULT_INITIATOR_PASSWORD,
	DEFAULT_PASSKEY,
	MPESA_TEST_CERT_PEM,
	Sandbox,
)
from frappe_mpesa.sandbox.service import Handler, HttpsService

try:  # Frappe v16
	from frappe.tests import IntegrationTestCase as MpesaTestCase
except ImportError:  # Frappe v15
	from frappe.tests.utils import FrappeTestCase as MpesaTestCase  # noqa: F401

TRANSACTION_DOCTYPES = (
	"Mpesa Callback Log",
	"Mpesa Express Request",
	"Mpesa C2B Payment Register",
	"Mpesa Initiator Request",
	"B2C Payment Disbursement",
)
SITE_CONFIG_KEYS = ("mpesa_daraja_base_url", "mpesa_daraja_ca_file", "mpesa_callback_rate_limit")
MAKER = "mpesa-maker@example.com"
CHECKER = "mpesa-checker@example.com"
OTHER_CHECKER = "mpesa-checker-2@example.com"
USERS = {MAKER: ("Accounts User",), CHECKER: ("Accounts Manager",), OTHER_CHECKER: ("Accounts Manager",)}
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"}
TEST_PASSWORD = "Mpesa-Test-Pass-2026!"
TEST_PREFIX = "_Test "  # every test settings record's name starts so; nothing else is replaced
TEST_FILE_PREFIX = "frappe-mpesa-test-"
CERTIFICATE = "Mpesa Public Key Certificate"


def set_site_config(key, value):
	from frappe.installer import update_site_config

	update_site_config(key, "None" if value is None else value)
	if value is None:
		frappe.local.conf.pop(key, None)


class SandboxSite:
	"""The sandbox started and the site's Sandbox-environment settings pointed at it."""

	def __init__(self, **sandbox_options):
		self.sandbox = Sandbox(**sandbox_options)
		self._saved = {}

	def start(self):
		self.sandbox.start()
		for key in SITE_CONFIG_KEYS:
			self._saved[key] = frappe.local.conf.get(key)
		return self.start_config()

	def start_config(self):
		"""Point the site at this sandbox (again)."""
		set_site_config("mpesa_daraja_base_url", self.sandbox.url)
		set_site_config("mpesa_daraja_ca_file", CA_FILE)
		settings_store._clients.clear()
		return self

	def stop(self):
		self.sandbox.stop()
		for key, value in self._saved.items():
			set_site_config(key, value)
		settings_store._clients.clear()


class _ProxyHandler(Handler):
	"""TLS in front, plain HTTP to the served site; appends the peer to X-Forwarded-For. With a
	realtime server (``RealtimeServer``), /socket.io/ goes there as bench's nginx sends it: the Host
	kept and the Origin set from it (Frappe's Socket.IO compares the two; a same-origin GET carries
	no Origin). WebSocket upgrades are not tunnelled, so Socket.IO keeps to long-polling."""

	def serve(self):
		request = self.receive()
		upstream = self.server.service
		realtime = bool(upstream.realtime_port) and self.path.startswith("/socket.io/")
		dropped = HOP_HEADERS | {"host"} | ({"upgrade"} if realtime else set())
		headers = {key: value for key, value in request.headers.items() if key.lower() not in dropped}
		forwarded = request.header("X-Forwarded-For")
		peer = self.client_address[0]
		headers["X-Forwarded-For"] = f"{forwarded}, {peer}" if forwarded else peer
		headers["X-Forwarded-Proto"] = "https"
		headers["Host"] = request.header("Host") if realtime else upstream.site
		if realtime:
			headers["Origin"] = f"https://{headers['Host']}"  # as bench's nginx sets it for /socket.io
		port = upstream.realtime_port if realtime else upstream.upstream_port
		connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60 if realtime else 30)
		try:
			connection.request(request.method, self.path, body=request.body, headers=headers)
			response = connection.getresponse()
			data = response.read()
			passed = [(key, value) for key, value in response.getheaders() if key.lower() not in HOP_HEADERS]
			status = response.status
		except OSError as error:
			data, passed, status = str(error).encode(), [("Content-Type", "text/plain")], 502
		finally:
			connection.close()
		self.send_response(status)
		for key, value in passed:
			self.send_header(key, value)
		self.send_header("Content-Length", str(len(data)))
		self.end_headers()
		self.wfile.write(data)

	do_GET = do_POST = do_PUT = do_DELETE = serve


class TlsProxy(HttpsService):
	handler_class = _ProxyHandler

	def __init__(self, upstream_port, site):
		super().__init__("127.0.0.1", 0)
		self.upstream_port = upstream_port
		self.site = site
		self.realtime_port = None


def free_port():
	with socket.socket() as s:
		s.bind(("127.0.0.1", 0))
		return s.getsockname()[1]


class ServedSite:
	"""``frappe --site S serve`` in a child process, behind a TLS proxy; ``url`` is https://."""

	def __init__(self):
		self.process = None
		self.proxy = None
		self.port = free_port()
		self.log = None

	@property
	def url(self):
		return self.proxy.url

	def start(self, wait=90):
		sites_path = os.path.abspath(frappe.local.sites_path)
		self.log = open(os.path.join(sites_path, "..", "logs", "frappe_mpesa_test_serve.log"), "ab")

		def ready():
			with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/method/ping", timeout=2) as answer:
				return answer.status == 200

		command = [sys.executable, "-m", "frappe.utils.bench_helper", "frappe", "--site", frappe.local.site]
		command += ["serve", "--port", str(self.port), "--noreload"]
		self.process = start_child(command, sites_path, self.log, ready, "frappe serve", "the site", wait)
		self.proxy = TlsProxy(self.port, frappe.local.site).start()
		return self

	def stop(self):
		if self.proxy:
			self.proxy.stop()
		stop_process(self.process, self.log)


def start_child(command, cwd, log, ready, name, what, wait, env=None):
	"""Start ``command`` in a session of its own, output to ``log``, and wait until ``ready()`` is
	true (an OSError counts as not yet); the process. RuntimeError naming it when it exits first,
	or naming ``what`` when it is not up within ``wait`` seconds (it is stopped then)."""
	process = subprocess.Popen(
		command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
	)
	deadline = time.monotonic() + wait
	while time.monotonic() < deadline:
		if process.poll() is not None:
			raise RuntimeError(f"{name} exited with {process.returncode}")
		with contextlib.suppress(OSError):
			if ready():
				return process
		time.sleep(0.3)
	stop_process(process, log)
	raise RuntimeError(f"{what} did not come up")


def stop_process(process, log):
	"""End a child this module started, and close its log."""
	if process and process.poll() is None:
		process.terminate()
		try:
			process.wait(10)
		except subprocess.TimeoutExpired:
			process.kill()
	if log:
		log.close()


class RealtimeServer:
	"""Frappe's Socket.IO server (``apps/frappe/realtime/index.js`` under node) for the served
	site, as ``bench start`` runs it: on a free port, reached through the site's TLS proxy at
	/socket.io/. It authenticates each browser through the proxy, whose certificate is the
	sandbox's test CA (NODE_EXTRA_CA_CERTS). ``missing()`` says why it cannot run here."""

	def __init__(self, site):
		self.site = site
		self.process = None
		self.log = None
		self.port = free_port()
		self.bench = os.path.abspath(os.path.join(frappe.local.sites_path, ".."))
		self.script = os.path.join(self.bench, "apps", "frappe", "realtime", "index.js")

	def missing(self):
		import shutil

		if not shutil.which("node"):
			return "node is not installed"
		if not os.path.exists(self.script):
			return f"{self.script} is missing"
		if not os.path.isdir(os.path.join(self.bench, "apps", "frappe", "node_modules", "socket.io")):
			return "Frappe's node modules (socket.io) are not installed"
		return None

	def start(self, wait=30):
		import shutil

		self.log = open(os.path.join(self.bench, "logs", "frappe_mpesa_test_realtime.log"), "ab")
		env = {
			**os.environ,
			"FRAPPE_BENCH_ROOT": self.bench,
			"FRAPPE_SITE": frappe.local.site,
			"FRAPPE_SOCKETIO_PORT": str(self.port),
			"NODE_EXTRA_CA_CERTS": CA_FILE,
		}

		def ready():
			with socket.create_connection(("127.0.0.1", self.port), timeout=1):
				return True

		self.process = start_child(
			[shutil.which("node"), self.script],
			os.path.join(self.bench, "apps", "frappe"),
			self.log,
			ready,
			"the realtime server",
			"the realtime server",
			wait,
			env=env,
		)
		self.site.proxy.realtime_port = self.port
		return self

	def stop(self):
		if self.site.proxy:
			self.site.proxy.realtime_port = None
		stop_process(self.process, self.log)


def post(url, body, headers=None, timeout=15):
	"""POST bytes to an https URL of the served site, trusting the test CA: (status, text)."""
	import ssl

	context = ssl.create_default_context(cafile=CA_FILE)
	request = urllib.request.Request(
		url, data=body, method="POST", headers={"Content-Type": "application/json", **(headers or {})}
	)
	opener = urllib.request.build_opener(
		urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
	)
	try:
		with opener.open(request, timeout=timeout) as answer:
			return answer.status, answer.read().decode()
	except urllib.error.HTTPError as error:
		return error.code, error.read().decode()


def taken_shortcodes():
	rows = frappe.get_all(
		"Mpesa Settings", fields=["business_shortcode", "till_number", "initiator_shortcode"]
	)
	return {value for row in rows for value in row.values() if value}


def unique_shortcode():
	"""A 7-digit shortcode that no Mpesa Settings on the site uses (the sandbox serves any)."""
	taken = taken_shortcodes()
	while True:
		code = str(9_000_000 + secrets.randbelow(1_000_000))
		if code not in taken:
			return code


_test_shortcode = None


def suite_shortcode():
	"""The shortcode of this run's test records unless a class picks its own; free on the site
	(apart from test records, which use it one class at a time)."""
	global _test_shortcode
	others = frappe.get_all(
		"Mpesa Settings",
		filters={"name": ("not like", TEST_PREFIX + "%")},
		fields=["business_shortcode", "till_number", "initiator_shortcode"],
	)
	if _test_shortcode is None or _test_shortcode in {v for row in others for v in row.values() if v}:
		_test_shortcode = unique_shortcode()
	return _test_shortcode


def make_settings(name, base_url, **values):
	"""A committed Sandbox-environment Mpesa Settings record using the sandbox's public values,
	named "_Test …" and, unless given one, on this run's test shortcode."""
	if not name.startswith(TEST_PREFIX):
		raise ValueError(f"test settings must be named {TEST_PREFIX!r}…, not {name!r}")
	if frappe.db.exists("Mpesa Settings", name):
		delete_settings(name)
	doc = frappe.get_doc(
		{
			"doctype": "Mpesa Settings",
			"payment_gateway_name": name,
			"environment": "Sandbox",
			"consumer_key": DEFAULT_CONSUMER_KEY,
			"consumer_secret": DEFAULT_CONSUMER_SECRET,
			"business_shortcode": values.pop("business_shortcode", None) or suite_shortcode(),
			"online_passkey": DEFAULT_PASSKEY,
			"initiator_name": DEFAULT_INITIATOR_NAME,
			"initiator_password": DEFAULT_INITIATOR_PASSWORD,
			"callback_base_url": base_url,
			"allowlist_mode": "Enforce",
			"callback_allowlist": "127.0.0.1\n::1",
			"client_ip_header": "X-Forwarded-For",
			"proxy_hops": 1,
			**values,
		}
	)
	doc.insert(ignore_permissions=True)
	frappe.db.commit()
	return doc


def delete_settings(name):
	"""Remove a test settings record and everything recorded for it; commits."""
	if not name.startswith(TEST_PREFIX):
		raise ValueError(f"only test settings ({TEST_PREFIX!r}…) are deleted, not {name!r}")
	for doctype in TRANSACTION_DOCTYPES:
		for row in frappe.get_all(doctype, filters={"mpesa_settings": name}, pluck="name"):
			frappe.db.delete("Mpesa Account Balance", {"parent": row})
			frappe.db.delete("B2C Disbursement Payee", {"parent": row})
			frappe.db.delete(doctype, {"name": row})
			forget_history(doctype, row)
	# Child rows (matching rules) too: a record made again under this name must not inherit them.
	frappe.db.delete("Mpesa C2B Matching Rule", {"parenttype": "Mpesa Settings", "parent": name})
	forget_history("Mpesa Settings", name)
	if frappe.db.exists("Mpesa Settings", name):
		settings_store.TokenStore(name).forget()
		frappe.db.delete("__Auth", {"doctype": "Mpesa Settings", "name": name})
		frappe.db.delete("Mpesa Settings", {"name": name})
	settings_store.forget_client(name)
	# With frappe/payments (and ERPNext) the record also had a Payment Gateway and its accounts; the
	# bank account stays, as the ledger may name it.
	gateway = f"Mpesa-{name}"
	if frappe.db.table_exists("Payment Gateway Account"):
		frappe.db.delete("Payment Gateway Account", {"payment_gateway": gateway})
	if frappe.db.table_exists("Payment Gateway"):
		frappe.db.delete("Payment Gateway", {"name": gateway})
	frappe.db.commit()


def forget_history(doctype, name):
	"""What Frappe kept about a deleted test document: versions, comments, deleted copies."""
	frappe.db.delete("Version", {"ref_doctype": doctype, "docname": name})
	frappe.db.delete("Comment", {"reference_doctype": doctype, "reference_name": name})
	frappe.db.delete("Deleted Document", {"deleted_doctype": doctype, "deleted_name": name})
	if frappe.db.table_exists("Activity Log"):
		frappe.db.delete("Activity Log", {"reference_doctype": doctype, "reference_name": name})


def make_test_file(content, **values):
	"""A committed private File of a test, named so that cleanup knows it; returns the File."""
	name = f"{TEST_FILE_PREFIX}{secrets.token_hex(4)}-{values.pop('file_name', 'file.cer')}"
	return frappe.get_doc(
		{"doctype": "File", "file_name": name, "content": content, "is_private": 1, **values}
	).insert(ignore_permissions=True)


def delete_test_files():
	"""Every File a test made (and its file on disk unless shared), and the comments it caused."""
	for name in frappe.get_all("File", filters={"file_name": ("like", TEST_FILE_PREFIX + "%")}, pluck="name"):
		frappe.delete_doc("File", name, ignore_permissions=True, force=True, delete_permanently=True)
	frappe.db.delete("Comment", {"reference_doctype": CERTIFICATE, "content": ("like", f"%{TEST_FILE_PREFIX}%")})
	frappe.db.commit()


_certificate_before = None  # the Single's own rows in tabSingles, while a test certificate is up


def upload_test_certificate():
	"""The sandbox's test public key certificate as the Sandbox certificate; commits. The Single's
	own values are kept, for restore_certificate()."""
	global _certificate_before
	if _certificate_before is None:
		_certificate_before = certificate_values_to_keep()
	with open(MPESA_TEST_CERT_PEM, "rb") as f:
		content = f.read()
	file = make_test_file(
		content,
		file_name="sandbox-public-key.cer",
		attached_to_doctype=CERTIFICATE,
		attached_to_name=CERTIFICATE,
		attached_to_field="sandbox_certificate",
	)
	single = frappe.get_single(CERTIFICATE)
	single.sandbox_certificate = file.file_url
	single.save(ignore_permissions=True)
	frappe.db.commit()
	return single


def certificate_values_to_keep():
	"""The certificate Single's rows as the site has them, less a test certificate that a run
	stopped before its clean-up left behind (its file is gone): restoring that would leave the
	Single naming a missing file for good."""
	rows = frappe.db.sql("select field, value from `tabSingles` where doctype = %s", CERTIFICATE)
	left = {
		field.split("_")[0]
		for field, value in rows
		if field.endswith("_certificate") and TEST_FILE_PREFIX in (value or "")
	}
	return tuple((field, value) for field, value in rows if field.split("_")[0] not in left)


def restore_certificate():
	"""Put the certificate Single's own values back, exactly, and delete the test files; commits."""
	global _certificate_before
	if _certificate_before is not None:
		frappe.db.delete("Singles", {"doctype": CERTIFICATE})
		for field, value in _certificate_before:
			frappe.db.sql(
				"insert into `tabSingles` (doctype, field, value) values (%s, %s, %s)",
				(CERTIFICATE, field, value),
			)
		_certificate_before = None
	frappe.db.commit()
	frappe.clear_document_cache(CERTIFICATE, CERTIFICATE)
	frappe.db.value_cache.pop(CERTIFICATE, None)
	delete_test_files()


class SiteLeftovers:
	"""What a test class leaves in the site's shared tables besides its settings: callback logs
	naming no record that exists, error logs of the app, versions, comments and deleted copies of
	documents gone by then, the test users it created and their sessions. Only rows that were not
	there when the class began are deleted, so the site's own rows are never touched."""

	def __init__(self):
		frappe.db.commit()
		self.since = frappe.utils.now()
		self.users = [email for email in USERS if not frappe.db.exists("User", email)]
		self.before = self.candidates()

	def candidates(self):
		"""(table, name) of every row the clean-up would delete now."""
		found = set()
		for doctype in OUR_DOCTYPES:
			if doctype in (CERTIFICATE, "Mpesa Account Balance"):
				continue
			for table, column, name_column in (
				("Version", "ref_doctype", "docname"),
				("Comment", "reference_doctype", "reference_name"),
				("Deleted Document", "deleted_doctype", "deleted_name"),
			):
				for row in frappe.get_all(table, filters={column: doctype}, fields=["name", name_column]):
					if not frappe.db.exists(doctype, row[name_column]):
						found.add((table, row.name))
		for log in frappe.get_all("Mpesa Callback Log", fields=["name", "mpesa_settings"]):
			if not log.mpesa_settings or not frappe.db.exists("Mpesa Settings", log.mpesa_settings):
				found.add(("Mpesa Callback Log", log.name))
		for marker in ERROR_LOG_MARKERS:
			for column in ("method", "error"):
				for name in frappe.get_all("Error Log", filters={column: ("like", marker)}, pluck="name"):
					found.add(("Error Log", name))
		return found

	def clean(self):
		frappe.db.rollback()
		since = {"creation": (">=", self.since)}
		for table, name in sorted(self.candidates() - self.before):
			frappe.db.delete(table, {"name": name})
		# The REST sessions the tests opened, so no logged-in session outlives them.
		while _rest_sessions:
			sid = _rest_sessions.pop()
			frappe.db.delete("Sessions", {"sid": sid})
			frappe.cache.hdel("session", sid)
		frappe.db.delete("Activity Log", {"user": ("in", list(USERS)), **since})
		for email in self.users:
			if frappe.db.exists("User", email):
				frappe.delete_doc("User", email, ignore_permissions=True, force=True, delete_permanently=True)
			for table, column in (("Activity Log", "user"), ("Sessions", "user"), ("Version", "docname")):
				frappe.db.delete(table, {column: email})
			frappe.db.delete("Deleted Document", {"deleted_name": email})
		frappe.db.commit()
		delete_test_files()


def ensure_users():
	"""Users for the maker-checker tests; commits."""
	for email, roles in USERS.items():
		if not frappe.db.exists("User", email):
			user = frappe.get_doc(
				{
					"doctype": "User",
					"email": email,
					"first_name": email.split("@")[0],
					"send_welcome_email": 0,
					"user_type": "System User",
				}
			)
			user.insert(ignore_permissions=True)
		user = frappe.get_doc("User", email)
		user.add_roles(*roles)
		update_password(email, TEST_PASSWORD)
	frappe.db.commit()


class ServedSandboxTestCase(MpesaTestCase):
	"""A test class with the site served over HTTPS, the embedded sandbox wired in, the test users
	and certificate, and one committed settings record, all removed afterwards."""

	SETTINGS = None  # the settings record's name, "_Test …"
	SHORTCODE = None  # default: one no record on the site uses
	SANDBOX_OPTIONS = {}  # e.g. callback_delay, c2b_validation
	# fn() -> why the class cannot run on this site (it is then skipped, saying so), or None
	REQUIRES = None

	@classmethod
	def setUpClass(cls):
		reason = cls.REQUIRES and cls.REQUIRES()
		if reason:
			raise unittest.SkipTest(reason)
		super().setUpClass()
		cls.leftovers = SiteLeftovers()
		cls.site = cls.sandbox_site = None
		try:
			ensure_users()
			upload_test_certificate()
			cls.site = ServedSite().start()
			cls.sandbox_site = SandboxSite(**cls.SANDBOX_OPTIONS).start()
			cls.sandbox = cls.sandbox_site.sandbox
			cls.shortcode = cls.SHORTCODE or unique_shortcode()
			cls.settings = make_settings(cls.SETTINGS, cls.site.url, business_shortcode=cls.shortcode)
		except BaseException:
			# unittest skips tearDownClass after a failed setUpClass: stop the served site and the
			# sandbox (and restore the site config and the site's records) here, or they outlive
			# the test run.
			cls.stop_services()
			cls.restore_site()
			raise

	@classmethod
	def tearDownClass(cls):
		frappe.set_user("Administrator")
		cls.stop_services()
		cls.restore_site()
		super().tearDownClass()

	@classmethod
	def restore_site(cls):
		frappe.set_user("Administrator")
		frappe.db.rollback()
		delete_settings(cls.SETTINGS)
		restore_certificate()
		cls.leftovers.clean()

	@classmethod
	def stop_services(cls):
		if cls.sandbox_site:
			cls.sandbox_site.stop()
		if cls.site:
			cls.site.stop()


_rest_sessions = set()  # sids of the sessions RestClient opened, closed by SiteLeftovers.clean()


class RestClient:
	"""A logged-in HTTP session against the served site, as a browser or script would have."""

	def __init__(self, base_url, user, password=TEST_PASSWORD):
		import ssl

		self.base_url = base_url
		self.cookie = ""
		self.opener = urllib.request.build_opener(
			urllib.request.ProxyHandler({}),
			urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=CA_FILE)),
		)
		status, _text = self.request("POST", "/api/method/login", {"usr": user, "pwd": password})
		if status != 200 or "sid=" not in self.cookie or "sid=Guest" in self.cookie:
			raise RuntimeError(f"login as {user} failed: {status}")

	def request(self, method, path, data=None):
		import json
		import urllib.error

		body = json.dumps(data).encode() if data is not None else None
		headers = {"Content-Type": "application/json", "Accept": "application/json"}
		if self.cookie:
			headers["Cookie"] = self.cookie
		request = urllib.request.Request(self.base_url + path, data=body, method=method, headers=headers)
		try:
			with self.opener.open(request, timeout=30) as answer:
				self._keep_session(answer.headers)
				return answer.status, answer.read().decode()
		except urllib.error.HTTPError as error:
			return error.code, error.read().decode()

	def _keep_session(self, headers):
		for value in headers.get_all("Set-Cookie") or []:
			if value.startswith("sid="):
				self.cookie = value.split(";", 1)[0]
				_rest_sessions.add(self.cookie[len("sid=") :])


def wait_for(predicate, timeout=15.0, step=0.1):
	"""Poll ``predicate`` (reading committed data: each poll starts a new transaction)."""
	deadline = time.monotonic() + timeout
	while True:
		frappe.db.rollback()
		value = predicate()
		if value or time.monotonic() >= deadline:
			return value
		time.sleep(step)


def token_worker(site, sites_path, settings_name, barrier):
	"""One cold worker process: connect, wait for the others, ask for a token."""
	frappe.init(site=site, sites_path=sites_path)
	frappe.connect()
	try:
		barrier.wait(60)
		settings = frappe.get_doc("Mpesa Settings", settings_name)
		token = settings_store.get_client(settings).access_token()
		frappe.db.commit()
		return token
	finally:
		frappe.destroy()


# ---- ERPNext documents for the collections tests ------------------------------------------------


def erpnext_missing():
	"""Why the ERPNext tests can't run on this site, or None."""
	if "erpnext" not in frappe.get_installed_apps():
		return "ERPNext is not installed on this site"
	company = frappe.db.get_single_value("Global Defaults", "default_company")
	if not company or frappe.db.get_value("Company", company, "default_currency") != "KES":
		return "no default company keeping its books in KES"
	return None


def remove_document(doctype, name):
	"""Cancel (if submitted) and delete a document a test made; nothing if it is gone."""
	if not frappe.db.exists(doctype, name):
		return
	doc = frappe.get_doc(doctype, name)
	if doc.docstatus == 1:
		doc.flags.ignore_links = True
		doc.cancel()
	frappe.delete_doc(doctype, name, force=True, ignore_permissions=True)


class ErpnextRecords:
	"""A test class's ERPNext documents: one Item, and Customers, Sales Invoices and Sales Orders of
	the default (KES) company, all committed and, with the Payment Entries made for them, removed
	by ``remove_records``. Customers are named C<tag>…, and the class's M-Pesa receipts
	<RECEIPT_PREFIX><tag>…, so the entries are found by party or Reference No."""

	RECEIPT_PREFIX = "T"

	@classmethod
	def make_records(cls, label):
		"""Call first in setUpClass (after the skip check): the company, a tag, the Item."""
		cls.company = frappe.db.get_single_value("Global Defaults", "default_company")
		cls.tag = frappe.generate_hash(length=6).upper()
		cls.made = []
		cls.item = f"_Test {label} Item {cls.tag}"
		frappe.get_doc(
			{
				"doctype": "Item",
				"item_code": cls.item,
				"item_group": frappe.db.get_value("Item Group", {"is_group": 0}) or "All Item Groups",
				"stock_uom": "Nos",
				"is_stock_item": 0,
			}
		).insert(ignore_permissions=True)
		cls.made.append(("Item", cls.item))
		frappe.db.commit()

	@classmethod
	def remove_records(cls):
		"""Call in tearDownClass: the class's Payment Entries, then what it made, newest first."""
		frappe.set_user("Administrator")
		frappe.db.rollback()
		entries = frappe.get_all(
			"Payment Entry", filters={"reference_no": ("like", f"{cls.RECEIPT_PREFIX}{cls.tag}%")}, pluck="name"
		)
		entries += frappe.get_all("Payment Entry", filters={"party": ("like", f"C{cls.tag}%")}, pluck="name")
		for name in set(entries):
			remove_document("Payment Entry", name)
		for doctype, name in reversed(cls.made):
			remove_document(doctype, name)
		frappe.db.commit()

	@classmethod
	def customer(cls, name=None, **values):
		# Short: an account number has at most 20 characters.
		name = name or f"C{cls.tag}{frappe.generate_hash(length=4).upper()}"
		doc = frappe.get_doc({"doctype": "Customer", "customer_name": name, "customer_type": "Individual", **values})
		doc.insert(ignore_permissions=True)
		cls.made.append(("Customer", doc.name))
		frappe.db.commit()
		return doc.name

	@classmethod
	def invoice(cls, customer, amount, days_ago=0, **values):
		"""A submitted Sales Invoice of one line, posted and due ``days_ago`` days ago; committed."""
		day = frappe.utils.add_days(frappe.utils.nowdate(), -days_ago)
		si = frappe.get_doc(
			{
				"doctype": "Sales Invoice",
				"company": cls.company,
				"customer": customer,
				"currency": "KES",
				"set_posting_time": 1,
				"posting_date": day,
				"due_date": day,
				"items": [{"item_code": cls.item, "qty": 1, "rate": amount}],
				**values,
			}
		)
		si.insert(ignore_permissions=True)
		si.submit()
		cls.made.append(("Sales Invoice", si.name))
		frappe.db.commit()
		return si

	@classmethod
	def order(cls, customer, amount):
		nowdate = frappe.utils.nowdate()
		so = frappe.get_doc(
			{
				"doctype": "Sales Order",
				"company": cls.company,
				"customer": customer,
				"currency": "KES",
				"transaction_date": nowdate,
				"delivery_date": frappe.utils.add_days(nowdate, 7),
				"items": [{"item_code": cls.item, "qty": 1, "rate": amount}],
			}
		)
		so.insert(ignore_permissions=True)
		so.submit()
		cls.made.append(("Sales Order", so.name))
		frappe.db.commit()
		return so


# ---- M-Pesa portal statements for the tests and the benchmark --------------------------------------

STATEMENT_HEADER = [
	"Receipt No.", "Completion Time", "Initiation Time", "Details", "Transaction Status", "Paid In",
	"Withdrawn", "Balance", "Balance Confirmed", "Reason Type", "Other Party Info", "Linked Transaction ID",
	"A/C No.",
]
RECEIPT_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"


def statement_about(shortcode):
	return [
		["Account Holder:", f"{shortcode} - Test Shop Ltd"],
		["Short Code:", shortcode],
		["Account:", "Utility Account"],
		["Time Period:", "01-12-2026 00:00:00 - 01-12-2026 23:59:59"],
		["Operator:", "TESTOP"],
		[],
	]


def receipt_prefix():
	"""Three characters no other run shares (most likely), so receipts are this run's own."""
	return "".join(secrets.choice(RECEIPT_ALPHABET) for _ in range(3))


def portal_receipt(prefix, i):
	"""An M-Pesa-shaped receipt: 10 capital letters and digits."""
	digits = []
	for _ in range(7):
		i, r = divmod(i, len(RECEIPT_ALPHABET))
		digits.append(RECEIPT_ALPHABET[r])
	return prefix + "".join(reversed(digits))


def portal_rows(prefix, n, start=0):
	"""``n`` paid-in rows of a portal statement, receipts from ``prefix``."""
	rows = []
	for i in range(start, start + n):
		paid = f"{100 + i:,}.00"
		when = f"2026-12-01 {8 + i // 3600 % 12:02d}:{i // 60 % 60:02d}:{i % 60:02d}"
		rows.append([
			portal_receipt(prefix, i), when, when, f"Pay Bill Online from 2547****{i % 1000:03d} - CUSTOMER {i} Acc. INV-{i}",
			"Completed", paid, "", f"{50000 + i}.00", "true", "Pay Bill Online",
			f"2547****{i % 1000:03d} - CUSTOMER {i}", "", f"INV-{i}",
		])
	return rows


def statement_csv(rows, shortcode):
	"""A statement as the M-Pesa organisation portal exports it, as CSV bytes."""
	out = io.StringIO()
	writer = csv.writer(out)
	for line in [*statement_about(shortcode), STATEMENT_HEADER, *rows]:
		writer.writerow(line)
	return out.getvalue().encode("utf-8-sig")


def statement_xlsx(rows, shortcode):
	"""The same statement as XLSX bytes."""
	import openpyxl

	book = openpyxl.Workbook()
	sheet = book.active
	for line in [*statement_about(shortcode), STATEMENT_HEADER, *rows]:
		sheet.append(line)
	out = io.BytesIO()
	book.save(out)
	return out.getvalue()


def attach_private_file(content, file_name):
	"""A private File holding ``content``, owned by the session user; its URL."""
	doc = frappe.get_doc({"doctype": "File", "file_name": file_name, "content": content, "is_private": 1})
	doc.insert(ignore_permissions=True)
	return doc.file_url


def new_statement_import(settings, content, file_name):
	doc = frappe.get_doc({"doctype": statement_import.IMPORT, "mpesa_settings": settings, "statement_file": attach_private_file(content, file_name)})
	doc.insert()
	frappe.db.commit()
	return doc


def delete_statement_imports(settings):
	"""Remove the imports of ``settings``, their lines and files; commits."""
	for name, file_url in frappe.get_all(
		statement_import.IMPORT, filters={"mpesa_settings": settings}, fields=["name", "statement_file"], as_list=True
	):
		frappe.db.delete(statement_import.LINE, {"parent": name})
		frappe.db.delete(statement_import.IMPORT, {"name": name})
		for file_name in frappe.get_all("File", filters={"file_url": file_url}, pluck="name"):
			frappe.delete_doc("File", file_name, ignore_permissions=True, force=True)
	frappe.db.commit()


def statement_counts(name):
	rows = frappe.get_all(
		statement_import.LINE, filters={"parent": name}, fields=["result", "count(*) as n"], group_by="result"
	)
	return {row.result: row.n for row in rows}
