"""billing_pipelines: metering, credits and billing for AI products, orchestrated by Dagster."""
