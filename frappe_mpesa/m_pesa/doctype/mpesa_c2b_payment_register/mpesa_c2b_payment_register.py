# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

from frappe.model.document import Document


class MpesaC2BPaymentRegister(Document):
	# Written only by the app (callbacks, queries, jobs), never edited from Desk.

	def before_insert(self):
		# What the recording itself knows; with ERPNext a job matches and posts it afterwards.
		if not self.status or self.status == "Unmatched":
			self.status = "Matched" if self.reference_name else "Unmatched"
