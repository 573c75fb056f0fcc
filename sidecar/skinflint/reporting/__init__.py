"""``skinflint report``: spend, baseline and savings from the ledger, as tables, JSON and charts."""
