"""The live dashboard (issue 6): balances within seconds of an event landing.

`live`: the micro-batch that prices one landed file and recomputes balances from the ledger;
`balances`: the pure balance computation; `models`: its tables in the billing database;
`tokens`: customers' API tokens; `app`: `billing serve` (balance API, customer page, rate limiter);
`assets`: the Dagster sensor and job.
"""
