// C ABI over the few faiss indexes KvDb uses as ANN baselines. Debian's libfaiss.a ships no faiss_*
// C API, so this shim is the only thing P/Invoke sees. Every entry point catches C++ exceptions and
// returns a negative status instead, because an exception crossing into .NET aborts the process.
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/impl/HNSW.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>
#include <omp.h>

#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <string>

namespace {

thread_local std::string g_lastError;

int fail(const std::exception& e) {
    g_lastError = e.what();
    return -1;
}

// Kind tags match KvDb.Index.FaissKind.
constexpr int KindHnsw = 1;
constexpr int KindIvf = 2;

struct Handle {
    int kind;
    std::unique_ptr<faiss::Index> quantizer;  // owned separately for IVF built here
    std::unique_ptr<faiss::Index> index;
};

}  // namespace

extern "C" {

const char* kvf_last_error() { return g_lastError.c_str(); }

void kvf_set_threads(int threads) { omp_set_num_threads(threads < 1 ? 1 : threads); }

// Inner-product HNSW over `dim`-dimensional float vectors with M neighbours per node.
int kvf_create_hnsw(int dim, int m, int efConstruction, void** out) {
    try {
        auto h = std::make_unique<Handle>();
        h->kind = KindHnsw;
        auto idx = std::make_unique<faiss::IndexHNSWFlat>(dim, m, faiss::METRIC_INNER_PRODUCT);
        idx->hnsw.efConstruction = efConstruction;
        h->index = std::move(idx);
        *out = h.release();
        return 0;
    } catch (const std::exception& e) {
        return fail(e);
    }
}

// Inner-product IVF-Flat with `nlist` lists; it must be trained (kvf_train) before kvf_add.
int kvf_create_ivf(int dim, int nlist, void** out) {
    try {
        auto h = std::make_unique<Handle>();
        h->kind = KindIvf;
        h->quantizer = std::make_unique<faiss::IndexFlatIP>(dim);
        h->index = std::make_unique<faiss::IndexIVFFlat>(h->quantizer.get(), dim, nlist, faiss::METRIC_INNER_PRODUCT);
        *out = h.release();
        return 0;
    } catch (const std::exception& e) {
        return fail(e);
    }
}

int kvf_is_trained(void* handle) { return static_cast<Handle*>(handle)->index->is_trained ? 1 : 0; }

int kvf_train(void* handle, int64_t n, const float* x) {
    try {
        static_cast<Handle*>(handle)->index->train(n, x);
        return 0;
    } catch (const std::exception& e) {
        return fail(e);
    }
}

int kvf_add(void* handle, int64_t n, const float* x) {
    try {
        static_cast<Handle*>(handle)->index->add(n, x);
        return 0;
    } catch (const std::exception& e) {
        return fail(e);
    }
}

int64_t kvf_count(void* handle) { return static_cast<Handle*>(handle)->index->ntotal; }

// Top-k by inner product for one or more queries. `effort` is efSearch for HNSW and nprobe for IVF.
// *ndis receives the distance computations faiss counted (its global stats; reset per call, so
// concurrent searches on different threads would mix counts: callers serialize calls).
int kvf_search(void* handle, int64_t n, const float* x, int64_t k, int effort, float* distances, int64_t* labels, int64_t* ndis) {
    try {
        auto* h = static_cast<Handle*>(handle);
        if (h->kind == KindHnsw) {
            // faiss 1.7.3's HNSW::search reads efSearch from the index, not from SearchParametersHNSW,
            // so the knob is set on the index (callers serialize searches that change it).
            static_cast<faiss::IndexHNSW*>(h->index.get())->hnsw.efSearch = effort;
            faiss::hnsw_stats.reset();
            h->index->search(n, x, k, distances, labels);
            // faiss 1.7.x counts level-0 distance computations (nearly all of them) in n3 and only
            // the unbounded-queue path's in ndis; upper-level greedy steps are not counted at all.
            *ndis = static_cast<int64_t>(faiss::hnsw_stats.ndis + faiss::hnsw_stats.n3);
        } else {
            faiss::SearchParametersIVF p;
            p.nprobe = static_cast<size_t>(effort);
            faiss::indexIVF_stats.reset();
            h->index->search(n, x, k, distances, labels, &p);
            // The coarse quantizer scores every list centroid too; count those as scanned vectors.
            auto* ivf = static_cast<faiss::IndexIVF*>(h->index.get());
            *ndis = static_cast<int64_t>(faiss::indexIVF_stats.ndis + n * ivf->nlist);
        }
        return 0;
    } catch (const std::exception& e) {
        return fail(e);
    }
}

// Serializes the index into a malloc'd buffer the caller frees with kvf_free_buffer.
int kvf_serialize(void* handle, uint8_t** data, int64_t* length) {
    try {
        faiss::VectorIOWriter w;
        faiss::write_index(static_cast<Handle*>(handle)->index.get(), &w);
        *length = static_cast<int64_t>(w.data.size());
        *data = static_cast<uint8_t*>(std::malloc(w.data.size()));
        std::memcpy(*data, w.data.data(), w.data.size());
        return 0;
    } catch (const std::exception& e) {
        return fail(e);
    }
}

void kvf_free_buffer(uint8_t* data) { std::free(data); }

int kvf_deserialize(const uint8_t* data, int64_t length, void** out) {
    try {
        faiss::VectorIOReader r;
        r.data.assign(data, data + length);
        auto h = std::make_unique<Handle>();
        h->index.reset(faiss::read_index(&r));
        if (auto* ivf = dynamic_cast<faiss::IndexIVF*>(h->index.get())) {
            ivf->own_fields = true;  // the deserialized quantizer belongs to the index
            h->kind = KindIvf;
        } else if (dynamic_cast<faiss::IndexHNSW*>(h->index.get()) != nullptr) {
            h->kind = KindHnsw;
        } else {
            g_lastError = "serialized index is neither HNSW nor IVF";
            return -2;
        }
        *out = h.release();
        return 0;
    } catch (const std::exception& e) {
        return fail(e);
    }
}

void kvf_free(void* handle) {
    auto* h = static_cast<Handle*>(handle);
    // Destroy the IVF index before the quantizer it points to.
    h->index.reset();
    h->quantizer.reset();
    delete h;
}

}  // extern "C"
