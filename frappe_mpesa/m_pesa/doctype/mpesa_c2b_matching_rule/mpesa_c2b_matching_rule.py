# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

from frappe.model.document import Document


class MpesaC2BMatchingRule(Document):
	# One row of Mpesa Settings' ordered matching rules (see frappe_mpesa.matching).
	pass
