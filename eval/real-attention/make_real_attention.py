#!/usr/bin/env python3
"""Make KvDb's real-attention evaluation set (issue 12).

Synthetic KV workloads rarely reproduce what real attention looks like: early layers spread their softmax
mass over many tokens (diffuse), later layers put it on a handful (peaked, e.g. induction / copy heads).
This script trains a small byte-level decoder-only transformer (RoPE, GQA, torch SDPA, bf16 autocast) on
text that was already on the machine (Python sources, Debian docs, this repository's docs and tests; no
downloads), then runs it over held-out documents and dumps, for every layer, the post-RoPE keys, values and
two sets of post-RoPE queries as raw little-endian float16, with a manifest.json that the C# reader
(src/Workload/RealAttentionSet.cs) loads.

Stages (one command does whichever are needed):

1. corpus  -- if CORPUS_DIR/train.txt.gz is missing, build it from local files (see build_corpus) together
              with the held-out documents heldout{S}.bin. Done on the developer machine, because the GPU
              machine has neither the repository's history nor the same system files.
2. train   -- time-boxed training (--train-seconds) on random 4096-byte windows of the corpus.
3. dump    -- float32 forward pass over each held-out sequence capturing q/k/v after RoPE; writes
              seq{S}.layer{L}.{k,v,q_decode,q_prefill}.f16, seq{S}.tokens.u8 and manifest.json, plus a per
              layer float64 summary of the decode queries' causal softmax (tokens holding 95% of the mass,
              max weight), computed from the float16-rounded dumps so a reader can recompute it exactly.

Usage:
    python3 make_real_attention.py --out DIR [--tiny] [--corpus-dir DIR] [--train-seconds S]

--tiny is a CPU smoke test (a minute at most): a tiny model on 256-token sequences.
Regenerating the committed set on a GPU machine:
    python3 make_real_attention.py --corpus-dir CORPUS --build-corpus-only      # here (local files)
    python3 make_real_attention.py --corpus-dir CORPUS --out OUT                 # on the H100
"""

import argparse
import gzip
import hashlib
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------------- corpus

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
STDLIB = "/usr/lib/python3.11"
DIST = "/usr/lib/python3/dist-packages"
DOCS = "/usr/share/doc"

# Held-out documents: their directories / files are kept out of the training corpus.
HELDOUT = [
    # (description, path, byte offset of the window)
    ("Python stdlib asyncio/base_events.py (asyncio/ held out of training)", os.path.join(STDLIB, "asyncio", "base_events.py"), 0),
    ("KvDb src/Index/AttentionGraphIndex.cs (src/**/*.cs held out of training)", os.path.join(REPO, "src", "Index", "AttentionGraphIndex.cs"), 0),
]


def _walk(root, suffixes, skip_dirs=()):
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x not in skip_dirs and not x.startswith(".") and x not in ("bin", "obj", "__pycache__"))
        for f in sorted(files):
            if suffixes is None or f.endswith(suffixes):
                out.append(os.path.join(d, f))
    return out


def _text(path, max_bytes):
    try:
        if os.path.islink(path) or os.path.getsize(path) > max_bytes:
            return None
        with open(path, "rb") as fh:
            b = fh.read()
        b.decode("utf-8")
        if b"\x00" in b:
            return None
        return b
    except (OSError, UnicodeDecodeError):
        return None


def build_corpus(corpus_dir, cap_bytes=32 << 20):
    """Concatenate local text into train.txt.gz: Python stdlib (minus asyncio/), some dist-packages Python
    (minus torch/numpy, which may or may not be installed), plain-text Debian docs (deduplicated, no
    copyright files), this repository's *.md/*.proto/*.py/*.sh and tests/**/*.cs (src/**/*.cs held out)."""
    os.makedirs(corpus_dir, exist_ok=True)
    sources = [
        ("python stdlib *.py (minus asyncio/)", _walk(STDLIB, (".py",), skip_dirs=("asyncio", "site-packages", "dist-packages", "test", "config-3.11-x86_64-linux-gnu")), 12 << 20),
        ("dist-packages *.py (minus torch, numpy)", _walk(DIST, (".py",), skip_dirs=("torch", "numpy", "torchvision", "caffe2", "functorch")), 10 << 20),
        ("/usr/share/doc plain text", [p for p in _walk(DOCS, None) if not p.endswith((".gz", ".html", ".css", ".js", ".png", ".svg", "copyright"))], 6 << 20),
        ("KvDb *.md, *.proto, *.py, *.sh, tests/**/*.cs", [p for p in _walk(REPO, (".md", ".proto", ".py", ".sh", ".cs"))
                                                           if not (p.endswith(".cs") and os.sep + "src" + os.sep in p[len(REPO):])
                                                           and "eval" + os.sep + "real-attention" not in p], 4 << 20),
    ]
    held = {os.path.realpath(p) for _, p, _ in HELDOUT}
    seen = set()
    parts, desc = [], []
    total = 0
    for name, paths, cap in sources:
        got = 0
        files = 0
        for p in paths:
            if os.path.realpath(p) in held:
                continue
            b = _text(p, 512 << 10)
            if not b or len(b) < 64:
                continue
            h = hashlib.sha1(b).digest()
            if h in seen:
                continue
            seen.add(h)
            rel = os.path.relpath(p, REPO) if p.startswith(REPO) else p
            chunk = b"\n\n=== " + rel.encode() + b" ===\n" + b
            if got + len(chunk) > cap or total + len(chunk) > cap_bytes:
                break
            parts.append(chunk)
            got += len(chunk)
            total += len(chunk)
            files += 1
        desc.append({"source": name, "files": files, "bytes": got})
    data = b"".join(parts)
    with gzip.open(os.path.join(corpus_dir, "train.txt.gz"), "wb", compresslevel=6) as fh:
        fh.write(data)
    for s, (name, path, off) in enumerate(HELDOUT):
        with open(path, "rb") as fh:
            fh.seek(off)
            b = fh.read(1 << 16)
        with open(os.path.join(corpus_dir, "heldout%d.bin" % s), "wb") as fh:
            fh.write(b)
    meta = {"sources": desc, "bytes": len(data), "heldout": [{"description": n, "offset": o} for n, _, o in HELDOUT]}
    with open(os.path.join(corpus_dir, "corpus.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
    print("corpus: %d bytes" % len(data), json.dumps(desc), flush=True)


# ------------------------------------------------------------------------------------------------ model

class RMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.w = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6).to(x.dtype) * self.w


def rope_tables(t, d, base, device):
    inv = 1.0 / (base ** (torch.arange(0, d, 2, device=device, dtype=torch.float32) / d))
    ang = torch.outer(torch.arange(t, device=device, dtype=torch.float32), inv)  # [t, d/2]
    ang = torch.cat([ang, ang], dim=-1)  # rotate-half layout (as in LLaMA)
    return ang.cos(), ang.sin()


def apply_rope(x, cos, sin):
    # x [b, h, t, d]
    d = x.shape[-1]
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    rot = torch.cat([-x2, x1], dim=-1)
    return (x.float() * cos + rot.float() * sin).to(x.dtype)


def attention(q, k, v):
    """Causal attention, GQA by repeating each KV head over its query group."""
    g = q.shape[1] // k.shape[1]
    if g > 1:
        k = k.repeat_interleave(g, dim=1)
        v = v.repeat_interleave(g, dim=1)
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    t = q.shape[2]  # torch < 2.0 (the CPU smoke test)
    s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    s = s.masked_fill(torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    return s.softmax(-1) @ v


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.h, self.hkv, self.d = c["heads"], c["kv_heads"], c["head_dim"]
        dm = c["d_model"]
        self.n1 = RMSNorm(dm)
        self.wq = nn.Linear(dm, self.h * self.d, bias=False)
        self.wk = nn.Linear(dm, self.hkv * self.d, bias=False)
        self.wv = nn.Linear(dm, self.hkv * self.d, bias=False)
        self.wo = nn.Linear(self.h * self.d, dm, bias=False)
        self.n2 = RMSNorm(dm)
        self.up = nn.Linear(dm, 4 * dm, bias=False)
        self.down = nn.Linear(4 * dm, dm, bias=False)

    def forward(self, x, cos, sin, capture=None):
        b, t, _ = x.shape
        y = self.n1(x)
        q = apply_rope(self.wq(y).view(b, t, self.h, self.d).transpose(1, 2), cos, sin)
        k = apply_rope(self.wk(y).view(b, t, self.hkv, self.d).transpose(1, 2), cos, sin)
        v = self.wv(y).view(b, t, self.hkv, self.d).transpose(1, 2)
        if capture is not None:
            # [t, heads, d] for batch element 0, post-RoPE: exactly what a KV cache would hold.
            capture.append((q[0].transpose(0, 1).float(), k[0].transpose(0, 1).float(), v[0].transpose(0, 1).float()))
        a = attention(q, k, v).transpose(1, 2).reshape(b, t, self.h * self.d)
        x = x + self.wo(a)
        return x + self.down(F.gelu(self.up(self.n2(x))))


class Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.emb = nn.Embedding(256, c["d_model"])
        self.blocks = nn.ModuleList(Block(c) for _ in range(c["layers"]))
        self.nf = RMSNorm(c["d_model"])
        self.head = nn.Linear(c["d_model"], 256, bias=False)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
        for blk in self.blocks:  # scaled residual projections (GPT-2)
            nn.init.normal_(blk.wo.weight, std=0.02 / math.sqrt(2 * c["layers"]))
            nn.init.normal_(blk.down.weight, std=0.02 / math.sqrt(2 * c["layers"]))

    def forward(self, idx, capture=None):
        t = idx.shape[1]
        cos, sin = rope_tables(t, self.c["head_dim"], self.c["rope_base"], idx.device)
        x = self.emb(idx)
        for blk in self.blocks:
            x = blk(x, cos, sin, capture)
        return self.head(self.nf(x))


# -------------------------------------------------------------------------------------------- summaries

def causal_summary(q, k, positions, scale, mass=0.95):
    """float64 causal softmax of each query (row i at absolute position positions[i], attending keys
    0..positions[i]) per query head. Returns per-head means over queries of (tokens holding `mass` of the
    softmax, sorted descending, counted until the running sum reaches it) and of the max weight."""
    q = q.double()  # [nq, h, d]
    k = k.double()  # [t, hkv, d]
    h, hkv = q.shape[1], k.shape[1]
    g = h // hkv
    counts = torch.zeros(h, dtype=torch.float64)
    maxes = torch.zeros(h, dtype=torch.float64)
    for i, p in enumerate(positions):
        kk = k[: p + 1].repeat_interleave(g, dim=1)  # [p+1, h, d]
        s = torch.einsum("hd,thd->ht", q[i], kk) * scale
        w = torch.softmax(s, dim=-1)
        ws, _ = torch.sort(w, dim=-1, descending=True)
        cs = torch.cumsum(ws, dim=-1)
        counts += ((cs < mass).sum(-1) + 1).clamp(max=p + 1).double().cpu()
        maxes += ws[:, 0].cpu()
    n = len(positions)
    return (counts / n).tolist(), (maxes / n).tolist()


def probe_row(q, k, position, scale, **where):
    """One softmax row spelled out for readers to check against (tests recompute it in C#): float64 causal
    softmax of query head 0 at `position`, its largest weight and that token's position."""
    s = torch.einsum("d,td->t", q[0].double(), k[: position + 1, 0].double()) * scale
    w = torch.softmax(s, dim=-1)
    top = int(torch.argmax(w))
    return dict(where, head=0, position=position, top_token=top, top_weight=float(w[top]),
                definition="float64 softmax over keys 0..position of scale * q.k (float16 files), query head 0 (kv head 0)")


# ---------------------------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="output directory for manifest.json and the .f16 dumps")
    ap.add_argument("--corpus-dir", default=None, help="where train.txt.gz / heldout*.bin are (built if missing); default OUT/corpus")
    ap.add_argument("--build-corpus-only", action="store_true")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke test: tiny model, 256-token sequences")
    ap.add_argument("--train-seconds", type=float, default=None)
    ap.add_argument("--dump-sequences", type=int, default=2,
                    help="held-out sequences whose q/k/v files are written (the rest only get summaries; size)")
    ap.add_argument("--dump-tokens", type=int, default=None,
                    help="tokens per dumped sequence (default: the training length). The model is causal, so a prefix "
                         "gives exactly the values a longer run gives for those positions; this only bounds file size")
    ap.add_argument("--save-checkpoint", default=None, help="write the trained weights (bfloat16) and training log here")
    ap.add_argument("--load-checkpoint", default=None, help="skip training: dump with the weights of --save-checkpoint")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--shape", default=None,
                    help="override the model, e.g. layers=4,d_model=256,head_dim=32,seq_len=1024,batch=4 (CPU fallback)")
    a = ap.parse_args()
    corpus_dir = a.corpus_dir or os.path.join(a.out, "corpus")
    if not os.path.exists(os.path.join(corpus_dir, "train.txt.gz")):
        build_corpus(corpus_dir)
    if a.build_corpus_only:
        return
    if not a.out:
        ap.error("--out is required")
    os.makedirs(a.out, exist_ok=True)

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(a.seed)
    ckpt = torch.load(a.load_checkpoint, map_location="cpu") if a.load_checkpoint else None
    if ckpt is not None:
        c, batch, lr, secs, warm = dict(ckpt["config"]), ckpt["training"]["batch_sequences"], ckpt["training"]["peak_lr"], 0, 1
    elif a.tiny:
        c = dict(layers=2, heads=4, kv_heads=2, head_dim=16, d_model=64, rope_base=10000.0, seq_len=256)
        batch, lr, secs, warm = 4, 3e-3, a.train_seconds or 20, 20
    else:
        c = dict(layers=6, heads=8, kv_heads=2, head_dim=64, d_model=512, rope_base=10000.0, seq_len=4096)
        batch, lr, secs, warm = 16, 1.5e-3, a.train_seconds or 330, 150
    for kv in (a.shape.split(",") if a.shape and ckpt is None else []):
        key, val = kv.split("=")
        if key == "batch":
            batch = int(val)
        else:
            c[key] = type(c[key])(val)
    T = c["seq_len"]
    N = a.dump_tokens or T
    assert 64 + 32 < N <= T, "--dump-tokens must be in (96, seq_len]"

    with gzip.open(os.path.join(corpus_dir, "train.txt.gz"), "rb") as fh:
        data = torch.frombuffer(bytearray(fh.read()), dtype=torch.uint8).to(dev)
    with open(os.path.join(corpus_dir, "corpus.json")) as fh:
        corpus_meta = json.load(fh)
    held = []
    for s in range(len(corpus_meta["heldout"])):
        with open(os.path.join(corpus_dir, "heldout%d.bin" % s), "rb") as fh:
            held.append(fh.read()[:N])
        assert len(held[-1]) == N, "held-out document %d has fewer than %d bytes" % (s, N)
    print("device", dev, torch.__version__, "corpus bytes", data.numel(), flush=True)

    model = Model(c).to(dev)
    if ckpt is not None:
        model.load_state_dict({k: v.float() for k, v in ckpt["state"].items()})
    nparams = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    nodecay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": nodecay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.95), **({"fused": True} if dev == "cuda" else {}))
    if dev == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    amp = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if dev == "cuda" else torch.autocast(device_type="cpu", enabled=False)

    t0 = time.time()
    step, recent, log = 0, [], []
    if ckpt is not None:
        secs = -1.0  # no training

    g = torch.Generator(device=dev)
    g.manual_seed(a.seed)
    ar = torch.arange(T + 1, device=dev)
    while True:
        el = time.time() - t0
        if el >= secs:
            break
        frac = el / secs
        cur = lr * min(1.0, (step + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for pg in opt.param_groups:
            pg["lr"] = cur
        starts = torch.randint(0, data.numel() - T - 1, (batch,), device=dev, generator=g)
        xy = data[starts[:, None] + ar].long()
        with amp:
            logits = model(xy[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, 256), xy[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 25 == 0 or step < 3:
            lv = loss.item() / math.log(2)
            recent = (recent + [lv])[-8:]
            log.append({"step": step, "seconds": round(time.time() - t0, 1), "bits_per_byte": round(lv, 4)})
            print("step %d  %.1fs  loss %.4f bits/byte  lr %.2e" % (step, time.time() - t0, lv, cur), flush=True)
    train_seconds = time.time() - t0
    final_loss = sum(recent) / max(1, len(recent))
    training_device = torch.cuda.get_device_name(0) if dev == "cuda" else "cpu"
    if ckpt is not None:
        tr = ckpt["training"]
        step, batch, train_seconds, final_loss, log, training_device = (
            tr["steps"], tr["batch_sequences"], tr["seconds"], tr["final_train_bits_per_byte"], tr["loss_log"], tr["device"])
    elif a.save_checkpoint:
        torch.save({"config": c, "state": {k: v.detach().to("cpu", torch.bfloat16) for k, v in model.state_dict().items()},
                    "training": {"steps": step, "batch_sequences": batch, "seconds": round(train_seconds, 1), "peak_lr": lr,
                                 "final_train_bits_per_byte": round(final_loss, 4), "loss_log": log, "device": training_device}},
                   a.save_checkpoint)

    # ------------------------------------------------------------------------------------------ dump
    model.eval()
    if dev == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # the dump's forward pass is plain float32
        torch.backends.cudnn.allow_tf32 = False
    hd, h, hkv, L = c["head_dim"], c["heads"], c["kv_heads"], c["layers"]
    scale = 1.0 / math.sqrt(hd)
    n_dec, n_pre = 64, 32
    dec_pos = list(range(N - n_dec, N))
    pre_pos = [(i + 1) * (N - n_dec) // n_pre - 1 for i in range(n_pre)]
    probe = None
    files, seqs, summary = [], [], []
    max_abs = 0.0

    def write(name, tensor, shape):
        nonlocal max_abs
        arr = tensor.detach().to("cpu", torch.float16).contiguous()
        assert list(arr.shape) == shape, (name, arr.shape, shape)
        max_abs = max(max_abs, arr.float().abs().max().item())
        assert torch.isfinite(arr).all(), name
        with open(os.path.join(a.out, name), "wb") as fh:
            fh.write(arr.numpy().astype("<f2").tobytes() if hasattr(arr, "numpy") else bytes(arr.untyped_storage()))
        files.append({"name": name, "dtype": "float16", "shape": shape})
        return arr

    for s, text in enumerate(held):
        idx = torch.tensor(list(text), dtype=torch.long, device=dev)[None]
        cap = []
        with torch.no_grad():
            logits = model(idx, capture=cap)  # float32, no autocast
        nll = F.cross_entropy(logits[0, :-1].float(), idx[0, 1:]).item() / math.log(2)
        dumped = s < a.dump_sequences
        seq = {"index": s, "source": corpus_meta["heldout"][s]["description"], "tokens": len(text),
               "heldout_bits_per_byte": round(nll, 4), "dumped": dumped}
        if dumped:
            tok = "seq%d.tokens.u8" % s
            with open(os.path.join(a.out, tok), "wb") as fh:
                fh.write(text)
            files.append({"name": tok, "dtype": "uint8", "shape": [len(text)]})
        layers = []
        for l, (q, k, v) in enumerate(cap):
            # The summaries use the float16-rounded q/k, exactly what the files hold.
            q16, k16 = q.to(torch.float16), k.to(torch.float16)
            if dumped:
                base = "seq%d.layer%d." % (s, l)
                write(base + "k.f16", k16, [len(text), hkv, hd])
                write(base + "v.f16", v, [len(text), hkv, hd])
                write(base + "q_decode.f16", q16[dec_pos], [n_dec, h, hd])
                write(base + "q_prefill.f16", q16[pre_pos], [n_pre, h, hd])
            dc, dm = causal_summary(q16[dec_pos].cpu(), k16.cpu(), dec_pos, scale)
            if s == 0 and l == L - 1:
                probe = probe_row(q16[dec_pos[-1]].cpu(), k16.cpu(), dec_pos[-1], scale, sequence=s, layer=l, query=n_dec - 1)
            pc, pm = causal_summary(q16[pre_pos].cpu(), k16.cpu(), pre_pos, scale)
            layers.append({
                "layer": l,
                "decode_mean_top95_tokens": sum(dc) / h, "decode_mean_max_weight": sum(dm) / h,
                "decode_per_head_top95_tokens": dc, "decode_per_head_max_weight": dm,
                "prefill_mean_top95_tokens": sum(pc) / h, "prefill_mean_max_weight": sum(pm) / h,
            })
            print("seq %d layer %d: decode top95 %.1f tokens, max w %.3f | prefill top95 %.1f, max w %.3f"
                  % (s, l, sum(dc) / h, sum(dm) / h, sum(pc) / h, sum(pm) / h), flush=True)
        seqs.append(seq)
        summary.append({"sequence": s, "layers": layers})

    manifest = {
        "format": "kvdb-real-attention/1",
        "description": "Post-RoPE K/V/Q of a small byte-level transformer trained here; see README.md.",
        "model": dict(c, vocab=256, scale=scale, norm="RMSNorm (pre-norm)", mlp="GELU 4x",
                      rope="rotate-half (LLaMA layout), base %g" % c["rope_base"], parameters=nparams,
                      gqa="query head h uses kv head h // (heads / kv_heads)"),
        "layers": L, "heads": h, "kv_heads": hkv, "head_dim": hd, "tokens": N,
        "query_sets": {"decode": dec_pos, "prefill": pre_pos},
        "sequences": seqs,
        "summary_definition": "For each query at absolute position t (attending keys 0..t), float64 softmax of "
                              "scale * q.k over the float16 q/k in the files, per query head; top95_tokens = how "
                              "many of the largest weights it takes for their running sum to reach 0.95; "
                              "max_weight = the largest weight. Means are over the query set (per head) and "
                              "then over heads.",
        "summary": summary,
        "probe": probe,
        "training": {"device": training_device, "torch": torch.__version__,
                     "steps": step, "batch_sequences": batch, "seq_len": T, "tokens_seen": step * batch * T,
                     "seconds": round(train_seconds, 1), "peak_lr": lr, "optimizer": "AdamW(0.9,0.95), wd 0.1, clip 1.0, warmup + cosine to 10%",
                     "precision": "bf16 autocast" if training_device != "cpu" else "fp32", "final_train_bits_per_byte": round(final_loss, 4),
                     "loss_log": log, "corpus": corpus_meta, "tiny": a.tiny, "seed": a.seed,
                     "dumped_from_checkpoint": bool(a.load_checkpoint)},
        "dump_precision": "forward pass in float32, stored as float16; max |value| %.3f" % max_abs,
        "files": files,
    }
    with open(os.path.join(a.out, "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=1)
    total = sum(os.path.getsize(os.path.join(a.out, f["name"])) for f in files)
    print("final train loss %.4f bits/byte, %d steps, %.1fs; dumped %d bytes" % (final_loss, step, train_seconds, total), flush=True)


if __name__ == "__main__":
    sys.exit(main())
