"""Wire formats: parsing and validating client requests, SSE, usage, and translation between APIs."""
