# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

"""Payouts into the books (ERPNext and HRMS): a payroll of 200 Salary Slips paid as one batch and
posted as Journal Entries that clear payroll payable; an Expense Claim, an Employee Advance and a
Purchase Invoice each paid and allocated by a Payment Entry carrying the M-Pesa receipt."""

import frappe
from frappe.utils import flt

from frappe_mpesa import initiator
from frappe_mpesa.testing import CHECKER, ServedSandboxTestCase, wait_for

SETTINGS = "_Test Payouts"
DOCTYPE = "B2C Payment Disbursement"
PAYEE = "B2C Disbursement Payee"
B2C_PATH = "/mpesa/b2c/v3/paymentrequest"
COMPANY = "Test Shop Ltd"
CLEARING = "M-Pesa - TSL"
PAYABLE = "Payroll Payable - TSL"
SALARY = "Salary - TSL"
PERIOD = ("2026-11-01", "2026-11-30")
PAYROLL = 200


def has_erpnext_and_hrms():
	apps = frappe.get_installed_apps()
	return "erpnext" in apps and "hrms" in apps


class TestPayoutPosting(ServedSandboxTestCase):
	SETTINGS = SETTINGS
	SHORTCODE = "600986"
	SANDBOX_OPTIONS = {"callback_delay": 0.1}

	@classmethod
	def setUpClass(cls):
		if not has_erpnext_and_hrms():
			raise __import__("unittest").SkipTest("needs ERPNext and HRMS")
		super().setUpClass()
		frappe.set_user("Administrator")
		from frappe_mpesa.erpnext import setup

		setup.make_fields()
		frappe.db.set_value("Mpesa Settings", SETTINGS, {"company": COMPANY, "mpesa_account": CLEARING})
		if not frappe.get_cached_value("Company", COMPANY, "default_holiday_list"):
			frappe.db.set_value("Company", COMPANY, "default_holiday_list", cls.holiday_list())
			frappe.clear_document_cache("Company", COMPANY)
		frappe.db.set_single_value("Payroll Settings", "email_salary_slip_to_employee", 0)
		# HRMS takes the company's advance account (fetch_from) and wants it Receivable; the
		# standard chart's "Employee Advances" is Payable.
		default = frappe.db.get_value("Company", COMPANY, "default_employee_advance_account")
		if frappe.db.get_value("Account", default, "account_type") != "Receivable":
			frappe.db.set_value("Company", COMPANY, "default_employee_advance_account", cls.advance_account())
			frappe.clear_document_cache("Company", COMPANY)
		frappe.db.commit()

	@staticmethod
	def holiday_list():
		name = "M-Pesa Test Holidays 2026"
		if not frappe.db.exists("Holiday List", name):
			frappe.get_doc(
				{"doctype": "Holiday List", "holiday_list_name": name, "from_date": "2026-01-01", "to_date": "2027-12-31"}
			).insert(ignore_permissions=True)
		return name

	@staticmethod
	def advance_account():
		"""A Receivable account for employee advances (the chart's own is Payable, which HRMS refuses)."""
		name = "M-Pesa Test Advances - TSL"
		if not frappe.db.exists("Account", name):
			frappe.get_doc(
				{
					"doctype": "Account",
					"account_name": "M-Pesa Test Advances",
					"company": COMPANY,
					"parent_account": frappe.db.get_value("Account", "Employee Advances - TSL", "parent_account"),
					"account_type": "Receivable",
					"account_currency": "KES",
				}
			).insert(ignore_permissions=True)
		return name

	def tearDown(self):
		frappe.set_user("Administrator")

	# ---- fixtures ------------------------------------------------------------------------------

	def employee(self, i, tag):
		doc = frappe.get_doc(
			{
				"doctype": "Employee",
				"first_name": f"Payee{tag}",
				"last_name": f"N{i:04d}",
				"gender": "Female" if i % 2 else "Male",
				"date_of_birth": "1990-01-01",
				"date_of_joining": "2025-01-01",
				"company": COMPANY,
				"status": "Active",
				"mpesa_number": str(254712000000 + int(tag) * 1000 + i),
			}
		)
		doc.insert(ignore_permissions=True)
		return doc.name

	def structure(self, tag):
		component = "M-Pesa Test Basic"
		if not frappe.db.exists("Salary Component", component):
			frappe.get_doc(
				{
					"doctype": "Salary Component",
					"salary_component": component,
					"salary_component_abbr": "MTB",
					"type": "Earning",
					"accounts": [{"company": COMPANY, "account": SALARY}],
				}
			).insert(ignore_permissions=True)
		doc = frappe.get_doc(
			{
				"doctype": "Salary Structure",
				"name": f"M-Pesa Test Structure {tag}",
				"company": COMPANY,
				"currency": "KES",
				"payroll_frequency": "Monthly",
				"is_active": "Yes",
				"earnings": [{"salary_component": component, "abbr": "MTB", "amount_based_on_formula": 1, "formula": "base"}],
			}
		)
		doc.insert(ignore_permissions=True)
		doc.submit()
		return doc.name

	def salary_slips(self, count, tag):
		structure = self.structure(tag)
		slips = []
		for i in range(count):
			employee = self.employee(i, tag)
			assignment = frappe.get_doc(
				{
					"doctype": "Salary Structure Assignment",
					"employee": employee,
					"salary_structure": structure,
					"company": COMPANY,
					"currency": "KES",
					"from_date": "2026-01-01",
					"base": 10_000 + i,
					"payroll_payable_account": PAYABLE,
				}
			)
			assignment.insert(ignore_permissions=True)
			assignment.submit()
			slip = frappe.get_doc(
				{
					"doctype": "Salary Slip",
					"employee": employee,
					"company": COMPANY,
					"posting_date": PERIOD[1],
					"start_date": PERIOD[0],
					"end_date": PERIOD[1],
					"payroll_frequency": "Monthly",
					"salary_structure": structure,
				}
			)
			slip.insert(ignore_permissions=True)
			slip.submit()
			slips.append(slip)
		frappe.db.commit()
		return slips

	def accrue(self, slips):
		"""The payroll's accrual, as a Payroll Entry would post it: salary expense to payroll payable."""
		total = sum(flt(s.net_pay) for s in slips)
		entry = frappe.get_doc(
			{
				"doctype": "Journal Entry",
				"company": COMPANY,
				"posting_date": PERIOD[1],
				"accounts": [
					{"account": SALARY, "debit_in_account_currency": total, "cost_center": "Main - TSL"},
					{"account": PAYABLE, "credit_in_account_currency": total, "cost_center": "Main - TSL"},
				],
			}
		)
		entry.insert(ignore_permissions=True)
		entry.submit()
		frappe.db.commit()
		return entry.name, total

	def approve_send_and_post(self, name):
		frappe.set_user(CHECKER)
		frappe.get_doc(DOCTYPE, name).submit()
		frappe.db.commit()
		frappe.set_user("Administrator")
		initiator.send_batch(name)

		def done():
			frappe.db.rollback()
			return not frappe.db.count(PAYEE, {"parent": name, "status": ("in", ("Queued", "Sent"))})

		self.assertTrue(wait_for(done, timeout=120), frappe.db.get_value(DOCTYPE, name, ["status", "in_flight_count"]))
		from frappe_mpesa.erpnext import payouts

		payouts.post_batch(name)
		frappe.db.rollback()
		return frappe.get_all(
			PAYEE,
			filters={"parent": name},
			fields=["name", "status", "amount", "transaction_receipt", "ledger_entry_type", "ledger_entry", "originator_conversation_id", "reference_name", "error"],
		)

	# ---- tests ---------------------------------------------------------------------------------

	def test_payroll_of_200_is_paid_and_clears_payroll_payable(self):
		tag = frappe.db.count("Salary Structure", {"name": ("like", "M-Pesa Test Structure %")}) + 1
		slips = self.salary_slips(PAYROLL, tag)
		accrual, total = self.accrue(slips)
		from frappe_mpesa.erpnext import payouts

		requests_before = self.sandbox.count(B2C_PATH)
		name = payouts.make_batch("Salary Slip", [s.name for s in slips], SETTINGS)
		frappe.db.commit()
		batch = frappe.get_doc(DOCTYPE, name)
		self.assertEqual((batch.payee_count, flt(batch.total_amount), batch.command_id), (PAYROLL, total, "SalaryPayment"))
		rows = self.approve_send_and_post(name)
		self.assertEqual(self.sandbox.count(B2C_PATH) - requests_before, PAYROLL, "exactly one request per payee")
		self.assertEqual([r for r in rows if r.status != "Completed" or not r.transaction_receipt], [])
		self.assertEqual(len({r.originator_conversation_id for r in rows}), PAYROLL)
		self.assertEqual([r for r in rows if r.ledger_entry_type != "Journal Entry" or not r.ledger_entry], [], [r.error for r in rows if r.error][:3])
		entries = [r.ledger_entry for r in rows]
		self.assertEqual(len(set(entries)), PAYROLL)
		lines = frappe.get_all(
			"Journal Entry Account",
			filters={"parent": ("in", entries)},
			fields=["parent", "account", "debit", "credit", "party_type", "party"],
		)
		self.assertEqual(sum(flt(l.debit) for l in lines if l.account == PAYABLE), total)
		self.assertEqual(sum(flt(l.credit) for l in lines if l.account == CLEARING), total)
		cheques = dict(frappe.get_all("Journal Entry", filters={"name": ("in", entries)}, fields=["name", "cheque_no"], as_list=True))
		self.assertEqual({cheques[r.ledger_entry] for r in rows}, {r.transaction_receipt for r in rows})
		balance = frappe.db.sql(
			"select sum(debit - credit) from `tabGL Entry` where account = %s and is_cancelled = 0 and voucher_no in %s",
			(PAYABLE, tuple([accrual, *entries])),
		)[0][0]
		self.assertEqual(flt(balance), 0, "payroll payable cleared")
		# Posting again makes nothing: one entry per receipt.
		self.assertEqual(payouts.post_batch(name), 0)
		with self.assertRaises(frappe.ValidationError):
			payouts.make_batch("Salary Slip", [slips[0].name], SETTINGS)
		frappe.db.rollback()

	def test_expense_claim_advance_and_purchase_invoice_are_paid_by_payment_entries(self):
		from frappe_mpesa.erpnext import payouts

		tag = 900 + frappe.db.count("Employee", {"first_name": ("like", "Payee9%")})
		employee = self.employee(1, tag)
		claim_type = "M-Pesa Test Travel"
		if not frappe.db.exists("Expense Claim Type", claim_type):
			frappe.get_doc(
				{"doctype": "Expense Claim Type", "expense_type": claim_type, "accounts": [{"company": COMPANY, "default_account": SALARY}]}
			).insert(ignore_permissions=True)
		claim = frappe.get_doc(
			{
				"doctype": "Expense Claim",
				"employee": employee,
				"company": COMPANY,
				"posting_date": "2026-11-20",
				"approval_status": "Approved",
				"payable_account": "Creditors - TSL",
				"cost_center": "Main - TSL",
				"expenses": [{"expense_type": claim_type, "expense_date": "2026-11-20", "amount": 1500, "sanctioned_amount": 1500, "cost_center": "Main - TSL"}],
			}
		)
		claim.insert(ignore_permissions=True)
		claim.submit()
		advance = frappe.get_doc(
			{
				"doctype": "Employee Advance",
				"employee": employee,
				"company": COMPANY,
				"posting_date": "2026-11-20",
				"purpose": "Field trip",
				"advance_amount": 2500,
				"exchange_rate": 1,
				"currency": "KES",
			}
		)
		advance.insert(ignore_permissions=True)
		advance.submit()
		supplier_name = f"M-Pesa Test Supplier {tag}"
		supplier = frappe.get_doc(
			{"doctype": "Supplier", "supplier_name": supplier_name, "supplier_group": frappe.db.get_value("Supplier Group", {"is_group": 0}, "name"), "mpesa_number": "254712999001", "default_currency": "KES"}
		).insert(ignore_permissions=True)
		item = "M-Pesa Test Service"
		if not frappe.db.exists("Item", item):
			frappe.get_doc(
				{"doctype": "Item", "item_code": item, "item_group": frappe.db.get_value("Item Group", {"is_group": 0}, "name"), "is_stock_item": 0, "stock_uom": "Nos"}
			).insert(ignore_permissions=True)
		invoice = frappe.get_doc(
			{
				"doctype": "Purchase Invoice",
				"supplier": supplier.name,
				"company": COMPANY,
				"posting_date": "2026-11-20",
				"credit_to": "Creditors - TSL",
				# The company's currency, whatever the site's default (another test sets that).
				"currency": "KES",
				"conversion_rate": 1,
				"items": [{"item_code": item, "qty": 1, "rate": 3200, "expense_account": SALARY, "cost_center": "Main - TSL"}],
			}
		)
		invoice.insert(ignore_permissions=True)
		invoice.submit()
		frappe.db.commit()
		for doctype, doc, amount in (("Expense Claim", claim, 1500), ("Employee Advance", advance, 2500), ("Purchase Invoice", invoice, 3200)):
			name = payouts.make_batch(doctype, [doc.name], SETTINGS)
			frappe.db.commit()
			rows = self.approve_send_and_post(name)
			self.assertEqual(len(rows), 1)
			row = rows[0]
			self.assertEqual((row.status, row.ledger_entry_type), ("Completed", "Payment Entry"), row.error)
			entry = frappe.get_doc("Payment Entry", row.ledger_entry)
			self.assertEqual((entry.docstatus, entry.payment_type, entry.paid_from), (1, "Pay", CLEARING))
			self.assertEqual(entry.reference_no, row.transaction_receipt)
			self.assertEqual(flt(entry.paid_amount), amount)
			self.assertEqual([(r.reference_doctype, r.reference_name, flt(r.allocated_amount)) for r in entry.references], [(doctype, doc.name, amount)])
			doc.reload()
			if doctype == "Purchase Invoice":
				self.assertEqual(flt(doc.outstanding_amount), 0)
			elif doctype == "Expense Claim":
				self.assertEqual(flt(doc.total_amount_reimbursed), amount)
			else:
				self.assertEqual(flt(doc.paid_amount), amount)
			self.assertEqual(doc.status, "Paid")
