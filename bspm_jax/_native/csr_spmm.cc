// CSR sparse x dense products for bspm_jax, registered with JAX as an XLA FFI custom call.
//
//   y[c, r, :] = sum_p data[p] * x[c, indices[p], :]   for p in indptr[r] .. indptr[r+1]
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

// Rows [r0, r1) of one chunk, for a width fixed at compile time (accumulators in registers).
template <int W>
void RowsFixed(const Csr& a, const float* __restrict x, float* __restrict y, int64_t r0, int64_t r1) {
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
    for (int c = 0; c < W; ++c) yr[c] = acc[c];
  }
}

// Any other width: the same sweep with the width known only at run time.
void RowsAny(const Csr& a, const float* __restrict x, float* __restrict y, int64_t w, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    float* yr = y + r * w;
    std::fill(yr, yr + w, 0.0f);
    for (int32_t p = a.indptr[r]; p < a.indptr[r + 1]; ++p) {
      const float v = a.data[p];
      const float* __restrict xr = x + int64_t{a.indices[p]} * w;
      for (int64_t c = 0; c < w; ++c) yr[c] += v * xr[c];
    }
  }
}

// One work item: the rows [r0, r1) of chunk c.
void Item(const Csr& a, const float* x, float* y, int64_t n_cols, int64_t n_rows, int64_t w, int64_t c, int64_t r0,
          int64_t r1) {
  const float* xc = x + c * n_cols * w;
  float* yc = y + c * n_rows * w;
  switch (w) {
    case 8: RowsFixed<8>(a, xc, yc, r0, r1); break;
    case 16: RowsFixed<16>(a, xc, yc, r0, r1); break;
    case 32: RowsFixed<32>(a, xc, yc, r0, r1); break;
    case 64: RowsFixed<64>(a, xc, yc, r0, r1); break;
    default: RowsAny(a, xc, yc, w, r0, r1);
  }
}

// Work shared by the calling thread and the tasks it puts on XLA's thread pool. Tasks
// that start late find no items left; the state lives as long as its last holder.
struct Work {
  Csr a;
  const float* x;
  float* y;
  int64_t n_cols, n_rows, w;
  std::vector<int64_t> bounds;  // row blocks of about equal nonzeros
  int64_t items;                // chunks x blocks
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  std::mutex mutex;
  std::condition_variable finished;

  void Run() {
    const int64_t blocks = static_cast<int64_t>(bounds.size()) - 1;
    for (int64_t i = next.fetch_add(1); i < items; i = next.fetch_add(1)) {
      Item(a, x, y, n_cols, n_rows, w, i / blocks, bounds[i % blocks], bounds[i % blocks + 1]);
      if (done.fetch_add(1) + 1 == items) {
        std::lock_guard<std::mutex> lock(mutex);
        finished.notify_all();
      }
    }
  }
};

ffi::Error CsrSpmm(ffi::ThreadPool pool, ffi::Buffer<ffi::S32> indptr, ffi::Buffer<ffi::S32> indices,
                   ffi::Buffer<ffi::F32> data, ffi::Buffer<ffi::F32> x, ffi::ResultBuffer<ffi::F32> y) {
  const auto xd = x.dimensions();
  const auto yd = y->dimensions();
  if (xd.size() != 3 || yd.size() != 3 || xd[0] != yd[0] || xd[2] != yd[2]) {
    return ffi::Error::InvalidArgument("bspm_csr_spmm: x and y must be (chunks, n, width) with equal chunks and width");
  }
  const int64_t n_rows = indptr.element_count() - 1;
  if (yd[1] != n_rows || indices.element_count() != data.element_count()) {
    return ffi::Error::InvalidArgument("bspm_csr_spmm: inconsistent CSR arrays or output shape");
  }
  auto work = std::make_shared<Work>();
  work->a = Csr{indptr.typed_data(), indices.typed_data(), data.typed_data()};
  work->x = x.typed_data();
  work->y = y->typed_data();
  work->n_cols = xd[1];
  work->n_rows = n_rows;
  work->w = xd[2];
  const int64_t helpers = std::max<int64_t>(0, pool.num_threads() - 1);
  // A few blocks per thread: small enough to balance, large enough to stream.
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(n_rows, 4 * (helpers + 1)));
  const int64_t nnz = work->a.indptr[n_rows];
  work->bounds.assign(blocks + 1, n_rows);
  work->bounds[0] = 0;
  int64_t r = 0;
  for (int64_t k = 1; k < blocks; ++k) {
    const int64_t target = nnz * k / blocks;
    while (r < n_rows && work->a.indptr[r] < target) ++r;
    work->bounds[k] = r;
  }
  work->items = xd[0] * blocks;
  if (work->items == 0) return ffi::Error::Success();
  for (int64_t k = 0; k < std::min(helpers, work->items - 1); ++k) {
    pool.Schedule([work] { work->Run(); });
  }
  work->Run();
  std::unique_lock<std::mutex> lock(work->mutex);
  work->finished.wait(lock, [&] { return work->done.load() == work->items; });
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
                                  .Ret<ffi::Buffer<ffi::F32>>());

// Python module `bspm_jax._native`: `handlers()` returns {target name: PyCapsule}.
static PyObject* Handlers(PyObject*, PyObject*) {
  PyObject* dict = PyDict_New();
  if (dict == nullptr) return nullptr;
  PyObject* capsule = PyCapsule_New(reinterpret_cast<void*>(BspmCsrSpmm), nullptr, nullptr);
  if (capsule == nullptr || PyDict_SetItemString(dict, "bspm_csr_spmm", capsule) != 0) {
    Py_XDECREF(capsule);
    Py_DECREF(dict);
    return nullptr;
  }
  Py_DECREF(capsule);
  return dict;
}

static PyMethodDef kMethods[] = {
    {"handlers", Handlers, METH_NOARGS, "XLA FFI handlers of bspm_jax: {target name: PyCapsule}."},
    {nullptr, nullptr, 0, nullptr},
};

static PyModuleDef kModule = {PyModuleDef_HEAD_INIT, "_native", "Native CPU kernels of bspm_jax (XLA FFI).", -1,
                              kMethods};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&kModule); }
