"""GitOps Autofix: Alertmanager alerts about failing workloads become reviewable GitOps pull requests."""

__version__ = "0.1.0"
