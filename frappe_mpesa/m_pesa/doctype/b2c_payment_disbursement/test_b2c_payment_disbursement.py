# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

"""B2C: drafted by an Accounts User, submitted by another Accounts Manager (never the creator),
OriginatorConversationID committed before the request, result callback -> Completed with receipt;
a lost result is resolved by a Transaction Status query."""

import frappe

from frappe_mpesa import initiator
from frappe_mpesa.sandbox import DEFAULT_INITIATOR_PASSWORD
from frappe_mpesa.testing import (
	ServedSandboxTestCase,
	CHECKER,
	MAKER,
	OTHER_CHECKER,
	RestClient,
	wait_for,
)

SETTINGS = "Test B2C"
PAYEE = "254708374149"
DOCTYPE = "B2C Payment Disbursement"


class TestB2CPaymentDisbursement(ServedSandboxTestCase):
	SETTINGS = SETTINGS
	SHORTCODE = "600984"
	SANDBOX_OPTIONS = {"callback_delay": 0.3}

	def tearDown(self):
		frappe.set_user("Administrator")

	def draft(self, user=MAKER, amount=100, phone="0708374149"):
		frappe.set_user(user)
		doc = frappe.get_doc(
			{
				"doctype": DOCTYPE,
				"mpesa_settings": SETTINGS,
				"phone": phone,
				"amount": amount,
				"command_id": "BusinessPayment",
				"remarks": "Refund for order 7",
			}
		).insert()
		frappe.db.commit()
		return doc

	def submit_as(self, user, name):
		frappe.set_user(user)
		doc = frappe.get_doc(DOCTYPE, name)
		doc.submit()
		frappe.db.commit()
		frappe.set_user("Administrator")
		return doc

	def row(self, name):
		return frappe.db.get_value(
			DOCTYPE,
			name,
			[
				"status",
				"transaction_receipt",
				"receiver_name",
				"originator_conversation_id",
				"conversation_id",
				"approved_by",
				"docstatus",
			],
			as_dict=True,
		)

	def test_checker_submits_result_callback_completes_with_receipt(self):
		doc = self.draft()
		self.assertEqual(doc.phone, PAYEE)
		self.assertEqual(doc.status, "Draft")
		self.submit_as(CHECKER, doc.name)
		row = self.row(doc.name)
		self.assertEqual((row.status, row.docstatus, row.approved_by), ("Queued", 1, CHECKER))
		ocid = row.originator_conversation_id
		self.assertTrue(ocid, "the id is committed with the submission, before any request")
		self.assertEqual(self.sandbox.count("/mpesa/b2c/v3/paymentrequest"), 0)

		self.assertEqual(initiator.send_disbursement(doc.name), "Sent")  # what the queued job runs
		self.assertIsNone(initiator.send_disbursement(doc.name), "never sent twice")
		self.assertEqual(self.sandbox.count("/mpesa/b2c/v3/paymentrequest"), 1)
		sent = [r for r in self.sandbox.requests if r.path == "/mpesa/b2c/v3/paymentrequest"][0]
		self.assertEqual(sent.json["OriginatorConversationID"], ocid)
		self.assertNotIn("mpesa", sent.json["ResultURL"].lower())

		self.assertTrue(
			wait_for(lambda: self.row(doc.name).status == "Completed", timeout=20), self.sandbox.callbacks
		)
		row = self.row(doc.name)
		self.assertTrue(row.transaction_receipt)
		self.assertTrue(row.receiver_name)
		self.assertEqual(
			frappe.db.get_value("Mpesa Callback Log", {"correlation_id": ocid}, "status"), "Applied"
		)

	def test_creator_cannot_submit_and_accounts_user_cannot_submit(self):
		doc = self.draft(user=CHECKER)
		with self.assertRaises(frappe.PermissionError):
			self.submit_as(CHECKER, doc.name)
		frappe.db.rollback()
		frappe.set_user("Administrator")
		other = self.draft(user=MAKER)
		with self.assertRaises(frappe.PermissionError):
			self.submit_as(MAKER, other.name)
		frappe.db.rollback()
		frappe.set_user("Administrator")
		self.assertEqual(self.row(doc.name).docstatus, 0)
		self.assertEqual(self.row(other.name).docstatus, 0)
		# Another Accounts Manager may.
		self.submit_as(OTHER_CHECKER, doc.name)
		self.assertEqual(self.row(doc.name).status, "Queued")

	def test_completed_disbursement_cannot_be_cancelled(self):
		doc = self.draft()
		self.submit_as(CHECKER, doc.name)
		initiator.send_disbursement(doc.name)
		self.assertTrue(wait_for(lambda: self.row(doc.name).status == "Completed", timeout=20))
		frappe.set_user(OTHER_CHECKER)
		with self.assertRaises(frappe.ValidationError):
			frappe.get_doc(DOCTYPE, doc.name).cancel()
		frappe.db.rollback()

	def test_lost_result_is_resolved_by_transaction_status(self):
		doc = self.draft(amount=150)
		self.submit_as(CHECKER, doc.name)
		# The result callback cannot get through (allowlist), as if it were lost.
		frappe.db.set_value("Mpesa Settings", SETTINGS, "callback_allowlist", "192.0.2.1")
		frappe.db.commit()
		initiator.send_disbursement(doc.name)
		ocid = self.row(doc.name).originator_conversation_id

		def refused():
			return [
				c.result
				for c in self.sandbox.callbacks
				if (c.payload.get("Result") or {}).get("OriginatorConversationID") == ocid
			]

		self.assertEqual(wait_for(refused, timeout=10), [403])
		frappe.db.set_value("Mpesa Settings", SETTINGS, "callback_allowlist", "127.0.0.1")
		frappe.db.set_value(DOCTYPE, doc.name, "request_sent_on", frappe.utils.add_to_date(None, minutes=-30))
		frappe.db.commit()
		self.assertEqual(self.row(doc.name).status, "Sent")
		initiator.resolve_disbursements()
		self.assertTrue(wait_for(lambda: self.row(doc.name).status == "Completed", timeout=20))
		self.assertEqual(refused(), [403], "the original result was never delivered")
		query = frappe.get_all(
			"Mpesa Initiator Request",
			filters={"reference_name": doc.name},
			fields=["status", "transaction_status", "result_receipt"],
		)
		self.assertEqual(len(query), 1)
		self.assertEqual(query[0].status, "Completed")
		self.assertEqual(self.row(doc.name).transaction_receipt, query[0].result_receipt)

	def test_accounts_user_cannot_read_secrets_through_desk_or_rest(self):
		from urllib.parse import quote

		frappe.set_user(MAKER)
		with self.assertRaises(frappe.PermissionError):
			frappe.get_list("Mpesa Settings", fields=["name", "consumer_secret"])
		frappe.set_user("Administrator")
		secrets = [
			frappe.get_doc("Mpesa Settings", SETTINGS).get_password(f)
			for f in ("consumer_secret", "online_passkey", "initiator_password", "callback_secret")
		]
		resource = "/api/resource/Mpesa%20Settings/" + quote(SETTINGS)
		maker = RestClient(self.site.url, MAKER)
		for path in (
			resource,
			'/api/resource/Mpesa%20Settings?fields=["*"]',
			"/api/method/frappe.client.get?doctype=Mpesa%20Settings&name=" + quote(SETTINGS),
			"/api/method/frappe.client.get_password?doctype=Mpesa%20Settings&name="
			+ quote(SETTINGS)
			+ "&fieldname=consumer_secret",
			"/api/method/frappe.desk.form.load.getdoc?doctype=Mpesa%20Settings&name=" + quote(SETTINGS),
			"/api/resource/Mpesa%20Public%20Key%20Certificate/Mpesa%20Public%20Key%20Certificate",
		):
			status, text = maker.request("GET", path)
			self.assertEqual(status, 403, (path, text[:200]))
			for secret in secrets:
				self.assertNotIn(secret, text)
		# Even a System Manager gets asterisks, never the secrets, from Desk and REST.
		frappe.set_user("Administrator")
		admin = RestClient(self.site.url, "Administrator", frappe.conf.admin_password or "admin")
		for path in (
			resource,
			"/api/method/frappe.desk.form.load.getdoc?doctype=Mpesa%20Settings&name=" + quote(SETTINGS),
		):
			status, text = admin.request("GET", path)
			self.assertEqual(status, 200, (path, text[-600:]))
			for secret in secrets:
				self.assertNotIn(secret, text)
			self.assertNotIn(DEFAULT_INITIATOR_PASSWORD, text)
