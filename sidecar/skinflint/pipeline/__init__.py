"""The pipeline: the stages a ``Call`` passes through, in the order it meets them.

``complete`` runs the Complete path: ``routing`` (model resolution; the classifier lands
there later), ``prompt_cache`` (the provider prompt-cache plan per model), ``dispatch``
(concurrency, deadline, retries, fallback, circuit breaker) and ``pricing`` (cost, baseline
and savings by lever), with ``budget_guard`` reserving the worst case before dispatch and
committing the actual cost after it (``budgets`` holds the budget domain types). ``jobs`` and
``projection`` hold the domain types of features still to come.

Nothing in this package imports gRPC or the generated ``skinflint.v1`` stubs: transports
translate wire messages into these types, so a stage never sees a wire format.
"""
