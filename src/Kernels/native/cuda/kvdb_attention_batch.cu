// kvdb_attention_batch: split-K attention of many requests in one launch (kernel in kvdb_attention_kernel.cuh).
// One launch amortizes the launch and the cold dependent chain (descriptor -> offsets -> positions ->
// K/V) that dominate a single small gathered request, and fills the GPU with the requests' head groups.
#include "kvdb_attention_kernel.cuh"

namespace kvdb {

// Checks the shared shape and fills everything in p except scratch pointers and the split count.
static int prepare_batch_params(const kvdb_attn_batch_args* a, AttnParams& p, int& g) {
    if (a == nullptr || a->requests == nullptr || ((uintptr_t)a->requests & 7u) != 0) return KVDB_ERR_INVALID_ARGUMENT;
    if (a->batch <= 0 || a->num_queries <= 0 || (long long)a->batch * a->num_queries > 65535) return KVDB_ERR_INVALID_ARGUMENT;
    if (a->gathered != 0 && a->gathered != 1) return KVDB_ERR_INVALID_ARGUMENT;
    if (a->num_query_heads <= 0 || a->num_kv_heads <= 0 || a->num_kv_heads > 65535 || a->num_query_heads % a->num_kv_heads != 0) return KVDB_ERR_INVALID_ARGUMENT;
    if (a->dtype != KVDB_DTYPE_F32 && a->dtype != KVDB_DTYPE_F16 && a->dtype != KVDB_DTYPE_BF16) return KVDB_ERR_INVALID_ARGUMENT;
    if (a->head_dim != 64 && a->head_dim != 128) return KVDB_ERR_UNSUPPORTED;
    if (!(a->scale > 0.f && a->scale < INFINITY)) return KVDB_ERR_INVALID_ARGUMENT;
    if (a->max_rows < 0 || a->max_rows > INT_MAX - 65536) return KVDB_ERR_INVALID_ARGUMENT;
    if (a->num_splits < 0 || a->reserved != 0) return KVDB_ERR_INVALID_ARGUMENT;
    const int elem = a->dtype == KVDB_DTYPE_F32 ? 4 : 2;
    const long long row_bytes = (long long)a->head_dim * elem;

    p = AttnParams{};
    if (a->layout == KVDB_LAYOUT_BLOCKS) {
        if (a->block_capacity <= 0) return KVDB_ERR_INVALID_ARGUMENT;
        set_block_geometry(p, a->block_capacity, a->num_kv_heads, row_bytes);
    } else if (a->layout != KVDB_LAYOUT_CONTIGUOUS) {
        return KVDB_ERR_INVALID_ARGUMENT;
    }

    const int group = a->num_query_heads / a->num_kv_heads;
    g = group % 4 == 0 ? 4 : (group % 2 == 0 ? 2 : 1);
    p.requests = a->requests;
    p.batch_queries = a->num_queries;
    p.num_query_heads = a->num_query_heads;
    p.num_kv_heads = a->num_kv_heads;
    p.group = group;
    p.group_chunks = group / g;
    p.rows_limit = (int)a->max_rows;
    p.scale = a->scale;
    p.scale_log2 = a->scale * LOG2E;
    return 0;
}

}  // namespace kvdb

extern "C" KVDB_API int kvdb_attention_batch(kvdb_ctx* ctx, const kvdb_attn_batch_args* a) {
    using namespace kvdb;
    if (ctx == nullptr) return KVDB_ERR_INVALID_ARGUMENT;
    AttnParams p;
    int g = 1;
    int status = prepare_batch_params(a, p, g);
    if (status != 0) return status;
    p.gather_prefetch = gather_prefetch();
    const LaunchShape s{a->dtype, a->head_dim, a->batch * a->num_queries, (int)a->max_rows, a->num_splits, g, a->gathered == 1};
    return dispatch_attention<true>(ctx, p, s);
}
