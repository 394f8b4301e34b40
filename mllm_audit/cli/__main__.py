"""`python -m mllm_audit.cli`: the same entry point as the `mllm-audit` script."""

from mllm_audit.cli import main

main()
