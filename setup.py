"""Builds the optional native CPU kernel ``bspm_jax._native`` (an XLA FFI custom call).

The kernel is compiled against the XLA FFI headers that jaxlib ships
(``jax.ffi.include_dir()``); jax is therefore a build requirement. It is built for the
architecture's portable baseline (no ``-march=native``: a wheel runs on any CPU of the
architecture); on x86-64 the arithmetic loops are compiled once more for AVX2 and for
AVX-512, and the path is picked at run time from what the CPU reports (see
``bspm_jax/native.py``). ``-ffp-contract=off`` keeps every product and sum rounded on its
own, so that all paths give the same bits. The extension is optional: when it cannot be
built (no C++17 compiler, no jax at build time), installation goes on, says so in one
line, and bspm_jax uses its pure-JAX products instead.
"""

import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

FLAGS = ["-std=c++17", "-O3", "-ffp-contract=off", "-fvisibility=hidden"]


class OptionalBuildExt(build_ext):
    """build_ext that installs without the kernel, with one line of explanation, when it cannot compile it."""

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as err:  # compiler missing or failing: the pure-JAX products serve instead
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            reason = reason if len(reason) <= 160 else reason[:157] + "..."
            print(f"bspm_jax: the native CPU kernel was not built ({reason}); "
                  "bspm_jax will use its pure-JAX products", file=sys.stderr)


def native_extension() -> list[Extension]:
    try:
        import jax.ffi
    except ImportError:  # no jax at build time: pure-JAX products only
        print("bspm_jax: jax is not importable at build time; the native CPU kernel is not built", file=sys.stderr)
        return []
    return [
        Extension(
            "bspm_jax._native",
            sources=["csrc/kernels.cc"],
            depends=["csrc/isa_loops.inc"],
            include_dirs=[jax.ffi.include_dir()],
            language="c++",
            extra_compile_args=FLAGS,
            optional=True,
        )
    ]


setup(ext_modules=native_extension(), cmdclass={"build_ext": OptionalBuildExt})
