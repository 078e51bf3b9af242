"""One module per `hf-cpt` sub-command, each with `register(subparsers)` and `run(args)`."""
