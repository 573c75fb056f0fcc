"""Regenerate the Python gRPC stubs in sidecar/skinflint/v1 from proto/.

`python scripts/gen_stubs.py --check` exits 1 when the committed stubs differ from what the
.proto files generate (CI runs it), so a contract change can never ship with stale stubs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
OUT_PACKAGE = ROOT / "sidecar" / "skinflint" / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(out_root: Path) -> list[Path]:
    """Run protoc for every .proto under proto/; returns the generated files."""
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(p for p in (out_root / "skinflint" / "v1").iterdir() if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if committed stubs are stale")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generated = generate(Path(tmp))
        stale: list[str] = []
        for src in generated:
            dest = OUT_PACKAGE / src.name
            if opts.check:
                if not dest.exists() or dest.read_bytes() != src.read_bytes():
                    stale.append(str(dest.relative_to(ROOT)))
            else:
                shutil.copyfile(src, dest)
        committed = {p.name for p in OUT_PACKAGE.iterdir() if p.name.endswith(GENERATED_SUFFIXES)}
        extra = committed - {p.name for p in generated}
        stale += [f"sidecar/skinflint/v1/{name} (no .proto generates it)" for name in extra]
    if opts.check and stale:
        print("stale gRPC stubs; run `python scripts/gen_stubs.py` and commit:", file=sys.stderr)
        for name in stale:
            print(f"  {name}", file=sys.stderr)
        return 1
    if not opts.check:
        for name in extra:
            (OUT_PACKAGE / name).unlink()
        print(f"wrote {len(generated)} files to {OUT_PACKAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
