"""`billing serve`: the customer portal, the balance API and the rate limiter's routes over HTTP.

`app`: the application; `tokens`: customers' API tokens and gateways' keys; `server`: request
limits and the uvicorn configuration.
"""
