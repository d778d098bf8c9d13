// Payouts from a submitted document's form: B2B to the supplier's paybill or till, and tax to
// KRA against a PRN. Each makes a draft batch; another Accounts Manager approves it.
frappe.provide("frappe_mpesa.payouts");

frappe_mpesa.payouts.open = (r) => frappe.set_route("Form", "B2C Payment Disbursement", r.message);

frappe_mpesa.payouts.settings_field = () => ({
	fieldname: "mpesa_settings",
	fieldtype: "Link",
	options: "Mpesa Settings",
	label: __("Mpesa Settings"),
	reqd: 1,
});

frappe_mpesa.payouts.remit_tax = (frm, extra_fields) => {
	frappe.prompt(
		[
			frappe_mpesa.payouts.settings_field(),
			{
				fieldname: "prn",
				fieldtype: "Data",
				label: __("PRN"),
				reqd: 1,
				description: __("The Payment Registration Number KRA issued for this tax (iTax)."),
			},
			...(extra_fields || []),
		],
		(values) =>
			frappe
				.call({
					method: "frappe_mpesa.erpnext.payouts.make_tax_remittance",
					args: { doctype: frm.doctype, name: frm.doc.name, ...values },
					freeze: true,
				})
				.then(frappe_mpesa.payouts.open),
		__("Remit tax to KRA"),
		__("Make batch")
	);
};
