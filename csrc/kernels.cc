// Native CPU kernels of bspm_jax, registered with JAX as XLA FFI custom calls:
// bspm_csr_spmm (CSR x dense), bspm_dense_spmm (dense x dense) and bspm_top_k_chunks (top k
// per user column).
//
//   y[c, r, :] = alpha * sum_q A[r, q] * x[c, q, :] + beta0 * z0[c, r, :] + beta1 * z1[c, r, :]
//   for the stored q of row r (CSR: indptr[r] .. indptr[r+1]; dense: all of them, in order),
//   with up to two optional addends z (the epilogue saves the solvers a pass over the batch
//   for each `c y + tau y A` they would otherwise add).
//
// x has shape (chunks, n_cols, width) and y (chunks, n_rows, width), both row-major, so
// every term reads one contiguous row of `width` floats. The work (chunks x blocks of
// rows) is shared with XLA's own CPU thread pool: threads of our own would spin against
// XLA's and lose most of the second core. The row of x needed `kAhead` nonzeros later is
// prefetched: CSR products are bound by the latency of these scattered reads.
//
// Reproducibility by construction: each output element is one sum over its row's terms in
// storage order, rounded after every product and every addition (-ffp-contract=off, no
// fused multiply-add), so it does not depend on the batch size, the chunk width, the
// thread that computes it or the instruction set. The loops are compiled once per
// instruction-set path (isa_loops.inc): the x86-64 baseline, AVX2 and AVX-512, picked per
// call by the `isa` attribute from what the CPU reports (isa_paths()).

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
#include <string>
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

// The matrix A of a product: CSR, or dense row-major (rows, n_cols) when `dense` is set.
struct Operand {
  Csr csr;
  const float* dense;
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

// The instruction-set paths: the same loops compiled for each (see isa_loops.inc).
enum Isa : int32_t { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };

#define BSPM_TARGET
#define BSPM_LANES 4
#define BSPM_REGISTERS 16
namespace isa_baseline {
#include "isa_loops.inc"
}  // namespace isa_baseline
#undef BSPM_TARGET
#undef BSPM_LANES
#undef BSPM_REGISTERS

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define BSPM_HAVE_X86_PATHS 1
#define BSPM_TARGET __attribute__((target("avx2")))
#define BSPM_LANES 8
#define BSPM_REGISTERS 16
namespace isa_avx2 {
#include "isa_loops.inc"
}  // namespace isa_avx2
#undef BSPM_TARGET
#undef BSPM_LANES
#undef BSPM_REGISTERS
#if defined(__clang__)
#define BSPM_TARGET __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq")))
#else
#define BSPM_TARGET __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,prefer-vector-width=512")))
#endif
#define BSPM_LANES 16
#define BSPM_REGISTERS 32
namespace isa_avx512 {
#include "isa_loops.inc"
}  // namespace isa_avx512
#undef BSPM_TARGET
#undef BSPM_LANES
#undef BSPM_REGISTERS
#endif

// Whether this CPU (and its operating system) can run a path.
bool Supported(int32_t isa) {
  switch (isa) {
    case kBaseline: return true;
#ifdef BSPM_HAVE_X86_PATHS
    case kAvx2: return __builtin_cpu_supports("avx2");
    case kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
#endif
    default: return false;
  }
}

void ProductItem(int32_t isa, const Operand& a, const Epilogue& e, const float* x, float* y, int64_t n_cols,
                 int64_t n_rows, int64_t w, int64_t c, int64_t r0, int64_t r1) {
#ifdef BSPM_HAVE_X86_PATHS
  if (isa == kAvx512) return isa_avx512::ProductItem(a, e, x, y, n_cols, n_rows, w, c, r0, r1);
  if (isa == kAvx2) return isa_avx2::ProductItem(a, e, x, y, n_cols, n_rows, w, c, r0, r1);
#endif
  isa_baseline::ProductItem(a, e, x, y, n_cols, n_rows, w, c, r0, r1);
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

// Rows of a dense A per work item (about 64 rows x 448 floats: 115 KB, kept in L2).
constexpr int64_t kDenseBlock = 64;

// Row blocks of a CSR matrix with about equal nonzeros.
std::vector<int64_t> RowBlocks(const int32_t* indptr, int64_t n_rows, int64_t blocks) {
  std::vector<int64_t> bounds(blocks + 1, n_rows);
  bounds[0] = 0;
  const int64_t total = indptr[n_rows];
  int64_t r = 0;
  for (int64_t k = 1; k < blocks; ++k) {
    const int64_t target = total * k / blocks;
    while (r < n_rows && indptr[r] < target) ++r;
    bounds[k] = r;
  }
  return bounds;
}

// y[c] = alpha A x[c] + sum_j beta_j z_j[c] for every chunk c, on the pool.
ffi::Error Product(ffi::ThreadPool& pool, const char* name, const Operand& a, int64_t n_rows, ffi::Buffer<ffi::F32>& x,
                   ffi::RemainingArgs& addends, float alpha, float beta0, float beta1, int32_t isa,
                   ffi::ResultBuffer<ffi::F32>& y) {
  const auto xd = x.dimensions();
  const auto yd = y->dimensions();
  if (xd.size() != 3 || yd.size() != 3 || xd[0] != yd[0] || xd[2] != yd[2] || yd[1] != n_rows) {
    return ffi::Error::InvalidArgument(std::string(name) + ": x and y must be (chunks, n, width) with equal chunks and width, y with the matrix's rows");
  }
  if (!Supported(isa)) return ffi::Error::InvalidArgument(std::string(name) + ": this CPU cannot run the requested instruction-set path");
  if (addends.size() > 2) return ffi::Error::InvalidArgument(std::string(name) + ": at most two addends");
  Epilogue epilogue{alpha, {beta0, beta1}, {nullptr, nullptr}};
  for (size_t j = 0; j < addends.size(); ++j) {
    auto z = addends.get<ffi::Buffer<ffi::F32>>(j);
    if (z.has_error()) return z.error();
    if (z->dimensions().size() != 3 || z->element_count() != y->element_count() || z->dimensions()[1] != yd[1]) {
      return ffi::Error::InvalidArgument(std::string(name) + ": every addend must have the output's shape");
    }
    epilogue.z[j] = z->typed_data();
  }
  const int64_t n_cols = xd[1], w = xd[2], chunks = xd[0];
  const float* xp = x.typed_data();
  float* yp = y->typed_data();
  if (a.dense != nullptr) {
    // Blocks of kDenseBlock rows of A, each kept in cache while it meets every chunk.
    const int64_t blocks = (n_rows + kDenseBlock - 1) / kDenseBlock;
    ParallelFor(pool, blocks, [&a, &epilogue, xp, yp, n_cols, n_rows, w, chunks, isa](int64_t b) {
      const int64_t r0 = b * kDenseBlock, r1 = std::min(n_rows, r0 + kDenseBlock);
      for (int64_t c = 0; c < chunks; ++c) ProductItem(isa, a, epilogue, xp, yp, n_cols, n_rows, w, c, r0, r1);
    });
    return ffi::Error::Success();
  }
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  // A few row blocks of about equal nonzeros per thread: small enough to balance.
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(n_rows, 4 * threads));
  const std::vector<int64_t> bounds = RowBlocks(a.csr.indptr, n_rows, blocks);
  ParallelFor(pool, chunks * blocks, [&a, &epilogue, &bounds, xp, yp, n_cols, n_rows, w, blocks, isa](int64_t i) {
    const int64_t c = i / blocks, b = i % blocks;
    ProductItem(isa, a, epilogue, xp, yp, n_cols, n_rows, w, c, bounds[b], bounds[b + 1]);
  });
  return ffi::Error::Success();
}

ffi::Error CsrSpmm(ffi::ThreadPool pool, ffi::Buffer<ffi::S32> indptr, ffi::Buffer<ffi::S32> indices,
                   ffi::Buffer<ffi::F32> data, ffi::Buffer<ffi::F32> x, ffi::RemainingArgs addends, float alpha,
                   float beta0, float beta1, int32_t isa, ffi::ResultBuffer<ffi::F32> y) {
  if (indices.element_count() != data.element_count() || indptr.element_count() < 1) {
    return ffi::Error::InvalidArgument("bspm_csr_spmm: inconsistent CSR arrays");
  }
  const Operand a{{indptr.typed_data(), indices.typed_data(), data.typed_data()}, nullptr};
  return Product(pool, "bspm_csr_spmm", a, indptr.element_count() - 1, x, addends, alpha, beta0, beta1, isa, y);
}

ffi::Error DenseSpmm(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> matrix, ffi::Buffer<ffi::F32> x,
                     ffi::RemainingArgs addends, float alpha, float beta0, float beta1, int32_t isa,
                     ffi::ResultBuffer<ffi::F32> y) {
  const auto md = matrix.dimensions();
  if (md.size() != 2 || x.dimensions().size() != 3 || md[1] != x.dimensions()[1]) {
    return ffi::Error::InvalidArgument("bspm_dense_spmm: the matrix must be (rows, n) for x of shape (chunks, n, width)");
  }
  const Operand a{{nullptr, nullptr, nullptr}, matrix.typed_data()};
  return Product(pool, "bspm_dense_spmm", a, md[0], x, addends, alpha, beta0, beta1, isa, y);
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
                                  .Attr<int32_t>("isa")
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(BspmDenseSpmm, DenseSpmm,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .RemainingArgs()
                                  .Attr<float>("alpha")
                                  .Attr<float>("beta0")
                                  .Attr<float>("beta1")
                                  .Attr<int32_t>("isa")
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
      {"bspm_dense_spmm", reinterpret_cast<void*>(BspmDenseSpmm)},
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

// `isa_paths()`: the instruction-set paths this CPU can run, best first ("avx512", "avx2", "baseline").
static PyObject* IsaPaths(PyObject*, PyObject*) {
  const std::pair<int32_t, const char*> paths[] = {{kAvx512, "avx512"}, {kAvx2, "avx2"}, {kBaseline, "baseline"}};
  PyObject* out = PyList_New(0);
  if (out == nullptr) return nullptr;
  for (const auto& [isa, name] : paths) {
    if (!Supported(isa)) continue;
    PyObject* s = PyUnicode_FromString(name);
    if (s == nullptr || PyList_Append(out, s) != 0) {
      Py_XDECREF(s);
      Py_DECREF(out);
      return nullptr;
    }
    Py_DECREF(s);
  }
  return out;
}

static PyMethodDef kMethods[] = {
    {"handlers", Handlers, METH_NOARGS, "XLA FFI handlers of bspm_jax: {target name: PyCapsule}."},
    {"isa_paths", IsaPaths, METH_NOARGS, "Instruction-set paths this CPU can run, best first."},
    {nullptr, nullptr, 0, nullptr},
};

static PyModuleDef kModule = {PyModuleDef_HEAD_INIT, "_native", "Native CPU kernels of bspm_jax (XLA FFI).", -1,
                              kMethods};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&kModule); }
