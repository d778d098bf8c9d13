# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

"""Balance, transaction status and reversal: each recorded on a document, its result applied
when the callback arrives through the site."""

import json
from urllib.parse import quote

import frappe

from frappe_mpesa import api, initiator
from frappe_mpesa.testing import (
	CHECKER,
	OTHER_CHECKER,
	RestClient,
	ServedSandboxTestCase,
	wait_for,
)

SETTINGS = "_Test Initiator"
DOCTYPE = "Mpesa Initiator Request"
REVERSAL_PATH = "/mpesa/reversal/v1/request"


class TestMpesaInitiatorRequest(ServedSandboxTestCase):
	SETTINGS = SETTINGS
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

		reversal = self.as_user(
			CHECKER, api.reverse_transaction, SETTINGS, status.result_receipt, 50, "Wrong payee"
		)
		self.as_user(OTHER_CHECKER, api.approve_reversal, reversal)
		self.assertTrue(self.done(reversal), self.sandbox.callbacks)
		self.assertEqual(frappe.db.get_value(DOCTYPE, reversal, "status"), "Completed")

	def as_user(self, user, fn, *args):
		frappe.set_user(user)
		try:
			return fn(*args)
		except Exception:
			frappe.db.rollback()  # a refusal may leave the row locked
			raise
		finally:
			frappe.set_user("Administrator")

	def paid_receipt(self, amount):
		"""A receipt to reverse: a B2C made directly through the initiator helper, then asked about."""
		settings = frappe.get_doc("Mpesa Settings", SETTINGS)
		answer = initiator.settings_store.call(
			settings,
			"b2c_payment",
			command_id="BusinessPayment",
			amount=amount,
			party_a=settings.business_shortcode,
			phone="254708374149",
			remarks="Test payout",
			**initiator.initiator_arguments(settings),
		)
		name = api.transaction_status(SETTINGS, original_conversation_id=answer["OriginatorConversationID"])
		self.assertTrue(self.done(name), self.sandbox.callbacks)
		return frappe.db.get_value(DOCTYPE, name, "result_receipt")

	def test_reversal_is_sent_only_after_another_manager_approves(self):
		receipt = self.paid_receipt(61)
		sent = self.sandbox.count(REVERSAL_PATH)
		reversal = self.as_user(CHECKER, api.reverse_transaction, SETTINGS, receipt, 61, "Wrong payee")
		row = frappe.db.get_value(
			DOCTYPE, reversal, ["status", "requested_by", "request_sent_on"], as_dict=True
		)
		self.assertEqual(
			(row.status, row.requested_by, row.request_sent_on), ("Awaiting Approval", CHECKER, None)
		)
		self.assertEqual(self.sandbox.count(REVERSAL_PATH), sent, "nothing is sent before approval")
		with self.assertRaises(frappe.PermissionError):
			self.as_user(CHECKER, api.approve_reversal, reversal)
		self.assertEqual(frappe.db.get_value(DOCTYPE, reversal, "status"), "Awaiting Approval")
		self.assertEqual(self.sandbox.count(REVERSAL_PATH), sent)
		# The requester cannot approve through the site either.
		status, text = RestClient(self.site.url, CHECKER).request(
			"POST", "/api/method/frappe_mpesa.api.approve_reversal", {"request": reversal}
		)
		self.assertEqual(status, 403, text[:300])
		self.as_user(OTHER_CHECKER, api.approve_reversal, reversal)
		self.assertTrue(self.done(reversal), self.sandbox.callbacks)
		row = frappe.db.get_value(DOCTYPE, reversal, ["status", "approved_by"], as_dict=True)
		self.assertEqual((row.status, row.approved_by), ("Completed", OTHER_CHECKER))
		# Approved once, sent once.
		with self.assertRaises(frappe.ValidationError):
			self.as_user(OTHER_CHECKER, api.approve_reversal, reversal)
		self.assertEqual(self.sandbox.count(REVERSAL_PATH), sent + 1)

	def test_rejected_reversal_is_never_sent(self):
		sent = self.sandbox.count(REVERSAL_PATH)
		reversal = self.as_user(CHECKER, api.reverse_transaction, SETTINGS, "NLJ41HAY6Q", 62, "Typo")
		self.as_user(OTHER_CHECKER, api.reject_reversal, reversal)
		self.assertEqual(frappe.db.get_value(DOCTYPE, reversal, "status"), "Rejected")
		with self.assertRaises(frappe.ValidationError):
			self.as_user(OTHER_CHECKER, api.approve_reversal, reversal)
		self.assertEqual(self.sandbox.count(REVERSAL_PATH), sent)

	def test_no_user_saves_a_request_not_even_administrator(self):
		name = api.check_balance(SETTINGS)
		self.assertTrue(self.done(name), self.sandbox.callbacks)
		reversal = self.as_user(CHECKER, api.reverse_transaction, SETTINGS, "NLJ41HAY6Q", 63, "Typo")
		admin = RestClient(self.site.url, "Administrator", frappe.conf.admin_password or "admin")
		resource = "/api/resource/Mpesa%20Initiator%20Request/"
		for target, values in (
			(name, {"status": "Queued"}),
			(reversal, {"status": "Queued", "requested_by": OTHER_CHECKER}),
		):
			before = frappe.db.get_value(
				DOCTYPE, target, ["status", "requested_by", "modified"], as_dict=True
			)
			status, text = admin.request("PUT", resource + quote(target), values)
			self.assertNotEqual(status, 200, text[:300])
			status, text = admin.request(
				"POST",
				"/api/method/frappe.client.set_value",
				{"doctype": DOCTYPE, "name": target, "fieldname": json.dumps(values)},
			)
			self.assertNotEqual(status, 200, text[:300])
			frappe.db.rollback()
			self.assertEqual(
				frappe.db.get_value(DOCTYPE, target, ["status", "requested_by", "modified"], as_dict=True),
				before,
			)
		status, text = admin.request(
			"POST",
			"/api/resource/Mpesa%20Initiator%20Request",
			{"request_type": "Reversal", "mpesa_settings": SETTINGS, "status": "Queued", "amount": 64},
		)
		self.assertNotEqual(status, 200, text[:300])

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
