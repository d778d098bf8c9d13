# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

import frappe

from frappe_mpesa.testing import MpesaTestCase, make_test_file, restore_certificate, upload_test_certificate


class TestMpesaPublicKeyCertificate(MpesaTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		upload_test_certificate()  # a usable sandbox certificate, whatever the site held

	@classmethod
	def tearDownClass(cls):
		frappe.db.rollback()
		restore_certificate()
		super().tearDownClass()

	def test_upload_shows_subject_key_and_fingerprint(self):
		single = upload_test_certificate()
		self.assertIn("CN=", single.sandbox_subject)
		self.assertEqual(single.sandbox_key, "RSA 2048-bit")
		self.assertEqual(len(single.sandbox_fingerprint.split(":")), 32)

	def test_bad_file_is_refused_with_a_clear_message(self):
		file = make_test_file(b"hello", file_name="not-a-cert.cer")
		single = frappe.get_single("Mpesa Public Key Certificate")
		single.production_certificate = file.file_url
		with self.assertRaises(frappe.ValidationError) as caught:
			single.save()
		self.assertIn("not a usable X.509 certificate", str(caught.exception))
