"""torch softmax / log_softmax on (8, 2048, 2048) f32, one thread: the peer of softmax_bench.rs.

Timed both as `torch.softmax(x, -1)` (allocates its output each call) and through the `out=`
form of the ATen kernel (`aten::_softmax.out`, writing into a preallocated tensor as seq does).
"""
import time
import torch

torch.set_num_threads(1)
n = 8 * 2048 * 2048
x = (torch.arange(n, dtype=torch.int64) * 7919 % 1000).to(torch.float32).div_(100).sub_(5)
x = x.reshape(8, 2048, 2048)
y = torch.empty_like(x)


def best(f, reps=5):
    b = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f()
        b = min(b, time.perf_counter() - t)
    return b


for name, f, out in [
    ("Softmax", torch.softmax, torch.ops.aten._softmax.out),
    ("LogSoftmax", torch.log_softmax, torch.ops.aten._log_softmax.out),
]:
    t_alloc = best(lambda: f(x, -1))
    t_out = best(lambda: out(x, -1, False, out=y))
    gb = 2 * n * 4 / 1e9
    print(
        f"{name} torch {torch.__version__} 1 thread: {t_alloc*1e3:.1f} ms ({gb/t_alloc:.2f} GB/s) "
        f"allocating, {t_out*1e3:.1f} ms ({gb/t_out:.2f} GB/s) into a preallocated output"
    )
