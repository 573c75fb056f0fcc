"""The gRPC transport: ``skinflint.v1`` messages <-> domain objects, errors -> statuses."""
