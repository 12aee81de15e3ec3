"""The HTTP edge: request models, signature checks and response shaping for handlers."""
