# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

"""M-Pesa at the point of sale (frappe_mpesa.erpnext.pos) and a draft Payment Entry paid by push
(frappe_mpesa.erpnext.checkout), on a site with ERPNext: pushes through the sandbox, callbacks and
C2B confirmations through the served site, real POS Invoices on a POS Profile with Cash and M-Pesa.

Skips, saying why, without ERPNext or the company "Test Shop Ltd" in KES. ``PosShop`` (the POS
Profile, its opening entry, a customer and an item) is shared with the browser tests."""

import json

import frappe
from frappe.utils import flt, nowdate

from frappe_mpesa import daraja, urls
from frappe_mpesa.erpnext import c2b_posting
from frappe_mpesa.m_pesa.doctype.mpesa_express_request.test_checkout import COMPANY, PAYER, erpnext_missing
from frappe_mpesa.sandbox.server import STK_PUSH_PATH
from frappe_mpesa.testing import ServedSandboxTestCase, post, wait_for

SETTINGS = "_Test POS"
C2B = "Mpesa C2B Payment Register"
EXPRESS = "Mpesa Express Request"
PE = "Payment Entry"


def company_account(company, **filters):
	return frappe.db.get_value("Account", {"company": company, "is_group": 0, **filters}, "name", order_by="lft")


class PosShop:
	"""A POS Profile of COMPANY with Cash (default) and the settings' M-Pesa Mode of Payment, open
	for the given users, a customer with a phone and a service item; ``remove`` takes it all away."""

	def __init__(self, settings, users=("Administrator",)):
		self.tag = frappe.generate_hash(length=6)
		self.made = []
		self.mode = frappe.db.get_value("Mpesa Settings", settings, "mode_of_payment")
		abbr = frappe.get_cached_value("Company", COMPANY, "abbr")
		cash = company_account(COMPANY, account_type="Cash")
		cash_mode = frappe.get_doc("Mode of Payment", "Cash")
		if not any(row.company == COMPANY for row in cash_mode.accounts):
			cash_mode.append("accounts", {"company": COMPANY, "default_account": cash})
			cash_mode.save(ignore_permissions=True)
		self.customer = self.make(
			{"doctype": "Customer", "customer_name": f"POS Customer {self.tag}", "customer_type": "Individual"}
		).name
		self.item = self.make(
			{
				"doctype": "Item",
				"item_code": f"POS Service {self.tag}",
				"item_group": frappe.db.get_value("Item Group", {"is_group": 0}) or "All Item Groups",
				"stock_uom": "Nos",
				"is_stock_item": 0,
				"standard_rate": 100,
			}
		).name
		# The standard rate became an Item Price in the default selling price list.
		price = frappe.db.get_value("Item Price", {"item_code": self.item}, ["name", "price_list"], as_dict=True)
		self.made.insert(0, ("Item Price", price.name))
		price_list = price.price_list
		profile = frappe.get_doc(
			{
				"doctype": "POS Profile",
				"__newname": f"_Test POS {self.tag}",
				"company": COMPANY,
				"currency": "KES",
				"warehouse": frappe.db.get_value("Warehouse", {"company": COMPANY, "is_group": 0}, "name"),
				"selling_price_list": price_list,
				"customer": self.customer,
				"write_off_account": frappe.get_cached_value("Company", COMPANY, "write_off_account")
				or company_account(COMPANY, root_type="Expense"),
				"write_off_cost_center": frappe.get_cached_value("Company", COMPANY, "cost_center"),
				"cost_center": frappe.get_cached_value("Company", COMPANY, "cost_center"),
				"account_for_change_amount": cash,
				"payments": [{"mode_of_payment": "Cash", "default": 1}, {"mode_of_payment": self.mode}],
				"applicable_for_users": [{"user": user} for user in users],
			}
		)
		profile.insert(ignore_permissions=True)
		self.made.append(("POS Profile", profile.name))
		self.profile = profile.name
		self.abbr = abbr
		self.openings = []
		for user in users:
			self.open_for(user)
		frappe.db.commit()

	def make(self, values):
		doc = frappe.get_doc(values).insert(ignore_permissions=True)
		self.made.append((doc.doctype, doc.name))
		return doc

	def open_for(self, user):
		entry = frappe.get_doc(
			{
				"doctype": "POS Opening Entry",
				"pos_profile": self.profile,
				"user": user,
				"company": COMPANY,
				"period_start_date": frappe.utils.now_datetime(),
				"balance_details": [{"mode_of_payment": "Cash"}, {"mode_of_payment": self.mode}],
			}
		)
		entry.insert(ignore_permissions=True)
		entry.submit()
		self.openings.append(entry.name)

	def invoice(self, amount, payments=None, save=True):
		"""A draft POS Invoice for ``amount`` with {mode: amount} on its payment rows."""
		doc = frappe.new_doc("POS Invoice")
		doc.update(
			{
				"company": COMPANY,
				"pos_profile": self.profile,
				"customer": self.customer,
				"currency": "KES",
				"is_pos": 1,
				"posting_date": nowdate(),
				"items": [{"item_code": self.item, "qty": 1, "rate": amount}],
			}
		)
		doc.set_missing_values()
		for row in doc.payments:
			row.amount = (payments or {}).get(row.mode_of_payment, 0)
		if save:
			doc.insert(ignore_permissions=True)
			frappe.db.commit()
		return doc

	def remove(self):
		frappe.db.rollback()
		invoices = frappe.get_all("POS Invoice", filters={"pos_profile": self.profile}, pluck="name")
		for name in invoices:
			doc = frappe.get_doc("POS Invoice", name)
			if doc.docstatus == 1:
				doc.cancel()
			for request in frappe.get_all(EXPRESS, filters={"reference_doctype": "POS Invoice", "reference_name": name}, pluck="name"):
				frappe.db.set_value(EXPRESS, request, "reference_name", None)
			frappe.delete_doc("POS Invoice", name, force=True, ignore_permissions=True)
		for name in self.openings:
			entry = frappe.get_doc("POS Opening Entry", name)
			if entry.docstatus == 1:
				entry.cancel()
			frappe.delete_doc("POS Opening Entry", name, force=True, ignore_permissions=True)
		for doctype, name in reversed(self.made):
			if frappe.db.exists(doctype, name):
				frappe.delete_doc(doctype, name, force=True, ignore_permissions=True)
		frappe.db.commit()


class TestPos(ServedSandboxTestCase):
	SETTINGS = SETTINGS
	SANDBOX_OPTIONS = {"callback_delay": 0.3}
	REQUIRES = staticmethod(erpnext_missing)

	@classmethod
	def setUpClass(cls):
		frappe.set_user("Administrator")
		super().setUpClass()
		settings = frappe.get_doc("Mpesa Settings", SETTINGS)
		settings.company = COMPANY
		settings.transaction_limit = 150000
		settings.save(ignore_permissions=True)
		frappe.db.commit()
		cls.shop = PosShop(SETTINGS)
		cls.counter = 0

	@classmethod
	def tearDownClass(cls):
		frappe.set_user("Administrator")
		if getattr(cls, "shop", None):
			for entry in frappe.get_all(PE, filters={"party": cls.shop.customer}, pluck="name"):
				doc = frappe.get_doc(PE, entry)
				if doc.docstatus == 1:
					doc.flags.ignore_links = True
					doc.cancel()
				frappe.delete_doc(PE, entry, force=True, ignore_permissions=True)
			cls.shop.remove()
		super().tearDownClass()

	def setUp(self):
		frappe.set_user("Administrator")

	@property
	def checkout(self):
		from frappe_mpesa.erpnext import checkout

		return checkout

	@property
	def pos(self):
		from frappe_mpesa.erpnext import pos

		return pos

	def push(self, doctype, name, amount, phone=PAYER):
		[answer] = self.checkout.request_payment(doctype, name, phone, amount, SETTINGS)
		self.assertTrue(
			wait_for(lambda: frappe.db.get_value(EXPRESS, answer["name"], "status") not in ("Queued", "Pending"), 30)
		)
		return frappe.db.get_value(EXPRESS, answer["name"], ["name", "status", "receipt_number", "payment_entry"], as_dict=True)

	def submit_refused(self, name, *words):
		doc = frappe.get_doc("POS Invoice", name)
		with self.assertRaises(frappe.ValidationError) as caught:
			doc.submit()
		frappe.db.rollback()
		frappe.clear_messages()
		for word in words:
			self.assertIn(word, str(caught.exception))
		self.assertEqual(frappe.db.get_value("POS Invoice", name, "docstatus"), 0)
		return str(caught.exception)

	# ---- pushes ---------------------------------------------------------------------------

	def test_pos_submit_refused_until_the_push_is_confirmed(self):
		mode = self.shop.mode
		inv = self.shop.invoice(100, {mode: 100})
		row = next(r for r in inv.payments if r.mode_of_payment == mode)
		message = self.submit_refused(inv.name, f"Payment row {row.idx}", mode, "not confirmed")
		self.assertIn(inv.name, message)
		# A push that fails confirms nothing.
		failed = self.push("POS Invoice", inv.name, 100, phone="254700001032")
		self.assertEqual(failed.status, "Cancelled")
		self.submit_refused(inv.name, f"Payment row {row.idx}")
		paid = self.push("POS Invoice", inv.name, 100)
		self.assertEqual(paid.status, "Success")
		self.assertTrue(paid.receipt_number)
		got = self.pos.confirmed(inv.name)
		self.assertEqual((got["amount"], got["receipts"]), (100, paid.receipt_number))
		# Nothing is posted for a POS Invoice's push: its money is booked with the invoice.
		self.assertIsNone(paid.payment_entry)
		self.assertEqual(frappe.get_all(PE, filters={"reference_no": paid.receipt_number}), [])
		# Fully confirmed: nothing more may be pushed for it.
		with self.assertRaises(frappe.ValidationError):
			self.checkout.request_payment("POS Invoice", inv.name, PAYER, 1, SETTINGS)
		frappe.db.rollback()
		frappe.clear_messages()
		doc = frappe.get_doc("POS Invoice", inv.name)
		doc.submit()
		frappe.db.commit()
		row = next(r for r in doc.payments if r.mode_of_payment == mode)
		self.assertEqual(frappe.db.get_value("Sales Invoice Payment", row.name, "reference_no"), paid.receipt_number)
		self.assertEqual(
			frappe.db.get_value(EXPRESS, paid.name, "reference_outcome"), f"In POS Invoice {inv.name}"
		)
		# Submitted: no more pushes.
		with self.assertRaises(frappe.ValidationError) as caught:
			self.checkout.request_payment("POS Invoice", inv.name, PAYER, 1, SETTINGS)
		frappe.db.rollback()
		frappe.clear_messages()
		self.assertIn("submitted", str(caught.exception))

	def test_cash_and_mpesa_on_one_invoice(self):
		mode = self.shop.mode
		inv = self.shop.invoice(150, {"Cash": 110, mode: 40})
		paid = self.push("POS Invoice", inv.name, 40)
		self.assertEqual(paid.status, "Success")
		# More by M-Pesa than it confirmed is refused; so is less (the rest would go unrecorded).
		doc = frappe.get_doc("POS Invoice", inv.name)
		for row in doc.payments:
			row.amount = {"Cash": 100, mode: 50}[row.mode_of_payment]
		doc.save(ignore_permissions=True)
		frappe.db.commit()
		self.submit_refused(inv.name, "50", "not confirmed", "40")
		doc = frappe.get_doc("POS Invoice", inv.name)
		for row in doc.payments:
			row.amount = {"Cash": 120, mode: 30}[row.mode_of_payment]
		doc.save(ignore_permissions=True)
		frappe.db.commit()
		self.submit_refused(inv.name, "set the M-Pesa amount to 40")
		doc = frappe.get_doc("POS Invoice", inv.name)
		for row in doc.payments:
			row.amount = {"Cash": 110, mode: 40}[row.mode_of_payment]
		doc.save(ignore_permissions=True)
		doc.submit()
		frappe.db.commit()
		self.assertEqual(frappe.db.get_value("POS Invoice", inv.name, "docstatus"), 1)
		self.assertEqual(flt(frappe.db.get_value("POS Invoice", inv.name, "paid_amount")), 150)

	def test_cash_only_sale_is_untouched(self):
		inv = self.shop.invoice(20, {"Cash": 20})
		doc = frappe.get_doc("POS Invoice", inv.name)
		doc.submit()
		frappe.db.commit()
		self.assertEqual(frappe.db.get_value("POS Invoice", inv.name, "docstatus"), 1)

	# ---- C2B payments at the till -----------------------------------------------------------

	def confirmation(self, amount, first_name="Wanjiku"):
		"""A C2B confirmation to the till through the served site naming nothing, then the posting
		job (as the worker would): an Unmatched, unposted receipt."""
		TestPos.counter += 1
		trans_id = f"P{self.shop.tag.upper()}{TestPos.counter:03d}"[:10]
		settings = frappe.get_doc("Mpesa Settings", SETTINGS)
		url = urls.callback_url(
			settings.callback_base_url, "c2b_confirmation", settings.callback_id, settings.get_password("callback_secret")
		)
		body = {
			"TransactionType": "Buy Goods",
			"TransID": trans_id,
			"TransTime": frappe.utils.now_datetime().strftime("%Y%m%d%H%M%S"),
			"TransAmount": f"{amount:.2f}",
			"BusinessShortCode": self.shortcode,
			"BillRefNumber": "",
			"MSISDN": "254708374149",
			"FirstName": first_name,
			"LastName": "Otieno",
		}
		status, text = post(url, json.dumps(body).encode())
		self.assertEqual((status, text), (200, daraja.ack()))
		c2b_posting.post_receipt(trans_id)
		frappe.db.commit()
		row = frappe.db.get_value(C2B, trans_id, ["name", "status", "payment_entry", "pos_invoice"], as_dict=True)
		self.assertEqual((row.status, row.payment_entry), ("Unmatched", None))
		return trans_id

	def test_c2b_receipt_is_applied_to_one_pos_invoice_once(self):
		mode = self.shop.mode
		receipt = self.confirmation(80, first_name="Achieng")
		first = self.shop.invoice(80, {mode: 80})
		second = self.shop.invoice(80, {mode: 80})
		# Found by the receipt's last characters, the payer's first name or the amount.
		for search in (receipt[-4:], receipt[-4:].lower(), "Achi", "80"):
			with self.subTest(search=search):
				found = [r["receipt"] for r in self.pos.recent_receipts(first.name, search)]
				self.assertIn(receipt, found)
		self.assertNotIn(receipt, [r["receipt"] for r in self.pos.recent_receipts(first.name, "Nobody")])
		self.assertNotIn(receipt, [r["receipt"] for r in self.pos.recent_receipts(first.name, "81")])
		got = self.pos.apply_receipt(first.name, receipt)
		frappe.db.commit()
		self.assertEqual((got["amount"], got["receipts"]), (80, receipt))
		row = frappe.db.get_value(C2B, receipt, ["status", "pos_invoice"], as_dict=True)
		self.assertEqual((row.status, row.pos_invoice), ("In POS Invoice", first.name))
		# Taken: not offered any more, and a second invoice is refused.
		self.assertNotIn(receipt, [r["receipt"] for r in self.pos.recent_receipts(second.name, receipt[-4:])])
		with self.assertRaises(frappe.ValidationError) as caught:
			self.pos.apply_receipt(second.name, receipt)
		frappe.db.rollback()
		frappe.clear_messages()
		self.assertIn(first.name, str(caught.exception))
		self.submit_refused(second.name, "not confirmed")
		# The posting paths leave it alone: the job (forced, as repost does) and the reconciliation screen.
		self.assertEqual(c2b_posting.post_receipt(receipt, force=True), "In POS Invoice")
		frappe.db.commit()
		from frappe_mpesa.erpnext import reconciliation

		with self.assertRaises(frappe.ValidationError):
			reconciliation._post_one(receipt, [(first.name, 80)])
		frappe.db.rollback()
		frappe.clear_messages()
		self.assertIsNone(frappe.db.get_value(C2B, receipt, "payment_entry"))
		# And the database itself refuses a Payment Entry on a receipt a POS Invoice holds.
		with self.assertRaises(Exception) as caught:
			frappe.db.sql(f"update `tab{C2B}` set payment_entry = 'ACC-PAY-NONE-1' where name = %s", receipt)
		frappe.db.rollback()
		self.assertIn("mpesa_receipt_one_ledger_entry", str(caught.exception))
		# Submitted: the receipt is consumed by the first invoice.
		doc = frappe.get_doc("POS Invoice", first.name)
		doc.submit()
		frappe.db.commit()
		row = frappe.db.get_value(C2B, receipt, ["status", "pos_invoice", "payment_entry", "posting_note"], as_dict=True)
		self.assertEqual((row.status, row.pos_invoice, row.payment_entry), ("In POS Invoice", first.name, None))
		self.assertIn("submitted", row.posting_note)
		pay_row = next(r for r in doc.payments if r.mode_of_payment == mode)
		self.assertEqual(frappe.db.get_value("Sales Invoice Payment", pay_row.name, "reference_no"), receipt)
		with self.assertRaises(frappe.ValidationError):
			self.pos.apply_receipt(second.name, receipt)
		frappe.db.rollback()
		frappe.clear_messages()
		self.assertEqual(frappe.get_all(PE, filters={"reference_no": receipt}), [])
		# Cancelled: the receipt is unallocated again, for a person to post or apply.
		doc.reload()
		doc.cancel()
		frappe.db.commit()
		row = frappe.db.get_value(C2B, receipt, ["status", "pos_invoice"], as_dict=True)
		self.assertEqual((row.status, row.pos_invoice), ("Unmatched", None))

	def test_released_receipt_and_other_tills(self):
		mode = self.shop.mode
		receipt = self.confirmation(30)
		inv = self.shop.invoice(30, {mode: 30})
		self.pos.apply_receipt(inv.name, receipt)
		frappe.db.commit()
		got = self.pos.release_receipt(inv.name, receipt)
		frappe.db.commit()
		self.assertEqual(got["amount"], 0)
		self.assertEqual(frappe.db.get_value(C2B, receipt, ["status", "pos_invoice"]), ("Unmatched", None))
		# A receipt of another shortcode is not this till's.
		frappe.db.set_value(C2B, receipt, "business_shortcode", "1234567", update_modified=False)
		frappe.db.set_value(C2B, receipt, "mpesa_settings", None, update_modified=False)
		frappe.db.commit()
		with self.assertRaises(frappe.ValidationError) as caught:
			self.pos.apply_receipt(inv.name, receipt)
		frappe.db.rollback()
		frappe.clear_messages()
		self.assertIn("another shortcode", str(caught.exception))
		with self.assertRaises(frappe.ValidationError):
			self.pos.apply_receipt(inv.name, "NOSUCHRCPT")
		frappe.db.rollback()
		frappe.clear_messages()
		# Deleting a draft gives its receipts back.
		frappe.db.set_value(C2B, receipt, {"business_shortcode": self.shortcode, "mpesa_settings": SETTINGS})
		frappe.db.commit()
		self.pos.apply_receipt(inv.name, receipt)
		frappe.db.commit()
		frappe.delete_doc("POS Invoice", inv.name, ignore_permissions=True)
		frappe.db.commit()
		self.assertEqual(frappe.db.get_value(C2B, receipt, ["status", "pos_invoice"]), ("Unmatched", None))

	# ---- a draft Payment Entry ------------------------------------------------------------

	def draft_entry(self, amount, payment_type="Receive"):
		cash = company_account(COMPANY, account_type="Cash")
		receivable = frappe.get_cached_value("Company", COMPANY, "default_receivable_account")
		entry = frappe.get_doc(
			{
				"doctype": PE,
				"payment_type": payment_type,
				"company": COMPANY,
				"party_type": "Customer",
				"party": self.shop.customer,
				"paid_from": receivable if payment_type == "Receive" else cash,
				"paid_to": cash if payment_type == "Receive" else receivable,
				"paid_from_account_currency": "KES",
				"paid_to_account_currency": "KES",
				"paid_amount": amount,
				"received_amount": amount,
				"source_exchange_rate": 1,
				"target_exchange_rate": 1,
				"posting_date": nowdate(),
			}
		)
		entry.setup_party_account_field()
		entry.set_missing_values()
		entry.insert(ignore_permissions=True)
		frappe.db.commit()
		return entry

	def test_payment_entry_is_submitted_with_its_receipt(self):
		entry = self.draft_entry(75)
		defaults = self.checkout.checkout_defaults(PE, entry.name)
		self.assertEqual((defaults["amount"], defaults["currency"]), (75, "KES"))
		pushes = frappe.db.count(EXPRESS)
		sent = self.sandbox.count(STK_PUSH_PATH)
		for amount, word in ((70, "Paid Amount"), (76, "Paid Amount")):
			with self.assertRaises(frappe.ValidationError) as caught:
				self.checkout.request_payment(PE, entry.name, PAYER, amount, SETTINGS)
			frappe.db.rollback()
			frappe.clear_messages()
			self.assertIn(word, str(caught.exception))
		self.assertEqual((frappe.db.count(EXPRESS), self.sandbox.count(STK_PUSH_PATH)), (pushes, sent))
		paid = self.push(PE, entry.name, 75)
		self.assertEqual(paid.status, "Success")
		self.assertTrue(wait_for(lambda: frappe.db.get_value(PE, entry.name, "docstatus") == 1, 15))
		entry.reload()
		settings = frappe.get_doc("Mpesa Settings", SETTINGS)
		self.assertEqual(
			(entry.reference_no, entry.paid_to, entry.mode_of_payment, flt(entry.paid_amount)),
			(paid.receipt_number, settings.mpesa_account, settings.mode_of_payment, 75),
		)
		self.assertEqual(frappe.db.get_value(EXPRESS, paid.name, "payment_entry"), entry.name)
		# Submitted: a second push is refused.
		with self.assertRaises(frappe.ValidationError):
			self.checkout.request_payment(PE, entry.name, PAYER, 75, SETTINGS)
		frappe.db.rollback()
		frappe.clear_messages()
		# Only Receive entries from a Customer.
		paying = self.draft_entry(10, payment_type="Pay")
		with self.assertRaises(frappe.ValidationError) as caught:
			self.checkout.request_payment(PE, paying.name, PAYER, 10, SETTINGS)
		frappe.db.rollback()
		frappe.clear_messages()
		self.assertIn("Receive", str(caught.exception))
