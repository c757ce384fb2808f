"""docker-compose.yml parses with the real `docker-compose config`, and says what we mean."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def compose_config(*args: str) -> dict:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is needed (.ci/run installs Debian's docker-compose)"
    result = subprocess.run([binary, *args, "config"], cwd=ROOT, capture_output=True, text=True, check=False,
                            timeout=120, env={"PATH": "/usr/bin:/bin:/usr/local/bin"})
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_file_is_accepted_and_complete():
    config = compose_config()
    services = config["services"]
    assert {"router", "inference-3070", "opencode-service"} <= set(services)
    router = services["router"]
    assert router["environment"]["LOCAL_3070_URL"] == "http://inference-3070:8001"
    assert router["environment"]["DATABASE_URL"] == "sqlite:////data/router.db"
    assert "router-data:/data:rw" in router["volumes"]
    assert "router-data" in config["volumes"]
    gpu = services["inference-3070"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    assert "/models" in str(services["inference-3070"]["volumes"])
    assert "8002" in str(services["opencode-service"]["ports"])
    assert "/.local/share/opencode" in str(services["opencode-service"]["volumes"])
    assert "vllm" not in (ROOT / "Dockerfile").read_text()  # the router image never installs vLLM
    # every bind mount refers to a file in the repository
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if source.startswith("/"):
                assert Path(source).exists(), source


def test_monitoring_profile_and_dashboard_names_real_metrics():
    from router.metrics import Metrics

    config = compose_config("--profile", "monitoring")
    assert {"prometheus", "grafana"} <= set(config["services"])
    exported = {m.name for m in Metrics().registry.collect()}
    exported |= {f"{name}_total" for name in exported} | {f"{name}_bucket" for name in exported}
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/local-ai-router.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [r["expr"] for g in yaml.safe_load((ROOT / "deploy/alerts.yml").read_text())["groups"]
              for r in g["rules"]]
    used = {name for expr in exprs for name in re.findall(r"\brouter_[a-z_]+", expr)}
    assert used, "no router metrics referenced"
    assert used <= exported, f"unknown metrics: {used - exported}"
