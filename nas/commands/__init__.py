"""Sub-commands of ``nas`` that have no library module of their own; each registers its parser with
``register_command(subparsers)`` and imports what its handler needs (torch, optuna) only when it runs."""
