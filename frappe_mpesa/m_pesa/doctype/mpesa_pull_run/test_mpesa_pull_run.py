# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

"""Pull Transactions against the embedded sandbox: registration recorded and guarded in
production; a run registers what the register lacks, page by page, and a second run adds
nothing; one payment arriving by confirmation, pull and statement is one register row; the pull
callback URL; the schedule."""

import json
import secrets
from datetime import timedelta

import frappe

from frappe_mpesa import api, pull, records, settings_store, statement_import
from frappe_mpesa.testing import (
	ServedSandboxTestCase,
	delete_statement_imports,
	new_statement_import,
	post,
	statement_csv,
	wait_for,
)

SETTINGS = "_Test Pull"
SHORTCODE = "600773"
QUERY = "/pulltransactions/v1/query"
REGISTER = "/pulltransactions/v1/register"


class TestMpesaPullRun(ServedSandboxTestCase):
	SETTINGS = SETTINGS
	SHORTCODE = SHORTCODE
	SANDBOX_OPTIONS = {"callback_delay": 0.1, "pull_page_size": 2}

	@classmethod
	def tearDownClass(cls):
		frappe.set_user("Administrator")
		frappe.db.delete(pull.RUN, {"mpesa_settings": SETTINGS})
		delete_statement_imports(SETTINGS)
		super().tearDownClass()

	def setUp(self):
		self.sandbox.reset()
		frappe.db.delete(pull.RUN, {"mpesa_settings": SETTINGS})
		frappe.db.delete(records.C2B, {"mpesa_settings": SETTINGS})
		frappe.db.commit()

	def simulate(self, n, reference):
		settings = frappe.get_doc("Mpesa Settings", SETTINGS)
		for i in range(n):
			settings_store.call(
				settings,
				"c2b_simulate",
				shortcode=SHORTCODE,
				amount=10 + i,
				phone="254708374149",
				bill_ref_number=f"{reference}-{i}",
			)
		self.assertTrue(wait_for(lambda: len(self.sandbox.payments) >= n, timeout=20))

	def register_rows(self, **filters):
		return frappe.get_all(records.C2B, filters={"mpesa_settings": SETTINGS, **filters}, fields=["*"])

	def test_a_run_registers_page_by_page_and_a_second_adds_nothing(self):
		self.simulate(5, "PULLPAGE")  # no C2B URLs registered: no confirmation comes
		first = frappe.get_doc(pull.RUN, pull.run(SETTINGS))
		self.assertEqual(first.status, "Completed", first.error_details)
		self.assertEqual((first.pages, first.fetched, first.new_rows, first.duplicates), (3, 5, 5, 0))
		rows = self.register_rows()
		self.assertEqual(len(rows), 5)
		self.assertEqual({row.source for row in rows}, {"Pull"})
		self.assertEqual(
			sorted(row.bill_ref_number for row in rows), [f"PULLPAGE-{i}" for i in range(5)]
		)
		offsets = [r.json["OffSetValue"] for r in self.sandbox.requests if r.path == QUERY]
		self.assertEqual(offsets, ["0", "2", "4", "5"])
		# The first run looks 48 hours back.
		self.assertEqual(first.window_end - first.window_start, timedelta(hours=48))

		second = frappe.get_doc(pull.RUN, pull.run(SETTINGS))
		self.assertEqual((second.status, second.new_rows, second.duplicates), ("Completed", 0, 5))
		self.assertEqual(second.window_start, first.window_end - timedelta(minutes=10))
		self.assertEqual(len(self.register_rows()), 5)

	def test_one_payment_by_confirmation_pull_and_statement_is_one_row(self):
		api.register_c2b_urls(SETTINGS)
		self.simulate(1, "ONCE")
		self.assertTrue(wait_for(lambda: self.register_rows(bill_ref_number="ONCE-0"), timeout=20))
		row = self.register_rows(bill_ref_number="ONCE-0")[0]
		self.assertEqual(row.source, "Callback")

		run = frappe.get_doc(pull.RUN, pull.run(SETTINGS))
		self.assertEqual((run.new_rows, run.duplicates), (0, 1))

		line = [
			row.trans_id, "2026-12-01 09:00:00", "2026-12-01 09:00:00", "Pay Bill Online", "Completed",
			"10.00", "", "1000.00", "true", "Pay Bill Online", "2547****149 - JOHN DOE", "", "ONCE-0",
		]
		imported = new_statement_import(SETTINGS, statement_csv([line], shortcode=SHORTCODE), "once.csv")
		self.assertEqual(imported.start_import(), statement_import.COMPLETED)
		imported.reload()
		self.assertEqual((imported.imported, imported.already_there), (0, 1))
		self.assertEqual(frappe.db.count(records.C2B, {"trans_id": row.trans_id}), 1)
		self.assertEqual(frappe.db.get_value(records.C2B, row.trans_id, "source"), "Callback")

	def test_a_pulled_payment_is_already_there_for_a_later_statement(self):
		self.simulate(1, "LATER")
		pull.run(SETTINGS)
		(row,) = self.register_rows()
		line = [
			row.trans_id, "2026-12-01 09:00:00", "", "Pay Bill Online", "Completed", "10.00", "", "",
			"true", "Pay Bill Online", "2547****149 - JOHN DOE", "", "LATER-0",
		]
		imported = new_statement_import(SETTINGS, statement_csv([line], shortcode=SHORTCODE), "later.csv")
		imported.start_import()
		self.assertEqual(frappe.db.get_value(statement_import.IMPORT, imported.name, "already_there"), 1)
		self.assertEqual(len(self.register_rows()), 1)

	def test_registration_is_recorded_and_guarded_in_production(self):
		frappe.db.set_value("Mpesa Settings", SETTINGS, "pull_nominated_number", "0708374149")
		frappe.db.commit()
		answer = api.register_pull(SETTINGS)
		self.assertEqual(answer["ResponseStatus"], "1000")
		values = frappe.db.get_value(
			"Mpesa Settings", SETTINGS, ["pull_registered_on", "pull_registration_result"], as_dict=True
		)
		self.assertTrue(values.pull_registered_on)
		self.assertIn("1000", values.pull_registration_result)
		callback = self.sandbox.pull_registrations[SHORTCODE]["CallBackURL"]
		self.assertTrue(callback.startswith(self.site.url + "/api/method/daraja_pull?"), callback)
		frappe.db.set_value("Mpesa Settings", SETTINGS, "environment", "Production")
		frappe.db.commit()
		try:
			with self.assertRaises(frappe.ValidationError) as caught:
				api.register_pull(SETTINGS)
			self.assertIn("once", str(caught.exception))
		finally:
			frappe.db.set_value("Mpesa Settings", SETTINGS, "environment", "Sandbox")
			frappe.db.commit()

	def test_only_system_managers_register(self):
		from frappe_mpesa.testing import CHECKER

		frappe.set_user(CHECKER)
		try:
			with self.assertRaises(frappe.PermissionError):
				api.register_pull(SETTINGS)
			with self.assertRaises(frappe.PermissionError):
				api.pull_now(SETTINGS)
		finally:
			frappe.set_user("Administrator")

	def test_transactions_posted_to_the_pull_callback_url_are_registered_once(self):
		settings = frappe.get_doc("Mpesa Settings", SETTINGS)
		receipt = "TP" + secrets.token_hex(4).upper()
		body = json.dumps(
			{
				"ResponseRefID": "pull-" + secrets.token_hex(6),
				"ResponseCode": "1000",
				"ResponseMessage": "Success",
				"Response": [[{
					"transactionId": receipt,
					"trxDate": "2026-11-28T10:12:44.000+03:00",
					"msisdn": 254708374149,
					"sender": "JOHN DOE",
					"transactiontype": "c2b-pay-bill-debit",
					"billreference": "CB-1",
					"amount": "25.0",
					"organizationname": "Shop",
				}]],
			}
		).encode()
		url = settings_store.callback_url(settings, "pull")
		for _ in range(2):
			self.assertEqual(post(url, body)[0], 200)
		frappe.db.rollback()
		self.assertEqual(frappe.db.count(records.C2B, {"trans_id": receipt}), 1)
		self.assertEqual(frappe.db.get_value(records.C2B, receipt, ["source", "bill_ref_number"]), ("Pull", "CB-1"))
		self.assertEqual(post(url.replace("s=", "s=x"), body)[0], 403)

	def test_the_schedule_decides_when_a_run_starts(self):
		frappe.db.set_value(
			"Mpesa Settings", SETTINGS, {"pull_schedule": "Every N minutes", "pull_interval_minutes": 30}
		)
		frappe.db.commit()
		try:
			self.assertEqual(len(pull.run_due([SETTINGS])), 1)
			self.assertEqual(pull.run_due([SETTINGS]), [])  # the last one started just now
			frappe.db.set_value("Mpesa Settings", SETTINGS, "pull_schedule", "Off")
			frappe.db.commit()
			frappe.db.set_value(pull.RUN, {"mpesa_settings": SETTINGS}, "started_on", "2000-01-01 00:00:00")
			frappe.db.commit()
			self.assertEqual(pull.run_due([SETTINGS]), [])
		finally:
			frappe.db.set_value("Mpesa Settings", SETTINGS, "pull_schedule", "Hourly")
			frappe.db.commit()
