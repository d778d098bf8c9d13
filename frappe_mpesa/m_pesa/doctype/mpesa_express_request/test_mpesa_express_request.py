# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

"""M-Pesa Express end to end: whitelisted method -> sandbox -> callback through the site's own
HTTP server -> exactly one Success; duplicates, reordering and forged callbacks change nothing."""

import json
import random
import secrets
from concurrent.futures import ThreadPoolExecutor

import frappe

from frappe_mpesa import api, records, tasks, urls
from frappe_mpesa.testing import (
	RestClient,
	ServedSandboxTestCase,
	post,
	wait_for,
)

SETTINGS = "_Test Express"
PAYER = "254708374149"


def stk_callback(checkout_request_id, amount, receipt, code=0, merchant="29115-34620561-1"):
	callback = {
		"MerchantRequestID": merchant,
		"CheckoutRequestID": checkout_request_id,
		"ResultCode": code,
		"ResultDesc": "The service request is processed successfully."
		if code == 0
		else "Request cancelled by user",
	}
	if code == 0:
		callback["CallbackMetadata"] = {
			"Item": [
				{"Name": "Amount", "Value": amount},
				{"Name": "MpesaReceiptNumber", "Value": receipt},
				{"Name": "Balance"},
				{"Name": "TransactionDate", "Value": 20261128101115},
				{"Name": "PhoneNumber", "Value": int(PAYER)},
			]
		}
	return json.dumps({"Body": {"stkCallback": callback}}).encode()


class TestMpesaExpressRequest(ServedSandboxTestCase):
	SETTINGS = SETTINGS
	SANDBOX_OPTIONS = {"callback_delay": 0.3}

	def setUp(self):
		frappe.set_user("Administrator")
		frappe.db.set_value(
			"Mpesa Settings", SETTINGS, {"allowlist_mode": "Enforce", "callback_allowlist": "127.0.0.1"}
		)
		frappe.db.commit()

	def url(self, kind="stk", secret=None):
		settings = frappe.get_doc("Mpesa Settings", SETTINGS)
		return urls.callback_url(
			settings.callback_base_url,
			kind,
			settings.callback_id,
			secret or settings.get_password("callback_secret"),
		)

	def push(self, amount=10, phone=PAYER):
		return api.stk_push(SETTINGS, amount, phone, account_reference="INV-1", description="Order 1")

	def status(self, name):
		return frappe.db.get_value(
			"Mpesa Express Request", name, ["status", "receipt_number", "result_code"], as_dict=True
		)

	def test_push_callback_through_the_site_marks_one_success(self):
		answer = self.push()
		self.assertEqual(answer["status"], "Pending")
		self.assertTrue(answer["checkout_request_id"].startswith("ws_CO_"))
		done = wait_for(lambda: self.status(answer["name"]).status == "Success", timeout=20)
		self.assertTrue(done, f"callbacks: {self.sandbox.callbacks}")
		row = self.status(answer["name"])
		self.assertTrue(row.receipt_number)
		self.assertEqual(row.result_code, "0")
		self.assertEqual(
			frappe.db.count("Mpesa Express Request", {"checkout_request_id": answer["checkout_request_id"]}),
			1,
		)
		# The sandbox delivered it through the TLS proxy and the served site, and got Daraja's ack.
		delivered = [
			c
			for c in self.sandbox.callbacks
			if c.payload["Body"]["stkCallback"]["CheckoutRequestID"] == answer["checkout_request_id"]
		]
		self.assertEqual([c.result for c in delivered], [200])
		self.assertNotIn("mpesa", delivered[0].url.lower())
		log = frappe.get_all(
			"Mpesa Callback Log",
			filters={"correlation_id": answer["checkout_request_id"]},
			fields=["status", "payload"],
		)
		self.assertEqual([entry.status for entry in log], ["Applied"])
		self.assertNotIn(PAYER, log[0].payload, "phones are masked in the log")

	def test_failure_codes_map_to_final_states(self):
		for phone, expected in (
			("254700001032", "Cancelled"),
			("254700001037", "Timeout"),
			("254700000001", "Failed"),
		):
			answer = self.push(phone=phone)
			self.assertTrue(
				wait_for(lambda n=answer["name"], e=expected: self.status(n).status == e, timeout=20), phone
			)

	def test_hundred_copies_reordered_give_one_record_each_and_never_downgrade(self):
		self.sandbox.callback_delay = 60  # the sandbox's own callbacks come too late to matter
		try:
			pushes = [self.push(amount=11 + i) for i in range(4)]
		finally:
			self.sandbox.callback_delay = 0.3
		bodies = []
		for i, push in enumerate(pushes):
			receipt = f"TST{secrets.token_hex(4).upper()}"
			success = stk_callback(push["checkout_request_id"], 11 + i, receipt)
			cancelled = stk_callback(push["checkout_request_id"], 11 + i, None, code=1032)
			# Success then a late "cancelled" replay: the first to arrive wins, nothing moves back.
			bodies += [success] * 22 + [cancelled] * 3
		self.assertEqual(len(bodies), 100)
		random.Random(7).shuffle(bodies)
		url = self.url()
		with ThreadPoolExecutor(8) as pool:
			statuses = list(pool.map(lambda body: post(url, body)[0], bodies))
		self.assertEqual(set(statuses), {200})
		frappe.db.rollback()
		for push in pushes:
			row = self.status(push["name"])
			self.assertIn(row.status, ("Success", "Cancelled"))
			logs = frappe.get_all(
				"Mpesa Callback Log", filters={"correlation_id": push["checkout_request_id"]}, pluck="status"
			)
			# One log per distinct payload, one of them applied.
			self.assertEqual(len(logs), 2, logs)
			self.assertEqual(logs.count("Applied"), 1, logs)
			self.assertEqual(
				frappe.db.count(
					"Mpesa Express Request", {"checkout_request_id": push["checkout_request_id"]}
				),
				1,
			)

	def test_forged_callbacks_change_nothing(self):
		self.sandbox.callback_delay = 60
		try:
			push = self.push(amount=20)
		finally:
			self.sandbox.callback_delay = 0.3
		cid = push["checkout_request_id"]
		genuine = stk_callback(cid, 20, "FORGED0001")

		# wrong secret, and no secret
		self.assertEqual(post(self.url(secret="x" * 43), genuine)[0], 403)
		self.assertEqual(post(self.url().split("&s=")[0], genuine)[0], 403)
		# spoofed X-Forwarded-For: the proxy appends the real peer, which is what counts
		frappe.db.set_value("Mpesa Settings", SETTINGS, "callback_allowlist", "196.201.214.200")
		frappe.db.commit()
		self.assertEqual(post(self.url(), genuine, {"X-Forwarded-For": "196.201.214.200"})[0], 403)
		# address outside the allowlist
		self.assertEqual(post(self.url(), genuine)[0], 403)
		frappe.db.set_value("Mpesa Settings", SETTINGS, "callback_allowlist", "127.0.0.1")
		frappe.db.commit()
		# unknown CheckoutRequestID: kept, never applied
		unknown = "ws_CO_" + secrets.token_hex(8)
		self.assertEqual(post(self.url(), stk_callback(unknown, 20, "FORGED0002"))[0], 200)
		# wrong amount
		self.assertEqual(post(self.url(), stk_callback(cid, 2000, "FORGED0003"))[0], 200)
		# GET is not accepted
		frappe.db.rollback()
		self.assertEqual(self.status(push["name"]).status, "Pending")
		self.assertEqual(
			frappe.db.get_value("Mpesa Callback Log", {"correlation_id": unknown}, "status"), "Unmatched"
		)
		self.assertEqual(
			frappe.db.get_value("Mpesa Callback Log", {"correlation_id": cid}, "status"), "Mismatch"
		)
		self.assertFalse(frappe.db.exists("Mpesa Express Request", {"receipt_number": ("like", "FORGED%")}))

	def test_callback_before_its_record_is_kept_then_applied(self):
		self.sandbox.callback_delay = 60
		try:
			push = self.push(amount=30)
		finally:
			self.sandbox.callback_delay = 0.3
		cid = push["checkout_request_id"]
		# Pretend the record had not been committed yet when the callback came.
		frappe.db.set_value("Mpesa Express Request", push["name"], "checkout_request_id", None)
		frappe.db.commit()
		self.assertEqual(post(self.url(), stk_callback(cid, 30, "EARLY00001"))[0], 200)
		frappe.db.rollback()
		self.assertEqual(
			frappe.db.get_value("Mpesa Callback Log", {"correlation_id": cid}, "status"), "Unmatched"
		)
		frappe.db.set_value("Mpesa Express Request", push["name"], "checkout_request_id", cid)
		frappe.db.commit()
		tasks.match_unmatched_callbacks()
		frappe.db.rollback()
		self.assertEqual(self.status(push["name"]).status, "Success")
		self.assertEqual(self.status(push["name"]).receipt_number, "EARLY00001")
		self.assertEqual(
			frappe.db.get_value("Mpesa Callback Log", {"correlation_id": cid}, "status"), "Applied"
		)

	def test_lost_callback_is_resolved_by_the_scheduled_query(self):
		# Daraja cannot reach the site: the STK query job settles the request.
		frappe.db.set_value("Mpesa Settings", SETTINGS, "allowlist_mode", "Enforce")
		frappe.db.set_value("Mpesa Settings", SETTINGS, "callback_allowlist", "192.0.2.1")
		frappe.db.commit()
		push = self.push(amount=40, phone="254700001032")
		self.assertTrue(
			wait_for(
				lambda: self.sandbox.transactions.get(push["checkout_request_id"]) == "final", timeout=10
			)
		)
		frappe.db.set_value(
			"Mpesa Express Request",
			push["name"],
			"request_sent_on",
			frappe.utils.add_to_date(None, minutes=-5),
		)
		frappe.db.commit()
		tasks.query_pending_stk()
		frappe.db.rollback()
		self.assertEqual(self.status(push["name"]).status, "Cancelled")

	def test_input_is_validated_before_anything_is_sent(self):
		before = self.sandbox.count()
		with self.assertRaises(frappe.ValidationError):
			self.push(phone="12345")
		with self.assertRaises(frappe.ValidationError):
			self.push(amount=10.5)
		with self.assertRaises(frappe.ValidationError):
			self.push(amount=10_000_000)
		self.assertEqual(self.sandbox.count(), before)

	def test_accounts_user_may_push_but_guest_may_not(self):
		frappe.set_user("Guest")
		with self.assertRaises(frappe.PermissionError):
			self.push()
		frappe.set_user("Administrator")

	def test_callback_endpoints_refuse_get_and_big_bodies(self):
		self.assertEqual(post(self.url(), b"{" + b" " * (70 * 1024) + b"}")[0], 413)
		import ssl
		import urllib.request

		from frappe_mpesa.sandbox import CA_FILE

		context = ssl.create_default_context(cafile=CA_FILE)
		with self.assertRaises(urllib.error.HTTPError) as caught:
			urllib.request.urlopen(self.url(), context=context, timeout=10)
		self.assertIn(caught.exception.code, (403, 405))

	def test_records_module_agrees_on_correlation(self):
		self.assertEqual(records.correlation_id("stk", {"CheckoutRequestID": "x"}), "x")

	def test_no_user_saves_an_express_request_not_even_administrator(self):
		from urllib.parse import quote

		answer = self.push(amount=37)
		self.assertTrue(wait_for(lambda: self.status(answer["name"]).status == "Success", timeout=20))
		doctype = "Mpesa Express Request"
		fields = ["status", "receipt_number", "amount", "phone", "modified"]
		before = frappe.db.get_value(doctype, answer["name"], fields, as_dict=True)
		admin = RestClient(self.site.url, "Administrator", frappe.conf.admin_password or "admin")
		rewind = {"status": "Pending", "receipt_number": None, "amount": 3700}
		for method, path, body in (
			("PUT", "/api/resource/Mpesa%20Express%20Request/" + quote(answer["name"]), rewind),
			(
				"POST",
				"/api/method/frappe.client.set_value",
				{"doctype": doctype, "name": answer["name"], "fieldname": json.dumps(rewind)},
			),
		):
			status, text = admin.request(method, path, body)
			self.assertNotEqual(status, 200, (path, text[:300]))
			frappe.db.rollback()
			self.assertEqual(frappe.db.get_value(doctype, answer["name"], fields, as_dict=True), before)
