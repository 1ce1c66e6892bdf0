"""Training: recipes (config), trainer, checkpoints and resume, DDP, publishing to the zoo.

Nothing here is imported by the inference path; ``superres.train.command`` adds ``superres train`` and
``superres publish`` to the CLI. Modules: :mod:`.config` (schema, overrides), :mod:`.trainer` (the loop),
:mod:`.data` (deterministic batches), :mod:`.checkpoint`, :mod:`.schedule` (learning rate, EMA),
:mod:`.distributed` (torchrun), :mod:`.publish`, and :mod:`.losses` / :mod:`.discriminators`.
"""
