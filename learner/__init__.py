"""The learner: models, tokenizers and adapter training for memroute."""
