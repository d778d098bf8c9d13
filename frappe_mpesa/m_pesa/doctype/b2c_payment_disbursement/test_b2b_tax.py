# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

"""B2B and tax payouts into the books (ERPNext): a Purchase Invoice paid to its supplier's paybill
and to a till, each by a Payment Entry carrying the receipt; a KRA remittance by PRN from a Journal
Entry, posted as a Journal Entry that clears the tax account; B2C charges a result reports posted to
the settings' charges account. Maker is not checker for each kind, the sandbox sees one request per
row, and bad input is refused naming the field with nothing sent."""

import unittest

import frappe
from frappe.utils import flt

from frappe_mpesa import initiator, tasks
from frappe_mpesa.testing import CHECKER, MAKER, OTHER_CHECKER, ServedSandboxTestCase, wait_for

SETTINGS = "_Test B2B and Tax"
DOCTYPE = "B2C Payment Disbursement"
PAYEE = "B2C Disbursement Payee"
B2B_PATH = "/mpesa/b2b/v1/paymentrequest"
TAX_PATH = "/mpesa/b2b/v1/remittax"
B2C_PATH = "/mpesa/b2c/v3/paymentrequest"
COMPANY = "Test Shop Ltd"
CLEARING = "M-Pesa - TSL"
EXPENSE = "Salary - TSL"
COST_CENTER = "Main - TSL"
PRN = "2026K0001234"


def payout_paths(sandbox):
	return {path: sandbox.count(path) for path in (B2B_PATH, TAX_PATH, B2C_PATH)}


class TestB2BAndTax(ServedSandboxTestCase):
	SETTINGS = SETTINGS
	SANDBOX_OPTIONS = {"callback_delay": 0.1}

	@classmethod
	def setUpClass(cls):
		if "erpnext" not in frappe.get_installed_apps():
			raise unittest.SkipTest("needs ERPNext")
		super().setUpClass()
		frappe.set_user("Administrator")
		from frappe_mpesa.erpnext import setup

		setup.make_fields()
		cls.tag = frappe.generate_hash(length=6)
		cls.tax_account = cls.account(f"M-Pesa Test VAT {cls.tag}", "Liability", "Tax")
		cls.charges_account = cls.account(f"M-Pesa Test Charges {cls.tag}", "Expense", "")
		frappe.db.set_value(
			"Mpesa Settings",
			SETTINGS,
			{"company": COMPANY, "mpesa_account": CLEARING, "b2c_charges_account": cls.charges_account},
		)
		frappe.db.commit()

	@staticmethod
	def account(name, root_type, account_type):
		parent = frappe.db.get_value(
			"Account", {"company": COMPANY, "root_type": root_type, "is_group": 1}, "name", order_by="lft desc"
		)
		doc = frappe.get_doc(
			{
				"doctype": "Account",
				"account_name": name,
				"company": COMPANY,
				"parent_account": parent,
				"account_type": account_type,
				"account_currency": "KES",
			}
		).insert(ignore_permissions=True)
		return doc.name

	def tearDown(self):
		frappe.set_user("Administrator")
		self.sandbox.payout_charge = None

	# ---- fixtures ------------------------------------------------------------------------------

	def supplier(self, suffix, **mpesa):
		return frappe.get_doc(
			{
				"doctype": "Supplier",
				"supplier_name": f"M-Pesa B2B Supplier {self.tag} {suffix}",
				"supplier_group": frappe.db.get_value("Supplier Group", {"is_group": 0}, "name"),
				"default_currency": "KES",
				**mpesa,
			}
		).insert(ignore_permissions=True).name

	def invoice(self, supplier, amount):
		item = "M-Pesa Test Service"
		if not frappe.db.exists("Item", item):
			frappe.get_doc(
				{"doctype": "Item", "item_code": item, "item_group": frappe.db.get_value("Item Group", {"is_group": 0}, "name"), "is_stock_item": 0, "stock_uom": "Nos"}
			).insert(ignore_permissions=True)
		doc = frappe.get_doc(
			{
				"doctype": "Purchase Invoice",
				"supplier": supplier,
				"company": COMPANY,
				"posting_date": "2026-11-20",
				"credit_to": "Creditors - TSL",
				"currency": "KES",
				"conversion_rate": 1,
				"items": [{"item_code": item, "qty": 1, "rate": amount, "expense_account": EXPENSE, "cost_center": COST_CENTER}],
			}
		)
		doc.insert(ignore_permissions=True)
		doc.submit()
		frappe.db.commit()
		return doc

	def tax_journal(self, amount):
		"""A tax liability: VAT charged to an expense and credited to the tax account."""
		doc = frappe.get_doc(
			{
				"doctype": "Journal Entry",
				"company": COMPANY,
				"posting_date": "2026-11-20",
				"accounts": [
					{"account": EXPENSE, "debit_in_account_currency": amount, "cost_center": COST_CENTER},
					{"account": self.tax_account, "credit_in_account_currency": amount, "cost_center": COST_CENTER},
				],
			}
		)
		doc.insert(ignore_permissions=True)
		doc.submit()
		frappe.db.commit()
		return doc

	def approve_send_and_post(self, name, maker=None):
		"""Maker is not checker: the maker (the batch's creator) and an Accounts User cannot approve;
		another Accounts Manager does. Then the batch is sent and its rows posted."""
		for user in {maker or CHECKER, MAKER}:
			frappe.set_user(user)
			with self.assertRaises(frappe.PermissionError, msg=user):
				frappe.get_doc(DOCTYPE, name).submit()
			frappe.db.rollback()
		frappe.set_user(OTHER_CHECKER)
		frappe.get_doc(DOCTYPE, name).submit()
		frappe.db.commit()
		frappe.set_user("Administrator")
		initiator.send_batch(name)

		def done():
			frappe.db.rollback()
			tasks.match_unmatched_callbacks()  # as the scheduler would, for a result kept before the answer
			frappe.db.commit()
			return not frappe.db.count(PAYEE, {"parent": name, "status": ("in", ("Queued", "Sent"))})

		self.assertTrue(wait_for(done, timeout=60), frappe.db.get_value(DOCTYPE, name, ["status", "in_flight_count"]))
		from frappe_mpesa.erpnext import payouts

		payouts.post_batch(name)
		frappe.db.rollback()
		return frappe.get_all(PAYEE, filters={"parent": name}, fields=["*"])

	def made_by_checker(self, function, *args, **kwargs):
		"""The batch made by CHECKER (an Accounts Manager), who therefore may not approve it."""
		frappe.set_user(CHECKER)
		name = function(*args, **kwargs)
		frappe.db.commit()
		frappe.set_user("Administrator")
		return name

	def last_request(self, path):
		return [r for r in self.sandbox.requests if r.path == path][-1].json

	def assert_paid_by_payment_entry(self, row, invoice, amount):
		self.assertEqual((row.status, row.ledger_entry_type), ("Completed", "Payment Entry"), row.error)
		entry = frappe.get_doc("Payment Entry", row.ledger_entry)
		self.assertEqual((entry.docstatus, entry.payment_type, entry.paid_from), (1, "Pay", CLEARING))
		self.assertEqual((entry.reference_no, flt(entry.paid_amount)), (row.transaction_receipt, amount))
		self.assertEqual(
			[(r.reference_doctype, r.reference_name, flt(r.allocated_amount)) for r in entry.references],
			[("Purchase Invoice", invoice.name, amount)],
		)
		invoice.reload()
		self.assertEqual((flt(invoice.outstanding_amount), invoice.status), (0, "Paid"))

	# ---- tests ---------------------------------------------------------------------------------

	def test_purchase_invoice_paid_to_the_suppliers_paybill(self):
		from frappe_mpesa.erpnext import payouts

		supplier = self.supplier("paybill", mpesa_paybill="888880", mpesa_account_reference="ACC-77")
		invoice = self.invoice(supplier, 3200)
		before = payout_paths(self.sandbox)
		name = self.made_by_checker(payouts.make_batch, "Purchase Invoice", [invoice.name], SETTINGS, kind="B2B")
		batch = frappe.get_doc(DOCTYPE, name)
		self.assertEqual(
			[(r.payout_kind, r.party_shortcode, r.account_reference, r.phone) for r in batch.payees],
			[("B2B Paybill", "888880", "ACC-77", None)],
		)
		rows = self.approve_send_and_post(name)
		after = payout_paths(self.sandbox)
		self.assertEqual({p: after[p] - before[p] for p in after}, {B2B_PATH: 1, TAX_PATH: 0, B2C_PATH: 0})
		sent = self.last_request(B2B_PATH)
		self.assertEqual(
			(sent["CommandID"], sent["PartyB"], sent["AccountReference"], int(sent["Amount"])),
			("BusinessPayBill", "888880", "ACC-77", 3200),
		)
		self.assertEqual(len(rows), 1)
		self.assertTrue(rows[0].transaction_receipt)
		self.assertEqual(rows[0].originator_conversation_id, self.sandbox.payments[rows[0].transaction_receipt]["originator_conversation_id"])
		self.assert_paid_by_payment_entry(rows[0], invoice, 3200)

	def test_purchase_invoice_paid_to_a_till(self):
		from frappe_mpesa.erpnext import payouts

		supplier = self.supplier("till", mpesa_till="5123456")
		invoice = self.invoice(supplier, 1750)
		before = self.sandbox.count(B2B_PATH)
		name = self.made_by_checker(payouts.make_batch, "Purchase Invoice", [invoice.name], SETTINGS, kind="B2B")
		rows = self.approve_send_and_post(name)
		self.assertEqual(self.sandbox.count(B2B_PATH) - before, 1)
		sent = self.last_request(B2B_PATH)
		self.assertEqual((sent["CommandID"], sent["PartyB"]), ("BusinessBuyGoods", "5123456"))
		self.assertNotIn("AccountReference", {k for k, v in sent.items() if v})
		self.assertEqual((rows[0].payout_kind, rows[0].party_shortcode), ("B2B Till", "5123456"))
		self.assert_paid_by_payment_entry(rows[0], invoice, 1750)

	def test_kra_remittance_from_a_journal_entry(self):
		from frappe_mpesa.erpnext import payouts

		liability = self.tax_journal(4600)
		before = payout_paths(self.sandbox)
		name = self.made_by_checker(payouts.make_tax_remittance, "Journal Entry", liability.name, SETTINGS, prn=PRN.lower())
		batch = frappe.get_doc(DOCTYPE, name)
		self.assertEqual(
			[(r.payout_kind, r.party_shortcode, r.account_reference, r.debit_account, flt(r.amount)) for r in batch.payees],
			[("Tax", "572572", PRN, self.tax_account, 4600)],
		)
		rows = self.approve_send_and_post(name)
		after = payout_paths(self.sandbox)
		self.assertEqual({p: after[p] - before[p] for p in after}, {B2B_PATH: 0, TAX_PATH: 1, B2C_PATH: 0})
		sent = self.last_request(TAX_PATH)
		self.assertEqual((sent["CommandID"], sent["PartyB"], sent["AccountReference"]), ("PayTaxToKRA", "572572", PRN))
		row = rows[0]
		self.assertEqual((row.status, row.ledger_entry_type), ("Completed", "Journal Entry"), row.error)
		entry = frappe.get_doc("Journal Entry", row.ledger_entry)
		self.assertEqual((entry.docstatus, entry.cheque_no), (1, row.transaction_receipt))
		self.assertEqual(
			sorted((l.account, flt(l.debit), flt(l.credit)) for l in entry.accounts),
			sorted([(self.tax_account, 4600, 0), (CLEARING, 0, 4600)]),
		)
		balance = frappe.db.sql(
			"select sum(debit - credit) from `tabGL Entry` where account = %s and is_cancelled = 0 and voucher_no in %s",
			(self.tax_account, (liability.name, entry.name)),
		)[0][0]
		self.assertEqual(flt(balance), 0, "the tax liability is paid")
		from frappe_mpesa.erpnext import payouts as again

		self.assertEqual(again.post_batch(name), 0, "one entry per receipt")
		with self.assertRaises(frappe.ValidationError):
			payouts.make_tax_remittance("Journal Entry", liability.name, SETTINGS, prn=PRN)
		frappe.db.rollback()

	def test_b2c_charges_are_posted_to_the_charges_account(self):
		self.sandbox.payout_charge = 33
		frappe.set_user(CHECKER)
		batch = frappe.get_doc(
			{
				"doctype": DOCTYPE,
				"mpesa_settings": SETTINGS,
				"command_id": "BusinessPayment",
				"remarks": "Charges test",
				"payout_account": EXPENSE,
				"payees": [{"phone": "254712345670", "amount": 1000, "payee_name": "Charged Payee"}],
			}
		).insert()
		frappe.db.commit()
		rows = self.approve_send_and_post(batch.name)
		row = rows[0]
		self.assertEqual((row.status, flt(row.charges), row.ledger_entry_type), ("Completed", 33, "Journal Entry"), row.error)
		self.assertEqual(flt(frappe.db.get_value(DOCTYPE, batch.name, "total_charges")), 33)
		gl = frappe.get_all(
			"GL Entry",
			filters={"voucher_type": "Journal Entry", "voucher_no": row.ledger_entry, "is_cancelled": 0},
			fields=["account", "sum(debit) as debit", "sum(credit) as credit"],
			group_by="account",
		)
		self.assertEqual(
			sorted((g.account, flt(g.debit), flt(g.credit)) for g in gl),
			sorted([(EXPENSE, 1000, 0), (self.charges_account, 33, 0), (CLEARING, 0, 1033)]),
		)
		# The M-Pesa Payouts report, run as Desk runs it, shows the row with its receipt and charges.
		from frappe.desk.query_report import run

		report = run("M-Pesa Payouts", filters={"batch": batch.name, "payout_kind": "B2C"})
		self.assertEqual(
			[(r["payout_kind"], r["transaction_receipt"], flt(r["charges"]), r["status"]) for r in report["result"] if isinstance(r, dict)],  # not the total row
			[("B2C", row.transaction_receipt, 33, "Completed")],
		)

	def test_bad_input_is_refused_naming_the_field_and_nothing_is_sent(self):
		from frappe_mpesa.erpnext import payouts

		before = payout_paths(self.sandbox)
		batches = frappe.db.count(DOCTYPE)
		bare = self.invoice(self.supplier("bare"), 500)
		with self.assertRaisesRegex(frappe.ValidationError, "M-Pesa Paybill or M-Pesa Till"):
			payouts.make_batch("Purchase Invoice", [bare.name], SETTINGS, kind="B2B")
		frappe.db.rollback()
		no_account = self.invoice(self.supplier("no account", mpesa_paybill="888881"), 500)
		with self.assertRaisesRegex(frappe.ValidationError, "M-Pesa Account Reference is required"):
			payouts.make_batch("Purchase Invoice", [no_account.name], SETTINGS, kind="B2B")
		frappe.db.rollback()
		bad_code = self.invoice(self.supplier("bad code", mpesa_till="12"), 500)
		with self.assertRaisesRegex(frappe.ValidationError, "M-Pesa Till '12' is not a paybill or till"):
			payouts.make_batch("Purchase Invoice", [bad_code.name], SETTINGS, kind="B2B")
		frappe.db.rollback()
		liability = self.tax_journal(900)
		for prn in ("", "12-34", "1234567890ABCD"):
			with self.assertRaisesRegex(frappe.ValidationError, "PRN"):
				payouts.make_tax_remittance("Journal Entry", liability.name, SETTINGS, prn=prn)
			frappe.db.rollback()
		untaxed = frappe.get_doc(
			{
				"doctype": "Journal Entry",
				"company": COMPANY,
				"posting_date": "2026-11-20",
				"accounts": [
					{"account": EXPENSE, "debit_in_account_currency": 100, "cost_center": COST_CENTER},
					{"account": CLEARING, "credit_in_account_currency": 100, "cost_center": COST_CENTER},
				],
			}
		)
		untaxed.insert(ignore_permissions=True)
		untaxed.submit()
		with self.assertRaisesRegex(frappe.ValidationError, "credits no tax account: choose the Tax Account"):
			payouts.make_tax_remittance("Journal Entry", untaxed.name, SETTINGS, prn=PRN)
		frappe.db.rollback()
		# Rows entered by hand: each fault names its row and field.
		cases = (
			({"payout_kind": "B2B Paybill", "party_shortcode": "888880"}, "Payee row 2: Account Reference is required"),
			({"payout_kind": "B2B Till", "party_shortcode": "88-88"}, "Payee row 2: Paybill or Till '88-88'"),
			({"payout_kind": "B2B Till"}, "Payee row 2: Paybill or Till is not set"),
			({"payout_kind": "Tax", "account_reference": "PRN 1"}, "Payee row 2: PRN 'PRN 1' is not a KRA PRN"),
			({"payout_kind": "Tax", "account_reference": PRN}, "Payee row 2: Tax Account is not set"),
			({"phone": "0712"}, "Payee row 2: '0712' is not a Kenyan mobile number"),
		)
		for row, message in cases:
			doc = frappe.get_doc(
				{
					"doctype": DOCTYPE,
					"mpesa_settings": SETTINGS,
					"command_id": "BusinessPayment",
					"remarks": "Bad rows",
					"payees": [{"phone": "254712345671", "amount": 100}, {"amount": 100, **row}],
				}
			)
			with self.assertRaisesRegex(frappe.ValidationError, message):
				doc.insert()
			frappe.db.rollback()
		self.assertEqual(frappe.db.count(DOCTYPE), batches, "no batch was made")
		self.assertEqual(payout_paths(self.sandbox), before, "nothing was sent")
