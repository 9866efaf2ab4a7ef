// Internals shared by the .cu files of libkvdbcuda.so: the context, scratch space, element loads.
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>
#include "kvdb_cuda.h"

struct kvdb_ctx {
    int device;
    int sm_count;
    cudaStream_t own_stream;
    cudaStream_t stream;       // where kernels go: own_stream, or one set by kvdb_ctx_set_stream
    void* scratch;             // split-K partial outputs and LSEs
    size_t scratch_bytes;
    unsigned int* counters;    // per (query token, head group) arrival counters; always all zero between launches
    size_t counter_count;
    void* flush;               // L2 flush buffer
    size_t flush_bytes;
};

#define KVDB_RETURN_IF_ERROR(expr)                      \
    do {                                                \
        cudaError_t kvdb_e_ = (expr);                   \
        if (kvdb_e_ != cudaSuccess) return (int)kvdb_e_; \
    } while (0)

// Makes ctx current and grows the scratch buffer to at least bytes (contents are not kept).
int kvdb_ensure_scratch(kvdb_ctx* ctx, size_t bytes);
// Grows the counter array to at least count zeroed entries.
int kvdb_ensure_counters(kvdb_ctx* ctx, size_t count);

namespace kvdb {

// Which attention main loop runs: 0 = register pipeline, 1 = cp.async shared-memory ring.
// KVDB_CUDA_ATTN_VARIANT sets it at the first launch; kvdb_set_option changes it.
int attention_variant();
// Gathered attention: 1 = each CTA asks L2 for its share of the block table (batched: and its positions) at its start
// (KVDB_OPTION_GATHER_PREFETCH; KVDB_CUDA_GATHER_PREFETCH=0 turns it off at the first launch), 0 = not.
int gather_prefetch();

// 16 bytes from global memory that no kernel writes while we run: skip L1, ask L2 to fetch 256 B.
__device__ __forceinline__ uint4 load_stream16(const void* p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

__device__ __forceinline__ float bf16_lo(uint32_t x) { return __uint_as_float(x << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t x) { return __uint_as_float(x & 0xffff0000u); }

__device__ __forceinline__ void f16x2_to_f32(uint32_t x, float& lo, float& hi) {
    asm("{\n\t.reg .b16 l, h;\n\tmov.b32 {l, h}, %2;\n\tcvt.f32.f16 %0, l;\n\tcvt.f32.f16 %1, h;\n\t}"
        : "=f"(lo), "=f"(hi)
        : "r"(x));
}

// Element type traits: a 16-byte vector holds VEC elements; widen() turns it into VEC floats.
template <int DT> struct Elem;

template <> struct Elem<KVDB_DTYPE_BF16> {
    static constexpr int BYTES = 2;
    static constexpr int VEC = 8;
    __device__ __forceinline__ static void widen(const uint4& v, float (&f)[8]) {
        f[0] = bf16_lo(v.x); f[1] = bf16_hi(v.x);
        f[2] = bf16_lo(v.y); f[3] = bf16_hi(v.y);
        f[4] = bf16_lo(v.z); f[5] = bf16_hi(v.z);
        f[6] = bf16_lo(v.w); f[7] = bf16_hi(v.w);
    }
};

template <> struct Elem<KVDB_DTYPE_F16> {
    static constexpr int BYTES = 2;
    static constexpr int VEC = 8;
    __device__ __forceinline__ static void widen(const uint4& v, float (&f)[8]) {
        f16x2_to_f32(v.x, f[0], f[1]);
        f16x2_to_f32(v.y, f[2], f[3]);
        f16x2_to_f32(v.z, f[4], f[5]);
        f16x2_to_f32(v.w, f[6], f[7]);
    }
};

template <> struct Elem<KVDB_DTYPE_F32> {
    static constexpr int BYTES = 4;
    static constexpr int VEC = 4;
    __device__ __forceinline__ static void widen(const uint4& v, float (&f)[4]) {
        f[0] = __uint_as_float(v.x); f[1] = __uint_as_float(v.y);
        f[2] = __uint_as_float(v.z); f[3] = __uint_as_float(v.w);
    }
};

// Where the rows of one KV head live, for either layout; the kernels resolve a position to the
// address of the 16-byte vector this lane reads.
struct RowSource {
    const char* keys;                        // contiguous: base of this KV head's keys
    const char* values;                      // contiguous: base of this KV head's values
    const unsigned long long* block_table;   // blocks layout, or null for contiguous
    long long head_offset;                   // blocks: byte offset of this KV head inside a region
    long long region_bytes;                  // blocks: bytes of a key region (the value region follows)
    int block_capacity;
    int capacity_shift;                      // log2(block_capacity) when a power of two, else -1

    // Blocks layout: the block holding position and the row inside it.
    __device__ __forceinline__ void split(int position, unsigned int& b, unsigned int& r) const {
        if (capacity_shift >= 0) {
            b = (unsigned int)position >> capacity_shift;
            r = (unsigned int)position & (unsigned int)(block_capacity - 1);
        } else {
            b = (unsigned int)position / (unsigned int)block_capacity;
            r = (unsigned int)position - b * (unsigned int)block_capacity;
        }
    }

    // Blocks layout: the lane's vectors of row r of the block at block_base (a block-table entry).
    __device__ __forceinline__ void address_at(unsigned long long block_base, unsigned int r, int row_bytes, int lane_offset, const char*& k,
                                               const char*& v) const {
        k = reinterpret_cast<const char*>(block_base) + head_offset + (long long)r * row_bytes + lane_offset;
        v = k + region_bytes;
    }

    __device__ __forceinline__ void address(int position, int row_bytes, int lane_offset, const char*& k, const char*& v) const {
        if (block_table == nullptr) {
            long long off = (long long)position * row_bytes + lane_offset;
            k = keys + off;
            v = values + off;
        } else {
            unsigned int b, r;
            split(position, b, r);
            address_at(block_table[b], r, row_bytes, lane_offset, k, v);
        }
    }
};

}  // namespace kvdb
