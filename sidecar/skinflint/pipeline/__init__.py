"""The pipeline: the stages a ``Call`` passes through, in the order it meets them.

``complete`` runs the Complete path: ``response_cache`` (exact, then the fleet L2
``cache_l2``, single flight), ``routing`` (pins, tiers, policy bounds; ``router_model`` and
``router_features`` score ``auto``; ``cascade`` checks a cheap answer before escalating, the
opt-in ``verifier`` with ``verifier_features`` and ``arith`` scoring the answer itself),
``prompt_cache`` (the provider prompt-cache plan per model), ``worst_case`` (what may be spent,
checked against ``policy.max_cost_nanousd``), ``budget_guard`` (reserve the worst case before
dispatch, commit the actual cost after it; ``budgets`` holds the domain types), ``dispatch``
(concurrency, deadline, retries, fallback, circuit breaker) and ``pricing`` (cost, baseline and
savings by lever). ``estimate`` answers everything but the provider call; ``projection`` turns
a workload (or the ledger's ``history``) into monthly cost; ``jobs`` holds the async lane's
types (still to come).

Nothing in this package imports gRPC or the generated ``skinflint.v1`` stubs: transports
translate wire messages into these types, so a stage never sees a wire format.
"""
