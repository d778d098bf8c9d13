// Copyright (c) 2026, frappe_mpesa developers and contributors
// For license information, please see license.txt

frappe.query_reports["M-Pesa Collections"] = {
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
		{
			fieldname: "status",
			label: __("Status"),
			fieldtype: "Select",
			options: ["", "Unmatched", "Matched", "Posted", "Partly allocated", "Cancelled", "Reversed"],
		},
	],
};
