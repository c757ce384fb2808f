"""The routing core: policy, service (route lifecycle), registry, gaming mode, token estimates."""
