# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

"""Install, hand-back and uninstall (install.py), on data the tests make and roll back: a record
as frappe/payments left it is adopted and handed back as it was, a stored Security Credential is
gone from __Auth too, and the uninstall hooks' cleanup leaves nothing of the app behind."""

import os

import frappe
from frappe.utils.password import get_decrypted_password, set_encrypted_password

from frappe_mpesa import install
from frappe_mpesa.testing import (
	CERTIFICATE,
	MpesaTestCase,
	restore_certificate,
	unique_shortcode,
	upload_test_certificate,
)

SETTINGS = "Mpesa Settings"
RECORD = "_Test Payments Record"


def auth_fields(name):
	rows = frappe.db.sql("select fieldname from `__Auth` where doctype = %s and name = %s", (SETTINGS, name))
	return {row[0] for row in rows}


class TestHandBack(MpesaTestCase):
	def tearDown(self):
		frappe.db.rollback()
		frappe.defaults._clear_cache("__default")
		frappe.clear_document_cache(SETTINGS, RECORD)

	def payments_record(self, sandbox=True):
		"""A row as frappe/payments wrote it: no callback id, business_shortcode empty, the till
		number set, a Security Credential kept (here also in __Auth, as a Password field)."""
		till = unique_shortcode()
		columns = install._columns()
		row = {
			"name": RECORD,
			"payment_gateway_name": RECORD,
			"consumer_key": "payments-key",
			"consumer_secret": "*****",
			"online_passkey": "*****",
			"till_number": till,
			"business_shortcode": None,
			"transaction_limit": 150000,
			"creation": frappe.utils.now(),
			"modified": frappe.utils.now(),
			"owner": "Administrator",
			"modified_by": "Administrator",
		}
		if "sandbox" in columns:
			row["sandbox"] = int(sandbox)
		if "security_credential" in columns:
			row["security_credential"] = "PAYMENTS-STORED-CREDENTIAL"
		names = ", ".join(f"`{key}`" for key in row)
		frappe.db.sql(
			f"insert into `tab{SETTINGS}` ({names}) values ({', '.join(['%s'] * len(row))})",
			tuple(row.values()),
		)
		set_encrypted_password(SETTINGS, RECORD, "payments-secret", "consumer_secret")
		set_encrypted_password(SETTINGS, RECORD, "payments-passkey", "online_passkey")
		set_encrypted_password(SETTINGS, RECORD, "PAYMENTS-STORED-CREDENTIAL", "security_credential")
		return till

	def test_adopted_sandbox_record_is_handed_back_as_payments_had_it(self):
		till = self.payments_record(sandbox=True)
		install.adopt_payments_records()
		adopted = frappe.db.get_value(
			SETTINGS, RECORD, ["business_shortcode", "transaction_type", "environment", "callback_id"], as_dict=True
		)
		self.assertEqual((adopted.business_shortcode, adopted.transaction_type), (till, "PayBill"))
		self.assertEqual(adopted.environment, "Sandbox")
		self.assertTrue(adopted.callback_id)
		self.assertIn("callback_secret", auth_fields(RECORD))

		install.restore_payments_values([RECORD])
		back = frappe.db.sql(f"select * from `tab{SETTINGS}` where name = %s", RECORD, as_dict=True)[0]
		self.assertIsNone(back.business_shortcode, "payments had no business shortcode")
		self.assertEqual(back.till_number, till)
		if "sandbox" in back:
			self.assertEqual(back.sandbox, 1)
		self.assertEqual(auth_fields(RECORD), {"consumer_secret", "online_passkey"})
		self.assertEqual(get_decrypted_password(SETTINGS, RECORD, "consumer_secret"), "payments-secret")
		self.assertEqual(get_decrypted_password(SETTINGS, RECORD, "online_passkey"), "payments-passkey")
		self.assertNotIn(RECORD, install._payments_values())

	def test_production_record_keeps_a_shortcode_edited_since(self):
		if "sandbox" not in install._columns():
			self.skipTest("no payments sandbox column on this site: every payments record is Sandbox")
		till = self.payments_record(sandbox=False)
		install.adopt_payments_records()
		self.assertEqual(
			frappe.db.get_value(SETTINGS, RECORD, ["business_shortcode", "till_number", "environment"]),
			(till, till, "Production"),
		)
		frappe.db.set_value(SETTINGS, RECORD, "business_shortcode", "7654321")
		install.restore_payments_values([RECORD])
		self.assertEqual(frappe.db.get_value(SETTINGS, RECORD, "business_shortcode"), "7654321")
		self.assertEqual(frappe.db.get_value(SETTINGS, RECORD, "sandbox"), 0)

	def test_cleared_security_credential_is_gone_from_auth(self):
		self.payments_record()
		install.adopt_payments_records()
		self.assertNotIn("security_credential", auth_fields(RECORD))
		self.assertIsNone(
			get_decrypted_password(SETTINGS, RECORD, "security_credential", raise_exception=False)
		)
		if "security_credential" in install._columns():
			self.assertIsNone(frappe.db.get_value(SETTINGS, RECORD, "security_credential"))


class TestUninstallCleanup(MpesaTestCase):
	"""The uninstall hooks' cleanup functions, run inside a transaction that is rolled back (files
	on disk are only ever the tests' own)."""

	@classmethod
	def tearDownClass(cls):
		frappe.db.rollback()
		restore_certificate()
		super().tearDownClass()

	def tearDown(self):
		frappe.db.rollback()
		frappe.clear_cache(doctype="Mpesa Express Request")

	def test_certificate_values_and_files_are_found_and_removed(self):
		single = upload_test_certificate()
		test_file = frappe.get_doc("File", {"file_url": single.sandbox_certificate})
		path = test_file.get_full_path()
		self.assertTrue(os.path.exists(path))
		found = install.attachments(install.OUR_DOCTYPES)
		self.assertIn(test_file.name, found)
		install.delete_files([test_file.name])
		self.assertFalse(frappe.db.exists("File", test_file.name))
		shared = frappe.db.exists("File", {"content_hash": test_file.content_hash})
		self.assertEqual(os.path.exists(path), bool(shared), "the file on disk goes unless shared")
		install.forget_singles()
		self.assertEqual(frappe.db.count("Singles", {"doctype": CERTIFICATE}), 0)

	def test_what_the_site_keeps_about_our_doctypes_is_forgotten(self):
		kept = frappe.get_doc(
			{"doctype": "Comment", "comment_type": "Comment", "reference_doctype": "User",
			 "reference_name": "Administrator", "content": "not ours"}
		).insert(ignore_permissions=True)
		ours = [
			frappe.get_doc(
				{"doctype": "Comment", "comment_type": "Comment", "reference_doctype": "Mpesa Express Request",
				 "reference_name": "x", "content": "ours"}
			).insert(ignore_permissions=True, ignore_links=True),
			frappe.get_doc(
				{"doctype": "Version", "ref_doctype": "B2C Payment Disbursement", "docname": "x", "data": "{}"}
			).insert(ignore_permissions=True, ignore_links=True),
			frappe.get_doc(
				{"doctype": "Deleted Document", "deleted_doctype": "Mpesa Callback Log", "deleted_name": "x",
				 "data": "{}"}
			).insert(ignore_permissions=True, ignore_links=True),
			frappe.get_doc(
				{"doctype": "Deleted Document", "deleted_doctype": "DocType", "deleted_name": "Mpesa Callback Log",
				 "data": "{}"}
			).insert(ignore_permissions=True, ignore_links=True),
		]
		install.forget_references(install.OUR_DOCTYPES)
		for doc in ours:
			self.assertFalse(frappe.db.exists(doc.doctype, doc.name), doc.doctype)
		self.assertTrue(frappe.db.exists("Comment", kept.name))
