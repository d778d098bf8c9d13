// Copyright (c) 2026, frappe_mpesa developers and contributors
// For license information, please see license.txt

frappe.query_reports["M-Pesa Reconciliation"] = {
	filters: [
		{
			fieldname: "from_date",
			label: __("From Date"),
			fieldtype: "Date",
			default: frappe.datetime.add_days(frappe.datetime.get_today(), -30),
			reqd: 1,
		},
		{
			fieldname: "to_date",
			label: __("To Date"),
			fieldtype: "Date",
			default: frappe.datetime.get_today(),
			reqd: 1,
		},
		{ fieldname: "mpesa_settings", label: __("Mpesa Settings"), fieldtype: "Link", options: "Mpesa Settings" },
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
