// Native CPU kernels of bspm_jax, registered with JAX as XLA FFI custom calls:
// bspm_csr_spmm (CSR x dense products) and bspm_top_k_chunks (top k per user column).
//
//   y[c, r, :] = alpha * sum_p data[p] * x[c, indices[p], :] + beta0 * z0[c, r, :] + beta1 * z1[c, r, :]
//   for p in indptr[r] .. indptr[r+1], with up to two optional addends z (the epilogue saves
//   the solvers a pass over the batch for each `c y + tau y A` they would otherwise add).
//
// x has shape (chunks, n_cols, width) and y (chunks, n_rows, width), both row-major, so
// every nonzero reads one contiguous row of `width` floats. The work (chunks x blocks of
// rows with about equal nonzeros) is shared with XLA's own CPU thread pool: threads of
// our own would spin against XLA's and lose most of the second core.
// The row of x needed `kAhead` nonzeros later is prefetched: the products are bound by
// the latency of these scattered reads, and prefetching halves their time on Gowalla.

#include <Python.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <utility>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <cstdint>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int32_t kAhead = 12;

struct Csr {
  const int32_t* indptr;
  const int32_t* indices;
  const float* data;
};

// y = alpha * (A x) + sum_j beta[j] * z[j] (rows of one chunk; z[j] == nullptr: no addend j).
struct Epilogue {
  float alpha;
  float beta[2];
  const float* z[2];

  // Chunk c's view: the addends' pointers moved to that chunk.
  Epilogue At(int64_t offset) const {
    Epilogue e = *this;
    for (int j = 0; j < 2; ++j)
      if (z[j] != nullptr) e.z[j] = z[j] + offset;
    return e;
  }
  inline float Apply(float acc, int64_t at) const {
    float v = alpha * acc;
    if (z[0] != nullptr) v += beta[0] * z[0][at];
    if (z[1] != nullptr) v += beta[1] * z[1][at];
    return v;
  }
};

// Rows [r0, r1) of one chunk, for a width fixed at compile time (accumulators in registers).
template <int W>
void RowsFixed(const Csr& a, const Epilogue& e, const float* __restrict x, float* __restrict y, int64_t r0,
               int64_t r1) {
  const int32_t end_all = a.indptr[r1];
  for (int64_t r = r0; r < r1; ++r) {
    float acc[W];
    for (int c = 0; c < W; ++c) acc[c] = 0.0f;
    const int32_t end = a.indptr[r + 1];
    for (int32_t p = a.indptr[r]; p < end; ++p) {
      if (p + kAhead < end_all) {
        const char* ahead = reinterpret_cast<const char*>(x + int64_t{a.indices[p + kAhead]} * W);
        for (int byte = 0; byte < W * 4; byte += 64) __builtin_prefetch(ahead + byte);
      }
      const float v = a.data[p];
      const float* __restrict xr = x + int64_t{a.indices[p]} * W;
      for (int c = 0; c < W; ++c) acc[c] += v * xr[c];
    }
    float* yr = y + r * W;
    for (int c = 0; c < W; ++c) yr[c] = e.Apply(acc[c], r * W + c);
  }
}

// Any other width: the same sweep with the width known only at run time.
void RowsAny(const Csr& a, const Epilogue& e, const float* __restrict x, float* __restrict y, int64_t w, int64_t r0,
             int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    float* yr = y + r * w;
    std::fill(yr, yr + w, 0.0f);
    for (int32_t p = a.indptr[r]; p < a.indptr[r + 1]; ++p) {
      const float v = a.data[p];
      const float* __restrict xr = x + int64_t{a.indices[p]} * w;
      for (int64_t c = 0; c < w; ++c) yr[c] += v * xr[c];
    }
    for (int64_t c = 0; c < w; ++c) yr[c] = e.Apply(yr[c], r * w + c);
  }
}

// One work item: the rows [r0, r1) of chunk c.
void Item(const Csr& a, const Epilogue& epilogue, const float* x, float* y, int64_t n_cols, int64_t n_rows, int64_t w,
          int64_t c, int64_t r0, int64_t r1) {
  const float* xc = x + c * n_cols * w;
  float* yc = y + c * n_rows * w;
  const Epilogue e = epilogue.At(c * n_rows * w);
  switch (w) {
    case 8: RowsFixed<8>(a, e, xc, yc, r0, r1); break;
    case 16: RowsFixed<16>(a, e, xc, yc, r0, r1); break;
    case 32: RowsFixed<32>(a, e, xc, yc, r0, r1); break;
    case 64: RowsFixed<64>(a, e, xc, yc, r0, r1); break;
    default: RowsAny(a, e, xc, yc, w, r0, r1);
  }
}

// Runs fn(i) for i in [0, items) on the calling thread and on tasks put on XLA's own CPU
// thread pool (threads of our own would spin against XLA's). Tasks that start late find
// no items left; the shared state lives as long as its last holder.
template <typename Fn>
void ParallelFor(ffi::ThreadPool& pool, int64_t items, Fn fn) {
  struct State {
    explicit State(Fn f, int64_t n) : fn(std::move(f)), items(n) {}
    Fn fn;
    int64_t items;
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
    std::mutex mutex;
    std::condition_variable finished;
    void Run() {
      for (int64_t i = next.fetch_add(1); i < items; i = next.fetch_add(1)) {
        fn(i);
        if (done.fetch_add(1) + 1 == items) {
          std::lock_guard<std::mutex> lock(mutex);
          finished.notify_all();
        }
      }
    }
  };
  if (items <= 0) return;
  auto state = std::make_shared<State>(std::move(fn), items);
  const int64_t helpers = std::min<int64_t>(std::max<int64_t>(0, pool.num_threads() - 1), items - 1);
  for (int64_t k = 0; k < helpers; ++k) pool.Schedule([state] { state->Run(); });
  state->Run();
  std::unique_lock<std::mutex> lock(state->mutex);
  state->finished.wait(lock, [&] { return state->done.load() == state->items; });
}

ffi::Error CsrSpmm(ffi::ThreadPool pool, ffi::Buffer<ffi::S32> indptr, ffi::Buffer<ffi::S32> indices,
                   ffi::Buffer<ffi::F32> data, ffi::Buffer<ffi::F32> x, ffi::RemainingArgs addends, float alpha,
                   float beta0, float beta1, ffi::ResultBuffer<ffi::F32> y) {
  const auto xd = x.dimensions();
  const auto yd = y->dimensions();
  if (xd.size() != 3 || yd.size() != 3 || xd[0] != yd[0] || xd[2] != yd[2]) {
    return ffi::Error::InvalidArgument("bspm_csr_spmm: x and y must be (chunks, n, width) with equal chunks and width");
  }
  const int64_t n_rows = indptr.element_count() - 1;
  if (yd[1] != n_rows || indices.element_count() != data.element_count()) {
    return ffi::Error::InvalidArgument("bspm_csr_spmm: inconsistent CSR arrays or output shape");
  }
  const Csr a{indptr.typed_data(), indices.typed_data(), data.typed_data()};
  if (addends.size() > 2) return ffi::Error::InvalidArgument("bspm_csr_spmm: at most two addends");
  Epilogue epilogue{alpha, {beta0, beta1}, {nullptr, nullptr}};
  for (size_t j = 0; j < addends.size(); ++j) {
    auto z = addends.get<ffi::Buffer<ffi::F32>>(j);
    if (z.has_error()) return z.error();
    if (z->dimensions().size() != 3 || z->element_count() != y->element_count() || z->dimensions()[1] != yd[1]) {
      return ffi::Error::InvalidArgument("bspm_csr_spmm: every addend must have the output's shape");
    }
    epilogue.z[j] = z->typed_data();
  }
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  // A few row blocks of about equal nonzeros per thread: small enough to balance.
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(n_rows, 4 * threads));
  const int64_t nnz = a.indptr[n_rows];
  std::vector<int64_t> bounds(blocks + 1, n_rows);
  bounds[0] = 0;
  int64_t r = 0;
  for (int64_t k = 1; k < blocks; ++k) {
    const int64_t target = nnz * k / blocks;
    while (r < n_rows && a.indptr[r] < target) ++r;
    bounds[k] = r;
  }
  const float* xp = x.typed_data();
  float* yp = y->typed_data();
  const int64_t n_cols = xd[1], w = xd[2];
  ParallelFor(pool, xd[0] * blocks, [&a, &epilogue, &bounds, xp, yp, n_cols, n_rows, w, blocks](int64_t i) {
    Item(a, epilogue, xp, yp, n_cols, n_rows, w, i / blocks, bounds[i % blocks], bounds[i % blocks + 1]);
  });
  return ffi::Error::Success();
}

// NaN ranks as -inf (below every number; among equals the lower row first).
inline float RankKey(float v) { return std::isnan(v) ? -std::numeric_limits<float>::infinity() : v; }

// Top k of each column of one chunk (n, w): values descending, ties to the lower row.
// Column j's seen rows are cols[begin[j] .. end[j]) (sorted); they count as -inf.
void TopKChunk(const float* __restrict x, int64_t n, int64_t w, int64_t k, const int32_t* cols,
               std::vector<int64_t> begin, const std::vector<int64_t>& end, float* values, int32_t* indices) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const auto value = [&](int64_t i, int64_t j) {  // x[i, j], or -inf for a seen row
    if (begin[j] < end[j] && cols[begin[j]] == i) {
      ++begin[j];
      return kNegInf;
    }
    return x[i * w + j];
  };
  const int64_t kept = std::min(n, k);
  std::vector<float> val(w * kept);
  std::vector<int32_t> idx(w * kept);
  std::vector<float> worst(w);   // rank key of the worst kept entry per column
  std::vector<int64_t> slot(w);  // where it is
  const auto better = [&](int64_t a, int64_t b) {  // entry a ranks above entry b
    const float ka = RankKey(val[a]), kb = RankKey(val[b]);
    return ka > kb || (ka == kb && idx[a] < idx[b]);
  };
  const auto find_worst = [&](int64_t j) {
    int64_t s = j * kept;
    for (int64_t q = j * kept + 1; q < (j + 1) * kept; ++q)
      if (better(s, q)) s = q;
    slot[j] = s;
    worst[j] = RankKey(val[s]);
  };
  for (int64_t i = 0; i < kept; ++i)
    for (int64_t j = 0; j < w; ++j) {
      val[j * kept + i] = value(i, j);
      idx[j * kept + i] = static_cast<int32_t>(i);
    }
  for (int64_t j = 0; j < w; ++j) find_worst(j);
  for (int64_t i = kept; i < n; ++i) {
    for (int64_t j = 0; j < w; ++j) {
      const float v = value(i, j);
      if (v > worst[j]) {  // a later row needs a strictly larger value; false for NaN
        val[slot[j]] = v;
        idx[slot[j]] = static_cast<int32_t>(i);
        find_worst(j);
      }
    }
  }
  std::vector<int64_t> order(kept);
  for (int64_t j = 0; j < w; ++j) {
    for (int64_t q = 0; q < kept; ++q) order[q] = j * kept + q;
    std::sort(order.begin(), order.end(), better);
    for (int64_t q = 0; q < kept; ++q) {
      values[j * k + q] = val[order[q]];
      indices[j * k + q] = idx[order[q]];
    }
  }
}

ffi::Error TopKChunks(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::S32> seen_indptr,
                      ffi::Buffer<ffi::S32> seen_cols, ffi::ResultBuffer<ffi::F32> values,
                      ffi::ResultBuffer<ffi::S32> indices) {
  const auto xd = x.dimensions();
  const auto vd = values->dimensions();
  if (xd.size() != 3 || vd.size() != 3 || vd[0] != xd[0] || vd[1] != xd[2] || vd[2] > xd[1] || vd[2] < 1) {
    return ffi::Error::InvalidArgument("bspm_top_k_chunks: x must be (chunks, n, w) and the outputs (chunks, w, k), 1 <= k <= n");
  }
  const int64_t n = xd[1], w = xd[2], k = vd[2];
  const int64_t users = seen_indptr.element_count() - 1;
  const float* xp = x.typed_data();
  const int32_t* sp = seen_indptr.typed_data();
  const int32_t* cols = seen_cols.typed_data();
  float* vp = values->typed_data();
  int32_t* ip = indices->typed_data();
  ParallelFor(pool, xd[0], [=](int64_t c) {
    std::vector<int64_t> begin(w, 0), end(w, 0);  // users past `users` (padding) have none
    for (int64_t j = 0; j < w && c * w + j < users; ++j) {
      begin[j] = sp[c * w + j];
      end[j] = sp[c * w + j + 1];
    }
    TopKChunk(xp + c * n * w, n, w, k, cols, std::move(begin), end, vp + c * w * k, ip + c * w * k);
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(BspmCsrSpmm, CsrSpmm,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .RemainingArgs()
                                  .Attr<float>("alpha")
                                  .Attr<float>("beta0")
                                  .Attr<float>("beta1")
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(BspmTopKChunks, TopKChunks,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>());

// Python module `bspm_jax._native`: `handlers()` returns {target name: PyCapsule}.
static PyObject* Handlers(PyObject*, PyObject*) {
  PyObject* dict = PyDict_New();
  if (dict == nullptr) return nullptr;
  const std::pair<const char*, void*> handlers[] = {
      {"bspm_csr_spmm", reinterpret_cast<void*>(BspmCsrSpmm)},
      {"bspm_top_k_chunks", reinterpret_cast<void*>(BspmTopKChunks)},
  };
  for (const auto& [name, fn] : handlers) {
    PyObject* capsule = PyCapsule_New(fn, nullptr, nullptr);
    if (capsule == nullptr || PyDict_SetItemString(dict, name, capsule) != 0) {
      Py_XDECREF(capsule);
      Py_DECREF(dict);
      return nullptr;
    }
    Py_DECREF(capsule);
  }
  return dict;
}

static PyMethodDef kMethods[] = {
    {"handlers", Handlers, METH_NOARGS, "XLA FFI handlers of bspm_jax: {target name: PyCapsule}."},
    {nullptr, nullptr, 0, nullptr},
};

static PyModuleDef kModule = {PyModuleDef_HEAD_INIT, "_native", "Native CPU kernels of bspm_jax (XLA FFI).", -1,
                              kMethods};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&kModule); }
