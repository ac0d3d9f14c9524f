#!/usr/bin/env bash
# Source this file: finds NVRTC (and the CUDA runtime libraries) shipped with PyTorch's pip
# packages or a CUDA toolkit, and puts them on LD_LIBRARY_PATH under the names cudarc's loader
# tries. cudarc built with `cuda-12000` looks for `libnvrtc.so`, `libnvrtc.so.12`, `.11`, ...;
# a CUDA 13 wheel ships `libnvrtc.so.13`, so a directory of links `libnvrtc.so -> ...so.13` is
# made and put first. Prints what it found.
_seq_links="${SEQ_CUDA_LINKS:-${TMPDIR:-/tmp}/seq-cuda-libs-$UID}"
mkdir -p "$_seq_links"
_seq_dirs=()
if command -v python3 >/dev/null 2>&1; then
    _seq_nv="$(python3 -c 'import nvidia, os; print(os.path.dirname(nvidia.__file__) if getattr(nvidia, "__file__", None) else list(nvidia.__path__)[0])' 2>/dev/null || true)"
    if [ -n "$_seq_nv" ]; then
        for d in "$_seq_nv"/cu13/lib "$_seq_nv"/cu12/lib "$_seq_nv"/cuda_nvrtc/lib "$_seq_nv"/cublas/lib "$_seq_nv"/cuda_runtime/lib; do
            [ -d "$d" ] && _seq_dirs+=("$d")
        done
    fi
fi
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d "$d" ] && _seq_dirs+=("$d")
done
for d in "${_seq_dirs[@]}"; do
    for lib in nvrtc cublas; do
        f="$(ls "$d"/lib$lib.so.[0-9]* 2>/dev/null | grep -v builtins | sort -V | tail -1)"
        if [ -n "$f" ] && [ ! -e "$_seq_links/lib$lib.so" ]; then
            ln -sf "$f" "$_seq_links/lib$lib.so"
            echo "cuda-libs: lib$lib.so -> $f"
        fi
    done
done
_seq_path="$_seq_links"
for d in "${_seq_dirs[@]}"; do _seq_path="$_seq_path:$d"; done
export LD_LIBRARY_PATH="$_seq_path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "cuda-libs: LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
