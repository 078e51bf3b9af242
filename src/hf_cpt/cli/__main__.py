"""`python -m hf_cpt.cli ...`, as `accelerate launch -m hf_cpt.cli ...` runs it."""

from hf_cpt.cli.main import main

main()
