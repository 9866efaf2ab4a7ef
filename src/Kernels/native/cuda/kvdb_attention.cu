// kvdb_attention: split-K attention of one request per launch (kernel in kvdb_attention_kernel.cuh).
#include "kvdb_attention_kernel.cuh"

extern "C" KVDB_API int kvdb_attention(kvdb_ctx* ctx, const kvdb_attn_args* a) {
    using namespace kvdb;
    if (ctx == nullptr) return KVDB_ERR_INVALID_ARGUMENT;
    AttnParams p;
    int rows_max = 0, g = 1;
    int status = prepare_params(a, true, p, rows_max, g);
    if (status != 0) return status;
    p.gather_prefetch = gather_prefetch();
    const LaunchShape s{a->dtype, a->head_dim, a->num_queries, rows_max, a->num_splits, g, p.positions != nullptr};
    return dispatch_attention<false>(ctx, p, s);
}
