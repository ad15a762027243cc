"""Figures of the papers: BSPM's sweeps (:mod:`.bspm`), the filters' frequency responses (:mod:`.response`)
and S-Diff's (:mod:`.sdiff`)."""
