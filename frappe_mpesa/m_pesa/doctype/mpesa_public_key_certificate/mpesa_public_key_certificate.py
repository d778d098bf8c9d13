# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

import frappe
from frappe import _
from frappe.model.document import Document

from frappe_mpesa import daraja
from frappe_mpesa.settings_store import certificate_bytes

ENVIRONMENTS = ("sandbox", "production")


class MpesaPublicKeyCertificate(Document):
	def validate(self):
		for environment in ENVIRONMENTS:
			self.describe(environment)

	def describe(self, environment):
		"""Parse the uploaded file with the C core and show what it is; refuse what it can't use."""
		file_url = self.get(f"{environment}_certificate")
		info = {}
		if file_url:
			try:
				info = daraja.certificate_info(certificate_bytes(file_url))
			except daraja.ValidationError as error:
				frappe.throw(
					_("The {0} certificate is not a usable X.509 certificate: {1}").format(
						_(environment), error
					),
					title=_("Invalid certificate"),
				)
			if info.get("key_type") != "RSA":
				frappe.throw(
					_("The {0} certificate must hold an RSA key, not {1}").format(
						environment, info.get("key_type")
					)
				)
		self.set(f"{environment}_subject", info.get("subject"))
		self.set(f"{environment}_key", f"{info['key_type']} {info['key_bits']}-bit" if info else None)
		self.set(f"{environment}_fingerprint", info.get("fingerprint_sha256"))
		self.set(f"{environment}_valid_until", info.get("not_after"))
