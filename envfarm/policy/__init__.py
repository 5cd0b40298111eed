"""Policies: the async Policy protocol and adapters (OpenAI-compatible server, transformers, scripted).

Adapters with heavy imports (torch) load lazily: import them from their modules, or use
`load_policy("scripted" | "openai" | "transformers" | "package.module:attr")`.
"""

from envfarm.policy.base import Completion, Policy, PolicyError, policy_name
from envfarm.policy.loader import PolicyLoadError, check_policy, load_policy

__all__ = ["Completion", "Policy", "PolicyError", "PolicyLoadError", "check_policy", "load_policy", "policy_name"]
