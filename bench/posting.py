"""Collections benchmark: the posting job, and the C2B confirmation endpoint under a burst.

Run on a bench whose site has ERPNext with a KES default company, from the bench directory:

    ./env/bin/python apps/frappe_mpesa/bench/posting.py [--site erp.test] [--posts 100] [--burst 1000]

(or through /root/bench-run WORKTREE erp.test --shell '...'). It prints figures and asserts
nothing. Targets: median time to post one matched confirmation in the job <= 250 ms; the
confirmation endpoint's p99 <= 150 ms while the burst arrives.

1. The job: one customer with --posts open invoices; for each, a confirmation recorded by
   ``records.apply`` (as the callback would) and then ``c2b_posting.post_receipt`` timed up to
   and including its commit: match, lock, build, insert and submit the Payment Entry.
2. The endpoint: the site served over HTTPS (``frappe serve`` behind the tests' TLS proxy, the
   same setup as the Frappe tests), then --burst distinct confirmations posted by --threads
   threads at once, each request timed from send to answer. Posting is queued after commit, so
   the figure is what Daraja waits for.

Everything made is removed at the end (entries cancelled then deleted, with their invoices), and
the posting jobs the burst queued are taken off the queue.
"""

import argparse
import os
import statistics
import sys
import threading
import time
from datetime import datetime
from decimal import Decimal

import frappe

SETTINGS = "Bench C2B Posting"
SHORTCODE = "600991"
METHOD = "frappe_mpesa.erpnext.c2b_posting.post_receipt"


def percentile(values, fraction):
	ordered = sorted(values)
	if not ordered:
		return float("nan")
	index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
	return ordered[index]


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
			print(f"  {trans_id}: {status} {frappe.db.get_value(records.C2B, trans_id, 'posting_note')}")
	return timings


def bench_burst(tag, count, threads, round_no=0):
	import json

	from frappe_mpesa import urls
	from frappe_mpesa.testing import ServedSite, post

	site = ServedSite().start()
	try:
		frappe.db.set_value("Mpesa Settings", SETTINGS, "callback_base_url", site.url)
		frappe.db.commit()
		settings = frappe.get_doc("Mpesa Settings", SETTINGS)
		url = urls.callback_url(
			site.url, "c2b_confirmation", settings.callback_id, settings.get_password("callback_secret")
		)
		now = datetime.now().strftime("%Y%m%d%H%M%S")
		bodies = [
			json.dumps(
				{
					"TransactionType": "Pay Bill",
					"TransID": f"B{tag}{round_no}{index:03d}"[:10],
					"TransTime": now,
					"TransAmount": "10.00",
					"BusinessShortCode": SHORTCODE,
					"BillRefNumber": f"NOTHING{index}",
					"InvoiceNumber": "",
					"OrgAccountBalance": "",
					"ThirdPartyTransID": "",
					"MSISDN": "254708374149",
					"FirstName": "Bench",
					"MiddleName": "",
					"LastName": "Payer",
				}
			).encode()
			for index in range(count)
		]
		for _ in range(5):  # warm the served site's workers
			post(url, b"{}")
		latencies, failures = [], []
		lock = threading.Lock()
		queue = list(reversed(bodies))

		def worker():
			while True:
				with lock:
					if not queue:
						return
					body = queue.pop()
				start = time.perf_counter()
				status, text = post(url, body, timeout=60)
				elapsed = time.perf_counter() - start
				with lock:
					latencies.append(elapsed)
					if status != 200:
						failures.append((status, text[:80]))

		workers = [threading.Thread(target=worker) for _ in range(threads)]
		began = time.perf_counter()
		for thread in workers:
			thread.start()
		for thread in workers:
			thread.join()
		wall = time.perf_counter() - began
		return latencies, failures, wall
	finally:
		site.stop()


def drop_queued_jobs(site_name):
	"""Take the posting jobs this run queued (no worker may be running) off the queue."""
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


def clean(tag, item, customer, invoices):
	from frappe_mpesa.testing import delete_settings

	frappe.db.rollback()
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
	parser.add_argument("--threads", default="1,4,16", help="thread counts, one burst each")
	args = parser.parse_args()

	sites_path = os.path.abspath("sites")
	os.chdir(sites_path)
	frappe.init(site=args.site, sites_path=sites_path)
	frappe.connect()
	frappe.set_user("Administrator")
	from frappe_mpesa.testing import make_settings, set_site_config

	if "erpnext" not in frappe.get_installed_apps():
		print(f"{args.site} has no ERPNext: nothing to post")
		return 1
	company = frappe.db.get_single_value("Global Defaults", "default_company")
	tag = frappe.generate_hash(length=5).upper()
	item = customer = None
	invoices = []
	try:
		make_settings(SETTINGS, "https://localhost", business_shortcode=SHORTCODE)
		item, customer, invoices = make_data(tag, company, args.posts)
		timings = bench_job(tag, invoices)
		if timings:
			print(
				f"posting job, {len(timings)} matched confirmations: median "
				f"{statistics.median(timings) * 1000:.1f} ms, p90 {percentile(timings, 0.9) * 1000:.1f} ms, "
				f"max {max(timings) * 1000:.1f} ms (target: median <= 250 ms)"
			)
		# The burst comes from one address: lift the per-address limit for the run, then restore it.
		limit = frappe.local.conf.get("mpesa_callback_rate_limit")
		set_site_config("mpesa_callback_rate_limit", 1_000_000)
		counts = [int(n) for n in args.threads.split(",")]
		try:
			for round_no, threads in enumerate(counts):
				latencies, failures, wall = bench_burst(tag, args.burst, threads, round_no)
				print(
					f"confirmation endpoint, {len(latencies)} confirmations from {threads} threads in "
					f"{wall:.1f} s ({len(latencies) / wall:.0f}/s): p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
					f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms "
					f"(target: p99 <= 150 ms); {len(failures)} not answered 200 {failures[:3]}"
				)
		finally:
			set_site_config("mpesa_callback_rate_limit", limit)
		frappe.db.rollback()
		recorded = frappe.db.count("Mpesa C2B Payment Register", {"mpesa_settings": SETTINGS})
		expected = len(timings) + args.burst * len(counts)
		print(f"register rows: {recorded} (expected {expected}: one per distinct TransID)")
	finally:
		clean(tag, item, customer, invoices)
		print(f"queued posting jobs removed: {drop_queued_jobs(args.site)}")
		frappe.destroy()
	return 0


if __name__ == "__main__":
	sys.exit(main())
