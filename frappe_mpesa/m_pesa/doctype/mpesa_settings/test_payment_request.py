# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

"""ERPNext Payment Requests through Mpesa Settings (the gateway contract of frappe/payments).

``TestGatewayContract`` runs on any site. ``TestPaymentRequest`` needs payments and ERPNext with the
setup wizard done for a company whose currency is KES (it skips, saying why, otherwise): Payment
Request -> STK push -> the sandbox's callback through the served site -> Payment Entry, once.
"""

import json
from unittest import mock

import frappe
from frappe.utils import flt, nowdate

from frappe_mpesa import api, gateway, payment_requests, urls
from frappe_mpesa.sandbox.server import STK_PUSH_PATH
from frappe_mpesa.testing import MpesaTestCase, ServedSandboxTestCase, post, wait_for

SETTINGS = "_Test Payment Request"
PAYER = "254708374149"
CUSTOMER = "_Test M-Pesa Customer"
ITEM = "_Test M-Pesa Service"


def erpnext_missing():
	"""Why the ERPNext test cannot run on this site, or None."""
	apps = frappe.get_installed_apps()
	if "payments" not in apps or "erpnext" not in apps:
		return "ERPNext is not installed on this site: the test needs the payments and erpnext apps"
	company = frappe.db.get_single_value("Global Defaults", "default_company")
	if not company:
		return "ERPNext is installed but its setup wizard has not run: no default company"
	currency = frappe.db.get_value("Company", company, "default_currency")
	if currency != "KES":
		return f"the default company {company} keeps its books in {currency}, and M-Pesa takes KES only"
	return None


class TestGatewayContract(MpesaTestCase):
	"""What ERPNext calls on the controller, checked without ERPNext."""

	def test_only_shillings(self):
		settings = frappe.new_doc("Mpesa Settings")
		settings.validate_transaction_currency("KES")
		with self.assertRaises(frappe.ValidationError) as caught:
			settings.validate_transaction_currency("USD")
		self.assertIn("KES", str(caught.exception))

	def test_amount_above_the_limit_is_refused_before_anything_is_saved(self):
		settings = frappe._dict(name="unused", transaction_limit=150)
		before = frappe.db.count("Mpesa Express Request")
		with (
			mock.patch.object(payment_requests.api, "get_settings", return_value=settings),
			self.assertRaises(frappe.ValidationError) as caught,
		):
			payment_requests.request_for_payment(
				settings,
				reference_doctype="Payment Request",
				reference_docname="ACC-PRQ-2026-00001",
				request_amount=151,
				currency="KES",
				phone_number=PAYER,
			)
		self.assertIn("several Payment Requests", str(caught.exception))
		self.assertEqual(frappe.db.count("Mpesa Express Request"), before)

	def test_authorizing_gives_the_request_its_own_session_back(self):
		frappe.set_user("Guest")
		session = frappe.local.session
		frappe.local.form_dict = frappe._dict(h="callback-id")
		try:
			with payment_requests.as_administrator():
				self.assertEqual(frappe.session.user, "Administrator")
				self.assertIn("System Manager", frappe.get_roles())
			self.assertIs(frappe.local.session, session)
			self.assertEqual((frappe.session.user, frappe.session.sid), ("Guest", "Guest"))
			self.assertEqual(frappe.local.form_dict, {"h": "callback-id"})
			self.assertNotIn("System Manager", frappe.get_roles())
		finally:
			frappe.set_user("Administrator")

	def test_without_payments_no_gateway_is_made(self):
		if "payments" in frappe.get_installed_apps():
			self.skipTest("payments is installed here; TestPaymentRequest covers the gateway")
		self.assertIsNone(payment_requests.ensure_gateway("anything"))


class TestPaymentRequest(ServedSandboxTestCase):
	SETTINGS = SETTINGS
	SANDBOX_OPTIONS = {"callback_delay": 0.3}
	REQUIRES = staticmethod(erpnext_missing)

	@classmethod
	def setUpClass(cls):
		frappe.set_user("Administrator")
		super().setUpClass()
		cls.company = frappe.db.get_single_value("Global Defaults", "default_company")
		ensure_customer_and_item()
		frappe.db.commit()

	def setUp(self):
		frappe.set_user("Administrator")
		frappe.db.set_value("Mpesa Settings", SETTINGS, "transaction_limit", 150000)
		frappe.db.commit()
		self.made = []
		self.started = frappe.utils.now()

	def tearDown(self):
		frappe.set_user("Administrator")
		frappe.db.rollback()
		# Newest first: a Payment Entry before its Payment Request before its invoice.
		for doctype, name in reversed(self.made + self.payment_entries()):
			if not frappe.db.exists(doctype, name):
				continue  # rolled back by the test
			doc = frappe.get_doc(doctype, name)
			if doc.docstatus == 1:
				doc.flags.ignore_links = True
				doc.cancel()
			frappe.delete_doc(doctype, name, force=True, ignore_permissions=True, delete_permanently=True)
		frappe.db.commit()

	def payment_entries(self):
		names = [name for doctype, name in self.made if doctype == "Payment Request"]
		return [
			("Payment Entry", parent)
			for parent in frappe.get_all(
				# Only this test's: a Payment Request's name comes back once it is deleted.
				"Payment Entry Reference",
				filters={"payment_request": ("in", names or [""]), "creation": (">=", self.started)},
				pluck="parent",
			)
		]

	def invoice(self, amount):
		si = frappe.get_doc(
			{
				"doctype": "Sales Invoice",
				"company": self.company,
				"customer": CUSTOMER,
				"currency": "KES",
				"posting_date": nowdate(),
				"due_date": nowdate(),
				"items": [{"item_code": ITEM, "qty": 1, "rate": amount}],
			}
		)
		si.insert()
		si.submit()
		frappe.db.commit()
		self.made.append(("Sales Invoice", si.name))
		return si

	def payment_request(self, si, submit=True):
		from erpnext.accounts.doctype.payment_request.payment_request import make_payment_request

		pr = make_payment_request(
			dt="Sales Invoice",
			dn=si.name,
			party_type="Customer",
			party=CUSTOMER,
			payment_gateway_account=self.gateway_account(),
			phone_number=PAYER,
			mute_email=1,
			return_doc=1,
		)
		if submit:
			self.made.append(("Payment Request", pr.name))
			pr.submit()
			frappe.db.commit()
		return pr

	def gateway_account(self):
		return frappe.db.get_value(
			"Payment Gateway Account",
			{"payment_gateway": gateway.gateway_name(SETTINGS), "payment_channel": "Phone"},
		)

	def express(self, pr_name):
		return frappe.db.get_value(
			"Mpesa Express Request",
			{"reference_doctype": "Payment Request", "reference_name": pr_name},
			[
				"name",
				"status",
				"amount",
				"account_reference",
				"receipt_number",
				"checkout_request_id",
				"reference_outcome",
			],
			as_dict=True,
		)

	def test_settings_have_a_payment_gateway_and_a_phone_account(self):
		name = gateway.gateway_name(SETTINGS)
		self.assertEqual(
			frappe.db.get_value("Payment Gateway", name, ["gateway_settings", "gateway_controller"]),
			("Mpesa Settings", SETTINGS),
		)
		self.assertTrue(self.gateway_account(), "ERPNext's payment_gateway_enabled hook made the account")
		# Saving again makes nothing twice.
		frappe.get_doc("Mpesa Settings", SETTINGS).save(ignore_permissions=True)
		self.assertEqual(frappe.db.count("Payment Gateway", {"name": name}), 1)
		self.assertEqual(frappe.db.count("Payment Gateway Account", {"payment_gateway": name}), 1)
		frappe.db.rollback()

	def test_payment_request_is_paid_once_through_the_push(self):
		si = self.invoice(10)
		pr = self.payment_request(si)
		express = self.express(pr.name)
		self.assertEqual(express.status, "Pending")
		self.assertEqual(flt(express.amount), 10)
		self.assertEqual(express.account_reference, gateway.account_reference(pr.name))
		self.assertTrue(
			wait_for(lambda: frappe.db.get_value("Payment Request", pr.name, "status") == "Paid", timeout=30),
			f"Payment Request {pr.name} is {frappe.db.get_value('Payment Request', pr.name, 'status')}; "
			f"outcome: {self.express(pr.name).reference_outcome}",
		)
		express = self.express(pr.name)
		self.assertEqual(express.status, "Success")
		self.assertTrue(express.reference_outcome.startswith("Authorized: Payment Entry"))
		entries = self.payment_entries()
		self.assertEqual(len(entries), 1)
		entry = frappe.get_doc(*entries[0])
		self.assertEqual(entry.docstatus, 1)
		self.assertEqual(flt(entry.paid_amount), 10)
		self.assertEqual(entry.reference_no, express.receipt_number)
		self.assertEqual(flt(frappe.db.get_value("Sales Invoice", si.name, "outstanding_amount")), 0)

		# A replayed success callback and an STK query afterwards authorize nothing again.
		settings = frappe.get_doc("Mpesa Settings", SETTINGS)
		url = urls.callback_url(
			settings.callback_base_url, "stk", settings.callback_id, settings.get_password("callback_secret")
		)
		self.assertEqual(post(url, success_callback(express, "TSTREPLAY01"))[0], 200)
		self.assertEqual(api.query_express_request(express.name), "Success")
		frappe.db.rollback()
		self.assertEqual(len(self.payment_entries()), 1)
		self.assertEqual(self.express(pr.name).receipt_number, express.receipt_number)

	def test_a_different_amount_is_recorded_and_not_authorized(self):
		si = self.invoice(12)
		self.sandbox.callback_delay = 60  # our own callback below comes first
		try:
			pr = self.payment_request(si)
		finally:
			self.sandbox.callback_delay = 0.3
		# The Payment Request now asks for less than was pushed (e.g. part was paid another way).
		frappe.db.set_value("Payment Request", pr.name, "outstanding_amount", 7)
		frappe.db.commit()
		express = self.express(pr.name)
		settings = frappe.get_doc("Mpesa Settings", SETTINGS)
		url = urls.callback_url(
			settings.callback_base_url, "stk", settings.callback_id, settings.get_password("callback_secret")
		)
		self.assertEqual(post(url, success_callback(express, "TSTPARTIAL1"))[0], 200)
		self.assertTrue(wait_for(lambda: self.express(pr.name).status == "Success", timeout=20))
		express = self.express(pr.name)
		self.assertIn("Not authorized", express.reference_outcome)
		self.assertIn("asks for KES 7.00", express.reference_outcome)
		self.assertNotEqual(frappe.db.get_value("Payment Request", pr.name, "status"), "Paid")
		self.assertEqual(self.payment_entries(), [])

	def test_an_amount_above_the_limit_is_refused_with_the_request(self):
		frappe.db.set_value("Mpesa Settings", SETTINGS, "transaction_limit", 5)
		frappe.db.commit()
		si = self.invoice(9)
		pushes = frappe.db.count("Mpesa Express Request")
		sent = self.sandbox.count(STK_PUSH_PATH)
		pr = self.payment_request(si, submit=False)
		with self.assertRaises(frappe.ValidationError) as caught:
			pr.submit()
		frappe.db.rollback()
		self.assertIn("transaction limit", str(caught.exception))
		self.assertFalse(frappe.db.exists("Payment Request", {"reference_name": si.name}))
		self.assertEqual(frappe.db.count("Mpesa Express Request"), pushes)
		self.assertEqual(self.sandbox.count(STK_PUSH_PATH), sent, "nothing was sent to Daraja")


def success_callback(express, receipt):
	return json.dumps(
		{
			"Body": {
				"stkCallback": {
					"MerchantRequestID": "29115-34620561-1",
					"CheckoutRequestID": express.checkout_request_id,
					"ResultCode": 0,
					"ResultDesc": "The service request is processed successfully.",
					"CallbackMetadata": {
						"Item": [
							{"Name": "Amount", "Value": flt(express.amount)},
							{"Name": "MpesaReceiptNumber", "Value": receipt},
							{"Name": "TransactionDate", "Value": 20261128101115},
							{"Name": "PhoneNumber", "Value": int(PAYER)},
						]
					},
				}
			}
		}
	).encode()


def ensure_customer_and_item():
	"""A customer and a service item, kept between runs like the test users."""
	if not frappe.db.exists("Customer", CUSTOMER):
		frappe.get_doc(
			{"doctype": "Customer", "customer_name": CUSTOMER, "customer_type": "Individual"}
		).insert(ignore_permissions=True)
	if not frappe.db.exists("Item", ITEM):
		frappe.get_doc(
			{
				"doctype": "Item",
				"item_code": ITEM,
				"item_name": ITEM,
				"item_group": frappe.db.get_value("Item Group", {"is_group": 0}) or "All Item Groups",
				"stock_uom": "Nos",
				"is_stock_item": 0,
			}
		).insert(ignore_permissions=True)
