// Copyright (c) 2026, frappe_mpesa developers and contributors
// For license information, please see license.txt

{% include "frappe_mpesa/m_pesa/report/filters.js" %}

frappe.query_reports["M-Pesa Collections"] = {
	filters: [
		...frappe_mpesa.report_filters.period(),
		frappe_mpesa.report_filters.settings(),
		{
			fieldname: "status",
			label: __("Status"),
			fieldtype: "Select",
			options: ["", "Unmatched", "Matched", "Posted", "Partly allocated", "Cancelled", "Reversed"],
		},
	],
};
