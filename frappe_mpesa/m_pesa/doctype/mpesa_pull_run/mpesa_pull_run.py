# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

from frappe.model.document import Document


class MpesaPullRun(Document):
	# Written only by the pull job (frappe_mpesa.pull): what one run asked for and found.
	pass
