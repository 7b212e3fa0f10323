"""Fine-tune service: datasets, tuning jobs run by worker processes, artifacts served by the inference service."""
