{% include "frappe_mpesa/erpnext/client_scripts/payouts.js" %}

frappe.ui.form.on("Journal Entry", {
	refresh(frm) {
		if (frm.doc.docstatus !== 1) return;
		frm.add_custom_button(
			__("Remit tax to KRA"),
			() =>
				frappe_mpesa.payouts.remit_tax(frm, [
					{
						fieldname: "tax_account",
						fieldtype: "Link",
						options: "Account",
						label: __("Tax Account"),
						description: __("Left blank: the tax account this entry credits."),
						get_query: () => ({ filters: { company: frm.doc.company, is_group: 0, root_type: "Liability" } }),
					},
					{ fieldname: "amount", fieldtype: "Currency", label: __("Amount"), description: __("Left blank: what this entry credits to it.") },
				]),
			__("Pay by M-Pesa")
		);
	},
});
