"""A Flower app: hybrid RM chips learning LoRA adapters together, one client asking to be forgotten."""
