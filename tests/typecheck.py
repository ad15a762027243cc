"""The run-time checker of the library's type hints in the test suite: beartype, with ints accepted where a
float is hinted (PEP 484's numeric tower), applied by jaxtyping so that array shapes and dtypes are checked too."""

from beartype import BeartypeConf, beartype

typecheck = beartype(conf=BeartypeConf(is_pep484_tower=True))
