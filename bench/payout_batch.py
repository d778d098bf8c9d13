"""A 1,000-payee B2C batch against the sandbox, end to end on a real site: made from a CSV,
approved, sent by one worker (this process, the default 4 requests in flight), its results
applied by the served site, anything left Sent or Unknown resolved by Transaction Status, and
(with ERPNext) every completed payee posted as a Journal Entry.

    cd /root/frappe-bench && env/bin/python apps/frappe_mpesa/bench/payout_batch.py SITE [--n 1000]

Prints each phase's time and the issue's target (all of it within 5 minutes); never fails on a
missed target. Leaves the Journal Entries; removes its settings record and batch.
"""

import argparse
import os
import sys
import time

TARGET_SECONDS = 300


def main():
	parser = argparse.ArgumentParser()
	parser.add_argument("site")
	parser.add_argument("--n", type=int, default=1000)
	parser.add_argument("--sites-path", default="sites")
	args = parser.parse_args()

	import frappe

	# As bench runs it: from the sites directory (Frappe's logs are ../logs from there).
	os.chdir(os.path.abspath(args.sites_path))
	frappe.init(site=args.site, sites_path=".")
	frappe.connect()
	frappe.set_user("Administrator")
	from frappe_mpesa import initiator
	from frappe_mpesa.m_pesa.doctype.b2c_payment_disbursement.b2c_payment_disbursement import batch_from_csv
	from frappe_mpesa.testing import (
		CHECKER,
		MAKER,
		SandboxSite,
		ServedSite,
		delete_settings,
		ensure_users,
		make_settings,
		upload_test_certificate,
		wait_for,
	)

	name_of_settings = "Bench Payouts"
	ensure_users()
	upload_test_certificate()
	site = ServedSite().start()
	sandbox_site = SandboxSite(callback_delay=0.2).start()
	sandbox = sandbox_site.sandbox
	try:
		make_settings(name_of_settings, site.url, business_shortcode="600987")
		books = "erpnext" in frappe.get_installed_apps()
		if books:
			frappe.db.set_value(
				"Mpesa Settings", name_of_settings, {"company": "Test Shop Ltd", "mpesa_account": "M-Pesa - TSL"}
			)
		frappe.db.commit()
		content = "phone,amount,name,remarks\n" + "".join(
			f"{254714000000 + i},{100 + i % 50},Payee {i},Bench payout\n" for i in range(args.n)
		)
		frappe.set_user(MAKER)
		start = time.perf_counter()
		name = batch_from_csv(name_of_settings, "Bench payout", content=content)
		frappe.db.commit()
		made = time.perf_counter()
		frappe.set_user(CHECKER)
		doc = frappe.get_doc("B2C Payment Disbursement", name)
		if books:
			doc.payout_account = "Salary - TSL"
		doc.submit()
		frappe.db.commit()
		frappe.set_user("Administrator")
		approved = time.perf_counter()
		initiator.send_batch(name)
		sent = time.perf_counter()

		def open_rows():
			frappe.db.rollback()
			return frappe.db.count(
				"B2C Disbursement Payee", {"parent": name, "status": ("in", ("Queued", "Sent", "Unknown"))}
			)

		wait_for(lambda: open_rows() == 0, timeout=120, step=0.5)
		if open_rows():
			initiator.resolve_payees(
				filters={"parent": name, "status": ("in", ("Sent", "Unknown")), "request_sent_on": ("is", "set")},
				limit=args.n,
			)
			wait_for(lambda: open_rows() == 0, timeout=60, step=0.5)
		resolved = time.perf_counter()
		posted_count = 0
		if books:
			from frappe_mpesa.erpnext import payouts

			posted_count = payouts.post_batch(name)
		posted = time.perf_counter()
		batch = frappe.db.get_value(
			"B2C Payment Disbursement",
			name,
			["status", "completed_count", "failed_count", "unknown_count", "completed_amount", "total_amount"],
			as_dict=True,
		)
		b2c = sandbox.count("/mpesa/b2c/v3/paymentrequest")
		print(f"payees: {args.n}; B2C requests at the sandbox: {b2c}")
		print(
			f"batch {name}: {batch.status}, {batch.completed_count} completed, {batch.failed_count} failed, "
			f"{batch.unknown_count} unknown; {batch.completed_amount} of {batch.total_amount} paid"
		)
		print(f"made from CSV: {made - start:.1f} s; approved: {approved - made:.1f} s")
		print(f"sent (one worker): {sent - approved:.1f} s ({args.n / max(sent - approved, 1e-9):.0f} requests/s)")
		print(f"all results in: {resolved - sent:.1f} s after the last request")
		print(f"posted: {posted_count} Journal Entries in {posted - resolved:.1f} s" if books else "posted: (no ERPNext)")
		total = posted - approved
		print(
			f"sent, resolved and posted: {total:.1f} s (target <= {TARGET_SECONDS} s: {'OK' if total <= TARGET_SECONDS else 'MISS'})"
		)
	finally:
		frappe.set_user("Administrator")
		delete_settings(name_of_settings)
		sandbox_site.stop()
		site.stop()
		frappe.destroy()


if __name__ == "__main__":
	sys.exit(main())
