// Copyright (c) 2026, frappe_mpesa developers and contributors
// For license information, please see license.txt

{% include "frappe_mpesa/m_pesa/report/filters.js" %}

frappe.query_reports["M-Pesa Reconciliation"] = {
	filters: [
		...frappe_mpesa.report_filters.period(),
		frappe_mpesa.report_filters.settings(),
		{ fieldname: "only_flagged", label: __("Only Flagged"), fieldtype: "Check" },
	],
	formatter(value, row, column, data, default_formatter) {
		value = default_formatter(value, row, column, data);
		if (column.fieldname === "flag" && data && data.flag) {
			value = `<span class="indicator-pill red">${value}</span>`;
		}
		return value;
	},
};
