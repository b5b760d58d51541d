"""Live credit balances (issue 6): what customers see within seconds of an event landing.

`live`: the micro-batch that prices one landed file and refreshes its customers' balances;
`since_close`: the last close's snapshot and the events billed since; `balances`: the pure balance
computation; `state` and `models`: its tables in the billing database; `assets`: the Dagster asset,
job and sensor.
"""
