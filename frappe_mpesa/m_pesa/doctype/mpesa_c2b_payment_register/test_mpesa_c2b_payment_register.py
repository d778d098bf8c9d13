# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

"""C2B: URLs registered through the button, a simulated payment's confirmation recorded once,
validation rejecting unknown account references and other shortcodes."""

import json

import frappe

from frappe_mpesa import api, daraja, urls
from frappe_mpesa.testing import (
	ServedSandboxTestCase,
	post,
	wait_for,
)

SETTINGS = "_Test C2B"


class TestMpesaC2BPaymentRegister(ServedSandboxTestCase):
	SETTINGS = SETTINGS
	SANDBOX_OPTIONS = {"callback_delay": 0.2, "c2b_validation": True}

	def tearDown(self):
		frappe.db.set_value("Mpesa Settings", SETTINGS, "c2b_reference_doctype", None)
		frappe.db.commit()

	def url(self, kind):
		settings = frappe.get_doc("Mpesa Settings", SETTINGS)
		return urls.callback_url(
			settings.callback_base_url, kind, settings.callback_id, settings.get_password("callback_secret")
		)

	def confirmation(self, trans_id, amount="5.00", shortcode=None, reference="INV-7"):
		shortcode = shortcode or self.shortcode
		return json.dumps(
			{
				"TransactionType": "Pay Bill",
				"TransID": trans_id,
				"TransTime": "20261128101115",
				"TransAmount": amount,
				"BusinessShortCode": shortcode,
				"BillRefNumber": reference,
				"InvoiceNumber": "",
				"OrgAccountBalance": "100.00",
				"ThirdPartyTransID": "",
				"MSISDN": "254708374149",
				"FirstName": "John",
				"MiddleName": "",
				"LastName": "Doe",
			}
		).encode()

	def test_register_then_simulated_payment_is_recorded_once(self):
		answer = api.register_c2b_urls(SETTINGS)
		self.assertEqual(str(answer.get("ResponseCode")), "0")
		registered = frappe.db.get_value(
			"Mpesa Settings", SETTINGS, ["c2b_registered_on", "c2b_registration_result"], as_dict=True
		)
		self.assertTrue(registered.c2b_registered_on)
		settings = frappe.get_doc("Mpesa Settings", SETTINGS)
		answer = frappe_call_simulate(settings)
		self.assertEqual(str(answer.get("ResponseCode")), "0")
		filters = {"mpesa_settings": SETTINGS, "bill_ref_number": "INV-42"}
		self.assertTrue(
			wait_for(lambda: frappe.db.count("Mpesa C2B Payment Register", filters) == 1, timeout=20),
			self.sandbox.callbacks,
		)
		row = frappe.get_all("Mpesa C2B Payment Register", filters=filters, fields=["*"])[0]
		self.assertEqual(float(row.trans_amount), 15.0)
		self.assertEqual(row.business_shortcode, self.shortcode)
		self.assertTrue(row.trans_id and row.trans_time)

	def test_duplicate_confirmations_give_one_record(self):
		body = self.confirmation("TSTDUP0001")
		for _ in range(20):
			self.assertEqual(post(self.url("c2b_confirmation"), body), (200, daraja.ack()))
		frappe.db.rollback()
		self.assertEqual(frappe.db.count("Mpesa C2B Payment Register", {"trans_id": "TSTDUP0001"}), 1)
		self.assertEqual(frappe.db.count("Mpesa Callback Log", {"correlation_id": "TSTDUP0001"}), 1)

	def test_other_shortcode_is_quarantined(self):
		post(self.url("c2b_confirmation"), self.confirmation("TSTOTHER01", shortcode="600000"))
		frappe.db.rollback()
		self.assertFalse(frappe.db.exists("Mpesa C2B Payment Register", "TSTOTHER01"))
		self.assertEqual(
			frappe.db.get_value("Mpesa Callback Log", {"correlation_id": "TSTOTHER01"}, "status"), "Mismatch"
		)

	def test_validation_rejects_unknown_references_when_asked(self):
		url = self.url("c2b_validation")
		self.assertEqual(post(url, self.confirmation("TSTVAL0001"))[1], daraja.c2b_accept())
		self.assertEqual(
			post(url, self.confirmation("TSTVAL0002", shortcode="600000"))[1], daraja.c2b_reject("C2B00015")
		)
		frappe.db.set_value("Mpesa Settings", SETTINGS, "c2b_reference_doctype", "User")
		frappe.db.commit()
		self.assertEqual(
			post(url, self.confirmation("TSTVAL0003", reference="nobody"))[1], daraja.c2b_reject("C2B00012")
		)
		self.assertEqual(
			post(url, self.confirmation("TSTVAL0004", reference="Administrator"))[1], daraja.c2b_accept()
		)

	def test_accounts_staff_can_read_the_register(self):
		self.assertTrue(frappe.has_permission("Mpesa C2B Payment Register", "read", user="Administrator"))
		perms = {p.role for p in frappe.get_meta("Mpesa C2B Payment Register").permissions if p.read}
		self.assertTrue({"Accounts User", "Accounts Manager"} <= perms)


def frappe_call_simulate(settings):
	from frappe_mpesa import settings_store

	return settings_store.call(
		settings,
		"c2b_simulate",
		shortcode=settings.business_shortcode,
		amount=15,
		phone="254708374149",
		bill_ref_number="INV-42",
	)
