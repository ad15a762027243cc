"""The filtering core: linear operators on item signals (:mod:`.operators`), the blur and sharpen ODE solvers
(:mod:`.solvers`), row-block products (:mod:`.rows`), the normalised item graph (:mod:`.graph`), the
training-free filters built from them (:mod:`.filters`) and Chebyshev polynomial filters (:mod:`.chebyshev`)."""
