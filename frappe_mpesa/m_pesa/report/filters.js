// Copyright (c) 2026, frappe_mpesa developers and contributors
// For license information, please see license.txt

// The filters the M-Pesa reports share, pulled into each report's script by Frappe's include
// directive (frappe.model.utils.render_include, which refuses any other mention of the directive
// in what it includes). Each report's script runs in the page's global scope, so what is shared
// is assigned to a namespace, never declared with const or let.

frappe.provide("frappe_mpesa.report_filters");

// From and To Date, required, the last 30 days by default.
frappe_mpesa.report_filters.period = function () {
	return [
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
	];
};

frappe_mpesa.report_filters.settings = function () {
	return { fieldname: "mpesa_settings", label: __("Mpesa Settings"), fieldtype: "Link", options: "Mpesa Settings" };
};
