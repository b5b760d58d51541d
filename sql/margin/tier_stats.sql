-- params: events
-- Per action tier, over the events with credits of {events}: how many, their credits and exact
-- COGS, and the (cost, credits) of the events at the nearest-rank median, p90 and p99 of cost per
-- credit. The order is the exact fraction cost_usd / credits, compared as an integer in units of
-- 1e-30 USD per credit (cost_usd has 12 decimal places), ties broken by cost and credits, so the
-- ranks are the same on every run. Streams: DuckDB sorts beyond memory.
WITH ranked AS (
    SELECT action, cost_usd, credits,
           row_number() OVER (PARTITION BY action ORDER BY
               CAST(cost_usd * 1000000000000 AS HUGEINT) * CAST(1000000000000000000 AS HUGEINT) // credits,
               cost_usd, credits) AS rank,
           count(*) OVER (PARTITION BY action) AS n
    FROM ({{ events }})
    WHERE credits > 0
)
SELECT action, any_value(n) AS events, sum(credits) AS credits, sum(cost_usd) AS cost_usd,
       any_value(cost_usd) FILTER (rank = (n + 1) // 2) AS median_cost,
       any_value(credits) FILTER (rank = (n + 1) // 2) AS median_credits,
       any_value(cost_usd) FILTER (rank = (n * 9 + 9) // 10) AS p90_cost,
       any_value(credits) FILTER (rank = (n * 9 + 9) // 10) AS p90_credits,
       any_value(cost_usd) FILTER (rank = (n * 99 + 99) // 100) AS p99_cost,
       any_value(credits) FILTER (rank = (n * 99 + 99) // 100) AS p99_credits
FROM ranked
GROUP BY action
ORDER BY action
