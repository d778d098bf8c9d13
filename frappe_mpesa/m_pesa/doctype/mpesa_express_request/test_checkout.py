# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

"""Checkout on a Sales Invoice / Sales Order (frappe_mpesa.erpnext.checkout), end to end on a site
with ERPNext: the push through the sandbox, its callback through the served site, the Payment
Entry allocated once, the live status to the requesting user only, and payment links.

``TestCheckoutWithoutERPNext`` runs anywhere; ``TestCheckout`` skips, saying why, without ERPNext
or the company "Test Shop Ltd" in KES."""

import json
import threading
import time

import frappe
from frappe.utils import add_to_date, flt, now_datetime, nowdate

from frappe_mpesa import links
from frappe_mpesa.sandbox.server import STK_PUSH_PATH
from frappe_mpesa.testing import MAKER, MpesaTestCase, ServedSandboxTestCase, ensure_users, wait_for

SETTINGS = "_Test Checkout"
COMPANY = "Test Shop Ltd"
PAYER = "254708374149"
CANCELS, TIMES_OUT, WRONG_PIN, NO_FUNDS = "254700001032", "254700001037", "254700002001", "254700000001"


def erpnext_missing():
	if "erpnext" not in frappe.get_installed_apps():
		return "ERPNext is not installed on this site"
	if not frappe.db.exists("Company", COMPANY):
		return f"no company {COMPANY} on this site"
	if frappe.db.get_value("Company", COMPANY, "default_currency") != "KES":
		return f"{COMPANY} does not keep its books in KES"
	return None


class TestCheckoutWithoutERPNext(MpesaTestCase):
	def test_hooks_do_nothing_for_other_references(self):
		from frappe_mpesa.erpnext import checkout

		doc = frappe._dict(reference_doctype="Payment Request", status="Success", get_doc_before_save=lambda: None)
		self.assertIsNone(checkout.on_change(doc))

	def test_status_labels(self):
		from frappe_mpesa.erpnext import checkout

		self.assertEqual(checkout.label("Failed", "2001"), "Wrong PIN")
		self.assertEqual(checkout.label("Failed", 1), "Insufficient funds")
		self.assertEqual(checkout.label("Cancelled", "1032"), "Cancelled by the customer")
		self.assertEqual(checkout.label("Success", "0"), "Paid")


class RealtimeListener:
	"""Every message Frappe publishes for Socket.IO (the Redis "events" channel), as the realtime
	server receives it: (event, room, message)."""

	def __init__(self):
		from frappe.utils.background_jobs import get_redis_connection_without_auth

		self.pubsub = get_redis_connection_without_auth().pubsub()
		self.pubsub.subscribe("events")
		self.messages = []
		self.running = True
		self.thread = threading.Thread(target=self.run, daemon=True)
		self.thread.start()

	def run(self):
		while self.running:
			item = self.pubsub.get_message(timeout=0.2)
			if item and item.get("type") == "message":
				data = json.loads(item["data"])
				self.messages.append((data["event"], data["room"], data["message"]))

	def stop(self):
		self.running = False
		self.thread.join(2)
		self.pubsub.close()

	def about(self, request):
		return [m for m in self.messages if isinstance(m[2], dict) and m[2].get("request") == request]


class TestCheckout(ServedSandboxTestCase):
	SETTINGS = SETTINGS
	SANDBOX_OPTIONS = {"callback_delay": 0.3}
	REQUIRES = staticmethod(erpnext_missing)

	@classmethod
	def setUpClass(cls):
		frappe.set_user("Administrator")
		super().setUpClass()
		frappe.db.set_value("Mpesa Settings", SETTINGS, {"company": COMPANY, "transaction_limit": 150000})
		suffix = frappe.generate_hash(length=6)
		cls.customer = frappe.get_doc(
			{"doctype": "Customer", "customer_name": f"Checkout Customer {suffix}", "customer_type": "Individual"}
		).insert(ignore_permissions=True).name
		contact = frappe.get_doc(
			{
				"doctype": "Contact",
				"first_name": f"Checkout {suffix}",
				"phone_nos": [{"phone": "0708 374149", "is_primary_mobile_no": 1}],
				"links": [{"link_doctype": "Customer", "link_name": cls.customer}],
			}
		).insert(ignore_permissions=True)
		frappe.db.set_value("Customer", cls.customer, "customer_primary_contact", contact.name)
		cls.item = frappe.get_doc(
			{
				"doctype": "Item",
				"item_code": f"Checkout Service {suffix}",
				"item_group": frappe.db.get_value("Item Group", {"is_group": 0}) or "All Item Groups",
				"stock_uom": "Nos",
				"is_stock_item": 0,
			}
		).insert(ignore_permissions=True).name
		ensure_users()
		frappe.db.commit()

	def setUp(self):
		frappe.set_user("Administrator")
		frappe.db.set_value("Mpesa Settings", SETTINGS, {"transaction_limit": 150000, "enabled": 1})
		frappe.db.commit()
		self.sandbox.callback_delay = 0.3

	@property
	def checkout(self):
		from frappe_mpesa.erpnext import checkout

		return checkout

	def sale(self, amount, doctype="Sales Invoice", submit=True):
		doc = frappe.get_doc(
			{
				"doctype": doctype,
				"company": COMPANY,
				"customer": self.customer,
				"currency": "KES",
				"posting_date": nowdate(),
				"transaction_date": nowdate(),
				"due_date": nowdate(),
				"delivery_date": nowdate(),
				"items": [{"item_code": self.item, "qty": 1, "rate": amount}],
			}
		)
		doc.insert(ignore_permissions=True)
		if submit:
			doc.submit()
		frappe.db.commit()
		return doc

	def pay(self, doc, amount, phone=PAYER, **kwargs):
		return self.checkout.request_payment(doc.doctype, doc.name, phone, amount, SETTINGS, **kwargs)

	def express(self, name):
		return frappe.db.get_value(
			"Mpesa Express Request",
			name,
			["name", "status", "result_code", "receipt_number", "payment_entry", "reference_outcome", "owner"],
			as_dict=True,
		)

	def final(self, name, timeout=30):
		self.assertTrue(
			wait_for(lambda: self.express(name).status not in ("Queued", "Pending"), timeout=timeout),
			f"{name} stayed {self.express(name).status}",
		)
		return self.express(name)

	def entries(self, doc):
		return frappe.get_all(
			"Payment Entry Reference",
			filters={"reference_doctype": doc.doctype, "reference_name": doc.name, "docstatus": 1},
			fields=["parent", "allocated_amount"],
		)

	def refused(self, fn, *words):
		pushes = frappe.db.count("Mpesa Express Request")
		sent = self.sandbox.count(STK_PUSH_PATH)
		with self.assertRaises((frappe.ValidationError, frappe.PermissionError)) as caught:
			fn()
		frappe.db.rollback()
		for word in words:
			self.assertIn(word, str(caught.exception))
		self.assertEqual(frappe.db.count("Mpesa Express Request"), pushes, "no request was saved")
		self.assertEqual(self.sandbox.count(STK_PUSH_PATH), sent, "nothing was sent to Daraja")
		frappe.clear_messages()
		return str(caught.exception)

	# ---- outcomes ---------------------------------------------------------------------------

	def test_success_makes_one_payment_entry_allocated_to_the_invoice(self):
		si = self.sale(25)
		defaults = self.checkout.checkout_defaults("Sales Invoice", si.name)
		self.assertEqual(defaults["phone"], "0708 374149")
		self.assertEqual(defaults["amount"], 25)
		self.assertEqual(defaults["settings"], SETTINGS)
		[answer] = self.pay(si, 25, phone=defaults["phone"])
		self.assertEqual(answer["status"], "Pending")
		row = self.final(answer["name"])
		self.assertEqual(row.status, "Success", row.reference_outcome)
		self.assertTrue(wait_for(lambda: self.express(answer["name"]).payment_entry, timeout=10))
		row = self.express(answer["name"])
		entry = frappe.get_doc("Payment Entry", row.payment_entry)
		self.assertEqual(entry.docstatus, 1)
		self.assertEqual(entry.reference_no, row.receipt_number)
		self.assertEqual(flt(entry.paid_amount), 25)
		self.assertEqual([(r.reference_name, flt(r.allocated_amount)) for r in entry.references], [(si.name, 25)])
		self.assertEqual(flt(frappe.db.get_value("Sales Invoice", si.name, "outstanding_amount")), 0)
		self.assertEqual(frappe.db.get_value("Sales Invoice", si.name, "status"), "Paid")
		# A query afterwards (a late "check now") posts nothing again.
		self.checkout.post_payment(row.name, "Sales Invoice", si.name)
		frappe.db.commit()
		self.assertEqual(len(self.entries(si)), 1)
		# Paid: nothing more may be asked for.
		self.refused(lambda: self.pay(si, 1), "Amount")

	def test_sales_order_gets_an_advance(self):
		so = self.sale(30, doctype="Sales Order")
		[answer] = self.pay(so, 30)
		self.assertEqual(self.final(answer["name"]).status, "Success")
		self.assertTrue(wait_for(lambda: self.express(answer["name"]).payment_entry, timeout=10))
		[reference] = self.entries(so)
		self.assertEqual(flt(reference.allocated_amount), 30)
		self.assertEqual(flt(frappe.db.get_value("Sales Order", so.name, "advance_paid")), 30)

	def test_each_failure_is_recorded_and_posts_nothing(self):
		si = self.sale(50)
		expected = {
			CANCELS: ("Cancelled", "Cancelled by the customer"),
			TIMES_OUT: ("Timeout", "Timed out: the customer did not answer"),
			WRONG_PIN: ("Failed", "Wrong PIN"),
			NO_FUNDS: ("Failed", "Insufficient funds"),
		}
		for phone, (status, shown) in expected.items():
			with self.subTest(phone=phone):
				[answer] = self.pay(si, 10, phone=phone)
				row = self.final(answer["name"])
				self.assertEqual(row.status, status)
				self.assertEqual(self.checkout.label(row.status, row.result_code), shown)
				self.assertIsNone(row.payment_entry)
		self.assertEqual(self.entries(si), [])
		self.assertEqual(flt(frappe.db.get_value("Sales Invoice", si.name, "outstanding_amount")), 50)

	# ---- part payments, the cap and the pending rule -------------------------------------------

	def test_part_payments_never_above_what_is_outstanding(self):
		si = self.sale(100)
		self.sandbox.callback_delay = 3
		[first] = self.pay(si, 40)
		# 40 is pending: 70 more would be above the 100 asked for.
		message = self.refused(lambda: self.pay(si, 70, phone="0711 000 111"), "Amount", "60")
		self.assertIn("pushes not yet settled", message)
		[second] = self.pay(si, 60, phone="0711000111")
		self.refused(lambda: self.pay(si, 1, phone="0722000222"), "Amount")
		for name in (first["name"], second["name"]):
			self.assertEqual(self.final(name).status, "Success")
		self.assertTrue(wait_for(lambda: len(self.entries(si)) == 2, timeout=10))
		self.assertEqual(sorted(flt(r.allocated_amount) for r in self.entries(si)), [40, 60])
		self.assertEqual(flt(frappe.db.get_value("Sales Invoice", si.name, "outstanding_amount")), 0)

	def test_a_second_push_to_a_pending_phone_needs_confirmation(self):
		si = self.sale(20)
		self.sandbox.callback_delay = 3
		[first] = self.pay(si, 5)
		sent = self.sandbox.count(STK_PUSH_PATH)
		with self.assertRaises(self.checkout.PendingPushError) as caught:
			self.pay(si, 5, phone="0708374149")
		frappe.db.rollback()
		frappe.clear_messages()
		self.assertIn(first["name"], str(caught.exception))
		self.assertEqual(self.sandbox.count(STK_PUSH_PATH), sent, "nothing was sent without confirm")
		[second] = self.pay(si, 5, phone="0708374149", confirm=1)
		self.assertNotEqual(first["name"], second["name"])
		self.final(first["name"])
		self.final(second["name"])

	def test_split_above_the_limit_only_when_asked(self):
		frappe.db.set_value("Mpesa Settings", SETTINGS, "transaction_limit", 10)
		frappe.db.commit()
		si = self.sale(25)
		self.refused(lambda: self.pay(si, 25), "Amount", "transaction limit", "Split")
		answers = self.pay(si, 25, split=1)
		self.assertEqual(len(answers), 3)
		for answer in answers:
			self.assertEqual(self.final(answer["name"]).status, "Success")
		self.assertTrue(wait_for(lambda: len(self.entries(si)) == 3, timeout=10))
		self.assertEqual(sorted(flt(r.allocated_amount) for r in self.entries(si)), [8, 8, 9])
		self.assertEqual(flt(frappe.db.get_value("Sales Invoice", si.name, "outstanding_amount")), 0)

	# ---- bad input --------------------------------------------------------------------------

	def test_bad_input_names_the_field_and_sends_nothing(self):
		si = self.sale(40)
		self.refused(lambda: self.pay(si, 5, phone="12345"), "Phone")
		self.refused(lambda: self.pay(si, 5, phone="+1 415 555 0100"), "Phone", "Kenyan")
		self.refused(lambda: self.pay(si, 41), "Amount", "40")
		self.refused(lambda: self.pay(si, 2.5), "Amount", "whole number")
		self.refused(lambda: self.pay(si, 0), "Amount")
		frappe.db.set_value("Mpesa Settings", SETTINGS, "transaction_limit", 20)
		frappe.db.commit()
		self.refused(lambda: self.pay(si, 30), "Amount", "transaction limit")
		draft = self.sale(10, submit=False)
		self.refused(lambda: self.pay(draft, 5), "Submit")
		cancelled = self.sale(10)
		cancelled.cancel()
		frappe.db.commit()
		self.refused(lambda: self.pay(cancelled, 5), "cancelled")
		frappe.db.set_value("Mpesa Settings", SETTINGS, "enabled", 0)
		frappe.db.commit()
		others = frappe.get_all("Mpesa Settings", filters={"enabled": 1}, pluck="name")
		if not others:
			self.refused(
				lambda: self.checkout.request_payment("Sales Invoice", si.name, PAYER, 5), "Mpesa Settings", COMPANY
			)
		self.refused(lambda: self.pay(si, 5), "Mpesa Settings", "disabled")

	# ---- live status --------------------------------------------------------------------------

	def test_status_is_published_to_the_requesting_user_only(self):
		si = self.sale(15)
		listener = RealtimeListener()
		try:
			frappe.set_user(MAKER)
			[answer] = self.pay(si, 15)
			frappe.set_user("Administrator")
			self.assertEqual(self.final(answer["name"]).status, "Success")
			self.assertTrue(
				wait_for(lambda: any(m[2]["status"] == "Success" for m in listener.about(answer["name"])), timeout=10)
			)
		finally:
			frappe.set_user("Administrator")
			listener.stop()
		messages = listener.about(answer["name"])
		self.assertEqual({(event, room) for event, room, _m in messages}, {("mpesa_checkout", f"user:{MAKER}")})
		[paid] = [m for _e, _r, m in messages if m["status"] == "Success"]
		self.assertEqual(paid["label"], "Paid")
		self.assertTrue(paid["receipt"])
		self.assertEqual(paid["payment_entry"], self.express(answer["name"]).payment_entry)
		self.assertNotIn("phone", paid)

	def test_check_now_queries_after_a_minute_without_callback(self):
		si = self.sale(10)
		# The callback goes nowhere: only the query can tell.
		frappe.db.set_value("Mpesa Settings", SETTINGS, "callback_base_url", "https://127.0.0.1:9")
		frappe.db.commit()
		try:
			[answer] = self.pay(si, 10, phone=CANCELS)
		finally:
			frappe.db.set_value("Mpesa Settings", SETTINGS, "callback_base_url", self.site.url)
			frappe.db.commit()
		checkout_id = answer["checkout_request_id"]
		self.assertTrue(wait_for(lambda: self.sandbox.transactions.get(checkout_id) == "final", timeout=10))
		early = self.checkout.check_now(answer["name"])
		self.assertEqual(early["status"], "Pending", "not queried before a minute has passed")
		frappe.db.set_value(
			"Mpesa Express Request", answer["name"], "request_sent_on", add_to_date(now_datetime(), seconds=-61)
		)
		frappe.db.commit()
		shown = self.checkout.check_now(answer["name"])
		self.assertEqual((shown["status"], shown["label"]), ("Cancelled", "Cancelled by the customer"))

	# ---- payment links ----------------------------------------------------------------------

	def test_payment_link_pushes_for_its_invoice_only(self):
		si = self.sale(12)
		other = self.sale(7)
		link = self.checkout.get_payment_link(si.name)
		self.assertIn("/mpesa-pay?token=", link["url"])
		token = link["url"].split("token=", 1)[1]
		view = self.checkout.link_info(token)
		self.assertEqual(view, {"company": COMPANY, "outstanding": 12, "currency": "KES", "reference": si.name})

		self.sandbox.callback_delay = 3
		frappe.set_user("Guest")
		try:
			answer = self.checkout.link_push(token, "0708374149")
			self.assertEqual((answer["status"], answer["amount"]), ("Pending", 12))
			# Replayed while its push is pending: refused (and the whole amount is taken anyway).
			self.refused(lambda: self.checkout.link_push(token, "0708374149"), "pending")
			# The status endpoint answers for this link's push only.
			self.assertEqual(self.checkout.link_status(token, answer["request"])["status"], "Pending")
			[other_push] = self.pay_as_admin(other, 3)
			with self.assertRaises(frappe.PermissionError):
				self.checkout.link_status(token, other_push["name"])
			frappe.clear_messages()
		finally:
			frappe.set_user("Administrator")
		self.assertEqual(self.final(answer["request"]).status, "Success")
		self.assertTrue(wait_for(lambda: len(self.entries(si)) == 1, timeout=10))
		self.assertEqual(self.entries(other), [])
		# Paid: the link is refused now.
		self.refused(lambda: self.checkout.link_push(token, PAYER), "paid")
		self.final(other_push["name"])

	def pay_as_admin(self, doc, amount):
		user = frappe.session.user
		frappe.set_user("Administrator")
		try:
			return self.pay(doc, amount, phone="0722000333")
		finally:
			frappe.set_user(user)

	def test_tampered_expired_and_cancelled_links_are_refused(self):
		si = self.sale(9)
		secret = self.checkout.link_secret()
		self.assertEqual(len(secret), 32)
		token = self.checkout.make_token(si.name)
		payload, signature = token.split(".")
		forged_payload = links.sign(b"x" * 32, "Sales Invoice", si.name, time.time() + 3600).split(".")[0]
		expired = links.sign(secret, "Sales Invoice", si.name, time.time() - 1)
		for bad, word in (
			(f"{forged_payload}.{signature}", "signature"),
			(f"{payload}.{signature[:-2]}AA", "signature"),
			(expired, "expired"),
			("nonsense", "malformed"),
		):
			with self.subTest(word=word):
				self.refused(lambda bad=bad: self.checkout.link_push(bad, PAYER), word)
		# A token for another document cannot be bent to this one: its name is inside the signature.
		other = self.sale(4)
		other_token = self.checkout.make_token(other.name)
		answer = self.checkout.link_push(other_token, PAYER)
		self.assertEqual(frappe.db.get_value("Mpesa Express Request", answer["request"], "reference_name"), other.name)
		self.final(answer["request"])
		si.cancel()
		frappe.db.commit()
		self.refused(lambda: self.checkout.link_push(token, PAYER), "cancelled")
