"""Training data: datasets of aligned patches (:mod:`.datasets`), synthetic degradations
(:mod:`.degradations`) and the ``superres degrade`` command (:mod:`.command`).

Nothing is imported here, so ``superres --help`` (which registers the command) stays light; import the
submodules directly.
"""
