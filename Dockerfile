# The router (HTTP API + Mattermost bot + scheduler). No GPU, no vLLM.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY router ./router
COPY bot ./bot
COPY inference ./inference
COPY migrations ./migrations
COPY local_ai_router ./local_ai_router
RUN pip install --no-cache-dir .
ENV ROUTER_HOST=0.0.0.0 DATABASE_URL=sqlite:////data/router.db
VOLUME /data
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')"
CMD ["local-ai-router", "serve"]
