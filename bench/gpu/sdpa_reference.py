#!/usr/bin/env python3
"""PyTorch SDPA reference for KvDb's CUDA attention: timing and parity on identical inputs, same process.

For each context length it builds one Llama-3-8B decode layer (32 query heads, 8 KV heads, d=128, bf16,
one query token) as torch tensors [1, Hkv, n, d] -- exactly KvDb's contiguous layout -- and
  * times torch.nn.functional.scaled_dot_product_attention (enable_gqa=True) with CUDA events, an L2
    flush before every launch, p50 of --iters launches;
  * runs libkvdbcuda.so's kvdb_attention (through ctypes, on torch's stream) on the same tensors, times
    it the same way, and compares both outputs with a float64 reference (and KvDb's LSE with logsumexp);
  * sweeps KvDb's split count at the largest contexts;
  * measures the HBM reference (a torch device-to-device copy and KvDb's streaming-read kernel).
Prints one JSON object per line (kind = reference | sdpa | splits) and a short table at the end.

usage: python3 bench/gpu/sdpa_reference.py --lib build/libkvdbcuda.so [--contexts 32768,131072,1048576] [--out sdpa.jsonl]
"""
import argparse
import ctypes
import json
import math
import statistics
import sys

import torch
import torch.nn.functional as F

HQ, HKV, D = 32, 8, 128


class AttnArgs(ctypes.Structure):
    """kvdb_attn_args of src/Kernels/native/cuda/kvdb_cuda.h (136 bytes)."""

    _fields_ = [
        ("keys", ctypes.c_void_p), ("values", ctypes.c_void_p), ("block_table", ctypes.c_void_p),
        ("positions", ctypes.c_void_p), ("offsets", ctypes.c_void_p), ("queries", ctypes.c_void_p),
        ("output", ctypes.c_void_p), ("lse", ctypes.c_void_p),
        ("num_tokens", ctypes.c_longlong), ("kv_capacity", ctypes.c_longlong),
        ("exclude_start", ctypes.c_longlong), ("exclude_end", ctypes.c_longlong),
        ("num_query_heads", ctypes.c_int), ("num_kv_heads", ctypes.c_int), ("head_dim", ctypes.c_int),
        ("dtype", ctypes.c_int), ("layout", ctypes.c_int), ("block_capacity", ctypes.c_int),
        ("num_queries", ctypes.c_int), ("max_positions", ctypes.c_int), ("scale", ctypes.c_float),
        ("num_splits", ctypes.c_int),
    ]


assert ctypes.sizeof(AttnArgs) == 136


class Kvdb:
    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        self.lib.kvdb_cuda_error_string.restype = ctypes.c_char_p
        self.lib.kvdb_read_bytes.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_ulonglong]
        self.lib.kvdb_attention.argtypes = [ctypes.c_void_p, ctypes.POINTER(AttnArgs)]
        self.lib.kvdb_ctx_set_stream.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self.lib.kvdb_set_option.argtypes = [ctypes.c_int, ctypes.c_int]
        ctx = ctypes.c_void_p()
        self.check(self.lib.kvdb_ctx_create(0, ctypes.byref(ctx)), "kvdb_ctx_create")
        self.ctx = ctx
        # Launch on torch's current stream so torch's events time our kernels too.
        self.check(self.lib.kvdb_ctx_set_stream(self.ctx, ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)), "set_stream")

    def check(self, status, what):
        if status != 0:
            raise RuntimeError(f"{what}: {self.lib.kvdb_cuda_error_string(status).decode()} ({status})")

    def attention(self, args):
        self.check(self.lib.kvdb_attention(self.ctx, ctypes.byref(args)), "kvdb_attention")

    def variant(self, v):
        """0 = register pipeline, 1 = cp.async shared-memory ring (KVDB_OPTION_ATTENTION_VARIANT)."""
        self.check(self.lib.kvdb_set_option(1, v), "kvdb_set_option")

    def read(self, tensor):
        self.check(self.lib.kvdb_read_bytes(self.ctx, ctypes.c_void_p(tensor.data_ptr()), tensor.numel() * tensor.element_size()), "kvdb_read_bytes")


FLUSH = None


def time_us(fn, iters, warmup=3):
    """p50 of iters launches, each after an L2 flush, timed by CUDA events around the launch alone."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    stops = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    for i in range(iters):
        FLUSH.add_(1)
        starts[i].record()
        fn()
        stops[i].record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) * 1000.0 for s, e in zip(starts, stops))


def rel_l2(a, b):
    a = a.double()
    b = b.double()
    den = torch.linalg.vector_norm(b)
    num = torch.linalg.vector_norm(a - b)
    return float(num / den) if den > 0 else float(num)


def emit(out, obj):
    line = json.dumps(obj)
    print(line, flush=True)
    if out:
        out.write(line + "\n")
        out.flush()


def main():
    global FLUSH
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--contexts", default="32768,131072,524288,1048576")
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--sweep", default="131072,1048576", help="contexts at which to sweep split counts")
    ap.add_argument("--out")
    a = ap.parse_args()
    out = open(a.out, "a") if a.out else None
    torch.backends.cuda.matmul.allow_tf32 = False
    dev = torch.cuda.get_device_properties(0)
    FLUSH = torch.empty(64 << 20, dtype=torch.float32, device="cuda")  # 256 MB > L2
    kv = Kvdb(a.lib)
    emit(out, {"kind": "torch", "torch": torch.__version__, "device": dev.name, "sms": dev.multi_processor_count})

    # HBM reference: device-to-device copy (read + write counted) and KvDb's streaming-read kernel.
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    src.random_(0, 255)
    dst = torch.empty_like(src)
    copy_us = time_us(lambda: dst.copy_(src), a.iters)
    read_us = time_us(lambda: kv.read(src), a.iters)
    ref = {"kind": "reference", "copy_gbps": round(2 * src.numel() / copy_us / 1e3, 1), "read_gbps": round(src.numel() / read_us / 1e3, 1)}
    emit(out, ref)
    del src, dst

    scale = 1.0 / math.sqrt(D)
    rows = []
    for n in [int(x) for x in a.contexts.split(",")]:
        g = torch.Generator(device="cuda").manual_seed(n)
        k = torch.randn(1, HKV, n, D, device="cuda", dtype=torch.bfloat16, generator=g)
        v = torch.randn(1, HKV, n, D, device="cuda", dtype=torch.bfloat16, generator=g)
        q = torch.randn(1, HQ, 1, D, device="cuda", dtype=torch.bfloat16, generator=g)
        try:
            sdpa = lambda: F.scaled_dot_product_attention(q, k, v, scale=scale, enable_gqa=True)
            sdpa()
            how = "enable_gqa"
        except Exception as e:  # older torch: expand KV heads once, outside the timed region
            print(f"enable_gqa failed ({e}); using repeat_interleave", file=sys.stderr)
            ke, ve = k.repeat_interleave(HQ // HKV, dim=1), v.repeat_interleave(HQ // HKV, dim=1)
            sdpa = lambda: F.scaled_dot_product_attention(q, ke, ve, scale=scale)
            how = "repeat_interleave"
        sdpa_us = time_us(sdpa, a.iters)
        sdpa_out = sdpa().float().reshape(HQ, D)

        qf = q.float().reshape(HQ, D).contiguous()
        o = torch.full((HQ, D), float("nan"), device="cuda")
        lse = torch.full((HQ,), float("nan"), device="cuda")
        args = AttnArgs(keys=k.data_ptr(), values=v.data_ptr(), queries=qf.data_ptr(), output=o.data_ptr(), lse=lse.data_ptr(),
                        num_tokens=n, kv_capacity=0, exclude_start=0, exclude_end=0, num_query_heads=HQ, num_kv_heads=HKV,
                        head_dim=D, dtype=3, layout=0, block_capacity=0, num_queries=1, max_positions=0, scale=scale, num_splits=0)
        variants = {}
        for variant in (0, 1):
            kv.variant(variant)
            o.fill_(float("nan"))
            lse.fill_(float("nan"))
            kv.attention(args)
            torch.cuda.synchronize()
            variants[variant] = (o.clone(), lse.clone(), time_us(lambda: kv.attention(args), a.iters))
        kv.variant(0)
        kvdb_out, kvdb_lse, kvdb_us = variants[0]
        async_out, async_lse, async_us = variants[1]

        # float64 reference on the same bf16 values, one KV head at a time to bound memory.
        ref_out = torch.empty(HQ, D, dtype=torch.float64, device="cuda")
        ref_lse = torch.empty(HQ, dtype=torch.float64, device="cuda")
        grp = HQ // HKV
        for h in range(HKV):
            kh = k[0, h].double()
            vh = v[0, h].double()
            qh = qf[h * grp:(h + 1) * grp].double()
            s = (qh @ kh.T) * scale
            ref_lse[h * grp:(h + 1) * grp] = torch.logsumexp(s, -1)
            ref_out[h * grp:(h + 1) * grp] = torch.softmax(s, -1) @ vh
            del kh, vh, s
        row = {
            "kind": "sdpa", "ctx": n, "sdpa_us": round(sdpa_us, 2), "kvdb_us": round(kvdb_us, 2), "vs_sdpa": round(kvdb_us / sdpa_us, 3),
            "bytes": 2 * HKV * n * D * 2, "sdpa_gbps": round(2 * HKV * n * D * 2 / sdpa_us / 1e3, 1),
            "kvdb_gbps": round(2 * HKV * n * D * 2 / kvdb_us / 1e3, 1),
            "rel_l2_kvdb_vs_f64": rel_l2(kvdb_out, ref_out), "rel_l2_sdpa_vs_f64": rel_l2(sdpa_out, ref_out),
            "rel_l2_kvdb_vs_sdpa": rel_l2(kvdb_out, sdpa_out),
            "max_lse_err": float((kvdb_lse.double() - ref_lse).abs().max()),
            "kvdb_written": bool(torch.isfinite(kvdb_out).all() and torch.isfinite(kvdb_lse).all()), "gqa": how,
            "async_us": round(async_us, 2), "async_vs_sdpa": round(async_us / sdpa_us, 3),
            "rel_l2_async_vs_f64": rel_l2(async_out, ref_out), "max_lse_err_async": float((async_lse.double() - ref_lse).abs().max()),
            "async_written": bool(torch.isfinite(async_out).all() and torch.isfinite(async_lse).all()),
        }
        emit(out, row)
        rows.append(row)

        if str(n) in a.sweep.split(","):
            for variant in (0, 1):
                kv.variant(variant)
                sweep = {}
                for splits in [16, 33, 49, 66, 99, 148, 198, 256]:
                    args.num_splits = splits
                    sweep[str(splits)] = round(time_us(lambda: kv.attention(args), a.iters), 2)
                args.num_splits = 0
                emit(out, {"kind": "splits", "variant": variant, "ctx": n, "auto_us": round(variants[variant][2], 2), "us_by_splits": sweep})
            kv.variant(0)
        del k, v, q, sdpa_out, ref_out
        torch.cuda.empty_cache()

    print(f"\nreference: copy {ref['copy_gbps']} GB/s, read {ref['read_gbps']} GB/s", file=sys.stderr)
    print(f"{'ctx':>9} {'sdpa_us':>9} {'kvdb_us':>9} {'ratio':>6} {'kvdb_GB/s':>9} {'relL2':>9} {'lse_err':>9} {'async_us':>9} {'ratio':>6} {'relL2':>9}", file=sys.stderr)
    for r in rows:
        print(f"{r['ctx']:>9} {r['sdpa_us']:>9} {r['kvdb_us']:>9} {r['vs_sdpa']:>6} {r['kvdb_gbps']:>9} {r['rel_l2_kvdb_vs_f64']:>9.2e} {r['max_lse_err']:>9.2e} "
              f"{r['async_us']:>9} {r['async_vs_sdpa']:>6} {r['rel_l2_async_vs_f64']:>9.2e}", file=sys.stderr)


if __name__ == "__main__":
    main()
