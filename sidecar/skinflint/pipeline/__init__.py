"""The pipeline: the provider-neutral ``Call`` and, later, the stages it passes through.

Nothing in this package imports gRPC or the generated ``skinflint.v1`` stubs: transports
translate wire messages into these types, so a stage never sees a wire format.
"""
