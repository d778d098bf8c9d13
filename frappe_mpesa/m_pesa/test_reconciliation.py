# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

"""The reconciliation screens (ERPNext): suggested matches, receipts allocated by a person over
invoices and posted exactly once, who may do it, the Collections and Reconciliation reports'
figures, and, in a headless browser as an Accounts User, the reports, the workspace's number
cards and the reconciliation screen showing what this test made. Skips without ERPNext and a
KES company (and the browser part without Chromium)."""

import json
import os
import shutil
import tempfile
import time
from urllib.parse import quote

import frappe
from frappe.utils import flt, now_datetime, nowdate

from frappe_mpesa.erpnext import reconciliation
from frappe_mpesa.m_pesa.report.m_pesa_collections import m_pesa_collections
from frappe_mpesa.m_pesa.report.m_pesa_reconciliation import m_pesa_reconciliation
from frappe_mpesa.m_pesa.test_desk import Desk, browser
from frappe_mpesa.testing import (
	MAKER,
	ErpnextRecords,
	ServedSandboxTestCase,
	delete_settings,
	erpnext_missing,
	make_settings,
	wait_for,
)

SETTINGS = "_Test Reconciliation"
REPORT_SETTINGS = "_Test Reconciliation Reports"
SHORTCODE, REPORT_SHORTCODE = "600441", "600442"
C2B = "Mpesa C2B Payment Register"
PE = "Payment Entry"


class TestReconciliation(ErpnextRecords, ServedSandboxTestCase):
	SETTINGS = SETTINGS
	SHORTCODE = SHORTCODE
	RECEIPT_PREFIX = "R"
	REQUIRES = staticmethod(erpnext_missing)

	@classmethod
	def setUpClass(cls):
		frappe.set_user("Administrator")
		delete_settings(SETTINGS)
		super().setUpClass()
		cls.make_records("Recon")
		cls.report_settings = make_settings(REPORT_SETTINGS, cls.site.url, business_shortcode=REPORT_SHORTCODE)
		cls.report_data = cls.make_report_data()
		frappe.db.commit()

	@classmethod
	def tearDownClass(cls):
		cls.remove_records()
		delete_settings(REPORT_SETTINGS)
		super().tearDownClass()

	def tearDown(self):
		frappe.set_user("Administrator")
		frappe.db.rollback()

	# ---- data ---------------------------------------------------------------------------

	@classmethod
	def invoice(cls, customer, amount):
		"""A submitted invoice of today; its name."""
		return super().invoice(customer, amount).name

	@classmethod
	def receipt(cls, amount, reference, settings=SETTINGS, first_name="JOHN", status="Unmatched", **values):
		"""A register row as a confirmation leaves it when nothing matched (already processed, so no
		posting job touches it)."""
		trans_id = f"R{cls.tag}{frappe.generate_hash(length=3).upper()}"
		shortcode = frappe.db.get_value("Mpesa Settings", settings, "business_shortcode")
		frappe.get_doc(
			{
				"doctype": C2B,
				"trans_id": trans_id,
				"name": trans_id,
				"mpesa_settings": settings,
				"transaction_type": "Pay Bill",
				"trans_time": now_datetime(),
				"trans_amount": amount,
				"currency": "KES",
				"business_shortcode": shortcode,
				"bill_ref_number": reference,
				"msisdn": "2547******149",
				"first_name": first_name,
				"status": status,
				"processed_on": now_datetime(),
				**values,
			}
		).db_insert()
		return trans_id

	@classmethod
	def make_report_data(cls):
		"""Under the reports' own shortcode: two unmatched receipts (1000, 2500), one posted (4000)."""
		customer = cls.customer()
		invoice = cls.invoice(customer, 4000)
		data = {
			"unmatched": [cls.receipt(1000, "NOTHING-1", REPORT_SETTINGS), cls.receipt(2500, "NOTHING-2", REPORT_SETTINGS)],
			"posted": cls.receipt(4000, "X", REPORT_SETTINGS),
			"invoice": invoice,
		}
		reconciliation.post([{"trans_id": data["posted"], "invoice": invoice, "amount": 4000}])
		data["entry"] = frappe.db.get_value(C2B, data["posted"], "payment_entry")
		return data

	def entries_for(self, trans_id):
		return frappe.get_all(PE, filters={"reference_no": trans_id, "docstatus": 1}, pluck="name")

	# ---- suggestions ----------------------------------------------------------------------

	def test_suggestions_by_reference_amount_and_payer(self):
		customer = self.customer(f"Wanjiku {self.tag} Traders")
		invoice = self.invoice(customer, 1700)
		other = self.invoice(self.customer(), 1700)
		written = invoice.lower().replace("-", " ")  # as a customer types it
		by_reference = self.receipt(1700, written, first_name="PETER")
		by_payer = self.receipt(55, "nothing", first_name="WANJIKU")
		frappe.db.commit()
		data = reconciliation.get_data({"mpesa_settings": SETTINGS})
		rows = {row.name: row for row in data["receipts"]}
		self.assertIn(by_reference, rows)
		best = rows[by_reference].suggestions[0]
		self.assertEqual((best["invoice"], best["why"]), (invoice, ["reference", "amount"]))
		# Same amount alone is a weaker suggestion, after the one the reference names.
		self.assertIn(other, [s["invoice"] for s in rows[by_reference].suggestions[1:]])
		self.assertEqual([(s["invoice"], s["why"]) for s in rows[by_payer].suggestions], [(invoice, ["payer"])])
		# Filters: amount and reference.
		only = reconciliation.get_data({"mpesa_settings": SETTINGS, "amount": 55})["receipts"]
		self.assertEqual([row.name for row in only], [by_payer])
		only = reconciliation.get_data({"mpesa_settings": SETTINGS, "reference": written[:6]})["receipts"]
		self.assertEqual([row.name for row in only], [by_reference])
		# The invoice's button finds the receipt its number names and the one its customer's name paid.
		found = {row.name: row.why for row in reconciliation.receipts_for_invoice(invoice)["receipts"]}
		self.assertEqual(found.get(by_reference), ["reference", "amount"])
		self.assertEqual(found.get(by_payer), ["payer"])

	def test_every_open_invoice_is_reachable(self):
		"""The open invoices come a page at a time, filtered on the server by customer, number and
		amount: paging through them reaches every one, once."""
		customer = self.customer()
		names = [self.invoice(customer, 100 + n) for n in range(5)]
		base = {"mpesa_settings": SETTINGS, "customer": customer, "invoice_page_length": 2}
		seen, start = [], 0
		while True:
			page = reconciliation.get_invoices(dict(base, invoice_start=start))
			self.assertEqual((page["invoice_count"], page["invoice_start"]), (5, start))
			self.assertLessEqual(len(page["invoices"]), 2)
			seen += [row.name for row in page["invoices"]]
			start += page["invoice_page_length"]
			if start >= page["invoice_count"]:
				break
		self.assertEqual(sorted(seen), sorted(names))
		# The screen's first answer is the first page, with the count.
		data = reconciliation.get_data(base)
		self.assertEqual(([row.name for row in data["invoices"]], data["invoice_count"]), (seen[:2], 5))
		# By number (all or part of it) and by amount, whatever the page size.
		one = {"mpesa_settings": SETTINGS, "invoice_page_length": 1}
		self.assertEqual([r.name for r in reconciliation.get_invoices(dict(one, invoice=names[3]))["invoices"]], [names[3]])
		part = names[3].split("-", 1)[-1]
		self.assertIn(names[3], [r.name for r in reconciliation.get_invoices(dict(base, invoice=part, invoice_page_length=5))["invoices"]])
		by_amount = reconciliation.get_invoices(dict(base, invoice_amount=103))
		self.assertEqual(([r.name for r in by_amount["invoices"]], by_amount["invoice_count"]), ([names[3]], 1))
		# A receipt naming the last invoice is matched to it even when only one invoice is shown.
		trans_id = self.receipt(104, names[4].lower())
		frappe.db.commit()
		rows = {row.name: row for row in reconciliation.get_data(one)["receipts"]}
		self.assertEqual(rows[trans_id].suggestions[0]["invoice"], names[4])
		# A bad amount is an error naming the filter, never a crash.
		with self.assertRaisesRegex(frappe.ValidationError, "Invoice Amount"):
			reconciliation.get_invoices(dict(base, invoice_amount="abc"))
		with self.assertRaisesRegex(frappe.ValidationError, "Amount"):
			reconciliation.get_data(dict(base, amount="1e999x"))

	# ---- posting ----------------------------------------------------------------------------

	def test_one_receipt_over_two_invoices(self):
		customer = self.customer()
		first, second = self.invoice(customer, 1000), self.invoice(customer, 2000)
		trans_id = self.receipt(3500, "cash")
		frappe.db.commit()
		frappe.set_user(MAKER)  # an Accounts User ERPNext lets create Payment Entries
		posted = reconciliation.post(
			json.dumps(
				[
					{"trans_id": trans_id, "invoice": first, "amount": 1000},
					{"trans_id": trans_id, "invoice": second, "amount": 2000},
				]
			)
		)
		frappe.db.commit()
		frappe.set_user("Administrator")
		entry = frappe.get_doc(PE, posted[trans_id])
		self.assertEqual(entry.docstatus, 1)
		self.assertEqual((entry.party, flt(entry.received_amount), flt(entry.unallocated_amount)), (customer, 3500, 500))
		self.assertEqual(
			sorted((r.reference_name, flt(r.allocated_amount)) for r in entry.references), sorted([(first, 1000), (second, 2000)])
		)
		for invoice in (first, second):
			self.assertEqual(flt(frappe.db.get_value("Sales Invoice", invoice, "outstanding_amount")), 0)
		row = frappe.db.get_value(C2B, trans_id, ["payment_entry", "status", "customer"], as_dict=True)
		self.assertEqual((row.payment_entry, row.status, row.customer), (entry.name, "Partly allocated", customer))
		self.assertEqual(self.entries_for(trans_id), [entry.name])

	def test_two_receipts_to_one_invoice(self):
		customer = self.customer()
		invoice = self.invoice(customer, 5000)
		first, second = self.receipt(2000, invoice), self.receipt(3000, "x")
		frappe.db.commit()
		posted = reconciliation.post(
			[{"trans_id": first, "invoice": invoice, "amount": 2000}, {"trans_id": second, "invoice": invoice, "amount": 3000}]
		)
		frappe.db.commit()
		self.assertEqual(len(set(posted.values())), 2)
		for trans_id in (first, second):
			self.assertEqual(self.entries_for(trans_id), [posted[trans_id]])
			self.assertEqual(frappe.db.get_value(C2B, trans_id, "status"), "Posted")
		self.assertEqual(flt(frappe.db.get_value("Sales Invoice", invoice, "outstanding_amount")), 0)
		# Unallocated no more: neither is offered again.
		names = [row.name for row in reconciliation.get_data({"mpesa_settings": SETTINGS})["receipts"]]
		self.assertNotIn(first, names)
		self.assertNotIn(second, names)

	def test_a_second_post_of_a_receipt_is_refused(self):
		customer = self.customer()
		first, second = self.invoice(customer, 800), self.invoice(customer, 800)
		trans_id = self.receipt(800, first)
		frappe.db.commit()
		entry = reconciliation.post([{"trans_id": trans_id, "invoice": first, "amount": 800}])[trans_id]
		frappe.db.commit()
		with self.assertRaisesRegex(frappe.ValidationError, "already posted"):
			reconciliation.post([{"trans_id": trans_id, "invoice": second, "amount": 800}])
		frappe.db.rollback()
		with self.assertRaisesRegex(frappe.ValidationError, "already posted"):
			reconciliation.apply_to_invoice(trans_id, second)
		frappe.db.rollback()
		self.assertEqual(self.entries_for(trans_id), [entry])
		self.assertEqual(flt(frappe.db.get_value("Sales Invoice", second, "outstanding_amount")), 800)

	def test_bad_allocations_name_the_row_and_post_nothing(self):
		customer = self.customer()
		invoice = self.invoice(customer, 300)
		other_customer_invoice = self.invoice(self.customer(), 300)
		trans_id = self.receipt(500, "x")
		frappe.db.commit()
		cases = [
			([{"trans_id": trans_id, "invoice": invoice, "amount": "abc"}], "Row 1: amount"),
			([{"trans_id": trans_id, "invoice": invoice, "amount": 400}], "more than the 300.00 outstanding"),
			([{"trans_id": trans_id, "invoice": ""}], "Row 1: a receipt and an invoice"),
			(
				[
					{"trans_id": trans_id, "invoice": invoice, "amount": 200},
					{"trans_id": trans_id, "invoice": other_customer_invoice, "amount": 200},
				],
				"one customer",
			),
		]
		for allocations, message in cases:
			with self.assertRaisesRegex(frappe.ValidationError, message):
				reconciliation.post(allocations)
			frappe.db.rollback()
		self.assertEqual(self.entries_for(trans_id), [])
		self.assertFalse(frappe.db.get_value(C2B, trans_id, "payment_entry"))

	def test_who_may_read_and_post(self):
		frappe.set_user("Guest")
		with self.assertRaises(frappe.PermissionError):
			reconciliation.get_data({})
		with self.assertRaises(frappe.PermissionError):
			reconciliation.post([{"trans_id": "X", "invoice": "Y", "amount": 1}])
		frappe.set_user(MAKER)
		self.assertTrue(frappe.has_permission(C2B, "read"))
		self.assertIsInstance(reconciliation.get_data({"mpesa_settings": SETTINGS})["receipts"], list)
		self.assertTrue(reconciliation.may_post())
		# Nothing here is for a guest.
		for name in ("get_data", "receipts_for_invoice", "post", "apply_to_invoice"):
			method = getattr(reconciliation, name)
			self.assertIn(method, frappe.whitelisted)
			self.assertNotIn(method, frappe.guest_methods)

	# ---- reports ----------------------------------------------------------------------------

	def test_collections_report_figures(self):
		frappe.set_user(MAKER)
		filters = {"from_date": nowdate(), "to_date": nowdate(), "mpesa_settings": REPORT_SETTINGS}
		columns, rows, _message, chart, summary = m_pesa_collections.execute(filters)
		got = sorted((str(r.day), r.business_shortcode, r.status, r.receipts, r.amount) for r in rows)
		today = nowdate()
		self.assertEqual(got, [(today, REPORT_SHORTCODE, "Posted", 1, 4000), (today, REPORT_SHORTCODE, "Unmatched", 2, 3500)])
		values = {d["name"]: d["values"] for d in chart["data"]["datasets"]}
		self.assertEqual((chart["data"]["labels"], values["Matched"], values["Unmatched"]), ([today], [4000], [3500]))
		figures = {s["label"]: s["value"] for s in summary}
		self.assertEqual((figures["Collected"], figures["Matched"], figures["Unmatched"], figures["Receipts"]), (7500, 4000, 3500, 3))

	def test_reconciliation_report_flags_what_is_missing(self):
		frappe.set_user(MAKER)
		filters = {"from_date": nowdate(), "to_date": nowdate(), "mpesa_settings": REPORT_SETTINGS}
		columns, rows = m_pesa_reconciliation.execute(filters)
		fields = [c["fieldname"] for c in columns]
		self.assertIn("in_payment_entry", fields)
		statements = m_pesa_reconciliation.has_statements()
		self.assertEqual("in_statement" in fields, statements)
		by_id = {r.trans_id: r for r in rows}
		self.assertEqual(set(by_id), set(self.report_data["unmatched"]) | {self.report_data["posted"]})
		posted = by_id[self.report_data["posted"]]
		self.assertEqual((posted.in_register, posted.payment_entry, posted.in_payment_entry), (1, self.report_data["entry"], 1))
		self.assertEqual(posted.flag, "statement" if statements else "")
		for trans_id in self.report_data["unmatched"]:
			self.assertEqual(by_id[trans_id].in_payment_entry, 0)
			self.assertTrue(by_id[trans_id].flag.startswith("Payment Entry"), by_id[trans_id].flag)
		flagged = m_pesa_reconciliation.execute(dict(filters, only_flagged=1))[1]
		self.assertEqual(
			{r.trans_id for r in flagged}, set(by_id) if statements else set(self.report_data["unmatched"])
		)

	# ---- in a browser -----------------------------------------------------------------------

	def test_reports_workspace_and_screen_in_a_browser(self):
		make_driver = browser()
		out = os.environ.get("MPESA_SCREENSHOT_DIR") or tempfile.mkdtemp(prefix="mpesa-recon-")
		os.makedirs(out, exist_ok=True)
		print(f"\nReconciliation screenshots: {out}")
		data = self.report_data
		settings = quote(REPORT_SETTINGS)
		today = nowdate()
		period = f"from_date={today}&to_date={today}&mpesa_settings={settings}"
		pages = [
			("workspace", "m-pesa", {"text": ["M-PESA COLLECTED TODAY", "M-PESA UNMATCHED RECEIPTS", "M-PESA PAYOUTS IN FLIGHT", "M-Pesa Reconciliation"]}),
			("collections-report", f"query-report/{quote('M-Pesa Collections')}?{period}", {"text": ["7,500", "4,000", "3,500", REPORT_SHORTCODE], "kes": True}),
			(
				"reconciliation-report",
				f"query-report/{quote('M-Pesa Reconciliation')}?{period}",
				{"text": [*data["unmatched"], data["posted"], data["entry"], "Payment Entry"], "kes": True},
			),
			("reconciliation-screen", f"mpesa-reconciliation?mpesa_settings={settings}", {"text": [*data["unmatched"], "Open Sales Invoices"], "absent": [data["posted"]], "kes": True}),
		]
		profile = tempfile.mkdtemp(prefix="mpesa-chromium-")
		try:
			driver = make_driver(profile)
			try:
				desk = Desk(driver, self.site.url, MAKER, out, "accounts-user")
				problems = desk.visit_all(pages)
				# The cards show numbers once their counts arrive.
				driver.get(f"{self.site.url}/app/m-pesa")
				desk.settle()
				shown = desk.js(
					"return [...document.querySelectorAll('.number-widget-box')].map(e => e.innerText.trim())"
				)
				if len(shown) != 5 or not all(any(ch.isdigit() for ch in card) for card in shown):
					problems.append(f"number cards: {shown}")
			finally:
				driver.quit()
		finally:
			shutil.rmtree(profile, ignore_errors=True)
		self.assertEqual(problems, [])

	def test_allocate_and_apply_in_a_browser(self):
		"""As an Accounts User, clicking through: in the reconciliation screen an Unmatched receipt is
		allocated to an invoice and posted; on a Sales Invoice, Get M-Pesa Payments lists the
		customer's unallocated receipt and applying it pays the invoice."""
		from selenium.webdriver.common.by import By

		make_driver = browser()
		out = os.environ.get("MPESA_SCREENSHOT_DIR") or tempfile.mkdtemp(prefix="mpesa-recon-")
		os.makedirs(out, exist_ok=True)
		print(f"\nReconciliation screenshots: {out}")
		screen_invoice = self.invoice(self.customer(), 2300)
		screen_receipt = self.receipt(2300, f"PAY {self.tag}")
		customer = self.customer()
		form_invoice = self.invoice(customer, 900)
		# Matched to the customer by its account number, not posted (say the books were not set up).
		form_receipt = self.receipt(900, customer, status="Matched", customer=customer)
		frappe.db.commit()
		profile = tempfile.mkdtemp(prefix="mpesa-chromium-")
		try:
			driver = make_driver(profile)
			try:
				desk = Desk(driver, self.site.url, MAKER, out, "accounts-user")
				# The screen: this receipt and this invoice, found by the filters, picked, posted.
				query = f"mpesa_settings={quote(SETTINGS)}&reference={quote(self.tag)}&invoice={quote(screen_invoice)}"
				driver.get(f"{self.site.url}/app/mpesa-reconciliation?{query}")
				desk.settle()
				shown = desk.js("return document.querySelector('.mpesa-reconciliation').innerText")
				for wanted in (screen_receipt, screen_invoice, "2,300"):
					self.assertIn(wanted, shown)
				driver.find_element(By.CSS_SELECTOR, f'tr[data-receipt="{screen_receipt}"] .pick-receipt').click()
				driver.find_element(By.CSS_SELECTOR, f'tr[data-invoice="{screen_invoice}"] .pick-invoice').click()
				desk.screenshot("allocate-picked")
				self.click_visible(driver, "//button[contains(@class, 'primary-action')][contains(., 'Allocate and Post')]")
				self.wait_visible(driver, "//div[contains(@class, 'modal') and contains(@class, 'show')]//td[contains(., '%s')]" % screen_receipt)
				desk.screenshot("allocate-confirm")
				self.click_visible(driver, "//div[contains(@class, 'modal') and contains(@class, 'show')]//button[contains(., 'Yes')]")
				self.assertTrue(wait_for(lambda: frappe.db.get_value(C2B, screen_receipt, "payment_entry"), timeout=30))
				desk.settle()
				desk.screenshot("allocate-posted")
				entry = frappe.db.get_value(C2B, screen_receipt, "payment_entry")
				self.assertEqual(self.entries_for(screen_receipt), [entry])
				self.assertEqual(frappe.db.get_value(PE, entry, ["party_type", "paid_amount"]), ("Customer", 2300))
				self.assertEqual(flt(frappe.db.get_value("Sales Invoice", screen_invoice, "outstanding_amount")), 0)
				self.assertNotIn(screen_receipt, desk.js("return document.querySelector('.mpesa-receipts').innerText"))

				# The invoice's own button.
				driver.get(f"{self.site.url}/app/sales-invoice/{quote(form_invoice)}")
				desk.settle()
				self.click_visible(driver, "//button[contains(., 'Get Payments from')]")
				self.click_visible(driver, "//a[contains(@class, 'dropdown-item')][contains(., 'Get M-Pesa Payments')]")
				row = self.wait_visible(driver, f'//div[contains(@class, "modal") and contains(@class, "show")]//tr[@data-receipt="{form_receipt}"]')
				self.assertIn("900", row.text)
				self.assertIn("customer", row.text)
				desk.screenshot("invoice-get-payments")
				row.find_element(By.CSS_SELECTOR, ".mpesa-apply").click()
				self.assertTrue(wait_for(lambda: frappe.db.get_value(C2B, form_receipt, "payment_entry"), timeout=30))
				desk.settle()
				self.assertTrue(wait_for(lambda: desk.js("return cur_frm && cur_frm.doc.status") == "Paid", timeout=15))
				desk.screenshot("invoice-paid")
				entry = frappe.db.get_value(C2B, form_receipt, "payment_entry")
				self.assertEqual(self.entries_for(form_receipt), [entry])
				self.assertEqual(flt(frappe.db.get_value("Sales Invoice", form_invoice, "outstanding_amount")), 0)
				self.assertEqual(frappe.db.get_value(C2B, form_receipt, "status"), "Posted")
			finally:
				driver.quit()
		finally:
			shutil.rmtree(profile, ignore_errors=True)

	@staticmethod
	def wait_visible(driver, xpath, timeout=20):
		from selenium.webdriver.common.by import By

		def found():
			return next((e for e in driver.find_elements(By.XPATH, xpath) if e.is_displayed()), None)

		deadline = time.monotonic() + timeout
		while time.monotonic() < deadline:
			element = found()
			if element:
				return element
			time.sleep(0.25)
		raise AssertionError(f"nothing visible at {xpath}")

	def click_visible(self, driver, xpath):
		self.wait_visible(driver, xpath).click()
