/*
 * KvDb CUDA backend: C ABI of libkvdbcuda.so.
 *
 * Every function returns a status: 0 = success, a positive value = the cudaError_t that CUDA
 * reported, a negative value = a KVDB_ERR_* argument error. kvdb_cuda_error_string names any of them.
 * All device pointers are plain CUDA device addresses (cudaMalloc). Kernel launches go to the
 * context's stream and are asynchronous; kvdb_ctx_synchronize waits for them.
 *
 * Layouts (BRIEF section 5/6, src/Kernels/KvBlockRef.cs):
 *  - contiguous: keys and values each [num_kv_heads][kv_capacity][head_dim] of dtype
 *    (a per-layer tensor; token p of KV head h is row h * kv_capacity + p);
 *  - blocks: block_table[b] is the device address of block b, which holds token positions
 *    [b * block_capacity, (b + 1) * block_capacity); its key region [num_kv_heads][block_capacity][head_dim]
 *    starts at the address and its value region of the same size follows it directly.
 * Tokens attended: all positions [0, num_tokens) ("dense"), or, when positions is set, the positions
 * listed for each KV head (CSR: positions[offsets[h] .. offsets[h + 1]) for KV head h) ("gathered").
 * Positions in [exclude_start, exclude_end) are skipped in both modes.
 * GQA: query head q reads KV head q / (num_query_heads / num_kv_heads).
 * Output: f32 [num_queries][num_query_heads][head_dim], LSE f32 [num_queries][num_query_heads] in
 * natural log; a head with no attended token gets output 0 and LSE -inf.
 */
#ifndef KVDB_CUDA_H
#define KVDB_CUDA_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define KVDB_API __declspec(dllexport)
#else
#define KVDB_API __attribute__((visibility("default")))
#endif

#define KVDB_CUDA_ABI_VERSION 2

#define KVDB_ERR_INVALID_ARGUMENT (-1)
#define KVDB_ERR_UNSUPPORTED (-2)

#define KVDB_DTYPE_F32 1
#define KVDB_DTYPE_F16 2
#define KVDB_DTYPE_BF16 3

#define KVDB_LAYOUT_CONTIGUOUS 0
#define KVDB_LAYOUT_BLOCKS 1

#define KVDB_OPTION_ATTENTION_VARIANT 1 /* 0 = register pipeline, 1 = cp.async shared-memory ring */
#define KVDB_OPTION_GATHER_PREFETCH 2   /* gathered: 1 = each CTA prefetches a share of the block table (batched: and its positions) into L2 (default), 0 = off */

#define KVDB_COPY_HOST_TO_DEVICE 1
#define KVDB_COPY_DEVICE_TO_HOST 2
#define KVDB_COPY_DEVICE_TO_DEVICE 3

typedef struct kvdb_ctx kvdb_ctx;

/* Field order: every 8-byte field first, then the 4-byte ones, so C, C# and ctypes agree on the layout (136 bytes). */
typedef struct kvdb_attn_args {
    const void* keys;                     /* contiguous layout */
    const void* values;                   /* contiguous layout */
    const unsigned long long* block_table;/* blocks layout: device array of block base addresses */
    const int* positions;                 /* gathered: device int32 positions; NULL = dense */
    const int* offsets;                   /* gathered: device int32 [num_kv_heads + 1] */
    const float* queries;                 /* device f32 [num_queries][num_query_heads][head_dim] */
    float* output;                        /* device f32 [num_queries][num_query_heads][head_dim] */
    float* lse;                           /* device f32 [num_queries][num_query_heads] */
    long long num_tokens;                 /* dense: positions 0..num_tokens-1; gathered: bound on positions */
    long long kv_capacity;                /* contiguous: rows between two KV heads; 0 = num_tokens */
    long long exclude_start;
    long long exclude_end;                /* empty when exclude_end <= exclude_start */
    int num_query_heads;
    int num_kv_heads;
    int head_dim;                         /* 64 or 128 */
    int dtype;                            /* KVDB_DTYPE_* */
    int layout;                           /* KVDB_LAYOUT_* */
    int block_capacity;                   /* blocks layout: rows per block */
    int num_queries;                      /* query tokens, each attends the same rows */
    int max_positions;                    /* gathered: largest count of any KV head (sizes the grid) */
    float scale;                          /* softmax scale, e.g. 1/sqrt(head_dim) */
    int num_splits;                       /* split-K partitions per KV head; 0 = automatic */
} kvdb_attn_args;

/* One request of a batched launch (kvdb_attention_batch), in device memory: its K/V (the fields of the
 * batch's layout), its selection (gathered batches: positions + offsets as in kvdb_attn_args), its queries
 * and outputs (shapes as in kvdb_attn_args with the batch's num_queries), its token count and exclude range.
 * All 8-byte fields (96 bytes). */
typedef struct kvdb_attn_request {
    const void* keys;                     /* contiguous layout */
    const void* values;                   /* contiguous layout */
    const unsigned long long* block_table;/* blocks layout */
    const int* positions;                 /* gathered batches */
    const int* offsets;                   /* gathered batches: [num_kv_heads + 1] */
    const float* queries;                 /* f32 [num_queries][num_query_heads][head_dim], 16-byte aligned */
    float* output;                        /* f32 [num_queries][num_query_heads][head_dim], 16-byte aligned */
    float* lse;                           /* f32 [num_queries][num_query_heads] */
    long long num_tokens;                 /* dense: positions 0..num_tokens-1; gathered: bound on positions */
    long long kv_capacity;                /* contiguous: rows between two KV heads; 0 = num_tokens */
    long long exclude_start;
    long long exclude_end;                /* empty when exclude_end <= exclude_start */
} kvdb_attn_request;

/* A batched launch: the shape every request shares, and the device array of requests (64 bytes). */
typedef struct kvdb_attn_batch_args {
    const kvdb_attn_request* requests;    /* device array [batch], 8-byte aligned */
    long long max_rows;                   /* >= every request's rows per KV head (gathered: count; dense: num_tokens); sizes the grid */
    int batch;                            /* requests; batch * num_queries <= 65535 */
    int gathered;                         /* 1: every request is gathered (positions + offsets); 0: every request is dense */
    int num_query_heads;
    int num_kv_heads;
    int head_dim;                         /* 64 or 128 */
    int dtype;                            /* KVDB_DTYPE_* */
    int layout;                           /* KVDB_LAYOUT_*, the same for every request */
    int block_capacity;                   /* blocks layout: rows per block */
    int num_queries;                      /* query tokens per request */
    float scale;
    int num_splits;                       /* split-K partitions per KV head and request; 0 = automatic */
    int reserved;                         /* 0 */
} kvdb_attn_batch_args;

/* --- runtime --- */
KVDB_API int kvdb_cuda_abi_version(void);
KVDB_API const char* kvdb_cuda_error_string(int status);
/* Number of CUDA devices; 0 with status 0 when there is no driver or no device. */
KVDB_API int kvdb_cuda_device_count(int* count);
KVDB_API int kvdb_cuda_device_name(int device, char* buffer, int buffer_bytes);
KVDB_API int kvdb_cuda_device_memory(int device, unsigned long long* free_bytes, unsigned long long* total_bytes);
KVDB_API int kvdb_cuda_malloc(int device, void** pointer, unsigned long long bytes);
KVDB_API int kvdb_cuda_free(void* pointer);
/* Synchronous copy (the legacy default stream, which waits for the contexts' streams). */
KVDB_API int kvdb_cuda_memcpy(void* destination, const void* source, unsigned long long bytes, int kind);
KVDB_API int kvdb_cuda_memset(void* pointer, int value, unsigned long long bytes);
KVDB_API int kvdb_cuda_synchronize(void);

/* --- context: a device, a stream and the scratch space of the attention kernels --- */
KVDB_API int kvdb_ctx_create(int device, kvdb_ctx** context);
KVDB_API int kvdb_ctx_destroy(kvdb_ctx* context);
/* Launch on an existing stream (cudaStream_t; NULL = the legacy default stream) instead of the context's own. */
KVDB_API int kvdb_ctx_set_stream(kvdb_ctx* context, void* stream);
KVDB_API int kvdb_ctx_synchronize(kvdb_ctx* context);
KVDB_API int kvdb_ctx_multiprocessors(kvdb_ctx* context, int* count);

/* --- kernels --- */
/* Split-K (flash-decoding) attention with output and LSE. */
KVDB_API int kvdb_attention(kvdb_ctx* context, const kvdb_attn_args* args);
/* Attention of many requests in one launch (concurrent decode requests, or layers): request r's rows,
 * queries and outputs come from requests[r]; results equal kvdb_attention on each request with the same
 * num_splits. The request array and everything it points to stay unchanged until the launch finishes. */
KVDB_API int kvdb_attention_batch(kvdb_ctx* context, const kvdb_attn_batch_args* args);
/* Scores scale * q.k for every query head and attended row: scores[(t * Hq + q) * stride + j] for the
 * j-th row of q's KV head (dense: j = position; excluded rows get -inf; gathered: rows past a head's count are untouched). */
KVDB_API int kvdb_score(kvdb_ctx* context, const kvdb_attn_args* args, float* scores, long long score_stride);
/* Per row r of values (row r starts at values + r * stride, n entries): the k largest values, sorted
 * descending (equal values by lower index), with their indices; which of several values equal to
 * the k-th largest are kept is unspecified. k <= min(n, 4096). */
KVDB_API int kvdb_topk(kvdb_ctx* context, const float* values, int rows, int n, long long stride, int k, float* out_values, int* out_indices);

/* --- AUTO on the device: centroid selection, residual sample, merge with an error bound ---
 * Optional exports (kvdb_auto.cu): build.sh leaves them out when that unit does not compile, and the C# binding
 * treats them as absent (GpuAutoAttention.IsAvailable) instead of refusing the library. */

/* A layer's centroid index in device memory (src/Index/CentroidIndex.cs exported per KV head and concatenated).
 * Coarse cluster c (global id) holds fine clusters [fine_start[c], fine_start[c + 1]) and coarse_members[c] keys;
 * fine cluster f holds the positions members[member_start[f] .. member_start[f + 1]); outliers of KV head h are
 * outliers[outlier_start[h] .. outlier_start[h + 1]). KV head h owns coarse ids [coarse_start[h], coarse_start[h + 1])
 * and fine ids [fine_head_start[h], fine_head_start[h + 1]). Members and outliers hold no position below the sinks
 * (they are attended anyway) and none at or past indexed_tokens (the unindexed tail is attended anyway). 88 bytes. */
typedef struct kvdb_centroid_layout {
    const float* coarse;                  /* [coarse ids][head_dim] f32 */
    const int* coarse_members;            /* [coarse ids] */
    const int* fine_start;                /* [coarse ids + 1] */
    const float* fine;                    /* [fine ids][head_dim] f32 */
    const int* member_start;              /* [fine ids + 1] */
    const int* members;
    const int* outliers;
    const int* coarse_start;              /* [num_kv_heads + 1]; at most 1024 coarse clusters per KV head */
    const int* fine_head_start;           /* [num_kv_heads + 1] */
    const int* outlier_start;             /* [num_kv_heads + 1] */
    long long indexed_tokens;             /* the index covers positions [0, indexed_tokens) */
} kvdb_centroid_layout;

/* kvdb_auto_select: per KV head, the heavy hitters of its GQA group's query rows (each row scores the coarse
 * centroids, probes the best coarse clusters until probe_members keys, scores their fine centroids (at most 2048)
 * and names the best fine clusters until per_row keys), united over the rows, plus outliers, sinks and the tail,
 * as CSR heavy_positions/heavy_offsets; and sample_size positions drawn uniformly (with replacement) from the
 * residual (indexed positions past the sinks that are neither heavy nor excluded) as CSR sample_positions /
 * sample_offsets (KV head h at h * sample_size); residual[h] = the residual's size. flags and bitmap must be zero
 * before the call and are zero after it. status[0] gets bit 1 when a KV head has more than 1024 coarse clusters,
 * bit 2 when heavy_capacity is too small, bit 4 when a sample position could not be drawn (a residual too small
 * to sample by rejection); the results are unusable when it is not 0. 248 bytes. */
typedef struct kvdb_auto_select_args {
    kvdb_centroid_layout index;
    const float* queries;                 /* device f32 [num_queries][num_query_heads][head_dim] */
    int* heavy_positions;                 /* [heavy_capacity] */
    int* heavy_offsets;                   /* [num_kv_heads + 1] */
    int* sample_positions;                /* [num_kv_heads * sample_size] */
    int* sample_offsets;                  /* [num_kv_heads + 1] */
    float* residual;                      /* [num_kv_heads] */
    unsigned int* flags;                  /* [fine ids], zero between calls */
    unsigned int* bitmap;                 /* [num_kv_heads][bitmap_words], zero between calls */
    int* counts;                          /* [num_kv_heads] scratch */
    int* status;                          /* [1] */
    unsigned long long seed;
    long long num_tokens;
    long long exclude_start;
    long long exclude_end;                /* empty when exclude_end <= exclude_start */
    long long heavy_capacity;
    int num_queries;
    int num_query_heads;
    int num_kv_heads;
    int head_dim;                         /* 64 or 128 */
    int per_row;
    int probe_members;
    int sample_size;
    int sinks;
    int bitmap_words;                     /* >= ceil(indexed_tokens / 32) */
    int reserved;                         /* 0 */
} kvdb_auto_select_args;

/* kvdb_auto_merge: merges the heavy part's attention (exact over heavy_positions) with the sample's (over
 * sample_positions, weighted residual / sample_size) into the output and LSE of the kvdb_attn_args (whose K/V,
 * queries, shape and exclude range are those of both attention calls; positions are ignored), and per query head
 * the (1 - delta)-quantile of the relative L2 error, sqrt(factor * R^2 * var / n) / (D * |o|) with var the sample's
 * variance of w_i (v_i - o) (bound; +inf when it cannot be bounded) and the share of the estimated softmax mass
 * held by the heavy part (heavy_mass). factor = (1 + sqrt(2 ln(1/delta)))^2. 72 bytes. */
typedef struct kvdb_auto_merge_args {
    const float* heavy_output;            /* [num_queries][num_query_heads][head_dim] */
    const float* heavy_lse;               /* [num_queries][num_query_heads] */
    const float* sample_output;
    const float* sample_lse;
    const int* sample_positions;          /* KV head h's at h * sample_size */
    const float* residual;                /* [num_kv_heads] */
    float* bound;                         /* [num_queries][num_query_heads] */
    float* heavy_mass;                    /* [num_queries][num_query_heads] */
    int sample_size;
    float factor;
} kvdb_auto_merge_args;

KVDB_API int kvdb_auto_select(kvdb_ctx* context, const kvdb_auto_select_args* args);
KVDB_API int kvdb_auto_merge(kvdb_ctx* context, const kvdb_attn_args* attention, const kvdb_auto_merge_args* args);

/* Process-wide tuning knob (KVDB_OPTION_*); for benchmarks and A/B tests. */
KVDB_API int kvdb_set_option(int option, int value);

/* --- benchmark helpers --- */
/* Fills count elements of dtype with normal(0, stddev) values from a counter-based hash of (seed, index). */
KVDB_API int kvdb_fill_random(kvdb_ctx* context, void* pointer, long long count, int dtype, unsigned long long seed, float stddev);
/* Reads bytes (a multiple of 16) once with 16-byte loads: the streaming-read reference bandwidth. */
KVDB_API int kvdb_read_bytes(kvdb_ctx* context, const void* pointer, unsigned long long bytes);
/* Overwrites a scratch buffer larger than L2, so the next kernel starts with a cold cache. */
KVDB_API int kvdb_flush_l2(kvdb_ctx* context);
KVDB_API int kvdb_event_create(void** event);
KVDB_API int kvdb_event_destroy(void* event);
KVDB_API int kvdb_event_record(kvdb_ctx* context, void* event);
KVDB_API int kvdb_event_elapsed_ms(void* start, void* stop, float* milliseconds);

#ifdef __cplusplus
}
#endif

#endif
