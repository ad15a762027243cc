"""What the rest stands on: file writes (:mod:`.io`), memory estimates (:mod:`.memory`), argument checks
(:mod:`.checks`), the native CPU kernel (:mod:`.native`), the machine's record (:mod:`.environment`) and
multi-process start-up (:mod:`.distributed`)."""
