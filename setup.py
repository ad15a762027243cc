"""Builds the optional native CPU kernel ``bspm_jax._native`` (an XLA FFI custom call).

The kernel is compiled against the XLA FFI headers that jaxlib ships
(``jax.ffi.include_dir()``); jax is therefore a build requirement. The extension is
optional: when it cannot be built, installation goes on and bspm_jax uses its
pure-JAX sparse products instead.
"""

from setuptools import Extension, setup


def native_extension() -> list[Extension]:
    try:
        import jax.ffi
    except ImportError:  # no jax at build time: pure-JAX products only
        return []
    return [
        Extension(
            "bspm_jax._native",
            sources=["bspm_jax/_native/kernels.cc"],
            depends=["bspm_jax/_native/isa_loops.inc"],
            include_dirs=[jax.ffi.include_dir()],
            language="c++",
            extra_compile_args=["-std=c++17", "-O3", "-ffp-contract=off", "-fvisibility=hidden"],
            optional=True,
        )
    ]


setup(ext_modules=native_extension())
