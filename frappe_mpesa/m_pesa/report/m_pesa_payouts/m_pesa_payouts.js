// Copyright (c) 2026, frappe_mpesa developers and contributors
// For license information, please see license.txt

frappe.query_reports["M-Pesa Payouts"] = {
	filters: [
		{ fieldname: "from_date", label: __("From Date"), fieldtype: "Date" },
		{ fieldname: "to_date", label: __("To Date"), fieldtype: "Date" },
		{ fieldname: "batch", label: __("Batch"), fieldtype: "Link", options: "B2C Payment Disbursement" },
		{ fieldname: "mpesa_settings", label: __("Mpesa Settings"), fieldtype: "Link", options: "Mpesa Settings" },
		{ fieldname: "status", label: __("Status"), fieldtype: "Select", options: "\nQueued\nSent\nCompleted\nFailed\nUnknown" },
		{ fieldname: "payout_kind", label: __("Kind"), fieldtype: "Select", options: "\nB2C\nB2B Paybill\nB2B Till\nTax" },
		{ fieldname: "party_type", label: __("Party Type"), fieldtype: "Select", options: "\nEmployee\nSupplier\nCustomer" },
		{ fieldname: "party", label: __("Party"), fieldtype: "Dynamic Link", options: "party_type" },
		{ fieldname: "phone", label: __("Phone"), fieldtype: "Data" },
	],
};
