// AUTO on the device: the centroid index's heavy-hitter search, the residual sample and the merge with its error
// bound, so a sparse decode query never leaves the GPU between the queries and the answer. The attention itself is
// kvdb_attention (gathered) over the lists these kernels write. Same search rule as src/Index/CentroidIndex.cs
// (coarse best-first until P * per_row keys are probed, fine best-first until per_row keys are named), over every
// segment's coarse clusters at once; same estimator as src/QueryEngine/Plans/VerifiedSamplingPlan.cs, with the
// sample drawn with replacement (no finite-population correction).
#include <cub/block/block_radix_sort.cuh>
#include <cub/block/block_scan.cuh>
#include <cuda_fp16.h>
#include "kvdb_attn_common.cuh"

namespace kvdb {

constexpr int SEL_THREADS = 512;
constexpr int SEL_COARSE_ITEMS = 2;
constexpr int SEL_FINE_ITEMS = 4;
constexpr int SEL_MAX_COARSE = SEL_THREADS * SEL_COARSE_ITEMS;  // 1024 coarse clusters per KV head
constexpr int SEL_MAX_FINE = SEL_THREADS * SEL_FINE_ITEMS;      // 2048 fine clusters probed per row
constexpr int SEL_MAX_CHOSEN = 64;                               // coarse clusters probed per row
constexpr int EXPAND_THREADS = 1024;
constexpr int MERGE_THREADS = 256;
constexpr int MERGE_WARPS = MERGE_THREADS / 32;
constexpr int DRAW_ATTEMPTS = 64;

constexpr int STATUS_TOO_MANY_COARSE = 1;
constexpr int STATUS_HEAVY_OVERFLOW = 2;
constexpr int STATUS_DRAW_FAILED = 4;

__device__ __forceinline__ float dot_centroid(const float* q, const float* __restrict__ c, int d) {
    float s0 = 0.f, s1 = 0.f;
    for (int e = 0; e < d; e += 8) {
        const float4 x = __ldg(reinterpret_cast<const float4*>(c + e));
        const float4 y = __ldg(reinterpret_cast<const float4*>(c + e + 4));
        s0 = fmaf(q[e], x.x, s0);
        s1 = fmaf(q[e + 1], x.y, s1);
        s0 = fmaf(q[e + 2], x.z, s0);
        s1 = fmaf(q[e + 3], x.w, s1);
        s0 = fmaf(q[e + 4], y.x, s0);
        s1 = fmaf(q[e + 5], y.y, s1);
        s0 = fmaf(q[e + 6], y.z, s0);
        s1 = fmaf(q[e + 7], y.w, s1);
    }
    return s0 + s1;
}

__device__ __forceinline__ bool in_range(long long position, long long start, long long end) { return position >= start && position < end; }

__device__ __forceinline__ unsigned long long mix64(unsigned long long x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// One CTA per (KV head, group row): names the row's heavy fine clusters and marks them in flags; the first CTA
// to mark a cluster adds its size to counts[h], so counts[h] ends as the size of the union over the group.
__global__ void __launch_bounds__(SEL_THREADS) auto_select_kernel(const kvdb_auto_select_args a) {
    using CoarseSort = cub::BlockRadixSort<float, SEL_THREADS, SEL_COARSE_ITEMS, int>;
    using FineSort = cub::BlockRadixSort<float, SEL_THREADS, SEL_FINE_ITEMS, int>;
    using Scan = cub::BlockScan<int, SEL_THREADS>;
    __shared__ union {
        typename CoarseSort::TempStorage coarse;
        typename FineSort::TempStorage fine;
        typename Scan::TempStorage scan;
    } temp;
    __shared__ __align__(16) float q[128];
    __shared__ int ids[SEL_MAX_FINE];
    __shared__ int chosen[SEL_MAX_CHOSEN];
    __shared__ int chosen_start[SEL_MAX_CHOSEN + 1];
    __shared__ int chosen_count;

    const kvdb_centroid_layout& x = a.index;
    const int h = blockIdx.y;
    const int r = blockIdx.x;
    const int d = a.head_dim;
    const int group = a.num_query_heads / a.num_kv_heads;
    const int t = r / group;
    const int qh = h * group + (r - t * group);
    const float* qrow = a.queries + ((long long)t * a.num_query_heads + qh) * d;
    for (int e = threadIdx.x; e < d; e += SEL_THREADS) q[e] = qrow[e];

    const int c0 = x.coarse_start[h];
    const int cn = x.coarse_start[h + 1] - c0;
    if (cn > SEL_MAX_COARSE) {
        if (threadIdx.x == 0) atomicOr(a.status, STATUS_TOO_MANY_COARSE);
        return;
    }
    if (cn <= 0) return;
    __syncthreads();

    float ck[SEL_COARSE_ITEMS];
    int cv[SEL_COARSE_ITEMS];
#pragma unroll
    for (int i = 0; i < SEL_COARSE_ITEMS; ++i) {
        const int j = threadIdx.x * SEL_COARSE_ITEMS + i;
        cv[i] = j;
        ck[i] = j < cn ? dot_centroid(q, x.coarse + (long long)(c0 + j) * d, d) : -INFINITY;
    }
    CoarseSort(temp.coarse).SortDescending(ck, cv);
#pragma unroll
    for (int i = 0; i < SEL_COARSE_ITEMS; ++i) {
        const int rank = threadIdx.x * SEL_COARSE_ITEMS + i;
        if (rank < cn) ids[rank] = c0 + cv[i];
    }
    __syncthreads();

    if (threadIdx.x == 0) {
        long long probed = 0;
        int nf = 0;
        int k = 0;
        chosen_start[0] = 0;
        while (k < cn && k < SEL_MAX_CHOSEN) {
            const int c = ids[k];
            int fc = x.fine_start[c + 1] - x.fine_start[c];
            if (nf + fc > SEL_MAX_FINE) {
                if (k > 0) break;
                fc = SEL_MAX_FINE;
            }
            chosen[k] = c;
            nf += fc;
            chosen_start[++k] = nf;
            probed += x.coarse_members[c];
            if (probed >= a.probe_members) break;
        }
        chosen_count = k;
    }
    __syncthreads();

    const int nchosen = chosen_count;
    for (int k = 0; k < nchosen; ++k) {
        const int first = x.fine_start[chosen[k]];
        const int start = chosen_start[k];
        const int count = chosen_start[k + 1] - start;
        for (int j = threadIdx.x; j < count; j += SEL_THREADS) ids[start + j] = first + j;
    }
    __syncthreads();

    const int nf = chosen_start[nchosen];
    float fk[SEL_FINE_ITEMS];
    int fv[SEL_FINE_ITEMS];
#pragma unroll
    for (int i = 0; i < SEL_FINE_ITEMS; ++i) {
        const int j = threadIdx.x * SEL_FINE_ITEMS + i;
        fv[i] = j < nf ? ids[j] : -1;
        fk[i] = j < nf ? dot_centroid(q, x.fine + (long long)fv[i] * d, d) : -INFINITY;
    }
    __syncthreads();
    FineSort(temp.fine).SortDescending(fk, fv);

    int size[SEL_FINE_ITEMS];
    int local = 0;
#pragma unroll
    for (int i = 0; i < SEL_FINE_ITEMS; ++i) {
        size[i] = fv[i] >= 0 ? x.member_start[fv[i] + 1] - x.member_start[fv[i]] : 0;
        local += size[i];
    }
    __syncthreads();
    int before = 0;
    Scan(temp.scan).ExclusiveSum(local, before);
#pragma unroll
    for (int i = 0; i < SEL_FINE_ITEMS; ++i) {
        // Best-first until per_row keys are named: a cluster is taken while fewer than per_row precede it.
        if (size[i] > 0 && before < a.per_row) {
            if (atomicExch(a.flags + fv[i], 1u) == 0u) atomicAdd(a.counts + h, size[i]);
        }
        before += size[i];
    }
}

// One CTA per KV head: writes the head's heavy list (marked clusters' members, outliers, sinks, tail) at its CSR
// offset, the residual's size, and its sample; then clears what it set in flags and bitmap.
__global__ void __launch_bounds__(EXPAND_THREADS) auto_expand_kernel(const kvdb_auto_select_args a) {
    __shared__ long long base_s;
    __shared__ int cursor;
    __shared__ int excluded_heavy;
    __shared__ int draw_failed;

    const kvdb_centroid_layout& x = a.index;
    const int h = blockIdx.x;
    const int H = a.num_kv_heads;
    const long long indexed = x.indexed_tokens;
    const int sinks = (int)min((long long)a.sinks, indexed);
    const long long tail = a.num_tokens - indexed;
    const bool has_exclude = a.exclude_end > a.exclude_start;
    const long long ex0 = has_exclude ? a.exclude_start : 0;
    const long long ex1 = has_exclude ? a.exclude_end : 0;
    unsigned int* bits = a.bitmap + (long long)h * a.bitmap_words;

    if (threadIdx.x == 0) {
        long long b = 0;
        for (int j = 0; j < h; ++j) b += a.counts[j] + (x.outlier_start[j + 1] - x.outlier_start[j]) + sinks + tail;
        base_s = b;
        cursor = 0;
        excluded_heavy = 0;
        draw_failed = 0;
    }
    __syncthreads();

    const long long base = base_s;
    const int mine = a.counts[h];
    const int o0 = x.outlier_start[h];
    const int outl = x.outlier_start[h + 1] - o0;
    const long long total = mine + outl + sinks + tail;
    if (base + total > a.heavy_capacity) {
        if (threadIdx.x == 0) {
            atomicOr(a.status, STATUS_HEAVY_OVERFLOW);
            a.heavy_offsets[h] = 0;
            if (h == H - 1) a.heavy_offsets[H] = 0;
        }
        // Still clear the flags so the next call starts from zero.
        for (int f = x.fine_head_start[h] + threadIdx.x; f < x.fine_head_start[h + 1]; f += EXPAND_THREADS) a.flags[f] = 0u;
        return;
    }
    int* out = a.heavy_positions + base;

    int excluded = 0;
    for (int f = x.fine_head_start[h] + threadIdx.x; f < x.fine_head_start[h + 1]; f += EXPAND_THREADS) {
        if (a.flags[f] == 0u) continue;
        a.flags[f] = 0u;
        const int s = x.member_start[f];
        const int n = x.member_start[f + 1] - s;
        const int slot = atomicAdd(&cursor, n);
        for (int m = 0; m < n; ++m) {
            const int position = x.members[s + m];
            out[slot + m] = position;
            atomicOr(bits + (position >> 5), 1u << (position & 31));
            excluded += in_range(position, ex0, ex1) ? 1 : 0;
        }
    }
    for (int i = threadIdx.x; i < outl; i += EXPAND_THREADS) {
        const int position = x.outliers[o0 + i];
        out[mine + i] = position;
        atomicOr(bits + (position >> 5), 1u << (position & 31));
        excluded += in_range(position, ex0, ex1) ? 1 : 0;
    }
    for (int i = threadIdx.x; i < sinks; i += EXPAND_THREADS) out[mine + outl + i] = i;
    for (long long i = threadIdx.x; i < tail; i += EXPAND_THREADS) out[mine + outl + sinks + i] = (int)(indexed + i);
    if (excluded > 0) atomicAdd(&excluded_heavy, excluded);
    if (threadIdx.x == 0) {
        a.heavy_offsets[h] = (int)base;
        if (h == H - 1) a.heavy_offsets[H] = (int)(base + total);
        a.sample_offsets[h] = h * a.sample_size;
        if (h == H - 1) a.sample_offsets[H] = H * a.sample_size;
    }
    __syncthreads();

    const long long lo = max(ex0, (long long)sinks);
    const long long hi = min(ex1, indexed);
    const long long excluded_range = hi > lo ? hi - lo : 0;
    const long long range = indexed - sinks;
    const long long residual = (range - excluded_range) - ((long long)mine + outl - excluded_heavy);
    if (threadIdx.x == 0) a.residual[h] = (float)(residual > 0 ? residual : 0);

    int* sample = a.sample_positions + (long long)h * a.sample_size;
    for (int i = threadIdx.x; i < a.sample_size; i += EXPAND_THREADS) {
        int position = 0;
        if (residual > 0 && range > 0) {
            bool found = false;
            for (int attempt = 0; attempt < DRAW_ATTEMPTS && !found; ++attempt) {
                const unsigned long long u = mix64(a.seed ^ ((unsigned long long)h << 48) ^ ((unsigned long long)i << 16) ^ (unsigned long long)attempt);
                const long long p = sinks + (long long)(u % (unsigned long long)range);
                if (!in_range(p, ex0, ex1) && (bits[p >> 5] & (1u << (p & 31))) == 0u) {
                    position = (int)p;
                    found = true;
                }
            }
            if (!found) draw_failed = 1;
        }
        sample[i] = position;
    }
    __syncthreads();
    if (threadIdx.x == 0 && draw_failed) atomicOr(a.status, STATUS_DRAW_FAILED);
    for (int i = threadIdx.x; i < mine + outl; i += EXPAND_THREADS) bits[out[i] >> 5] = 0u;
}

template <int DT, int EPL>
__device__ __forceinline__ void load_elems(const char* p, float (&f)[EPL]) {
    if constexpr (DT == KVDB_DTYPE_F32) {
#pragma unroll
        for (int e = 0; e < EPL; ++e) f[e] = reinterpret_cast<const float*>(p)[e];
    } else if constexpr (DT == KVDB_DTYPE_BF16) {
#pragma unroll
        for (int e = 0; e < EPL; ++e) f[e] = __uint_as_float((uint32_t)reinterpret_cast<const unsigned short*>(p)[e] << 16);
    } else {
#pragma unroll
        for (int e = 0; e < EPL; ++e) f[e] = __half2float(reinterpret_cast<const __half*>(p)[e]);
    }
}

// One CTA per (query token, query head): the merged output and LSE, then the sample's variance of w_i (v_i - o)
// against the merged output, the error bound and the heavy share of the mass.
template <int DT, int D>
__global__ void __launch_bounds__(MERGE_THREADS) auto_merge_kernel(const AttnParams p, const kvdb_auto_merge_args m) {
    constexpr int EPL = D / 32;
    constexpr int ROW_BYTES = D * Elem<DT>::BYTES;
    constexpr int U = 4;
    __shared__ float sx_s[MERGE_WARPS][D];
    __shared__ float sq_s[MERGE_WARPS];

    const int qh = blockIdx.x;
    const int t = blockIdx.y;
    const int kvh = qh / p.group;
    const int warp = threadIdx.x >> 5;
    const int lane = threadIdx.x & 31;
    const long long head = (long long)t * p.num_query_heads + qh;

    float q[EPL], o[EPL];
    const float lh = m.heavy_lse[head];
    const float ls = m.sample_lse[head];
    const float residual = m.residual[kvh];
    const int n = m.sample_size;
    const float lsw = (n > 0 && residual > 0.f && ls > -INFINITY) ? ls + logf(residual / (float)n) : -INFINITY;
    const float mx = fmaxf(lh, lsw);
    if (mx == -INFINITY) {
        if (warp == 0) {
#pragma unroll
            for (int e = 0; e < EPL; ++e) p.output[head * D + lane * EPL + e] = 0.f;
            if (lane == 0) {
                p.lse[head] = -INFINITY;
                m.bound[head] = residual > 0.f ? INFINITY : 0.f;
                m.heavy_mass[head] = 1.f;
            }
        }
        return;
    }
    const float wa = lh > -INFINITY ? expf(lh - mx) : 0.f;
    const float wb = lsw > -INFINITY ? expf(lsw - mx) : 0.f;
    const float den = wa + wb;
#pragma unroll
    for (int e = 0; e < EPL; ++e) {
        const long long i = head * D + lane * EPL + e;
        const float oh = wa > 0.f ? m.heavy_output[i] : 0.f;
        const float os = wb > 0.f ? m.sample_output[i] : 0.f;
        o[e] = (wa * oh + wb * os) / den;
        q[e] = p.queries[i] * p.scale;
    }
    __syncthreads();  // every thread read its outputs before warp 0 overwrites them (the buffers may alias)
    if (warp == 0) {
#pragma unroll
        for (int e = 0; e < EPL; ++e) p.output[head * D + lane * EPL + e] = o[e];
        if (lane == 0) p.lse[head] = mx + logf(den);
    }

    float sx[EPL];
#pragma unroll
    for (int e = 0; e < EPL; ++e) sx[e] = 0.f;
    float sq = 0.f;
    if (wb > 0.f) {
        const RowSource src = make_source<ROW_BYTES>(p, kvh);
        const int* pos = m.sample_positions + (long long)kvh * n;
        for (int j0 = warp; j0 < n; j0 += MERGE_WARPS * U) {
            float kf[U][EPL], vf[U][EPL];
            bool ok[U];
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const int j = j0 + u * MERGE_WARPS;
                ok[u] = j < n;
                if (ok[u]) {
                    const char* kp;
                    const char* vp;
                    src.address(__ldg(pos + j), ROW_BYTES, lane * EPL * Elem<DT>::BYTES, kp, vp);
                    load_elems<DT, EPL>(kp, kf[u]);
                    load_elems<DT, EPL>(vp, vf[u]);
                }
            }
#pragma unroll
            for (int u = 0; u < U; ++u) {
                float s = 0.f;
#pragma unroll
                for (int e = 0; e < EPL; ++e) s = ok[u] ? fmaf(q[e], kf[u][e], s) : 0.f;
#pragma unroll
                for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
                if (ok[u]) {
                    const float w = expf(s - mx);
#pragma unroll
                    for (int e = 0; e < EPL; ++e) {
                        const float xv = w * (vf[u][e] - o[e]);
                        sx[e] += xv;
                        sq = fmaf(xv, xv, sq);
                    }
                }
            }
        }
    }
#pragma unroll
    for (int e = 0; e < EPL; ++e) sx_s[warp][lane * EPL + e] = sx[e];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) sq += __shfl_xor_sync(0xffffffffu, sq, off);
    if (lane == 0) sq_s[warp] = sq;
    __syncthreads();
    if (warp != 0) return;
    float nx = 0.f, no = 0.f, sqt = 0.f;
#pragma unroll
    for (int e = 0; e < EPL; ++e) {
        float s = 0.f;
        for (int w = 0; w < MERGE_WARPS; ++w) s += sx_s[w][lane * EPL + e];
        nx = fmaf(s, s, nx);
        no = fmaf(o[e], o[e], no);
    }
    if (lane < MERGE_WARPS) sqt = sq_s[lane];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        nx += __shfl_xor_sync(0xffffffffu, nx, off);
        no += __shfl_xor_sync(0xffffffffu, no, off);
        sqt += __shfl_xor_sync(0xffffffffu, sqt, off);
    }
    if (lane == 0) {
        float bound;
        if (residual <= 0.f) {
            bound = 0.f;
        } else if (wb <= 0.f || !(no > 0.f)) {
            bound = INFINITY;
        } else {
            const double nn = (double)n;
            const double var = fmax(0.0, (double)sqt / nn - (double)nx / (nn * nn));
            const double r = (double)residual;
            bound = (float)(sqrt((double)m.factor * r * r * var / nn) / ((double)den * sqrt((double)no)));
        }
        m.bound[head] = bound;
        m.heavy_mass[head] = wa / den;
    }
}

template <int DT>
int launch_merge(kvdb_ctx* ctx, const kvdb_attn_args* a, const AttnParams& p, const kvdb_auto_merge_args* m) {
    dim3 grid((unsigned)a->num_query_heads, (unsigned)a->num_queries);
    if (a->head_dim == 64) {
        auto_merge_kernel<DT, 64><<<grid, MERGE_THREADS, 0, ctx->stream>>>(p, *m);
    } else {
        auto_merge_kernel<DT, 128><<<grid, MERGE_THREADS, 0, ctx->stream>>>(p, *m);
    }
    return (int)cudaGetLastError();
}

}  // namespace kvdb

extern "C" KVDB_API int kvdb_auto_select(kvdb_ctx* ctx, const kvdb_auto_select_args* a) {
    using namespace kvdb;
    if (ctx == nullptr || a == nullptr) return KVDB_ERR_INVALID_ARGUMENT;
    const kvdb_centroid_layout& x = a->index;
    if (a->num_kv_heads <= 0 || a->num_kv_heads > 65535 || a->num_query_heads <= 0 || a->num_query_heads % a->num_kv_heads != 0) return KVDB_ERR_INVALID_ARGUMENT;
    if (a->head_dim != 64 && a->head_dim != 128) return KVDB_ERR_UNSUPPORTED;
    const long long rows = (long long)a->num_queries * (a->num_query_heads / a->num_kv_heads);
    if (a->num_queries <= 0 || rows > 65535) return KVDB_ERR_INVALID_ARGUMENT;
    if (a->per_row <= 0 || a->probe_members < 0 || a->sample_size < 0 || a->sinks < 0 || a->reserved != 0) return KVDB_ERR_INVALID_ARGUMENT;
    if (x.indexed_tokens < 0 || x.indexed_tokens > a->num_tokens || a->num_tokens > INT_MAX - 65536) return KVDB_ERR_INVALID_ARGUMENT;
    if ((long long)a->bitmap_words * 32 < x.indexed_tokens || a->heavy_capacity < 0) return KVDB_ERR_INVALID_ARGUMENT;
    if ((long long)a->num_kv_heads * a->sample_size > INT_MAX) return KVDB_ERR_INVALID_ARGUMENT;
    if (x.coarse == nullptr || x.coarse_members == nullptr || x.fine_start == nullptr || x.fine == nullptr || x.member_start == nullptr ||
        x.members == nullptr || x.outliers == nullptr || x.coarse_start == nullptr || x.fine_head_start == nullptr || x.outlier_start == nullptr)
        return KVDB_ERR_INVALID_ARGUMENT;
    if (a->queries == nullptr || a->heavy_positions == nullptr || a->heavy_offsets == nullptr || a->sample_positions == nullptr ||
        a->sample_offsets == nullptr || a->residual == nullptr || a->flags == nullptr || a->bitmap == nullptr || a->counts == nullptr ||
        a->status == nullptr)
        return KVDB_ERR_INVALID_ARGUMENT;
    KVDB_RETURN_IF_ERROR(cudaSetDevice(ctx->device));
    KVDB_RETURN_IF_ERROR(cudaMemsetAsync(a->counts, 0, sizeof(int) * (size_t)a->num_kv_heads, ctx->stream));
    KVDB_RETURN_IF_ERROR(cudaMemsetAsync(a->status, 0, sizeof(int), ctx->stream));
    auto_select_kernel<<<dim3((unsigned)rows, (unsigned)a->num_kv_heads), SEL_THREADS, 0, ctx->stream>>>(*a);
    KVDB_RETURN_IF_ERROR(cudaGetLastError());
    auto_expand_kernel<<<(unsigned)a->num_kv_heads, EXPAND_THREADS, 0, ctx->stream>>>(*a);
    return (int)cudaGetLastError();
}

extern "C" KVDB_API int kvdb_auto_merge(kvdb_ctx* ctx, const kvdb_attn_args* attention, const kvdb_auto_merge_args* m) {
    using namespace kvdb;
    if (ctx == nullptr || m == nullptr) return KVDB_ERR_INVALID_ARGUMENT;
    if (m->heavy_output == nullptr || m->heavy_lse == nullptr || m->sample_output == nullptr || m->sample_lse == nullptr ||
        m->residual == nullptr || m->bound == nullptr || m->heavy_mass == nullptr || m->sample_size < 0 || (m->sample_size > 0 && m->sample_positions == nullptr) ||
        !(m->factor > 0.f))
        return KVDB_ERR_INVALID_ARGUMENT;
    kvdb_attn_args dense = *attention;
    dense.positions = nullptr;
    dense.offsets = nullptr;
    AttnParams p;
    int rows_max = 0, g = 1;
    const int status = prepare_params(&dense, true, p, rows_max, g);
    if (status != 0) return status;
    KVDB_RETURN_IF_ERROR(cudaSetDevice(ctx->device));
    switch (attention->dtype) {
        case KVDB_DTYPE_BF16: return launch_merge<KVDB_DTYPE_BF16>(ctx, attention, p, m);
        case KVDB_DTYPE_F16: return launch_merge<KVDB_DTYPE_F16>(ctx, attention, p, m);
        default: return launch_merge<KVDB_DTYPE_F32>(ctx, attention, p, m);
    }
}
