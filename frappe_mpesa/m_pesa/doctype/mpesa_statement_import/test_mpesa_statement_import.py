# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

"""Statement import: a 1,000-row portal statement registered once; the same file refused, a copy
adding nothing; a malformed row named with nothing imported; another shortcode's statement refused;
who may import. The tests write the portal's CSV and XLSX themselves."""

import frappe

from frappe_mpesa import records, statement_import
from frappe_mpesa.testing import (
	CHECKER,
	MAKER,
	MpesaTestCase,
	delete_settings,
	delete_statement_imports,
	ensure_users,
	make_settings,
	new_statement_import,
	portal_receipt,
	portal_rows,
	receipt_prefix,
	statement_counts,
	statement_csv,
	statement_xlsx,
)

IMPORT = statement_import.IMPORT
SETTINGS = "_Test Statement Import"
SHORTCODE = "600771"


class TestMpesaStatementImport(MpesaTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		ensure_users()
		make_settings(SETTINGS, "https://example.com", business_shortcode=SHORTCODE)

	@classmethod
	def tearDownClass(cls):
		frappe.set_user("Administrator")
		delete_statement_imports(SETTINGS)
		delete_settings(SETTINGS)
		super().tearDownClass()

	def setUp(self):
		frappe.set_user(CHECKER)
		self.prefix = receipt_prefix()

	def tearDown(self):
		frappe.set_user("Administrator")

	def registered(self, start=0, n=None):
		"""How many of this test's receipts the register holds."""
		filters = {"name": ("like", f"{self.prefix}%"), "mpesa_settings": SETTINGS}
		return frappe.db.count(records.C2B, filters)

	def test_a_thousand_rows_import_once_and_a_copy_adds_nothing(self):
		rows = portal_rows(self.prefix, 1000)
		first = new_statement_import(SETTINGS, statement_csv(rows, SHORTCODE), "statement.csv")
		self.assertEqual(first.start_import(), statement_import.COMPLETED)
		first.reload()
		self.assertEqual((first.total_rows, first.imported, first.already_there, first.skipped), (1000, 1000, 0, 0))
		self.assertEqual(first.shortcode, SHORTCODE)
		self.assertEqual(self.registered(), 1000)
		self.assertEqual(statement_counts(first.name), {"Imported": 1000})
		row = frappe.get_doc(records.C2B, portal_receipt(self.prefix, 7))
		self.assertEqual(
			(row.source, row.bill_ref_number, float(row.trans_amount), row.business_shortcode),
			("Statement import", "INV-7", 107.0, SHORTCODE),
		)
		self.assertEqual((row.first_name, row.last_name, row.msisdn), ("CUSTOMER", "7", "2547****007"))
		self.assertTrue(row.trans_time)

		# The same file again: refused by its hash.
		again = frappe.get_doc({"doctype": IMPORT, "mpesa_settings": SETTINGS, "statement_file": first.statement_file})
		with self.assertRaises(frappe.UniqueValidationError):
			again.insert()
		frappe.db.rollback()

		# The same rows in another file (here the XLSX export): every row already there.
		copy = new_statement_import(SETTINGS, statement_xlsx(rows, SHORTCODE), "statement copy.xlsx")
		self.assertEqual(copy.start_import(), statement_import.COMPLETED)
		copy.reload()
		self.assertEqual((copy.imported, copy.already_there), (0, 1000))
		self.assertEqual(statement_counts(copy.name), {"Already there": 1000})
		self.assertEqual(self.registered(), 1000)

	def test_a_malformed_row_is_named_and_nothing_is_imported(self):
		rows = portal_rows(self.prefix, 50)
		rows[30][5] = "12O.00"  # a letter O in Paid In
		doc = new_statement_import(SETTINGS, statement_csv(rows, SHORTCODE), "bad.csv")
		self.assertEqual(doc.start_import(), statement_import.FAILED)
		doc.reload()
		# Six account lines, the header, then rows: the 31st data row is the file's row 38.
		self.assertIn("row 38", doc.error)
		self.assertIn("'Paid In'", doc.error)
		self.assertEqual(self.registered(), 0)
		self.assertEqual(statement_counts(doc.name), {})

	def test_a_failure_while_registering_rolls_back_every_row(self):
		doc = new_statement_import(SETTINGS, statement_csv(portal_rows(self.prefix, 40), SHORTCODE), "late-failure.csv")
		# Frappe's own brake on a transaction's writes, set low: it trips midway through the rows.
		frappe.db.MAX_WRITES_PER_TRANSACTION = 25
		try:
			self.assertEqual(doc.start_import(), statement_import.FAILED)
		finally:
			del frappe.db.MAX_WRITES_PER_TRANSACTION
		self.assertEqual(self.registered(), 0)
		self.assertEqual(statement_counts(doc.name), {})
		self.assertIn("TooManyWritesError", frappe.db.get_value(IMPORT, doc.name, "error"))

	def test_rows_that_are_not_payments_in_get_a_reason(self):
		rows = portal_rows(self.prefix, 3)
		rows[1][4] = "Failed"
		rows[2][5], rows[2][6] = "", "-250.00"
		doc = new_statement_import(SETTINGS, statement_csv(rows, SHORTCODE), "mixed.csv")
		doc.start_import()
		lines = {line.receipt: line for line in frappe.get_doc(IMPORT, doc.name).lines}
		self.assertEqual(lines[portal_receipt(self.prefix, 0)].result, "Imported")
		self.assertEqual(lines[portal_receipt(self.prefix, 1)].result, "Skipped")
		self.assertIn("Failed", lines[portal_receipt(self.prefix, 1)].note)
		self.assertIn("not a payment in", lines[portal_receipt(self.prefix, 2)].note)
		self.assertEqual(self.registered(), 1)

	def test_another_shortcodes_statement_is_refused(self):
		doc = new_statement_import(SETTINGS, statement_csv(portal_rows(self.prefix, 5), "600772"), "other.csv")
		self.assertEqual(doc.start_import(), statement_import.FAILED)
		self.assertIn("600772", frappe.db.get_value(IMPORT, doc.name, "error"))
		self.assertEqual(self.registered(), 0)

	def test_accounts_users_read_but_do_not_import(self):
		doc = new_statement_import(SETTINGS, statement_csv(portal_rows(self.prefix, 2), SHORTCODE), "roles.csv")
		frappe.set_user(MAKER)
		self.assertTrue(frappe.has_permission(IMPORT, "read", doc.name))
		self.assertFalse(frappe.has_permission(IMPORT, "create"))
		with self.assertRaises(frappe.PermissionError):
			statement_import.start(doc.name)
		frappe.db.rollback()
		self.assertEqual(frappe.db.get_value(IMPORT, doc.name, "status"), "Draft")
		self.assertEqual(self.registered(), 0)

	def test_a_big_file_is_queued_for_the_long_queue(self):
		rows = portal_rows(self.prefix, 2500)
		doc = new_statement_import(SETTINGS, statement_csv(rows, SHORTCODE), "big.csv")
		queued = []
		real_enqueue = frappe.enqueue
		frappe.enqueue = lambda method, **kwargs: queued.append((method, kwargs))
		try:
			self.assertEqual(doc.start_import(), statement_import.QUEUED)
		finally:
			frappe.enqueue = real_enqueue
		(method, kwargs), = queued
		self.assertEqual((method, kwargs["queue"], kwargs["name"]), ("frappe_mpesa.statement_import.run", "long", doc.name))
		# What the worker runs:
		statement_import.run(doc.name)
		self.assertEqual(frappe.db.get_value(IMPORT, doc.name, "status"), statement_import.COMPLETED)
		self.assertEqual(self.registered(), 2500)
