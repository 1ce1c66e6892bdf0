"""Blind pairwise human studies: compute outputs once (``create``), collect votes (``store``, served by
``superres serve --study``), rank models with Bradley-Terry scores and bootstrap intervals (``report``)."""
