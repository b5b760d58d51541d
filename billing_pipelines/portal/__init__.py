"""The customer portal (issue 18) on `billing serve`: a signed, expiring link signs a customer
in (then a session cookie), and the customer sees the balance, usage by day and every invoice.

`links`: the server secret, the links and the session; `documents`: a customer's invoices,
adjustments and credit notes and their PDFs; `usage`: usage by day of any month; `routes`: the
portal's routes and the JSON API for programs.
"""
