# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

"""Balance, transaction status and reversal: each recorded on a document, its result applied
when the callback arrives through the site."""

import frappe

from frappe_mpesa import api, initiator
from frappe_mpesa.testing import (
	ServedSandboxTestCase,
	wait_for,
)

SETTINGS = "Test Initiator"
DOCTYPE = "Mpesa Initiator Request"


class TestMpesaInitiatorRequest(ServedSandboxTestCase):
	SETTINGS = SETTINGS
	SHORTCODE = "600996"
	SANDBOX_OPTIONS = {"callback_delay": 0.2}

	def done(self, name):
		return wait_for(
			lambda: frappe.db.get_value(DOCTYPE, name, "status") in ("Completed", "Failed"), timeout=20
		)

	def test_balance(self):
		name = api.check_balance(SETTINGS)
		self.assertTrue(self.done(name), self.sandbox.callbacks)
		doc = frappe.get_doc(DOCTYPE, name)
		self.assertEqual(doc.status, "Completed")
		self.assertTrue(doc.balances)
		self.assertTrue(any(line.account == "Working Account" for line in doc.balances))

	def test_status_and_reversal_of_a_payment(self):
		# A payment to ask about: a B2C made directly through the initiator helper.
		settings = frappe.get_doc("Mpesa Settings", SETTINGS)
		answer = initiator.settings_store.call(
			settings,
			"b2c_payment",
			command_id="BusinessPayment",
			amount=50,
			party_a=settings.business_shortcode,
			phone="254708374149",
			remarks="Test payout",
			**initiator.initiator_arguments(settings),
		)
		ocid = answer["OriginatorConversationID"]
		name = api.transaction_status(SETTINGS, original_conversation_id=ocid)
		self.assertTrue(self.done(name), self.sandbox.callbacks)
		status = frappe.get_doc(DOCTYPE, name)
		self.assertEqual((status.status, status.transaction_status), ("Completed", "Completed"))
		self.assertTrue(status.result_receipt)
		self.assertNotIn("254708374149", status.result_details or "")

		reversal = api.reverse_transaction(SETTINGS, status.result_receipt, 50, "Wrong payee")
		self.assertTrue(self.done(reversal), self.sandbox.callbacks)
		self.assertEqual(frappe.db.get_value(DOCTYPE, reversal, "status"), "Completed")

	def test_accounts_user_cannot_reverse_or_ask_for_balance(self):
		frappe.set_user("mpesa-maker@example.com")
		try:
			with self.assertRaises(frappe.PermissionError):
				api.reverse_transaction(SETTINGS, "NLJ41HAY6Q", 10)
			with self.assertRaises(frappe.PermissionError):
				api.check_balance(SETTINGS)
		finally:
			frappe.set_user("Administrator")

	def test_missing_certificate_fails_before_anything_is_sent(self):
		single = frappe.get_single("Mpesa Public Key Certificate")
		saved = single.sandbox_certificate
		frappe.db.set_single_value("Mpesa Public Key Certificate", "sandbox_certificate", None)
		frappe.db.commit()
		try:
			before = self.sandbox.count()
			with self.assertRaises(frappe.ValidationError):
				api.check_balance(SETTINGS)
			self.assertEqual(self.sandbox.count(), before)
		finally:
			frappe.db.set_single_value("Mpesa Public Key Certificate", "sandbox_certificate", saved)
			frappe.db.commit()
