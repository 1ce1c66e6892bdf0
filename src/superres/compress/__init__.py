"""Model compression: knowledge distillation into compact students and structured channel pruning.

Nothing is imported here, so ``import superres`` stays light; use ``superres.compress.distill`` /
``superres.compress.prune`` directly."""
