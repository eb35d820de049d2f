"""Triage-model tooling: metrics that judge whether a model's confidence can be trusted to route tickets."""
