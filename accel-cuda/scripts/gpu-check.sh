#!/usr/bin/env bash
# Builds everything the GPU check needs, here (no GPU needed), into accel-cuda/gpu-bundle/
# (git-ignored; release, no debug info, stripped), with a runner for the GPU machine.
#
#   accel-cuda/scripts/gpu-check.sh            # here: build the bundle
#   bash accel-cuda/gpu-bundle/run-on-gpu.sh   # on the GPU machine, from the repo root
#
# The GPU machine needs no Rust and no network: only the NVIDIA driver and PyTorch's CUDA pip
# packages (NVRTC comes from there). The runner prints the device and driver, then runs the
# crate's test binaries, `seq-conformance report --backend cuda`, `seq-conformance vectors
# --backend cuda` over every vector file (the repo's and copies of the shared examples), and the
# perf cases next to PyTorch's, each step under its own timeout.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
root="$(cd "$here/.." && pwd)"
bundle="$here/gpu-bundle"
export CARGO_TARGET_DIR="${SEQ_BUNDLE_TARGET:-/work/target-cuda-bundle}"
export CARGO_PROFILE_RELEASE_DEBUG=false
export CARGO_PROFILE_RELEASE_STRIP=true
cd "$root"
rm -rf "$bundle"
mkdir -p "$bundle/bin" "$bundle/vectors/conformance" "$bundle/vectors/shared"

json="$(mktemp)"
cargo build --release -p seq-conformance --bin seq-conformance
cp "$CARGO_TARGET_DIR/release/seq-conformance" "$bundle/bin/"
cargo test --release -p seq-accel-cuda --no-run --message-format=json >"$json"
cargo build --release -p seq-accel-cuda --examples --message-format=json >>"$json"
python3 - "$json" "$bundle/bin" <<'PY'
import json, shutil, sys, os
out = sys.argv[2]
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    exe = m.get("executable") if m.get("reason") == "compiler-artifact" else None
    if not exe:
        continue
    t = m["target"]
    kind = t["kind"][0]
    name = {"test": "test-" + t["name"], "lib": "test-lib", "example": "example-" + t["name"]}.get(kind)
    if name is None:
        continue
    shutil.copy(exe, os.path.join(out, name))
    print("bundled", name)
PY
rm -f "$json"
cp conformance/vectors/*.json "$bundle/vectors/conformance/"
if [ -d ../shared/vectors/examples ]; then
    cp ../shared/vectors/examples/*.json "$bundle/vectors/shared/"
fi
cp "$here/scripts/cuda-libs.sh" "$here/scripts/torch_peers.py" "$bundle/"

cat >"$bundle/run-on-gpu.sh" <<'RUN'
#!/usr/bin/env bash
# Runs the seq CUDA checks on a GPU machine from the bundle made by accel-cuda/scripts/gpu-check.sh.
# Every step has its own timeout; a failing step does not stop the others. Output goes to the
# terminal and to $OUT/gpu-check.log (or ./gpu-check.log).
b="$(cd "$(dirname "$0")" && pwd)"
log="${OUT:-.}/gpu-check.log"
exec > >(tee "$log") 2>&1
step() { local t="$1"; shift; echo; echo "=== $* (timeout ${t}s) ==="; local s=$SECONDS; timeout --kill-after=5 "$t" "$@"; local rc=$?; echo "=== rc=$rc in $((SECONDS - s))s: $1"; return 0; }
echo "=== seq CUDA check, $(date -u +%Y-%m-%dT%H:%MZ)"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv || true
nvidia-smi | head -4 | tail -2 || true
source "$b/cuda-libs.sh"
# The first process compiles the kernels (NVRTC, to a CUBIN for this GPU) and caches the CUBIN
# in $SEQ_CUDA_CACHE_DIR; the later ones load it. (test-nvrtc_compile is for machines without a
# GPU: here every kernel is compiled by the backend itself.)
export SEQ_CUDA_CACHE_DIR="${TMPDIR:-/tmp}/seq-accel-cuda-cache"
# Every kernel on the default paths (tensor-core attention, cuBLAS gemm); each step is its own
# process, so a device fault (a sticky CUDA error that ends the context) stays in its step. The
# first process compiles the kernels (about 50 s of NVRTC), inside this step.
step 240 "$b/bin/seq-conformance" report --backend cuda
step 50 "$b/bin/seq-conformance" vectors --backend cuda "$b"/vectors/conformance/*.json "$b"/vectors/shared/*.json
# The attention and gemm rows and vectors again on the other paths: the generic attention kernel
# and the crate's own gemm (the first report ran the tensor-core path and cuBLAS).
SEQ_CUDA_ATTENTION=generic SEQ_CUDA_GEMM=kernel step 80 "$b/bin/seq-conformance" report --backend cuda --filter 'sdpa|kv_cache|attention_merge|gemm'
SEQ_CUDA_ATTENTION=generic SEQ_CUDA_GEMM=kernel step 40 "$b/bin/seq-conformance" vectors --backend cuda "$b"/vectors/conformance/sdpa.json "$b"/vectors/shared/sdpa.json
# Every test binary of the crate but the compile-only one (the backend compiled every kernel).
for t in "$b"/bin/test-*; do
    case "$t" in *nvrtc_compile*) continue ;; esac
    step 100 "$t" --test-threads=4
done
step 75 "$b/bin/example-perf" "${OUT:-.}/seq-perf.json"
step 75 python3 "$b/torch_peers.py" "${OUT:-.}/seq-perf.json"
echo "=== done in ${SECONDS}s"
RUN
chmod +x "$bundle/run-on-gpu.sh"
du -sh "$bundle"
ls -la "$bundle/bin"
