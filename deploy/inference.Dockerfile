# The GPU-host inference agent with vLLM (the only image that installs the vllm extra).
FROM vllm/vllm-openai:latest
WORKDIR /app
COPY pyproject.toml README.md ./
COPY router ./router
COPY bot ./bot
COPY inference ./inference
COPY migrations ./migrations
COPY local_ai_router ./local_ai_router
RUN pip install --no-cache-dir ".[gpu]"
ENV INFERENCE_HOST=0.0.0.0
EXPOSE 8001
ENTRYPOINT []
CMD ["local-ai-inference", "serve"]
