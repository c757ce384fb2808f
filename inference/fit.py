"""Check whether the configured models fit the card's memory; pure functions, no I/O.

The estimate for one model is: weights (given as `weights_gb`, else `params_billion` times the
bytes per parameter of its quantization, plus 10 % for unquantized embeddings and scales) plus the
KV cache for one full `max_model_len` sequence (`kv_bytes_per_token`, when given) plus a fixed
runtime overhead (CUDA context, activations, sampler). vLLM may use only
`gpu_memory_utilization` of the card, so that is the budget. The result is a list of warning
sentences; an empty list means every profile fits.
"""

from __future__ import annotations

from inference.config import HostConfig, ModelProfile

RUNTIME_OVERHEAD_GB = 1.0
DEFAULT_UTILIZATION = 0.9  # vLLM's own default for --gpu-memory-utilization
_BYTES_PER_PARAM = {
    None: 2.0, "fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "int8": 1.0, "bitsandbytes": 0.55,
    "awq": 0.5, "awq_marlin": 0.5, "gptq": 0.5, "gptq_marlin": 0.5, "compressed-tensors": 0.5,
}
GIB = 1024**3


def weights_gb(profile: ModelProfile) -> float | None:
    """Estimated weight memory in GiB, or None when the profile gives nothing to go on."""
    if profile.weights_gb is not None:
        return profile.weights_gb
    if profile.params_billion is None:
        return None
    per_param = _BYTES_PER_PARAM.get(profile.quantization, 2.0)
    return profile.params_billion * 1e9 * per_param * 1.1 / GIB


def required_gb(profile: ModelProfile) -> float | None:
    """Estimated memory one instance needs, in GiB, or None when unknown."""
    weights = weights_gb(profile)
    if weights is None:
        return None
    kv = 0.0
    if profile.kv_bytes_per_token and profile.max_model_len:
        kv = profile.kv_bytes_per_token * profile.max_model_len / GIB
    return weights + kv + RUNTIME_OVERHEAD_GB


def check_fit(config: HostConfig, gpu_memory_gb: float | None) -> list[str]:
    """Warnings for profiles that cannot fit `gpu_memory_gb` (NVML's total, else the config's)."""
    memory = gpu_memory_gb if gpu_memory_gb is not None else config.gpu_memory_gb
    if memory is None:
        return []
    warnings: list[str] = []
    for profile in config.models:
        util = profile.gpu_memory_utilization or DEFAULT_UTILIZATION
        budget = memory * util
        need = required_gb(profile)
        if need is None:
            continue
        if need > budget:
            warnings.append(
                f"Model {profile.id!r} needs about {need:.1f} GiB but may use only "
                f"{budget:.1f} GiB ({util:.0%} of {memory:g} GiB); lower max_model_len, "
                f"choose a smaller quantized model or raise gpu_memory_utilization."
            )
    if config.max_loaded_models > 1:
        shares = sorted(
            (m.gpu_memory_utilization or DEFAULT_UTILIZATION for m in config.models),
            reverse=True,
        )[: config.max_loaded_models]
        if sum(shares) > 1.0:
            warnings.append(
                f"max_loaded_models is {config.max_loaded_models} but the largest "
                f"gpu_memory_utilization values add up to {sum(shares):.2f} > 1.0; "
                f"models loaded together would not fit."
            )
    return warnings
