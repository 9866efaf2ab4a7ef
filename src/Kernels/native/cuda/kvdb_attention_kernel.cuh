// Split-K ("flash-decoding") attention for decode queries over the contiguous or block layout, dense
// or gathered, with the split merge fused into the same launch.
//
// Grid: x = split, y = KV head * group chunk, z = query token (batched launches: request * tokens + token;
// each CTA then reads its request's descriptor first). A CTA reads its split's rows of one KV
// head once and scores them against G query heads of that head's GQA group. Each row is read by
// LPR = head_dim / VEC lanes with one 16-byte load each for K and for V; every thread issues the 2U
// loads of the next tile before it computes the current one (register pipeline; gathered mode also
// loads positions one tile further ahead). Splits are chosen so the grid is one full wave. Softmax runs online in base 2 (queries are pre-scaled by
// scale * log2 e) so exp is one ex2 instruction. The CTA that finishes a head group last (an arrival
// counter per group) merges all splits' partials with the LSE formula of PartialAttention and writes
// the output, so one launch does everything; with one split the CTA writes the output itself.
// Included by kvdb_attention.cu (one request per launch) and kvdb_attention_batch.cu (many), so the two
// sets of instantiations compile in parallel.
#pragma once
#include "kvdb_attn_common.cuh"

namespace kvdb {

constexpr int ASYNC_STAGES = 3;
constexpr int ATT_U = 4;  // rows per lane group per tile

// Issues the 2U loads (K and V, 16 bytes each) of one warp tile; rows past c1 or excluded load nothing.
template <int U, int RPW, int ROW_BYTES>
__device__ __forceinline__ void load_tile(const AttnParams& p, const RowSource& src, const int* pos, int base, int c1, int lg, int li,
                                          uint4 (&kr)[U], uint4 (&vr)[U], bool (&ok)[U]) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
        const int j = base + u * RPW + lg;
        ok[u] = false;
        kr[u] = make_uint4(0u, 0u, 0u, 0u);
        vr[u] = kr[u];
        if (j < c1) {
            const int position = pos != nullptr ? __ldg(pos + j) : j;
            if (!excluded(p, position)) {
                const char* kp;
                const char* vp;
                src.address(position, ROW_BYTES, li * 16, kp, vp);
                kr[u] = load_stream16(kp);
                vr[u] = load_stream16(vp);
                ok[u] = true;
            }
        }
    }
}

// Gathered mode, stage A: the positions of a warp tile (-1 = past the end or excluded).
template <int U, int RPW>
__device__ __forceinline__ void load_positions(const AttnParams& p, const int* pos, int base, int c1, int lg, int (&pn)[U]) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
        const int j = base + u * RPW + lg;
        pn[u] = -1;
        if (j < c1) {
            const int position = __ldg(pos + j);
            if (!excluded(p, position)) pn[u] = position;
        }
    }
}

// Gathered mode, stage B: the K/V loads of a warp tile whose positions arrived one iteration earlier.
template <int U, int ROW_BYTES>
__device__ __forceinline__ void load_rows(const RowSource& src, int li, const int (&pc)[U], uint4 (&kr)[U], uint4 (&vr)[U], bool (&ok)[U]) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
        ok[u] = pc[u] >= 0;
        kr[u] = make_uint4(0u, 0u, 0u, 0u);
        vr[u] = kr[u];
        if (ok[u]) {
            const char* kp;
            const char* vp;
            src.address(pc[u], ROW_BYTES, li * 16, kp, vp);
            kr[u] = load_stream16(kp);
            vr[u] = load_stream16(vp);
        }
    }
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
    const unsigned int dst = (unsigned int)__cvta_generic_to_shared(smem);
    const int bytes = valid ? 16 : 0;  // 0: no read, the slot is zero-filled
    asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16, %2;" ::"r"(dst), "l"(gmem), "r"(bytes) : "memory");
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }

template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }

__device__ __forceinline__ void prefetch_l2(const void* p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }

// Gathered over blocks, at the start of a CTA: asks L2 for this CTA's share of the block table (the CTAs of one
// query slot split the table's lines), so the main loop's table loads hit L2 instead of waiting for DRAM.
// Nothing waits on the prefetches.
__device__ __forceinline__ void prefetch_table_l2(const AttnParams& p) {
    constexpr int LINE = 128;
    const long long entries = (p.num_tokens + p.block_capacity - 1) / p.block_capacity;
    const long long table_lines = (entries * 8 + LINE - 1) / LINE;
    const long long ctas = (long long)gridDim.x * gridDim.y;
    const long long cta = (long long)blockIdx.y * gridDim.x + blockIdx.x;
    const char* tbase = reinterpret_cast<const char*>(p.block_table);
    for (long long line = cta + (long long)threadIdx.x * ctas; line < table_lines; line += ctas * ATT_THREADS) prefetch_l2(tbase + line * LINE);
}

// Batched gathered launches, once a CTA knows its rows: asks L2 for the lines its position list [c0, c1) lives in.
__device__ __forceinline__ void prefetch_positions_l2(const int* pos, int c0, int c1) {
    constexpr int LINE = 128;
    if (c1 > c0) {
        const long long skew = (long long)(reinterpret_cast<uintptr_t>(pos) % LINE);
        const char* pbase = reinterpret_cast<const char*>(pos) - skew;
        const long long first = (skew + 4LL * c0) / LINE;
        const long long last = (skew + 4LL * c1 + LINE - 1) / LINE;
        for (long long i = first + threadIdx.x; i < last; i += ATT_THREADS) prefetch_l2(pbase + i * LINE);
    }
}

// Positions of a warp tile (-1 = past the end or excluded): loaded in gathered mode, computed in dense mode.
template <int U, int RPW, bool GATHERED>
__device__ __forceinline__ void tile_positions(const AttnParams& p, const int* pos, int base, int c1, int lg, int (&pc)[U]) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
        const int j = base + u * RPW + lg;
        int position = -1;
        if (j < c1) {
            position = GATHERED ? __ldg(pos + j) : j;
            if (excluded(p, position)) position = -1;
        }
        pc[u] = position;
    }
}

// Queues the cp.async copies of one warp tile into a ring stage; returns the live-row mask.
template <int U, int ROW_BYTES>
__device__ __forceinline__ unsigned int issue_tile_async(const AttnParams& p, const RowSource& src, const int (&pc)[U], int li, uint4* stage) {
    unsigned int live = 0u;
#pragma unroll
    for (int u = 0; u < U; ++u) {
        const bool valid = pc[u] >= 0;
        const char* kp = reinterpret_cast<const char*>(p.queries);  // any mapped address; nothing is read when !valid
        const char* vp = kp;
        if (valid) src.address(pc[u], ROW_BYTES, li * 16, kp, vp);
        cp_async16(stage + (u * 2) * ATT_THREADS + threadIdx.x, kp, valid);
        cp_async16(stage + (u * 2 + 1) * ATT_THREADS + threadIdx.x, vp, valid);
        live |= (valid ? 1u : 0u) << u;
    }
    return live;
}

// One tile of the online softmax: scores of U rows (per lane group) against G query heads, reduced
// over the row's LPR lanes, then the running max/sum/accumulator update with the tile's values.
template <int DT, int G, int U, int LPR>
__device__ __forceinline__ void process_tile(const float (&q)[G][Elem<DT>::VEC], const uint4 (&kr)[U], const uint4 (&vr)[U], const bool (&ok)[U],
                                             float (&m)[G], float (&l)[G], float (&acc)[G][Elem<DT>::VEC]) {
    using E = Elem<DT>;
    constexpr int VEC = E::VEC;
    float s[U][G];
    row_scores<DT, G, U, LPR>(q, kr, s);

#pragma unroll
    for (int g = 0; g < G; ++g) {
        float mt = -INFINITY;
#pragma unroll
        for (int u = 0; u < U; ++u) {
            if (!ok[u]) s[u][g] = -INFINITY;
            mt = fmaxf(mt, s[u][g]);
        }
        const float mn = fmaxf(m[g], mt);
        const float ms = mn == -INFINITY ? 0.f : mn;  // no live row yet: keep everything at 0 without NaN
        const float corr = exp2f(m[g] - ms);
        l[g] *= corr;
#pragma unroll
        for (int e = 0; e < VEC; ++e) acc[g][e] *= corr;
#pragma unroll
        for (int u = 0; u < U; ++u) {
            s[u][g] = exp2f(s[u][g] - ms);
            l[g] += s[u][g];
        }
        m[g] = mn;
    }

#pragma unroll
    for (int u = 0; u < U; ++u) {
        float vf[VEC];
        E::widen(vr[u], vf);
#pragma unroll
        for (int g = 0; g < G; ++g) {
#pragma unroll
            for (int e = 0; e < VEC; ++e) acc[g][e] = fmaf(s[u][g], vf[e], acc[g][e]);
        }
    }
}

// GATHERED: positions come from p.positions; their loads run one tile ahead of the K/V loads, so a warp
// never waits on a position before it can issue the rows' loads.
// ASYNC: K/V go through a cp.async shared-memory ring (ASYNC_STAGES deep) instead of registers.
// Gathered launches with p.gather_prefetch set prefetch their block-table share into L2 first; PREFETCH_POSITIONS
// (batched launches) also their position lists (in the one-request kernel that code made the main loop slower).
// t: the grid's query slot (partials, counters); tq: the query token inside its request (queries, outputs).
template <int DT, int D, int G, bool GATHERED, bool ASYNC, bool PREFETCH_POSITIONS>
__device__ __forceinline__ void attention_body(const AttnParams& p, const int t, const int tq) {
    using E = Elem<DT>;
    constexpr int VEC = E::VEC;
    constexpr int LPR = D / VEC;       // lanes per row
    constexpr int RPW = 32 / LPR;      // rows a warp reads per step
    constexpr int U = ATT_U;           // steps per tile
    constexpr int WARP_ROWS = U * RPW;
    constexpr int TILE = ATT_WARPS * WARP_ROWS;
    constexpr int ROW_BYTES = D * E::BYTES;
    static_assert(LPR >= 1 && LPR <= 32 && 32 % LPR == 0, "row must map onto a power-of-two lane group");
    static_assert(G <= ATT_WARPS, "the merge gives one warp to each query head");

    __shared__ float sh_acc[ATT_WARPS][G][D];
    __shared__ float sh_m[ATT_WARPS][G];
    __shared__ float sh_l[ATT_WARPS][G];
    __shared__ float sh_w[G][MAX_SPLITS];
    __shared__ float sh_M[G];
    __shared__ float sh_sum[G];
    __shared__ int sh_last;

    if constexpr (GATHERED) {
        if (p.gather_prefetch && p.block_table != nullptr) prefetch_table_l2(p);
    }

    const int split = blockIdx.x;
    const int y = blockIdx.y;
    const int kvh = y / p.group_chunks;
    const int chunk = y - kvh * p.group_chunks;
    const int q0 = kvh * p.group + chunk * G;
    const int warp = threadIdx.x >> 5;
    const int lane = threadIdx.x & 31;
    const int lg = lane / LPR;
    const int li = lane % LPR;
    const int S = p.num_splits;
    const long long head_base = (long long)t * p.num_query_heads + q0;  // partial row of query head q0
    const long long out_base = (long long)tq * p.num_query_heads + q0;  // query/output row of query head q0

    const int* pos;
    int count;
    head_rows(p, kvh, pos, count);
    const int per = (count + S - 1) / S;
    const int c0 = (int)min((long long)count, (long long)split * per);
    const int c1 = (int)min((long long)count, (long long)c0 + per);
    const RowSource src = make_source<ROW_BYTES>(p, kvh);
    if constexpr (GATHERED && PREFETCH_POSITIONS) {
        if (p.gather_prefetch) prefetch_positions_l2(pos, c0, c1);
    }

    float q[G][VEC];
#pragma unroll
    for (int g = 0; g < G; ++g) {
        const float* qp = p.queries + (out_base + g) * D + li * VEC;
#pragma unroll
        for (int e = 0; e < VEC; e += 4) {
            float4 x = *reinterpret_cast<const float4*>(qp + e);
            q[g][e + 0] = x.x * p.scale_log2;
            q[g][e + 1] = x.y * p.scale_log2;
            q[g][e + 2] = x.z * p.scale_log2;
            q[g][e + 3] = x.w * p.scale_log2;
        }
    }

    float m[G], l[G], acc[G][VEC];
#pragma unroll
    for (int g = 0; g < G; ++g) {
        m[g] = -INFINITY;
        l[g] = 0.f;
#pragma unroll
        for (int e = 0; e < VEC; ++e) acc[g][e] = 0.f;
    }

    if constexpr (!ASYNC) {
        // Register pipeline: the next tile's loads are in flight while this tile is computed.
        uint4 kr[U], vr[U];
        bool ok[U];
        int pn[U];  // gathered: positions of the tile after the next
        int base = c0 + warp * WARP_ROWS;
        if constexpr (GATHERED) {
            int pc[U];
            load_positions<U, RPW>(p, pos, base, c1, lg, pc);
            load_rows<U, ROW_BYTES>(src, li, pc, kr, vr, ok);
            load_positions<U, RPW>(p, pos, base + TILE, c1, lg, pn);
        } else {
            load_tile<U, RPW, ROW_BYTES>(p, src, pos, base, c1, lg, li, kr, vr, ok);
        }
        for (; base < c1; base += TILE) {
            uint4 kn[U], vn[U];
            bool okn[U];
            if constexpr (GATHERED) {
                load_rows<U, ROW_BYTES>(src, li, pn, kn, vn, okn);
                load_positions<U, RPW>(p, pos, base + 2 * TILE, c1, lg, pn);
            } else {
                load_tile<U, RPW, ROW_BYTES>(p, src, pos, base + TILE, c1, lg, li, kn, vn, okn);
            }
            process_tile<DT, G, U, LPR>(q, kr, vr, ok, m, l, acc);
#pragma unroll
            for (int u = 0; u < U; ++u) {
                kr[u] = kn[u];
                vr[u] = vn[u];
                ok[u] = okn[u];
            }
        }
    } else {
        // Shared-memory ring: cp.async copies of the next ASYNC_STAGES - 1 tiles are in flight while this
        // tile is computed, without holding registers. Each thread reads back only the 16-byte slots it
        // copied itself, so cp.async.wait_group alone orders the copies; no barrier is needed.
        extern __shared__ uint4 ring[];  // [ASYNC_STAGES][U][K, V][ATT_THREADS]
        constexpr int STAGE_SLOTS = U * 2 * ATT_THREADS;
        unsigned int okring = 0u;        // bit stage * U + u: row u of the tile in that stage is live
        int base = c0 + warp * WARP_ROWS;
        int pc[U];
        tile_positions<U, RPW, GATHERED>(p, pos, base, c1, lg, pc);
#pragma unroll
        for (int st = 0; st < ASYNC_STAGES - 1; ++st) {
            int pnext[U];
            tile_positions<U, RPW, GATHERED>(p, pos, base + (st + 1) * TILE, c1, lg, pnext);
            okring |= issue_tile_async<U, ROW_BYTES>(p, src, pc, li, ring + st * STAGE_SLOTS) << (st * U);
            cp_async_commit();
#pragma unroll
            for (int u = 0; u < U; ++u) pc[u] = pnext[u];
        }
        int stage = 0;
        for (; base < c1; base += TILE) {
            int pnext[U];
            tile_positions<U, RPW, GATHERED>(p, pos, base + ASYNC_STAGES * TILE, c1, lg, pnext);
            const int ist = stage == 0 ? ASYNC_STAGES - 1 : stage - 1;  // the slot consumed last iteration
            const unsigned int issued = issue_tile_async<U, ROW_BYTES>(p, src, pc, li, ring + ist * STAGE_SLOTS);
            okring = (okring & ~(((1u << U) - 1u) << (ist * U))) | (issued << (ist * U));
            cp_async_commit();
#pragma unroll
            for (int u = 0; u < U; ++u) pc[u] = pnext[u];
            cp_async_wait<ASYNC_STAGES - 1>();  // the oldest group, this tile, has landed

            uint4 kr[U], vr[U];
            bool ok[U];
            const uint4* slots = ring + stage * STAGE_SLOTS + threadIdx.x;
#pragma unroll
            for (int u = 0; u < U; ++u) {
                kr[u] = slots[(u * 2) * ATT_THREADS];
                vr[u] = slots[(u * 2 + 1) * ATT_THREADS];
                ok[u] = ((okring >> (stage * U + u)) & 1u) != 0u;
            }
            process_tile<DT, G, U, LPR>(q, kr, vr, ok, m, l, acc);
            stage = stage + 1 == ASYNC_STAGES ? 0 : stage + 1;
        }
        cp_async_wait<0>();
    }

    // Merge the lane groups of a warp (they read different rows, the same dims).
#pragma unroll
    for (int off = LPR; off < 32; off <<= 1) {
#pragma unroll
        for (int g = 0; g < G; ++g) {
            const float mo = __shfl_xor_sync(0xffffffffu, m[g], off);
            const float lo = __shfl_xor_sync(0xffffffffu, l[g], off);
            const float mn = fmaxf(m[g], mo);
            const float ms = mn == -INFINITY ? 0.f : mn;
            const float wa = exp2f(m[g] - ms);
            const float wb = exp2f(mo - ms);
            l[g] = l[g] * wa + lo * wb;
#pragma unroll
            for (int e = 0; e < VEC; ++e) {
                const float ao = __shfl_xor_sync(0xffffffffu, acc[g][e], off);
                acc[g][e] = acc[g][e] * wa + ao * wb;
            }
            m[g] = mn;
        }
    }

    // Merge the warps through shared memory and write this split's partial (output normalized, LSE in log2).
    if (lane < LPR) {
#pragma unroll
        for (int g = 0; g < G; ++g) {
#pragma unroll
            for (int e = 0; e < VEC; ++e) sh_acc[warp][g][li * VEC + e] = acc[g][e];
        }
    }
    if (lane == 0) {
#pragma unroll
        for (int g = 0; g < G; ++g) {
            sh_m[warp][g] = m[g];
            sh_l[warp][g] = l[g];
        }
    }
    __syncthreads();
    // One split: this CTA holds the whole head group, so it writes the output itself (no partials, no
    // arrival counter, no merge: the same values the merge would produce, without its round trips).
    const bool direct = S == 1;
    for (int i = threadIdx.x; i < G * D; i += ATT_THREADS) {
        const int g = i / D;
        const int d = i - g * D;
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < ATT_WARPS; ++w) M = fmaxf(M, sh_m[w][g]);
        const float Ms = M == -INFINITY ? 0.f : M;
        float L = 0.f, A = 0.f;
#pragma unroll
        for (int w = 0; w < ATT_WARPS; ++w) {
            const float f = exp2f(sh_m[w][g] - Ms);
            L += sh_l[w][g] * f;
            A += sh_acc[w][g][d] * f;
        }
        if (direct) {
            const long long h = out_base + g;
            p.output[h * D + d] = L > 0.f ? A / L : 0.f;
            if (d == 0) p.lse[h] = L > 0.f ? (M + log2f(L)) * LN2 : -INFINITY;
        } else {
            const long long row = (head_base + g) * S + split;
            p.part_o[row * D + d] = L > 0.f ? A / L : 0.f;
            if (d == 0) p.part_lse[row] = L > 0.f ? M + log2f(L) : -INFINITY;
        }
    }
    if (direct) return;

    // Arrival: the last CTA of this head group merges every split.
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned int* counter = p.counters + ((long long)t * gridDim.y + y);
        const unsigned int prev = atomicAdd(counter, 1u);
        sh_last = prev == (unsigned int)(S - 1);
        if (sh_last) *counter = 0u;  // every CTA of the group has arrived: ready for the next launch
    }
    __syncthreads();
    if (!sh_last) return;
    __threadfence();

    for (int i = threadIdx.x; i < G * S; i += ATT_THREADS) {
        const int g = i / S;
        const int s = i - g * S;
        sh_w[g][s] = __ldcg(p.part_lse + (head_base + g) * S + s);
    }
    __syncthreads();
    if (warp < G) {
        const int g = warp;
        float M = -INFINITY;
        for (int s = lane; s < S; s += 32) M = fmaxf(M, sh_w[g][s]);
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, off));
        const float Ms = M == -INFINITY ? 0.f : M;
        float sum = 0.f;
        for (int s = lane; s < S; s += 32) {
            const float w = exp2f(sh_w[g][s] - Ms);
            sh_w[g][s] = w;
            sum += w;
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
        if (lane == 0) {
            sh_M[g] = M;
            sh_sum[g] = sum;
        }
    }
    __syncthreads();
    // Each thread merges 4 dims of one head over all splits: independent 16-byte loads, 8 in flight.
    constexpr int QUADS = D / 4;
    for (int i = threadIdx.x; i < G * QUADS; i += ATT_THREADS) {
        const int g = i / QUADS;
        const int d4 = (i - g * QUADS) * 4;
        const float* po = p.part_o + (head_base + g) * S * D + d4;
        float4 a = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll 8
        for (int s = 0; s < S; ++s) {
            const float w = sh_w[g][s];
            const float4 x = __ldcg(reinterpret_cast<const float4*>(po + (long long)s * D));
            a.x = fmaf(w, x.x, a.x);
            a.y = fmaf(w, x.y, a.y);
            a.z = fmaf(w, x.z, a.z);
            a.w = fmaf(w, x.w, a.w);
        }
        const long long h = out_base + g;
        const bool empty = sh_M[g] == -INFINITY;
        const float inv = empty ? 0.f : 1.f / sh_sum[g];
        *reinterpret_cast<float4*>(p.output + h * D + d4) = make_float4(a.x * inv, a.y * inv, a.z * inv, a.w * inv);
        if (d4 == 0) p.lse[h] = empty ? -INFINITY : (sh_M[g] + log2f(sh_sum[g])) * LN2;
    }
}

// One request per launch: z is the query token.
// Min 3 CTAs per SM caps registers at 168: the prefetched tile stays in registers without losing occupancy.
template <int DT, int D, int G, bool GATHERED, bool ASYNC>
__global__ void __launch_bounds__(ATT_THREADS, 3) attention_kernel(const AttnParams p) {
    attention_body<DT, D, G, GATHERED, ASYNC, false>(p, blockIdx.z, blockIdx.z);
}

// An 8-byte field of a request descriptor, through the read-only path.
template <typename T>
__device__ __forceinline__ T request_field(const T* field) {
    static_assert(sizeof(T) == 8, "descriptor fields are 8 bytes");
    return (T)__ldg(reinterpret_cast<const unsigned long long*>(field));
}

// Many requests per launch: z = request * batch_queries + token. The request's descriptor supplies its
// K/V, selection, queries, outputs, token count and exclude range; the shape fields of p are shared.
template <int DT, int D, int G, bool GATHERED>
__global__ void __launch_bounds__(ATT_THREADS, 3) attention_batch_kernel(const AttnParams p) {
    const int r = blockIdx.z / p.batch_queries;
    const int tq = blockIdx.z - r * p.batch_queries;
    const kvdb_attn_request* rq = p.requests + r;
    AttnParams pr = p;
    const long long n = request_field(&rq->num_tokens);
    pr.num_tokens = n;
    if (p.region_bytes > 0) {  // blocks layout (region_bytes is set for it only)
        pr.block_table = request_field(&rq->block_table);
    } else {
        pr.keys = static_cast<const char*>(request_field(&rq->keys));
        pr.values = static_cast<const char*>(request_field(&rq->values));
        const long long cap = request_field(&rq->kv_capacity);
        pr.kv_capacity = cap == 0 ? n : cap;
    }
    if constexpr (GATHERED) {
        pr.positions = request_field(&rq->positions);
        pr.offsets = request_field(&rq->offsets);
        if (pr.positions == nullptr || pr.offsets == nullptr) {  // no selection: nothing attended, never a wild read
            pr.positions = nullptr;
            pr.num_tokens = 0;
        }
    } else {
        pr.positions = nullptr;
        pr.offsets = nullptr;
    }
    pr.queries = request_field(&rq->queries);
    pr.output = request_field(&rq->output);
    pr.lse = request_field(&rq->lse);
    const long long xs = request_field(&rq->exclude_start);
    const long long xe = request_field(&rq->exclude_end);
    pr.exclude_start = xe > xs ? xs : 0;  // an empty or inverted range excludes nothing
    pr.exclude_end = xe > xs ? xe : 0;
    attention_body<DT, D, G, GATHERED, false, true>(pr, blockIdx.z, tq);
}

// Picks the split count (one full wave of CTAs, splits of at least two tiles), sizes the scratch and the
// arrival counters for grid_z query slots, and launches.
template <int DT, int D, int G, bool GATHERED, bool ASYNC, bool BATCHED>
int launch_attention(kvdb_ctx* ctx, AttnParams& p, int grid_z, int rows_max, int requested_splits) {
    constexpr int VEC = Elem<DT>::VEC;
    constexpr int TILE = ATT_WARPS * ATT_U * (32 / (D / VEC));
    constexpr int DYNAMIC_SMEM = ASYNC ? ASYNC_STAGES * ATT_U * 2 * ATT_THREADS * 16 : 0;
    void (*kernel)(AttnParams);
    if constexpr (BATCHED) {
        kernel = attention_batch_kernel<DT, D, G, GATHERED>;
    } else {
        kernel = attention_kernel<DT, D, G, GATHERED, ASYNC>;
    }
    static int occupancy = 0;  // per instantiation; every device of a process is assumed alike
    if (occupancy == 0) {
        if (DYNAMIC_SMEM > 0) {
            KVDB_RETURN_IF_ERROR(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, DYNAMIC_SMEM));
        }
        int o = 0;
        KVDB_RETURN_IF_ERROR(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&o, kernel, ATT_THREADS, DYNAMIC_SMEM));
        occupancy = o > 0 ? o : 1;
    }
    const long long groups = (long long)grid_z * p.num_kv_heads * p.group_chunks;
    int splits = requested_splits;
    if (splits <= 0) {
        // At most one wave of CTAs over the whole GPU (a partial second wave doubles the time), but never
        // splits shorter than two tiles.
        const long long slots = (long long)occupancy * ctx->sm_count;
        long long s = slots / groups;
        const long long by_rows = ((long long)rows_max + 2 * TILE - 1) / (2 * TILE);
        if (s > by_rows) s = by_rows;
        splits = (int)(s < 1 ? 1 : (s > MAX_SPLITS ? MAX_SPLITS : s));
    }
    if (splits > MAX_SPLITS) splits = MAX_SPLITS;
    p.num_splits = splits;

    const size_t heads = (size_t)grid_z * p.num_query_heads;
    const size_t part_floats = heads * splits * (size_t)D;
    int status = kvdb_ensure_scratch(ctx, (part_floats + heads * splits) * sizeof(float));
    if (status != 0) return status;
    status = kvdb_ensure_counters(ctx, (size_t)groups);
    if (status != 0) return status;
    p.part_o = static_cast<float*>(ctx->scratch);
    p.part_lse = p.part_o + part_floats;
    p.counters = ctx->counters;

    dim3 grid((unsigned)splits, (unsigned)(p.num_kv_heads * p.group_chunks), (unsigned)grid_z);
    kernel<<<grid, ATT_THREADS, DYNAMIC_SMEM, ctx->stream>>>(p);
    return (int)cudaGetLastError();
}

// What one launch needs besides AttnParams.
struct LaunchShape {
    int dtype;
    int head_dim;
    int grid_z;       // query slots: tokens (one request) or requests * tokens (batched)
    int rows_max;     // most rows of any KV head
    int splits;       // requested split count, 0 = automatic
    int g;            // query heads per CTA
    bool gathered;
};

template <int DT, int D, bool GATHERED, bool ASYNC, bool BATCHED>
int dispatch_mode(kvdb_ctx* ctx, AttnParams& p, const LaunchShape& s) {
    switch (s.g) {
        case 4: return launch_attention<DT, D, 4, GATHERED, ASYNC, BATCHED>(ctx, p, s.grid_z, s.rows_max, s.splits);
        case 2: return launch_attention<DT, D, 2, GATHERED, ASYNC, BATCHED>(ctx, p, s.grid_z, s.rows_max, s.splits);
        default: return launch_attention<DT, D, 1, GATHERED, ASYNC, BATCHED>(ctx, p, s.grid_z, s.rows_max, s.splits);
    }
}

// Main-loop choice: the cp.async ring (variant 1, one request per launch only) or the register pipeline.
template <int DT, int D, bool BATCHED>
int dispatch_variant(kvdb_ctx* ctx, AttnParams& p, const LaunchShape& s) {
    if constexpr (!BATCHED) {
        if (attention_variant() == 1) {
            return s.gathered ? dispatch_mode<DT, D, true, true, false>(ctx, p, s) : dispatch_mode<DT, D, false, true, false>(ctx, p, s);
        }
    }
    return s.gathered ? dispatch_mode<DT, D, true, false, BATCHED>(ctx, p, s) : dispatch_mode<DT, D, false, false, BATCHED>(ctx, p, s);
}

template <bool BATCHED>
int dispatch_attention(kvdb_ctx* ctx, AttnParams& p, const LaunchShape& s) {
    KVDB_RETURN_IF_ERROR(cudaSetDevice(ctx->device));
    switch (s.dtype) {
        case KVDB_DTYPE_BF16: return s.head_dim == 64 ? dispatch_variant<KVDB_DTYPE_BF16, 64, BATCHED>(ctx, p, s) : dispatch_variant<KVDB_DTYPE_BF16, 128, BATCHED>(ctx, p, s);
        case KVDB_DTYPE_F16: return s.head_dim == 64 ? dispatch_variant<KVDB_DTYPE_F16, 64, BATCHED>(ctx, p, s) : dispatch_variant<KVDB_DTYPE_F16, 128, BATCHED>(ctx, p, s);
        default: return s.head_dim == 64 ? dispatch_variant<KVDB_DTYPE_F32, 64, BATCHED>(ctx, p, s) : dispatch_variant<KVDB_DTYPE_F32, 128, BATCHED>(ctx, p, s);
    }
}

}  // namespace kvdb
