"""The environments shipped with agentgym, one sub-package each (registered in agentgym.registry)."""
