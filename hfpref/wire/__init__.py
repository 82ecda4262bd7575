"""The wire: HTTP to OpenAI-compatible endpoints (and the in-process ``local:`` model), answers,
the request cache, the budget, rate limits and progress. It knows nothing of datasets, stages or the Hub."""
