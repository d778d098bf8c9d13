# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

"""Hostile and odd callbacks through the site's own HTTP server: bodies Frappe cannot parse,
bodies nested too deep, empty correlation ids, chunked bodies, and results whose amounts can't be
or don't match what was asked. Each gets Daraja's answer without any error text, a log entry, and
changes nothing it shouldn't. Also: a callback posted straight to the app server is noticed."""

import http.client
import json
import secrets
import socket
from urllib.parse import urlsplit

import frappe

from frappe_mpesa import api, callbacks, records, urls
from frappe_mpesa.testing import ServedSandboxTestCase, post, wait_for

SETTINGS = "_Test Callback Hardening"
LOG = "Mpesa Callback Log"
B2C = "B2C Payment Disbursement"
PAYEE = "B2C Disbursement Payee"
INITIATOR = "Mpesa Initiator Request"
PAYER = "254708374149"


def stk_callback(checkout_request_id, amount=10, receipt="HARD000001"):
	return json.dumps(
		{
			"Body": {
				"stkCallback": {
					"MerchantRequestID": "29115-1",
					"CheckoutRequestID": checkout_request_id,
					"ResultCode": 0,
					"ResultDesc": "The service request is processed successfully.",
					"CallbackMetadata": {
						"Item": [
							{"Name": "Amount", "Value": amount},
							{"Name": "MpesaReceiptNumber", "Value": receipt},
							{"Name": "TransactionDate", "Value": 20261128101115},
							{"Name": "PhoneNumber", "Value": int(PAYER)},
						]
					},
				}
			}
		}
	).encode()


def result_callback(ocid, conversation_id, transaction_id, parameters):
	return json.dumps(
		{
			"Result": {
				"ResultType": 0,
				"ResultCode": 0,
				"ResultDesc": "The service request is processed successfully.",
				"OriginatorConversationID": ocid,
				"ConversationID": conversation_id,
				"TransactionID": transaction_id,
				"ResultParameters": {"ResultParameter": [{"Key": k, "Value": v} for k, v in parameters]},
				"ReferenceData": {"ReferenceItem": {"Key": "QueueTimeoutURL", "Value": "https://x/t"}},
			}
		}
	).encode()


def outside_address():
	"""An address of this machine other than loopback, or None (no packet is sent)."""
	with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
		try:
			s.connect(("192.0.2.1", 9))
			address = s.getsockname()[0]
		except OSError:
			return None
	return None if address.startswith("127.") else address


class TestCallbackHardening(ServedSandboxTestCase):
	SETTINGS = SETTINGS
	SANDBOX_OPTIONS = {"callback_delay": 60}  # the sandbox's own callbacks never matter here

	def setUp(self):
		frappe.set_user("Administrator")
		frappe.db.set_value(
			"Mpesa Settings",
			SETTINGS,
			{
				"allowlist_mode": "Enforce",
				"callback_allowlist": "127.0.0.1",
				"client_ip_header": "X-Forwarded-For",
			},
		)
		frappe.db.commit()

	def url(self, kind="stk"):
		settings = frappe.get_doc("Mpesa Settings", SETTINGS)
		return urls.callback_url(
			settings.callback_base_url, kind, settings.callback_id, settings.get_password("callback_secret")
		)

	def logs(self, **filters):
		frappe.db.rollback()
		return frappe.get_all(
			LOG,
			filters={"mpesa_settings": SETTINGS, **filters},
			fields=["name", "status", "note", "payload", "correlation_id", "raw_payload"],
			order_by="creation desc",
		)

	def value(self, doctype, name, field):
		frappe.db.rollback()  # read what the served site committed
		return frappe.db.get_value(doctype, name, field)

	def assert_refused(self, answer):
		status, text = answer
		self.assertEqual(status, 400, text)
		self.assertEqual(json.loads(text), {"ResultCode": 1, "ResultDesc": "Rejected"})

	def direct(self, path, body, headers, chunked=False, host="127.0.0.1"):
		"""POST to the app server's own port, past the TLS proxy, as a caller who found it would."""
		connection = http.client.HTTPConnection(host, self.site.port, timeout=20)
		try:
			headers = {"Host": frappe.local.site, "Content-Type": "application/json", **headers}
			if chunked:
				pieces = [body[i : i + 100] for i in range(0, len(body), 100)]
				connection.request("POST", path, body=iter(pieces), headers=headers, encode_chunked=True)
			else:
				connection.request("POST", path, body=body, headers=headers)
			answer = connection.getresponse()
			return answer.status, answer.read().decode()
		finally:
			connection.close()

	def path(self, kind="stk"):
		parts = urlsplit(self.url(kind))
		return f"{parts.path}?{parts.query}"

	# ---- bodies Frappe or the parser refuses -----------------------------------------------------

	def test_invalid_json_gets_400_without_error_text_and_is_logged(self):
		body = b'{"Body": {"stkCallback": {"CheckoutRequestID": "ws_CO_BROKEN", "Password": "hunter2"'
		self.assert_refused(post(self.url(), body))
		entry = wait_for(lambda: self.logs(status="Invalid", payload=("like", "%ws_CO_BROKEN%")))
		self.assertTrue(entry, "the refused body was not logged")
		self.assertIn("body", entry[0].note)
		self.assertNotIn("hunter2", entry[0].payload)
		self.assertFalse(entry[0].raw_payload)

	def test_deeply_nested_json_gets_400_and_is_logged(self):
		for content_type in ("application/json", "text/plain"):
			with self.subTest(content_type=content_type):
				marker = secrets.token_hex(4)
				body = b'{"m": "' + marker.encode() + b'", "x": ' + b"[" * 30000 + b"]" * 30000 + b"}"
				self.assertLess(len(body), callbacks.MAX_BODY)
				status, text = post(self.url(), body, headers={"Content-Type": content_type})
				self.assert_refused((status, text))
				self.assertNotIn("Recursion", text)
				entry = self.logs(status="Invalid", payload=("like", f"%{marker}%"))
				self.assertEqual(len(entry), 1, "the refused body was not logged once")
				self.assertIn("nested", entry[0].note)
				self.assertLessEqual(len(entry[0].payload), 4200)

	def test_body_that_is_not_an_object_gets_400(self):
		self.assert_refused(post(self.url(), b'"just a string"'))

	def test_empty_checkout_request_id_is_refused_and_never_matched(self):
		self.assert_refused(post(self.url(), stk_callback("")))
		self.assert_refused(post(self.url(), stk_callback("   ")))
		entries = self.logs(status="Invalid", note=("like", "%CheckoutRequestID must not be empty%"))
		self.assertEqual(len(entries), 2)
		self.assertFalse(self.logs(status="Unmatched", correlation_id=("is", "not set")))

		# A kept callback whose record now exists: only a look-up by its own id applies it.
		push = api.stk_push(SETTINGS, 10, PAYER, account_reference="INV-9", description="Order 9")
		cid = push["checkout_request_id"]
		frappe.db.set_value("Mpesa Express Request", push["name"], "checkout_request_id", None)
		frappe.db.commit()
		self.assertEqual(post(self.url(), stk_callback(cid, 10, "HARDKEPT01"))[0], 200)
		frappe.db.set_value("Mpesa Express Request", push["name"], "checkout_request_id", cid)
		frappe.db.commit()
		self.assertEqual(self.logs(correlation_id=cid)[0].status, "Unmatched")
		self.assertEqual(records.match_unmatched(""), 0)
		self.assertEqual(records.match_unmatched("  "), 0)
		self.assertEqual(records.match_unmatched(None), 0)
		frappe.db.rollback()
		self.assertEqual(self.logs(correlation_id=cid)[0].status, "Unmatched")
		self.assertEqual(records.match_unmatched(cid), 1)
		frappe.db.commit()
		self.assertEqual(self.logs(correlation_id=cid)[0].status, "Applied")

	def test_chunked_body_is_read_up_to_the_cap(self):
		cid = f"ws_CO_CHUNKED_{secrets.token_hex(4)}"
		status, text = self.direct(
			self.path(), stk_callback(cid), {"X-Forwarded-For": "127.0.0.1"}, chunked=True
		)
		self.assertEqual(status, 200, text)
		self.assertEqual(json.loads(text)["ResultCode"], 0)
		self.assertEqual(self.logs(correlation_id=cid)[0].status, "Unmatched")
		big = b'{"x": "' + b"a" * (callbacks.MAX_BODY + 10) + b'"}'
		status, text = self.direct(self.path(), big, {"X-Forwarded-For": "127.0.0.1"}, chunked=True)
		self.assertEqual(status, 413, text)

	# ---- results whose amounts can't be, or aren't, what was asked ---------------------------------

	def insert_row(self, doctype, prefix, **values):
		doc = frappe.get_doc({"doctype": doctype, "mpesa_settings": SETTINGS, **values})
		doc.name = f"{prefix}-{secrets.token_hex(4)}"
		doc.db_insert()
		frappe.db.commit()
		return doc.name

	def disbursement(self, amount=100):
		"""A submitted batch of one payee row, Sent; returns the row's name and its id."""
		ocid = f"HARD-OC-{secrets.token_hex(6)}"
		batch = self.insert_row(
			B2C, "TEST-B2C", command_id="BusinessPayment", remarks="Hardening test", status="Sending", docstatus=1
		)
		row = frappe.get_doc(
			{
				"doctype": PAYEE,
				"parent": batch,
				"parenttype": B2C,
				"parentfield": "payees",
				"idx": 1,
				"phone": PAYER,
				"amount": amount,
				"status": "Sent",
				"docstatus": 1,
				"originator_conversation_id": ocid,
				"conversation_id": f"AG_{ocid}",
			}
		)
		row.name = f"TEST-B2CP-{secrets.token_hex(4)}"
		row.db_insert()
		frappe.db.commit()
		return row.name, ocid

	def initiator_request(self, request_type, **values):
		ocid = f"HARD-OC-{secrets.token_hex(6)}"
		name = self.insert_row(
			INITIATOR,
			"TEST-MIR",
			request_type=request_type,
			status="Sent",
			originator_conversation_id=ocid,
			conversation_id=f"AG_{ocid}",
			**values,
		)
		return name, ocid

	def test_b2c_result_without_amount_is_applied_and_says_so(self):
		name, ocid = self.disbursement()
		body = result_callback(
			ocid, f"AG_{ocid}", "HARDB2C001", [("ReceiverPartyPublicName", f"{PAYER} - J D")]
		)
		self.assertEqual(post(self.url("result"), body)[0], 200)
		self.assertEqual(self.value(PAYEE, name, "status"), "Completed")
		entry = self.logs(correlation_id=ocid)[0]
		self.assertEqual(entry.status, "Applied")
		self.assertIn("no TransactionAmount", entry.note or "")

	def test_b2c_result_with_another_amount_changes_nothing(self):
		name, ocid = self.disbursement(amount=100)
		body = result_callback(ocid, f"AG_{ocid}", "HARDB2C002", [("TransactionAmount", 5000)])
		self.assertEqual(post(self.url("result"), body)[0], 200)
		self.assertEqual(self.value(PAYEE, name, "status"), "Sent")
		self.assertEqual(self.logs(correlation_id=ocid)[0].status, "Mismatch")

	def test_reversal_result_with_another_amount_changes_nothing(self):
		name, ocid = self.initiator_request("Reversal", transaction_id="HARDREV001", amount=50)
		body = result_callback(
			ocid,
			f"AG_{ocid}",
			"HARDREV999",
			[
				("Amount", 5000),
				("OriginalTransactionID", "HARDREV001"),
				("TransCompletedTime", 20261128101115),
			],
		)
		self.assertEqual(post(self.url("result"), body)[0], 200)
		self.assertEqual(self.value(INITIATOR, name, "status"), "Sent")
		entry = self.logs(correlation_id=ocid)[0]
		self.assertEqual(entry.status, "Mismatch")
		self.assertIn("5000", entry.note)

	def test_reversal_result_without_amount_is_applied_and_says_so(self):
		name, ocid = self.initiator_request("Reversal", transaction_id="HARDREV002", amount=50)
		body = result_callback(ocid, f"AG_{ocid}", "HARDREV998", [("OriginalTransactionID", "HARDREV002")])
		self.assertEqual(post(self.url("result"), body)[0], 200)
		self.assertEqual(self.value(INITIATOR, name, "status"), "Completed")
		entry = self.logs(correlation_id=ocid)[0]
		self.assertEqual(entry.status, "Applied")
		self.assertIn("no Amount", entry.note or "")

	def test_status_result_about_another_receipt_changes_nothing(self):
		name, ocid = self.initiator_request("Transaction Status", transaction_id="HARDSTA001")
		body = result_callback(
			ocid,
			f"AG_{ocid}",
			"HARDSTA999",
			[("ReceiptNo", "HARDOTHER1"), ("TransactionStatus", "Completed"), ("Amount", 10)],
		)
		self.assertEqual(post(self.url("result"), body)[0], 200)
		self.assertEqual(self.value(INITIATOR, name, "status"), "Sent")
		self.assertEqual(self.logs(correlation_id=ocid)[0].status, "Mismatch")

	def test_status_result_with_another_amount_leaves_the_disbursement_and_says_so(self):
		b2c, b2c_ocid = self.disbursement(amount=100)
		name, ocid = self.initiator_request(
			"Transaction Status", original_conversation_id=b2c_ocid, reference_doctype=PAYEE, reference_name=b2c
		)
		body = result_callback(
			ocid,
			f"AG_{ocid}",
			"HARDSTA998",
			[("ReceiptNo", "HARDSTAB01"), ("TransactionStatus", "Completed"), ("Amount", 999)],
		)
		self.assertEqual(post(self.url("result"), body)[0], 200)
		self.assertEqual(self.value(INITIATOR, name, "status"), "Completed")
		self.assertEqual(self.value(PAYEE, b2c, "status"), "Sent")
		entry = self.logs(correlation_id=ocid)[0]
		self.assertIn(b2c, entry.note or "")
		self.assertIn("999", entry.note or "")

	# ---- deployment: a callback that skipped the proxy ------------------------------------------

	def transport_warning(self):
		doc = frappe.get_doc("Mpesa Settings", SETTINGS)
		doc.run_method("onload")
		return ((doc.get_onload() or {}).get("callback_transport") or {}).get("warning")

	def test_callback_posted_straight_to_the_app_server_is_warned_about(self):
		cid = f"ws_CO_PROXIED_{secrets.token_hex(4)}"
		self.assertEqual(post(self.url(), stk_callback(cid))[0], 200)
		self.assertIsNone(self.transport_warning())

		address = outside_address()
		if not address:
			self.skipTest("this machine has no address but loopback")
		cid = f"ws_CO_DIRECT_{secrets.token_hex(4)}"
		status, _text = self.direct(
			self.path(), stk_callback(cid), {"X-Forwarded-For": "127.0.0.1"}, host=address
		)
		self.assertEqual(status, 200)
		warning = self.transport_warning()
		self.assertIn(address, warning or "")
		self.assertIn("127.0.0.1", warning)
