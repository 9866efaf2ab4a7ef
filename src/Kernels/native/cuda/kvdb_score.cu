// Scoring: scale * q.k for every attended row and every query head of its GQA group, the input of
// top-k selection. Same row addressing and lane mapping as the attention kernel, keys only.
#include "kvdb_attn_common.cuh"

namespace kvdb {

constexpr int SCORE_U = 4;

template <int DT, int D, int G>
__global__ void __launch_bounds__(ATT_THREADS) score_kernel(const AttnParams p, float* scores, long long stride) {
    using E = Elem<DT>;
    constexpr int VEC = E::VEC;
    constexpr int LPR = D / VEC;
    constexpr int RPW = 32 / LPR;
    constexpr int WARP_ROWS = SCORE_U * RPW;
    constexpr int TILE = ATT_WARPS * WARP_ROWS;
    constexpr int ROW_BYTES = D * E::BYTES;

    const int y = blockIdx.y;
    const int kvh = y / p.group_chunks;
    const int chunk = y - kvh * p.group_chunks;
    const int t = blockIdx.z;
    const int q0 = kvh * p.group + chunk * G;
    const int warp = threadIdx.x >> 5;
    const int lane = threadIdx.x & 31;
    const int lg = lane / LPR;
    const int li = lane % LPR;
    const long long head_base = (long long)t * p.num_query_heads + q0;

    const int* pos;
    int count;
    head_rows(p, kvh, pos, count);
    if (count > p.rows_limit) count = p.rows_limit;  // a caller's max_positions bounds what fits in the stride
    const long long base = (long long)blockIdx.x * TILE + warp * WARP_ROWS;
    if (base >= count) return;  // uniform per warp: no shuffle below loses a partner
    const RowSource src = make_source<ROW_BYTES>(p, kvh);

    float q[G][VEC];
#pragma unroll
    for (int g = 0; g < G; ++g) {
        const float* qp = p.queries + (head_base + g) * D + li * VEC;
#pragma unroll
        for (int e = 0; e < VEC; e += 4) {
            float4 x = *reinterpret_cast<const float4*>(qp + e);
            q[g][e + 0] = x.x * p.scale;
            q[g][e + 1] = x.y * p.scale;
            q[g][e + 2] = x.z * p.scale;
            q[g][e + 3] = x.w * p.scale;
        }
    }

    uint4 kr[SCORE_U];
    bool ok[SCORE_U];
#pragma unroll
    for (int u = 0; u < SCORE_U; ++u) {
        const long long j = base + u * RPW + lg;
        ok[u] = false;
        kr[u] = make_uint4(0u, 0u, 0u, 0u);
        if (j < count) {
            const int position = pos != nullptr ? __ldg(pos + j) : (int)j;
            if (!excluded(p, position)) {
                const char* kp;
                const char* vp;
                src.address(position, ROW_BYTES, li * 16, kp, vp);
                kr[u] = load_stream16(kp);
                ok[u] = true;
            }
        }
    }

    float s[SCORE_U][G];
    row_scores<DT, G, SCORE_U, LPR>(q, kr, s);
    if (li == 0) {
#pragma unroll
        for (int u = 0; u < SCORE_U; ++u) {
            const long long j = base + u * RPW + lg;
            if (j < count) {
#pragma unroll
                for (int g = 0; g < G; ++g) scores[(head_base + g) * stride + j] = ok[u] ? s[u][g] : -INFINITY;
            }
        }
    }
}

template <int DT, int D, int G>
int launch_score(kvdb_ctx* ctx, const kvdb_attn_args* a, const AttnParams& p, int rows_max, float* scores, long long stride) {
    constexpr int VEC = Elem<DT>::VEC;
    constexpr int TILE = ATT_WARPS * SCORE_U * (32 / (D / VEC));
    if (rows_max == 0) return 0;
    dim3 grid((unsigned)((rows_max + TILE - 1) / TILE), (unsigned)(a->num_kv_heads * p.group_chunks), (unsigned)a->num_queries);
    score_kernel<DT, D, G><<<grid, ATT_THREADS, 0, ctx->stream>>>(p, scores, stride);
    return (int)cudaGetLastError();
}

template <int DT, int D>
int score_g(kvdb_ctx* ctx, const kvdb_attn_args* a, const AttnParams& p, int rows_max, int g, float* scores, long long stride) {
    switch (g) {
        case 4: return launch_score<DT, D, 4>(ctx, a, p, rows_max, scores, stride);
        case 2: return launch_score<DT, D, 2>(ctx, a, p, rows_max, scores, stride);
        default: return launch_score<DT, D, 1>(ctx, a, p, rows_max, scores, stride);
    }
}

template <int DT>
int score_d(kvdb_ctx* ctx, const kvdb_attn_args* a, const AttnParams& p, int rows_max, int g, float* scores, long long stride) {
    return a->head_dim == 64 ? score_g<DT, 64>(ctx, a, p, rows_max, g, scores, stride) : score_g<DT, 128>(ctx, a, p, rows_max, g, scores, stride);
}

}  // namespace kvdb

extern "C" KVDB_API int kvdb_score(kvdb_ctx* ctx, const kvdb_attn_args* a, float* scores, long long stride) {
    using namespace kvdb;
    if (ctx == nullptr || scores == nullptr) return KVDB_ERR_INVALID_ARGUMENT;
    AttnParams p;
    int rows_max = 0, g = 1;
    int status = prepare_params(a, false, p, rows_max, g);
    if (status != 0) return status;
    if (stride < rows_max) return KVDB_ERR_INVALID_ARGUMENT;
    KVDB_RETURN_IF_ERROR(cudaSetDevice(ctx->device));
    switch (a->dtype) {
        case KVDB_DTYPE_BF16: return score_d<KVDB_DTYPE_BF16>(ctx, a, p, rows_max, g, scores, stride);
        case KVDB_DTYPE_F16: return score_d<KVDB_DTYPE_F16>(ctx, a, p, rows_max, g, scores, stride);
        default: return score_d<KVDB_DTYPE_F32>(ctx, a, p, rows_max, g, scores, stride);
    }
}
