# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

"""B2C: drafted by an Accounts User, submitted by another Accounts Manager (never the creator),
OriginatorConversationID committed before the request, result callback -> Completed with receipt;
a lost result is resolved by a Transaction Status query."""

import json
import uuid
from urllib.parse import quote

import frappe

from frappe_mpesa import initiator
from frappe_mpesa.sandbox import DEFAULT_INITIATOR_PASSWORD
from frappe_mpesa.testing import (
	CHECKER,
	MAKER,
	OTHER_CHECKER,
	RestClient,
	ServedSandboxTestCase,
	wait_for,
)

SETTINGS = "_Test B2C"
PHONE = "254708374149"
PAYEE = "B2C Disbursement Payee"
DOCTYPE = "B2C Payment Disbursement"
B2C_PATH = "/mpesa/b2c/v3/paymentrequest"
RESOURCE = "/api/resource/B2C%20Payment%20Disbursement/"


class TestB2CPaymentDisbursement(ServedSandboxTestCase):
	SETTINGS = SETTINGS
	SANDBOX_OPTIONS = {"callback_delay": 0.3}

	def tearDown(self):
		frappe.set_user("Administrator")

	def draft(self, user=MAKER, amount=100, phone="0708374149"):
		frappe.set_user(user)
		doc = frappe.get_doc(
			{
				"doctype": DOCTYPE,
				"mpesa_settings": SETTINGS,
				"command_id": "BusinessPayment",
				"remarks": "Refund for order 7",
				"payees": [{"phone": phone, "amount": amount}],
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
		"""The one payee row of batch ``name``, with the batch's docstatus, approver and status."""
		batch = frappe.db.get_value(DOCTYPE, name, ["status", "approved_by", "docstatus"], as_dict=True)
		row = frappe.db.get_value(
			PAYEE,
			{"parent": name},
			[
				"name",
				"status",
				"transaction_receipt",
				"receiver_name",
				"originator_conversation_id",
				"conversation_id",
				"request_sent_on",
				"error",
			],
			as_dict=True,
		)
		row.row_name = row.pop("name")
		row.batch_status = batch.status
		row.approved_by, row.docstatus = batch.approved_by, batch.docstatus
		return row

	def test_checker_submits_result_callback_completes_with_receipt(self):
		doc = self.draft()
		self.assertEqual(doc.payees[0].phone, PHONE)
		self.assertEqual(doc.status, "Draft")
		self.submit_as(CHECKER, doc.name)
		row = self.row(doc.name)
		self.assertEqual((row.status, row.docstatus, row.approved_by), ("Queued", 1, CHECKER))
		ocid = row.originator_conversation_id
		self.assertTrue(ocid, "the id is committed with the submission, before any request")

		def ours():
			return [
				r
				for r in self.sandbox.requests
				if r.path == B2C_PATH and r.json.get("OriginatorConversationID") == ocid
			]

		self.assertEqual(ours(), [])
		self.assertIn(initiator.send_disbursement(doc.name), ("Sending", "Completed"))  # what the queued job runs
		initiator.send_disbursement(doc.name)  # never sent twice
		self.assertEqual(len(ours()), 1)
		sent = ours()[0]
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
		row_name = self.row(doc.name).row_name
		frappe.db.set_value(PAYEE, row_name, "request_sent_on", frappe.utils.add_to_date(None, minutes=-30))
		frappe.db.commit()
		self.assertEqual(self.row(doc.name).status, "Sent")
		initiator.resolve_disbursements()
		self.assertTrue(wait_for(lambda: self.row(doc.name).status == "Completed", timeout=20))
		self.assertEqual(refused(), [403], "the original result was never delivered")
		query = frappe.get_all(
			"Mpesa Initiator Request",
			filters={"reference_name": row_name},
			fields=["status", "transaction_status", "result_receipt"],
		)
		self.assertEqual(len(query), 1)
		self.assertEqual(query[0].status, "Completed")
		self.assertEqual(self.row(doc.name).transaction_receipt, query[0].result_receipt)

	def test_accounts_user_cannot_read_secrets_through_desk_or_rest(self):
		from urllib.parse import quote

		# Accounts staff pick the settings record (permlevel 0); its secrets are on permlevel 1.
		frappe.set_user(MAKER)
		rows = frappe.get_list("Mpesa Settings", fields=["name", "consumer_secret"])
		self.assertIn(SETTINGS, [row.name for row in rows])
		self.assertTrue(all("consumer_secret" not in row for row in rows), rows)
		frappe.set_user("Administrator")
		secrets = [
			frappe.get_doc("Mpesa Settings", SETTINGS).get_password(f)
			for f in ("consumer_secret", "online_passkey", "initiator_password", "callback_secret")
		]
		resource = "/api/resource/Mpesa%20Settings/" + quote(SETTINGS)
		maker = RestClient(self.site.url, MAKER)
		readable = (
			resource,
			'/api/resource/Mpesa%20Settings?fields=["*"]',
			"/api/method/frappe.client.get?doctype=Mpesa%20Settings&name=" + quote(SETTINGS),
			"/api/method/frappe.desk.form.load.getdoc?doctype=Mpesa%20Settings&name=" + quote(SETTINGS),
		)
		refused = (
			"/api/method/frappe.client.get_password?doctype=Mpesa%20Settings&name="
			+ quote(SETTINGS)
			+ "&fieldname=consumer_secret",
			"/api/resource/Mpesa%20Public%20Key%20Certificate/Mpesa%20Public%20Key%20Certificate",
		)
		for path in readable + refused:
			status, text = maker.request("GET", path)
			self.assertEqual(status, 200 if path in readable else 403, (path, text[:200]))
			for secret in secrets:
				self.assertNotIn(secret, text)
			if path in readable:
				body = json.loads(text)
				docs = body.get("docs") or body.get("data") or body.get("message")
				for doc in docs if isinstance(docs, list) else [docs]:
					# Frappe drops permlevel 1 fields, or keeps their keys with no value.
					for fieldname in ("consumer_key", "consumer_secret", "online_passkey", "callback_id", "callback_secret"):
						self.assertFalse(doc.get(fieldname), (path, fieldname))
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

	# ---- the state machine is the app's alone -------------------------------------------------

	def completed(self, amount):
		doc = self.draft(amount=amount)
		self.submit_as(CHECKER, doc.name)
		self.assertIn(initiator.send_disbursement(doc.name), ("Sending", "Completed"))
		self.assertTrue(wait_for(lambda: self.row(doc.name).status == "Completed", timeout=20))
		return doc.name

	def stored(self, name):
		frappe.db.rollback()
		return (
			frappe.db.get_value(DOCTYPE, name, ["status", "docstatus", "approved_by"], as_dict=True),
			frappe.db.get_all(
				PAYEE,
				filters={"parent": name},
				fields=["status", "docstatus", "originator_conversation_id", "request_sent_on", "transaction_receipt"],
			),
		)

	def test_accounts_manager_cannot_send_a_completed_disbursement_again(self):
		"""Completed -> Queued with no request_sent_on and a fresh OriginatorConversationID, tried
		through REST, Desk's form save and frappe.client; then Completed -> Failed and a cancel."""
		sent = self.sandbox.count(B2C_PATH)
		name = self.completed(amount=171)
		before = self.stored(name)
		self.assertEqual(self.sandbox.count(B2C_PATH), sent + 1)
		manager = RestClient(self.site.url, CHECKER)
		rewind_row = {
			"status": "Queued",
			"request_sent_on": None,
			"originator_conversation_id": str(uuid.uuid4()),
		}

		def browser_copy(**changes):
			status, text = manager.request("GET", RESOURCE + quote(name))
			self.assertEqual(status, 200, text[:300])
			data = json.loads(text)["data"]
			data["payees"] = [{**row, **rewind_row} for row in data["payees"]]
			return {**data, **changes}

		rewind = {"status": "Queued", "payees": browser_copy()["payees"]}

		attempts = {
			"REST PUT": ("PUT", RESOURCE + quote(name), rewind),
			"savedocs Update": (
				"POST",
				"/api/method/frappe.desk.form.save.savedocs",
				{"doc": json.dumps(browser_copy(**rewind)), "action": "Update"},
			),
			"frappe.client.save": (
				"POST",
				"/api/method/frappe.client.save",
				{"doc": json.dumps(browser_copy(**rewind))},
			),
			"frappe.client.set_value": (
				"POST",
				"/api/method/frappe.client.set_value",
				{"doctype": DOCTYPE, "name": name, "fieldname": json.dumps(rewind)},
			),
			"set_value Failed": (
				"POST",
				"/api/method/frappe.client.set_value",
				{"doctype": DOCTYPE, "name": name, "fieldname": "status", "value": "Failed"},
			),
			"savedocs Cancel as Failed": (
				"POST",
				"/api/method/frappe.desk.form.save.savedocs",
				{"doc": json.dumps(browser_copy(status="Failed")), "action": "Cancel"},
			),
		}
		for label, (method, path, body) in attempts.items():
			status, text = manager.request(method, path, body)
			self.assertNotEqual(status, 200, (label, text[:300]))
			self.assertEqual(self.stored(name), before, label)
		# The jobs find nothing to send: however old, a disbursement that was sent is only queried.
		frappe.db.set_value(
			DOCTYPE, name, "modified", frappe.utils.add_to_date(None, minutes=-30), update_modified=False
		)
		frappe.db.commit()
		initiator.send_disbursement(name)
		initiator.resolve_disbursements()
		self.assertEqual(self.sandbox.count(B2C_PATH), sent + 1, "no second B2C request reached Daraja")
		self.assertEqual(self.stored(name), before)

	def test_job_never_resends_what_daraja_answered(self):
		"""Even with the status forced back at the database and request_sent_on gone, Daraja's answer
		(ConversationID, receipt) on the row is enough for the job to refuse."""
		sent = self.sandbox.count(B2C_PATH)
		name = self.completed(amount=173)
		frappe.db.set_value(PAYEE, {"parent": name}, {"status": "Queued", "request_sent_on": None})
		frappe.db.set_value(DOCTYPE, name, "status", "Queued")
		frappe.db.commit()
		initiator.send_disbursement(name)
		self.assertEqual(self.sandbox.count(B2C_PATH), sent + 1)

	def test_draft_cannot_carry_app_fields(self):
		manager = RestClient(self.site.url, CHECKER)
		doc = self.draft(amount=174)
		frappe.set_user("Administrator")
		stored_row = frappe.get_doc(DOCTYPE, doc.name).payees[0].as_dict()
		stored_row = {k: v for k, v in stored_row.items() if k in ("name", "phone", "amount", "idx")}
		for values in (
			{"status": "Completed"},
			{"payee_set_by": OTHER_CHECKER},
			{"payees": [{**stored_row, "transaction_receipt": "NLJ7RT61SV"}]},
			{"payees": [{**stored_row, "status": "Completed"}]},
			{"payees": [{**stored_row, "originator_conversation_id": str(uuid.uuid4())}]},
			{"payees": [{**stored_row, "payee_set_by": OTHER_CHECKER}]},
		):
			status, text = manager.request("PUT", RESOURCE + quote(doc.name), values)
			self.assertNotEqual(status, 200, (values, text[:300]))
		status, text = manager.request(
			"POST",
			"/api/resource/B2C%20Payment%20Disbursement",
			{
				"mpesa_settings": SETTINGS,
				"remarks": "Refund for order 8",
				"payees": [
					{"phone": PHONE, "amount": 175, "status": "Queued", "request_sent_on": "2026-01-01 00:00:00"}
				],
			},
		)
		self.assertNotEqual(status, 200, text[:300])

	# ---- maker is not checker -------------------------------------------------------------------

	def test_manager_who_rewrote_payee_cannot_submit(self):
		doc = self.draft(amount=176)
		manager = RestClient(self.site.url, CHECKER)
		# Naming the maker as the one who set the payee does not help: the controller decides.
		row = frappe.get_doc(DOCTYPE, doc.name).payees[0]
		rewrite = {"payees": [{"name": row.name, "idx": 1, "phone": "254700000099", "amount": 999}]}
		status, text = manager.request("PUT", RESOURCE + quote(doc.name), rewrite)
		self.assertEqual(status, 200, text[:300])
		frappe.db.rollback()
		self.assertEqual(frappe.db.get_value(DOCTYPE, doc.name, "payee_set_by"), CHECKER)
		self.assertEqual(frappe.db.get_value(PAYEE, row.name, "payee_set_by"), CHECKER)
		with self.assertRaises(frappe.PermissionError):
			self.submit_as(CHECKER, doc.name)
		frappe.db.rollback()
		frappe.set_user("Administrator")
		# Nor through REST, nor through Desk's form.
		status, text = manager.request("PUT", RESOURCE + quote(doc.name), {"docstatus": 1})
		self.assertNotEqual(status, 200, text[:300])
		status, text = manager.request("GET", RESOURCE + quote(doc.name))
		status, text = manager.request(
			"POST",
			"/api/method/frappe.desk.form.save.savedocs",
			{"doc": json.dumps(json.loads(text)["data"]), "action": "Submit"},
		)
		self.assertNotEqual(status, 200, text[:300])
		self.assertEqual(self.row(doc.name).docstatus, 0)
		# A change to the remarks only does not make a maker of the manager who rewrote nothing.
		other = self.draft(amount=177)
		status, _text = manager.request(
			"PUT", RESOURCE + quote(other.name), {"remarks": "Refund for order 9"}
		)
		self.assertEqual(status, 200)
		self.submit_as(CHECKER, other.name)
		self.assertEqual(self.row(other.name).status, "Queued")
		# Another Accounts Manager approves the rewritten one.
		self.submit_as(OTHER_CHECKER, doc.name)
		self.assertEqual(self.row(doc.name).approved_by, OTHER_CHECKER)

	def test_change_after_approval_voids_it(self):
		doc = self.draft(amount=178)
		self.submit_as(CHECKER, doc.name)
		manager = RestClient(self.site.url, OTHER_CHECKER)
		row = frappe.get_doc(DOCTYPE, doc.name).payees[0]
		status, text = manager.request(
			"PUT",
			RESOURCE + quote(doc.name),
			{"payees": [{"name": row.name, "idx": 1, "phone": "254700000099", "amount": 999}]},
		)
		self.assertNotEqual(status, 200, text[:300])
		# A change that got past every form (here: straight into the database) voids the approval:
		# the job sends nothing.
		frappe.db.set_value(PAYEE, row.name, {"phone": "254700000099", "amount": 999})
		frappe.db.commit()
		sent = self.sandbox.count(B2C_PATH)
		self.assertEqual(initiator.send_disbursement(doc.name), "Failed")
		self.assertEqual(self.sandbox.count(B2C_PATH), sent, "nothing was sent")
		self.assertIn("approval", frappe.db.get_value(PAYEE, row.name, "error"))
		self.assertIsNone(frappe.db.get_value(PAYEE, row.name, "request_sent_on"))
