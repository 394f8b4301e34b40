"""mllm-audit: audit multimodal LLMs for social bias and repair it by model editing.

Nothing heavy is imported here so that `mllm-audit --help` stays instant.
"""

__version__ = "0.1.0"
