"""Collections benchmark: the posting job, and the C2B confirmation endpoint under a burst, served
the way production serves it.

Run on a bench whose site has ERPNext with a KES default company, from the bench directory:

    ./env/bin/python apps/frappe_mpesa/bench/posting.py [--site erp.test] [--posts 100]
        [--burst 1000] [--senders 16] [--workers 5] [--profile 200]

(or through /root/bench-run WORKTREE erp.test --shell '...'). It prints figures and asserts
nothing. Targets: median time to post one matched confirmation in the job <= 250 ms; 1,000
confirmations arriving in one burst all posted by one worker in <= 5 minutes, while the
confirmation endpoint answers each in <= 150 ms at the 99th percentile.

1. The job: one customer with --posts open invoices; for each, a confirmation recorded by
   ``records.apply`` (as the callback would) and then ``c2b_posting.post_receipt`` timed up to
   and including its commit: match, lock, build, insert and submit the Payment Entry.
2. The burst: the site served as bench's production setup serves it: ``gunicorn -b 127.0.0.1:PORT
   -w 5 -t 120 --max-requests 5000 --preload frappe.app:application`` from the sites folder (5 sync
   workers: bench's default of 2 x cores + 1 on this 2-core machine), and one ``frappe worker
   --queue short`` (bench's short-queue worker), both started here. --burst distinct confirmations
   are posted by --senders sender processes at once, each sending its next as soon as the last
   is answered (so 16 are always in flight), each on a new connection as nginx opens to gunicorn,
   with the header nginx writes (X-Forwarded-For: the peer's address). Each request is timed from
   connect to answer: what Daraja waits for, less nginx's TLS. First Frappe's own floor (its
   ping method, the same burst); then the burst with no worker running; then the worker starts
   and, while it posts, a second burst of a quarter the size arrives. Every confirmation names the
   bench customer, whose invoices the job part paid, so each is posted as one Payment Entry (an
   advance). The drain is the time from the worker's start until it has posted every row of both.
3. Where the callback's time goes (--profile N, 0 to skip): N confirmations through
   ``frappe.app.application`` in a fresh process under cProfile, no HTTP server; the functions
   with the most time, cumulative and own.

Everything made is removed at the end (entries cancelled then deleted, with their invoices), and
whatever posting jobs are still queued are taken off the queue.
"""

import argparse
import http.client
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime
from decimal import Decimal
from urllib.parse import urlsplit

import frappe

SETTINGS = "_Test Bench C2B Posting"
SHORTCODE = "600991"
METHOD = "frappe_mpesa.erpnext.c2b_posting.post_receipt"
C2B = "Mpesa C2B Payment Register"


def percentile(values, fraction):
	ordered = sorted(values)
	if not ordered:
		return float("nan")
	index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
	return ordered[index]


def figures(values):
	ms = [v * 1000 for v in values]
	return (
		f"p50 {percentile(ms, 0.5):.1f} ms, p95 {percentile(ms, 0.95):.1f} ms, "
		f"p99 {percentile(ms, 0.99):.1f} ms, max {max(ms):.1f} ms"
	)


def parsed_confirmation(trans_id, reference, amount):
	return {
		"TransactionType": "Pay Bill",
		"TransID": trans_id,
		"TransTime": datetime.now().astimezone(),
		"TransAmount": Decimal(amount),
		"BusinessShortCode": SHORTCODE,
		"BillRefNumber": reference,
		"InvoiceNumber": "",
		"OrgAccountBalance": None,
		"ThirdPartyTransID": "",
		"MSISDN": "254708374149",
		"FirstName": "Bench",
		"MiddleName": "",
		"LastName": "Payer",
	}


def confirmation_body(trans_id, reference, amount="10.00"):
	return json.dumps(
		{
			"TransactionType": "Pay Bill",
			"TransID": trans_id,
			"TransTime": datetime.now().strftime("%Y%m%d%H%M%S"),
			"TransAmount": amount,
			"BusinessShortCode": SHORTCODE,
			"BillRefNumber": reference,
			"InvoiceNumber": "",
			"OrgAccountBalance": "",
			"ThirdPartyTransID": "",
			"MSISDN": "254708374149",
			"FirstName": "Bench",
			"MiddleName": "",
			"LastName": "Payer",
		}
	).encode()


def make_data(tag, company, count):
	item = f"_Bench C2B Item {tag}"
	frappe.get_doc(
		{
			"doctype": "Item",
			"item_code": item,
			"item_group": frappe.db.get_value("Item Group", {"is_group": 0}) or "All Item Groups",
			"stock_uom": "Nos",
			"is_stock_item": 0,
		}
	).insert(ignore_permissions=True)
	customer = frappe.get_doc(
		{"doctype": "Customer", "customer_name": f"B{tag}", "customer_type": "Individual"}
	).insert(ignore_permissions=True)
	invoices = []
	for _ in range(count):
		si = frappe.get_doc(
			{
				"doctype": "Sales Invoice",
				"company": company,
				"customer": customer.name,
				"currency": "KES",
				"items": [{"item_code": item, "qty": 1, "rate": 100}],
			}
		)
		si.insert()
		si.submit()
		invoices.append(si.name)
	frappe.db.commit()
	return item, customer.name, invoices


def bench_job(tag, invoices):
	from frappe_mpesa import records
	from frappe_mpesa.erpnext import c2b_posting

	timings = []
	for index, invoice in enumerate(invoices):
		trans_id = f"P{tag}{index:04d}"[:10]
		outcome = records.apply(SETTINGS, "c2b_confirmation", parsed_confirmation(trans_id, invoice, "100"))
		frappe.db.commit()
		if outcome.status != records.APPLIED:
			print(f"  {trans_id}: {outcome.status} {outcome.note}")
			continue
		start = time.perf_counter()
		status = c2b_posting.post_receipt(trans_id)
		frappe.db.commit()
		timings.append(time.perf_counter() - start)
		if status != "Posted":
			print(f"  {trans_id}: {status} {frappe.db.get_value(C2B, trans_id, 'posting_note')}")
	return timings


# ---- where the callback's time goes ---------------------------------------------------------


def profile_child(site, sites_path, path, bodies, out):
	"""In a fresh process: each body through the WSGI application as gunicorn would call it."""
	import cProfile
	import pstats

	from werkzeug.test import EnvironBuilder

	os.chdir(sites_path)
	import frappe.app

	def call(body):
		builder = EnvironBuilder(
			path=path.split("?", 1)[0],
			query_string=path.split("?", 1)[1],
			method="POST",
			data=body,
			headers={"Host": site, "Content-Type": "application/json", "X-Forwarded-For": "127.0.0.1"},
			environ_base={"REMOTE_ADDR": "127.0.0.1"},
		)
		status = []
		chunks = frappe.app.application(builder.get_environ(), lambda s, h, e=None: status.append(s))
		b"".join(chunks)
		return status[0]

	for body in bodies[:10]:  # warm: imports, meta and caches, as a served worker would be
		call(body)
	profiler = cProfile.Profile()
	began = time.perf_counter()
	profiler.enable()
	answers = [call(body) for body in bodies[10:]]
	profiler.disable()
	wall = time.perf_counter() - began
	with open(out, "w") as f:
		f.write(f"{len(answers)} requests in {wall:.2f} s: {wall / len(answers) * 1000:.2f} ms each; answers {sorted(set(answers))}\n")
		for key in ("cumulative", "tottime"):
			stats = pstats.Stats(profiler, stream=f)
			stats.sort_stats(key).print_stats(28)


def bench_profile(tag, path, count, site):
	bodies = [confirmation_body(f"F{tag}{i:04d}"[:10], f"NOTHING{i}") for i in range(count + 10)]
	out = os.path.abspath(f"../logs/frappe_mpesa_callback_profile_{tag}.txt")
	context = multiprocessing.get_context("spawn")
	child = context.Process(target=profile_child, args=(site, os.getcwd(), path, bodies, out))
	child.start()
	child.join(600)
	with open(out) as f:
		text = f.read()
	print(f"profile of {count} confirmations through frappe.app.application (cProfile, ms are inflated by it):")
	print("\n".join(line for line in text.splitlines() if line.strip())[:9000])
	print(f"(full profile: {out})")


# ---- the burst ------------------------------------------------------------------------------


def free_port():
	with socket.socket() as s:
		s.bind(("127.0.0.1", 0))
		return s.getsockname()[1]


class Served:
	"""gunicorn as bench's supervisor config runs it, and one short-queue worker."""

	def __init__(self, site, workers):
		self.site, self.workers = site, workers
		self.port = free_port()
		self.processes = []
		self.log = open(os.path.abspath("../logs/frappe_mpesa_bench_posting.log"), "ab")

	def start_web(self):
		command = [
			os.path.join(os.path.dirname(sys.executable), "gunicorn"),
			"-b",
			f"127.0.0.1:{self.port}",
			"-w",
			str(self.workers),
			"--max-requests",
			"5000",
			"--max-requests-jitter",
			"500",
			"-t",
			"120",
			"--graceful-timeout",
			"30",
			"frappe.app:application",
			"--preload",
		]
		self.processes.append(self._spawn(command))
		deadline = time.monotonic() + 90
		while time.monotonic() < deadline:
			try:
				status, _ = request(self.port, self.site, "GET", "/api/method/ping", None)
				if status == 200:
					return self
			except OSError:
				pass
			time.sleep(0.3)
		raise RuntimeError("gunicorn did not come up")

	def start_worker(self):
		command = [sys.executable, "-m", "frappe.utils.bench_helper", "frappe", "worker", "--queue", "short"]
		self.processes.append(self._spawn(command))

	def _spawn(self, command):
		return subprocess.Popen(command, cwd=os.getcwd(), stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

	def stop(self):
		for process in reversed(self.processes):
			if process.poll() is None:
				os.killpg(process.pid, signal.SIGTERM)
				try:
					process.wait(40)
				except subprocess.TimeoutExpired:
					os.killpg(process.pid, signal.SIGKILL)
		self.processes = []
		self.log.close()


def request(port, site, method, path, body):
	"""One request on a new connection, with the headers bench's nginx sets; (status, body)."""
	connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
	try:
		headers = {"Host": site, "X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https"}
		if body is not None:
			headers["Content-Type"] = "application/json"
		connection.request(method, path, body=body, headers=headers)
		answer = connection.getresponse()
		return answer.status, answer.read()
	finally:
		connection.close()


def sender(port, site, path, bodies, start_at, results):
	"""One of the senders: its share of the burst, one after the other, from ``start_at``; a body
	of None is a GET."""
	while time.time() < start_at:
		time.sleep(0.001)
	out = []
	for body in bodies:
		began = time.perf_counter()
		try:
			status, _ = request(port, site, "GET" if body is None else "POST", path, body)
		except OSError as error:
			status = str(error)
		out.append((time.perf_counter() - began, status))
	results.put(out)


def burst(port, site, path, bodies, senders):
	"""``bodies`` sent by ``senders`` processes at once: ([(seconds, status)], wall, start time)."""
	shares = [bodies[i::senders] for i in range(senders)]
	context = multiprocessing.get_context("fork")
	results = context.Queue()
	start_at = time.time() + 1.0
	processes = [context.Process(target=sender, args=(port, site, path, share, start_at, results)) for share in shares]
	for process in processes:
		process.start()
	answers = [item for _ in processes for item in results.get()]
	for process in processes:
		process.join()
	return answers, time.time() - start_at, start_at


def report_burst(label, answers, wall, args):
	latencies = [elapsed for elapsed, _ in answers]
	failures = [status for _, status in answers if status != 200]
	print(
		f"confirmation endpoint (gunicorn, {args.workers} sync workers; {label}), {len(answers)} "
		f"confirmations from {args.senders} concurrent senders in {wall:.1f} s ({len(answers) / wall:.0f}/s): "
		f"{figures(latencies)} (target: p99 <= 150 ms); {len(failures)} not answered 200 {failures[:3]}"
	)


def bench_burst(tag, customer, args, path):
	served = Served(args.site, args.workers).start_web()
	try:
		# Warm every worker: imports, meta, caches (verified confirmations of nothing, refused as invalid).
		for _ in range(args.workers * 6):
			request(served.port, args.site, "POST", path, b'{"TransID": ""}')
		# Frappe's own floor: its ping method, the same burst, nothing of this app's.
		answers, wall, start_at = burst(served.port, args.site, "/api/method/ping", [None] * args.burst, args.senders)
		print(
			f"floor: /api/method/ping (gunicorn, {args.workers} sync workers), {len(answers)} from "
			f"{args.senders} concurrent senders in {wall:.1f} s ({len(answers) / wall:.0f}/s): "
			f"{figures([elapsed for elapsed, _ in answers])}"
		)
		# The burst alone: the worker starts once it is answered, as when posting is behind.
		bodies = [confirmation_body(f"B{tag}{index:04d}"[:10], customer) for index in range(args.burst)]
		answers, burst_wall, start_at = burst(served.port, args.site, path, bodies, args.senders)
		report_burst("no posting meanwhile", answers, burst_wall, args)
		start_at = time.time()
		served.start_worker()
		# While the worker posts the first burst: a second, smaller one (its rows posted too).
		second = [confirmation_body(f"C{tag}{index:04d}"[:10], customer) for index in range(args.burst // 4)]
		answers, wall, _ = burst(served.port, args.site, path, second, args.senders)
		report_burst("the worker posting meanwhile", answers, wall, args)
		names = [f"B{tag}{index:04d}"[:10] for index in range(args.burst)]
		names += [f"C{tag}{index:04d}"[:10] for index in range(args.burst // 4)]
		deadline = time.time() + args.drain_timeout
		while True:
			frappe.db.rollback()
			left = frappe.db.count(C2B, {"name": ("in", names), "processed_on": ("is", "not set")})
			if not left or time.time() > deadline:
				break
			time.sleep(0.5)
		drained = time.time() - start_at
		statuses = frappe.db.sql(
			f"select status, count(*) from `tab{C2B}` where name in %s group by status", (names,)
		)
		entries = frappe.db.count("Payment Entry", {"reference_no": ("in", names), "docstatus": 1})
		print(
			f"drain: {len(names) - left} of {len(names)} posted by one short-queue worker "
			f"{drained:.1f} s after it started ({(len(names) - left) / drained:.1f}/s; target: "
			f"{args.burst} within 300 s); statuses {dict(statuses)}; {entries} submitted Payment Entries"
		)
	finally:
		served.stop()


def drop_queued_jobs(site_name):
	"""Take the posting jobs still queued (the worker is stopped) off the queue."""
	from frappe.utils.background_jobs import get_queue

	dropped = 0
	try:
		queue = get_queue("short")
		for job in queue.get_jobs():
			kwargs = job.kwargs or {}
			if kwargs.get("site") == site_name and kwargs.get("method") == METHOD:
				job.delete()
				dropped += 1
	except Exception as error:
		print(f"could not clean the queue: {error}")
	return dropped


def purge_advances(customer):
	"""The burst's Payment Entries (advances: no invoice names them) and their ledger rows, deleted
	outright: cancelling a thousand entries one by one would take longer than the burst."""
	names = frappe.db.sql_list(
		"""select pe.name from `tabPayment Entry` pe where pe.party_type = 'Customer' and pe.party = %s
		and not exists (select 1 from `tabPayment Entry Reference` r where r.parent = pe.name)""",
		customer,
	)
	for start in range(0, len(names), 200):
		chunk = tuple(names[start : start + 200])
		frappe.db.sql(f"update `tab{C2B}` set payment_entry = null where payment_entry in %s", (chunk,))
		for table in ("GL Entry", "Payment Ledger Entry"):
			frappe.db.sql(f"delete from `tab{table}` where voucher_type = 'Payment Entry' and voucher_no in %s", (chunk,))
		frappe.db.sql("delete from `tabPayment Entry Deduction` where parent in %s", (chunk,))
		frappe.db.sql("delete from `tabPayment Entry` where name in %s", (chunk,))
		frappe.db.commit()
	return len(names)


def clean(item, customer, invoices):
	from frappe_mpesa.testing import delete_settings

	frappe.db.rollback()
	if customer:
		print(f"burst entries purged: {purge_advances(customer)}")
	entries = frappe.get_all("Payment Entry", filters={"party": customer}, pluck="name") if customer else []
	for doctype, names in (("Payment Entry", entries), ("Sales Invoice", invoices)):
		for name in names:
			doc = frappe.get_doc(doctype, name)
			if doc.docstatus == 1:
				doc.flags.ignore_links = True
				doc.cancel()
			frappe.delete_doc(doctype, name, force=True, ignore_permissions=True)
		frappe.db.commit()
	for doctype, name in (("Customer", customer), ("Item", item)):
		if name and frappe.db.exists(doctype, name):
			frappe.delete_doc(doctype, name, force=True, ignore_permissions=True)
	delete_settings(SETTINGS)
	frappe.db.commit()


def main():
	parser = argparse.ArgumentParser()
	parser.add_argument("--site", default="erp.test")
	parser.add_argument("--posts", type=int, default=100)
	parser.add_argument("--burst", type=int, default=1000)
	parser.add_argument("--senders", type=int, default=16, help="confirmations in flight at once")
	parser.add_argument("--workers", type=int, default=2 * os.cpu_count() + 1, help="gunicorn sync workers")
	parser.add_argument("--profile", type=int, default=200, help="confirmations profiled in-process (0: none)")
	parser.add_argument("--drain-timeout", type=int, default=900)
	args = parser.parse_args()

	sites_path = os.path.abspath("sites")
	os.chdir(sites_path)
	frappe.init(site=args.site, sites_path=sites_path)
	frappe.connect()
	frappe.set_user("Administrator")
	from frappe_mpesa import urls
	from frappe_mpesa.testing import make_settings, set_site_config

	if "erpnext" not in frappe.get_installed_apps():
		print(f"{args.site} has no ERPNext: nothing to post")
		return 1
	company = frappe.db.get_single_value("Global Defaults", "default_company")
	tag = frappe.generate_hash(length=5).upper()
	item = customer = None
	invoices = []
	limit = frappe.local.conf.get("mpesa_callback_rate_limit")
	try:
		settings = make_settings(SETTINGS, "https://localhost", business_shortcode=SHORTCODE)
		url = urls.callback_url(
			"https://localhost", "c2b_confirmation", settings.callback_id, settings.get_password("callback_secret")
		)
		path = urlsplit(url).path + "?" + urlsplit(url).query
		item, customer, invoices = make_data(tag, company, args.posts)
		timings = bench_job(tag, invoices)
		if timings:
			print(
				f"posting job, {len(timings)} matched confirmations: median "
				f"{statistics.median(timings) * 1000:.1f} ms, p90 {percentile(timings, 0.9) * 1000:.1f} ms, "
				f"max {max(timings) * 1000:.1f} ms (target: median <= 250 ms)"
			)
		# The burst comes from one address: lift the per-address limit for the run, then restore it.
		set_site_config("mpesa_callback_rate_limit", 1_000_000)
		if args.burst:
			bench_burst(tag, customer, args, path)
		if args.profile:  # after the burst: its rows' posting jobs stay queued, no worker runs them
			bench_profile(tag, path, args.profile, args.site)
		frappe.db.rollback()
		recorded = frappe.db.count(C2B, {"mpesa_settings": SETTINGS})
		expected = len(timings) + args.burst + args.burst // 4 + args.profile + (10 if args.profile else 0)
		print(f"register rows: {recorded} (expected {expected}: one per distinct TransID)")
	finally:
		set_site_config("mpesa_callback_rate_limit", limit)
		print(f"queued posting jobs removed: {drop_queued_jobs(args.site)}")
		clean(item, customer, invoices)
		frappe.destroy()
	return 0


if __name__ == "__main__":
	sys.exit(main())
