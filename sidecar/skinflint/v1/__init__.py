"""Generated gRPC stubs for skinflint.v1 (do not edit; run scripts/gen_stubs.py)."""
