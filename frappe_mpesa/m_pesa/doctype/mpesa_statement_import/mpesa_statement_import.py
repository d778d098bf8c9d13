# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

import hashlib

import frappe
from frappe import _
from frappe.model.document import Document

from frappe_mpesa import statement_import


class MpesaStatementImport(Document):
	def validate(self):
		if self.is_new() or not self.sha256:
			self.status = statement_import.DRAFT
			self.sha256 = hashlib.sha256(statement_import.file_content(self.statement_file)).hexdigest()
		earlier = frappe.db.get_value(
			statement_import.IMPORT, {"sha256": self.sha256, "name": ("!=", self.name or "")}, "name"
		)
		if earlier:
			frappe.throw(
				_("This file was already imported: {0}").format(frappe.bold(earlier)), frappe.UniqueValidationError
			)

	@frappe.whitelist()
	def start_import(self):
		return statement_import.start(self.name)
