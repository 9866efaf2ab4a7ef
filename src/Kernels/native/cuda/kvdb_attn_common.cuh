// Argument checking and kernel parameters shared by the attention and scoring kernels.
#pragma once

#include <limits.h>
#include <math.h>
#include "kvdb_internal.cuh"

namespace kvdb {

constexpr int ATT_WARPS = 4;
constexpr int ATT_THREADS = ATT_WARPS * 32;
constexpr int MAX_SPLITS = 256;
constexpr float LOG2E = 1.4426950408889634f;
constexpr float LN2 = 0.6931471805599453f;

// Everything a launch needs, by value (kernel parameter space), resolved and checked on the host.
struct AttnParams {
    const char* keys;                       // contiguous
    const char* values;                     // contiguous
    const unsigned long long* block_table;  // blocks, else null
    const int* positions;                   // gathered, else null
    const int* offsets;
    const float* queries;
    float* output;
    float* lse;
    float* part_o;                          // [num_queries * Hq][splits][D]
    float* part_lse;                        // [num_queries * Hq][splits], log2 units
    unsigned int* counters;                 // [grid z][Hkv * group_chunks]
    const kvdb_attn_request* requests;      // batched launches: one descriptor per request, else null
    long long num_tokens;
    long long kv_capacity;
    long long exclude_start;
    long long exclude_end;
    long long region_bytes;
    int num_query_heads;
    int num_kv_heads;
    int group;                              // query heads per KV head
    int group_chunks;                       // group / G: CTAs that share one KV head's rows
    int block_capacity;
    int capacity_shift;
    int num_splits;
    int rows_limit;                         // rows_max: no head's row index reaches it (bounds score writes)
    int batch_queries;                      // batched launches: query tokens per request (grid z = request * this + token)
    int gather_prefetch;                    // gathered: 1 = L2 prefetch of the block table (batched: and positions) at CTA start
    float scale;                            // natural units (scores)
    float scale_log2;                       // scale * log2(e) (softmax in base 2)
};

inline bool aligned16(const void* p) { return ((uintptr_t)p & 15u) == 0; }

// The blocks layout's geometry, for the single and the batched launch alike: a power-of-two capacity lets
// the kernels shift instead of divide (capacity_shift −1 = divide); region_bytes > 0 marks the layout.
inline void set_block_geometry(AttnParams& p, int block_capacity, int num_kv_heads, long long row_bytes) {
    p.block_capacity = block_capacity;
    int shift = -1;
    if ((block_capacity & (block_capacity - 1)) == 0) {
        shift = 0;
        while ((1 << shift) < block_capacity) ++shift;
    }
    p.capacity_shift = shift;
    p.region_bytes = (long long)num_kv_heads * block_capacity * row_bytes;
}

// Checks the arguments and fills everything in p except the scratch pointers and the split count.
// rows_max: the most rows any KV head attends (sizes the grid). g: query heads a CTA handles.
inline int prepare_params(const kvdb_attn_args* a, bool need_outputs, AttnParams& p, int& rows_max, int& g) {
    if (a == nullptr) return KVDB_ERR_INVALID_ARGUMENT;
    if (a->num_query_heads <= 0 || a->num_kv_heads <= 0 || a->num_query_heads % a->num_kv_heads != 0) return KVDB_ERR_INVALID_ARGUMENT;
    if (a->dtype != KVDB_DTYPE_F32 && a->dtype != KVDB_DTYPE_F16 && a->dtype != KVDB_DTYPE_BF16) return KVDB_ERR_INVALID_ARGUMENT;
    if (a->head_dim != 64 && a->head_dim != 128) return KVDB_ERR_UNSUPPORTED;
    if (a->num_queries <= 0 || a->num_queries > 65535 || a->num_kv_heads > 65535) return KVDB_ERR_INVALID_ARGUMENT;
    if (!(a->scale > 0.f && a->scale < INFINITY)) return KVDB_ERR_INVALID_ARGUMENT;
    // Row indices stay int with room for a tile past the end.
    if (a->num_tokens < 0 || a->num_tokens > INT_MAX - 65536) return KVDB_ERR_INVALID_ARGUMENT;
    if (a->queries == nullptr || !aligned16(a->queries)) return KVDB_ERR_INVALID_ARGUMENT;
    if (need_outputs && (a->output == nullptr || a->lse == nullptr || !aligned16(a->output))) return KVDB_ERR_INVALID_ARGUMENT;
    const int elem = a->dtype == KVDB_DTYPE_F32 ? 4 : 2;
    const long long row_bytes = (long long)a->head_dim * elem;

    p = AttnParams{};
    if (a->layout == KVDB_LAYOUT_CONTIGUOUS) {
        if (a->keys == nullptr || a->values == nullptr || !aligned16(a->keys) || !aligned16(a->values)) return KVDB_ERR_INVALID_ARGUMENT;
        long long cap = a->kv_capacity == 0 ? a->num_tokens : a->kv_capacity;
        if (cap < a->num_tokens) return KVDB_ERR_INVALID_ARGUMENT;
        p.keys = static_cast<const char*>(a->keys);
        p.values = static_cast<const char*>(a->values);
        p.kv_capacity = cap;
    } else if (a->layout == KVDB_LAYOUT_BLOCKS) {
        if (a->block_table == nullptr || a->block_capacity <= 0) return KVDB_ERR_INVALID_ARGUMENT;
        p.block_table = a->block_table;
        set_block_geometry(p, a->block_capacity, a->num_kv_heads, row_bytes);
    } else {
        return KVDB_ERR_INVALID_ARGUMENT;
    }

    if (a->positions != nullptr) {
        if (a->offsets == nullptr || a->max_positions < 0 || a->max_positions > INT_MAX - 65536) return KVDB_ERR_INVALID_ARGUMENT;
        p.positions = a->positions;
        p.offsets = a->offsets;
        rows_max = a->max_positions;
    } else {
        rows_max = (int)a->num_tokens;
    }

    const int group = a->num_query_heads / a->num_kv_heads;
    g = group % 4 == 0 ? 4 : (group % 2 == 0 ? 2 : 1);
    p.queries = a->queries;
    p.output = a->output;
    p.lse = a->lse;
    p.num_tokens = a->num_tokens;
    // An empty or inverted exclude range excludes nothing.
    p.exclude_start = a->exclude_end > a->exclude_start ? a->exclude_start : 0;
    p.exclude_end = a->exclude_end > a->exclude_start ? a->exclude_end : 0;
    p.num_query_heads = a->num_query_heads;
    p.num_kv_heads = a->num_kv_heads;
    p.group = group;
    p.group_chunks = group / g;
    p.rows_limit = rows_max;
    p.scale = a->scale;
    p.scale_log2 = a->scale * LOG2E;
    return 0;
}

// The rows one CTA (or warp) reads and where they live.
template <int ROW_BYTES>
__device__ __forceinline__ RowSource make_source(const AttnParams& p, int kvh) {
    RowSource s;
    if (p.block_table == nullptr) {
        long long off = (long long)kvh * p.kv_capacity * ROW_BYTES;
        s.keys = p.keys + off;
        s.values = p.values + off;
        s.block_table = nullptr;
        s.head_offset = 0;
        s.region_bytes = 0;
        s.block_capacity = 1;
        s.capacity_shift = 0;
    } else {
        s.keys = nullptr;
        s.values = nullptr;
        s.block_table = p.block_table;
        s.head_offset = (long long)kvh * p.block_capacity * ROW_BYTES;
        s.region_bytes = p.region_bytes;
        s.block_capacity = p.block_capacity;
        s.capacity_shift = p.capacity_shift;
    }
    return s;
}

// Rows of KV head kvh: count of them, and the position list (null = row j is position j).
__device__ __forceinline__ void head_rows(const AttnParams& p, int kvh, const int*& pos, int& count) {
    if (p.positions != nullptr) {
        int a = p.offsets[kvh];
        count = p.offsets[kvh + 1] - a;
        pos = p.positions + a;
    } else {
        count = (int)p.num_tokens;
        pos = nullptr;
    }
}

__device__ __forceinline__ bool excluded(const AttnParams& p, int position) {
    return (long long)position >= p.exclude_start && (long long)position < p.exclude_end;
}

// Scores of U key rows against the G query heads of a GQA group. Each lane holds VEC elements of its row's
// key and of every (pre-scaled) query; the partial dots are summed over the row's LPR lanes with xor
// shuffles, so every lane of a row ends with the full scores. One function for attention and scoring, so
// the scores top-k selects on are bit-identical to the ones attention weighs.
template <int DT, int G, int U, int LPR>
__device__ __forceinline__ void row_scores(const float (&q)[G][Elem<DT>::VEC], const uint4 (&kr)[U], float (&s)[U][G]) {
    using E = Elem<DT>;
    constexpr int VEC = E::VEC;
#pragma unroll
    for (int u = 0; u < U; ++u) {
        float kf[VEC];
        E::widen(kr[u], kf);
#pragma unroll
        for (int g = 0; g < G; ++g) {
            float d = 0.f;
#pragma unroll
            for (int e = 0; e < VEC; ++e) d = fmaf(q[g][e], kf[e], d);
            s[u][g] = d;
        }
    }
#pragma unroll
    for (int off = LPR / 2; off > 0; off >>= 1) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
#pragma unroll
            for (int g = 0; g < G; ++g) s[u][g] += __shfl_xor_sync(0xffffffffu, s[u][g], off);
        }
    }
}

}  // namespace kvdb
