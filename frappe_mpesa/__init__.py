"""frappe_mpesa: M-Pesa payments for Frappe and ERPNext through Safaricom's Daraja API."""

__version__ = "0.1.0"
